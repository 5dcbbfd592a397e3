//! Against a `LocalStorage` directory: read while the test's queue (another process, to
//! the binary) owns the store, changed once it is closed.

use std::path::Path;
use std::sync::Arc;

use a3s_lane::{
    EventEmitter, LaneConfig, LaneError, LocalStorage, QueueClient, QueueManagerBuilder, handler_fn,
};
use serde_json::json;

use crate::{a3s_lane, eventually, ids};

/// `a3s-lane --storage DIR ARGS…`
fn cli(dir: &Path, args: &[&str]) -> crate::Run {
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    let mut all = vec!["--storage", dir];
    all.extend_from_slice(args);
    a3s_lane(all)
}

/// Every file of the directory with its length and modification time. Metadata only:
/// opening `lane.db` in this process (which owns the store) and closing it would drop
/// SQLite's POSIX locks on it.
fn files_of(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_read_while_owned_and_changed_only_once_free() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_storage(storage.clone())
        .with_dlq(100)
        .with_lane("mail", LaneConfig::new(1, 2), 0)
        .with_lane("bulk", LaneConfig::new(1, 1), 1)
        .with_handler(
            "boom",
            handler_fn(|_, _ctx| async { Err(LaneError::CommandError("smtp down".into())) }),
        )
        .with_handler(
            "send",
            handler_fn(|payload, _ctx| async move { Ok(payload) }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut dead = Vec::new();
    for n in 0..2 {
        let handle = manager
            .submit_replayable("mail", "boom", json!({ "n": n }))
            .await
            .unwrap();
        dead.push(handle.id());
        assert!(handle.await.is_err());
    }
    // Paused: these stay pending in the store.
    QueueClient::pause_lane(&manager, "mail").await.unwrap();
    let mut pending = Vec::new();
    for n in 0..3 {
        let handle = manager
            .submit_replayable("mail", "send", json!({ "n": n }))
            .await
            .unwrap();
        pending.push(handle.id());
    }
    let dir_path = dir.path().to_path_buf();
    eventually("the dead letters are stored", || {
        let run = cli(&dir_path, &["stats", "--json"]);
        run.code == Some(0) && run.json()["dead_letters"] == 2
    });

    // Read while the queue owns the store: nothing changes on disk.
    let before = files_of(dir.path());
    let stats = cli(dir.path(), &["stats", "--json"]).json();
    assert_eq!(stats["engine"], "storage");
    assert_eq!(stats["total_pending"], 3);
    assert_eq!(stats["lanes"][0]["id"], "mail");
    assert_eq!(stats["lanes"][0]["dead_letters"], 2);
    assert!(
        stats["lanes"][0]["running"].is_null(),
        "a store does not know"
    );
    let listing = cli(dir.path(), &["commands", "--state", "pending", "--json"]).json();
    assert_eq!(ids(&listing), pending);
    let listing = cli(dir.path(), &["commands", "--state", "dead", "--json"]).json();
    assert_eq!(ids(&listing), [dead[1], dead[0]], "newest first");
    let shown = cli(dir.path(), &["show", &pending[0].to_string(), "--json"]).json();
    assert_eq!(shown["payload"], json!({ "n": 0 }));
    assert_eq!(shown["state"], "pending");
    let letters = cli(dir.path(), &["dead-letters", "list", "--json"]).json();
    assert_eq!(letters["dead_letters"][0]["command_id"], dead[0]);
    let watch = cli(
        dir.path(),
        &["watch", "--frames", "2", "--interval", "50ms", "--json"],
    );
    assert_eq!(watch.stdout.lines().count(), 2, "{watch:?}");
    assert!(
        watch.stdout.contains("\"driven_by\":\"interval\""),
        "{watch:?}"
    );
    cli(dir.path(), &["show", "987654321"]).refused("no command 987654321");
    cli(dir.path(), &["commands", "--state", "running"])
        .refused("does not record which commands run");
    cli(
        dir.path(),
        &["commands", "--state", "pending", "--lane", "nope"],
    )
    .refused("lane 'nope' not found");

    // Changing it is refused while it is owned.
    let id = pending[0].to_string();
    cli(dir.path(), &["cancel", &id]).refused("in use by another process");
    cli(dir.path(), &["dead-letters", "purge", "--all"]).refused("in use by another process");
    cli(
        dir.path(),
        &["dead-letters", "redrive", &dead[0].to_string()],
    )
    .refused("in use by another process");
    cli(dir.path(), &["pause", "mail"]).refused("keeps no pause state");
    assert_eq!(
        files_of(dir.path()),
        before,
        "the store's files are untouched"
    );

    // Read while the queue writes: each read is one commit's view.
    QueueClient::pause_lane(&manager, "bulk").await.unwrap();
    let writer = {
        let manager = manager.clone();
        tokio::spawn(async move {
            for n in 0..300 {
                let _handle = manager
                    .submit_replayable("bulk", "send", json!({ "n": n }))
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        let stats = cli(dir.path(), &["stats", "--json"]).json();
        let bulk = stats["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == "bulk")
            .map_or(0, |l| l["pending"].as_u64().unwrap());
        assert!(
            bulk >= seen,
            "{bulk} after {seen}: a read went back in time"
        );
        seen = bulk;
    }
    writer.await.unwrap();
    let stats = cli(dir.path(), &["stats", "--json"]).json();
    assert_eq!(stats["total_pending"], 303);

    // Once the queue is gone, the changes go through.
    manager.shutdown().await;
    drop(manager);
    drop(storage);
    // Waits for the queue's storage to close, then lets it go.
    LocalStorage::new(dir.path())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();

    let cancelled = cli(dir.path(), &["cancel", &id, "--json"]).json();
    assert_eq!(cancelled["outcome"], "cancelled");
    let shown = cli(dir.path(), &["show", &id, "--json"]).json();
    assert_eq!(shown["state"], "cancelled");
    let again = cli(dir.path(), &["cancel", &id, "--json"]).json();
    assert_eq!(again["outcome"], "already_finished");

    let redriven = cli(
        dir.path(),
        &["dead-letters", "redrive", &dead[0].to_string(), "--json"],
    )
    .json();
    assert_eq!(redriven["redriven"], json!([dead[0]]));
    let purged = cli(dir.path(), &["dead-letters", "purge", "--all", "--json"]).json();
    assert_eq!(purged["purged"], 1);
    let letters = cli(dir.path(), &["dead-letters", "list", "--json"]).json();
    assert_eq!(letters["dead_letters"], json!([]));
    let listing = cli(
        dir.path(),
        &["commands", "--state", "pending", "--lane", "mail", "--json"],
    )
    .json();
    let mut expected = vec![dead[0], pending[1], pending[2]];
    expected.sort_unstable();
    let mut got = ids(&listing);
    got.sort_unstable();
    assert_eq!(got, expected, "the redriven command waits again");
    cli(dir.path(), &["dead-letters", "purge", &dead[1].to_string()]).refused("no dead letter");

    // A queue opening the store runs the redriven command.
    let storage = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    let loaded = storage.load_commands().await.unwrap();
    let redriven = loaded
        .iter()
        .find(|c| c.id == dead[0])
        .expect("stored again");
    assert_eq!(redriven.attempts, 0);
    assert_eq!(redriven.payload, json!({ "n": 0 }));
}
