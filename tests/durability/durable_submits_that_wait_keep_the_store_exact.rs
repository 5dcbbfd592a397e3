//! A durable submit writes its record before it queues the command. When it then has to
//! wait (a full lane), is dropped while waiting, or carries an idempotency key, the store
//! still holds exactly the commands that were accepted, and no key's lock is held while
//! a submit waits for room.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LaneError, LocalStorage, QueueManager,
    QueueManagerBuilder, SubmitOptions, WhenFull, handler_fn,
};
use serde_json::{Value, json};

async fn manager(store: Arc<LocalStorage>, start: bool) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "full",
            LaneConfig::new(1, 1)
                .with_max_waiting(1)
                .with_when_full(WhenFull::Wait { timeout: None }),
            0,
        )
        .with_lane("empty", LaneConfig::new(1, 1), 1)
        .with_storage(store)
        .with_handler(
            "job",
            handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) }),
        )
        .build()
        .await
        .unwrap();
    if start {
        manager.start().await.unwrap();
    }
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submits_dropped_while_waiting_for_room_leave_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    let manager = manager(store.clone(), true).await;
    manager.pause_lane("full").unwrap();
    // Eight race for one place; the losers wait for room and are dropped by their
    // callers' timeouts.
    let mut submits = Vec::new();
    for i in 0..8 {
        let manager = manager.clone();
        submits.push(tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_millis(300),
                manager.submit_replayable("full", "job", json!(i)),
            )
            .await
        }));
    }
    let mut accepted = Vec::new();
    for submit in submits {
        if let Ok(Ok(handle)) = submit.await.unwrap() {
            accepted.push(handle.id());
        }
    }
    assert_eq!(accepted.len(), 1, "one place in the lane");
    manager.shutdown_now().await;
    manager.drain(Duration::from_secs(5)).await.unwrap();
    let stored: Vec<u64> = store
        .load_commands()
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        stored, accepted,
        "the store holds what was accepted, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_submit_waiting_for_room_blocks_no_other_key() {
    let bucket = |key: &str| BuildHasherDefault::<DefaultHasher>::default().hash_one(key) % 64;
    let waiting_key = "order-1";
    // Another key that shares the waiting key's lock (one of 64): it must not wait.
    let neighbour = (0..)
        .map(|i| format!("other-{i}"))
        .find(|key| bucket(key) == bucket(waiting_key))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    let manager = manager(store, true).await;
    manager.pause_lane("full").unwrap();
    let _first = manager
        .submit_replayable("full", "job", json!(0))
        .await
        .unwrap();
    let waiter = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let options = SubmitOptions::new().with_key(waiting_key);
            manager
                .submit_replayable_with("full", "job", json!(1), &options)
                .await
                .map(|handle| handle.id())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let options = SubmitOptions::new().with_key(neighbour.as_str());
    let other = tokio::time::timeout(
        Duration::from_secs(5),
        manager.submit_replayable_with("empty", "job", json!(2), &options),
    )
    .await
    .expect("a submit of another key waited behind one waiting for room")
    .unwrap();
    assert!(!other.is_duplicate());
    other.await.unwrap();
    // The waiting one takes the place once there is room.
    manager.resume_lane("full").unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiting submit got room")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_keyed_submit_before_start_is_refused_on_a_durable_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    let manager = manager(store.clone(), false).await;
    let options = SubmitOptions::new().with_key("k");
    let error = manager
        .submit_replayable_with("empty", "job", json!(1), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LaneError::QueueError(m) if m.contains("after start()")),
        "{error:?}"
    );
    assert!(store.load_commands().await.unwrap().is_empty());
    // Without a key it is queued, and runs at start, as always.
    let plain = manager
        .submit_replayable("empty", "job", json!(2))
        .await
        .unwrap();
    manager.start().await.unwrap();
    let keyed = manager
        .submit_replayable_with("empty", "job", json!(3), &options)
        .await
        .unwrap();
    plain.await.unwrap();
    keyed.await.unwrap();
}
