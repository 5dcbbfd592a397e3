//! A command's group inside its lane in `LocalStorage` (schema version 5's `group_key`):
//! saved with the command, loaded back with it after the store is reopened (and after a
//! crash that left it only in the WAL), a command of no group stays in none, and salvage
//! copies the group with the command.

use std::path::Path;

use a3s_lane::{LocalStorage, Storage, StorageOp, StoredCommand};
use rusqlite::Connection;
use serde_json::json;

/// Command `id` of lane `work`, in `group` (`None`: in no group).
fn command(id: u64, group: Option<&str>) -> StoredCommand {
    StoredCommand {
        id,
        lane_id: "work".into(),
        command_type: "job".into(),
        payload: json!({ "n": id }),
        attempts: 0,
        created_at: 1_800_000_000_000 + id,
        not_before: None,
        start_by: None,
        key: None,
        group: group.map(String::from),
        replayable: true,
    }
}

/// Commands of two groups and of none, as a lane with groups holds them.
fn commands() -> Vec<StoredCommand> {
    vec![
        command(1, Some("tenant-1")),
        command(2, None),
        command(3, Some("tenant-2")),
        StoredCommand {
            not_before: Some(1_900_000_000_000),
            start_by: Some(1_900_000_360_000),
            key: Some("report-4".into()),
            ..command(4, Some("tenant-1"))
        },
    ]
}

/// Saves `commands` in `store`, the first by `save_command`, the rest in one
/// `apply` (the journal's way).
async fn save(store: &LocalStorage, commands: &[StoredCommand]) {
    store.save_command(commands[0].clone()).await.unwrap();
    store
        .apply(
            commands[1..]
                .iter()
                .cloned()
                .map(StorageOp::SaveCommand)
                .collect(),
        )
        .await
        .unwrap();
}

/// The `group_key` column of every command of the closed store in `dir`, by id.
fn stored_groups(dir: &Path) -> Vec<(i64, Option<String>)> {
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.prepare("SELECT id, group_key FROM commands ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[tokio::test]
async fn a_command_saved_in_a_group_is_loaded_back_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let commands = commands();
    save(&store, &commands).await;
    // The open store shows them at once.
    assert_eq!(store.load_commands().await.unwrap(), commands);
    store.close().await.unwrap();

    // The group is the column, not something derived from the payload.
    assert_eq!(
        stored_groups(dir.path()),
        [
            (1, Some("tenant-1".into())),
            (2, None),
            (3, Some("tenant-2".into())),
            (4, Some("tenant-1".into())),
        ]
    );
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let loaded = store.load_commands().await.unwrap();
    assert_eq!(loaded, commands);
    assert_eq!(loaded[0].group.as_deref(), Some("tenant-1"));
    assert_eq!(loaded[1].group, None);
    // Saved again (a retry's attempt count), it keeps its group.
    let retried = StoredCommand {
        attempts: 1,
        ..commands[0].clone()
    };
    store.save_command(retried.clone()).await.unwrap();
    store.close().await.unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap()[0], retried);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_group_only_in_the_wal_of_a_crashed_process_comes_back() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let store = LocalStorage::new(&live).await.unwrap();
    let commands = commands();
    save(&store, &commands).await;
    // The files a process leaves when it dies now: its commits are in the WAL.
    let dir = base.path().join("crashed");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["lane.db", "lane.db-wal"] {
        std::fs::copy(live.join(name), dir.join(name)).unwrap();
    }
    store.close().await.unwrap();
    assert!(std::fs::metadata(dir.join("lane.db-wal")).unwrap().len() > 0);

    let store = LocalStorage::new(&dir).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap(), commands);
    store.close().await.unwrap();
}

#[tokio::test]
async fn salvage_keeps_each_commands_group() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    let commands = commands();
    save(&store, &commands).await;
    store.close().await.unwrap();
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
    assert!(LocalStorage::new(&dir).await.is_err());

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(report.commands, commands.len(), "{report:#?}");
    assert!(report.unreadable.is_empty(), "{report:#?}");
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap(), commands);
    store.close().await.unwrap();
    assert_eq!(
        stored_groups(&salvaged),
        [
            (1, Some("tenant-1".into())),
            (2, None),
            (3, Some("tenant-2".into())),
            (4, Some("tenant-1".into())),
        ]
    );
}
