//! Dead letters: what they keep, re-driving them, bounded capacity, and persistence in
//! `LocalStorage` across restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, DeadLetter, DeadLetterQueue, LaneConfig, LaneError, RetryPolicy, handler_fn,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::{durable_manager, one_lane, stop_and_drain, storage};

/// Fails while `broken` is set (retryable), succeeds afterwards.
fn switchable(broken: Arc<AtomicBool>) -> impl a3s_lane::Handler {
    handler_fn(move |payload: Value, _ctx: CommandContext| {
        let broken = broken.clone();
        async move {
            if broken.load(Ordering::SeqCst) {
                Err(LaneError::CommandError("upstream unavailable".into()))
            } else {
                Ok(json!({ "done": payload["n"] }))
            }
        }
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_is_dead_lettered_with_everything_and_can_be_redriven() {
    let broken = Arc::new(AtomicBool::new(true));
    let manager =
        one_lane(LaneConfig::new(1, 2).with_retry_policy(RetryPolicy::fixed(2, Duration::ZERO)))
            .with_dlq(10)
            .with_handler("charge", switchable(broken.clone()))
            .build()
            .await
            .unwrap();
    manager.start().await.unwrap();
    let before = now_ms();
    let handle = manager
        .submit_replayable("work", "charge", json!({ "n": 5 }))
        .await
        .unwrap();
    let id = handle.id();
    assert!(handle.await.is_err());
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.command_id, id);
    assert_eq!(letter.command_type, "charge");
    assert_eq!(letter.lane_id, "work");
    assert_eq!(letter.error, "command failed: upstream unavailable");
    assert_eq!(letter.attempts, 3);
    assert!(letter.failed_at >= before && letter.failed_at <= now_ms());
    assert_eq!(letter.payload, Some(json!({ "n": 5 })));

    broken.store(false, Ordering::SeqCst);
    let redriven = manager.redrive(id).await.unwrap();
    assert_ne!(redriven.id(), id, "a re-driven command is a new command");
    assert_eq!(redriven.await.unwrap(), json!({ "done": 5 }));
    assert_eq!(manager.dead_letters().unwrap().len().await, 0);
    let error = manager.redrive(id).await.unwrap_err();
    assert!(
        error.to_string().contains("no dead letter with command id"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_command_is_dead_lettered_without_payload_and_cannot_be_redriven() {
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_dlq(10)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let handle = manager
        .submit_fn("work", "closure", |_ctx| async {
            Err(LaneError::CommandError("no".into()))
        })
        .await
        .unwrap();
    let id = handle.id();
    assert!(handle.await.is_err());
    let error = manager.redrive(id).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("only replayable commands can be re-driven"),
        "{error}"
    );
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters.len(), 1, "the letter stays after a refused redrive");
    assert_eq!(letters[0].payload, None);
}

fn letter(id: u64) -> DeadLetter {
    DeadLetter {
        command_id: id,
        command_type: "t".into(),
        lane_id: "work".into(),
        error: format!("error {id}"),
        attempts: 1,
        failed_at: id,
        payload: Some(json!({ "n": id })),
    }
}

proptest! {
    /// Whatever the capacity and the number pushed, the queue keeps the newest
    /// `capacity` letters in order, and each push evicts exactly the oldest.
    #[test]
    fn capacity_evicts_the_oldest_first(capacity in 0usize..20, pushes in 0u64..60) {
        let dlq = DeadLetterQueue::new(capacity);
        let mut evicted = Vec::new();
        for id in 0..pushes {
            if let Some(old) = dlq.push_sync(letter(id)) {
                evicted.push(old.command_id);
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let kept: Vec<u64> = runtime
            .block_on(dlq.list())
            .iter()
            .map(|l| l.command_id)
            .collect();
        let first_kept = pushes.saturating_sub(capacity as u64);
        prop_assert_eq!(kept, (first_kept..pushes).collect::<Vec<_>>());
        prop_assert_eq!(evicted, (0..first_kept).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_persist_and_reload_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let ids = {
        let (manager, _store) = durable_manager(
            dir.path(),
            LaneConfig::new(1, 1),
            10,
            switchable(broken.clone()),
        )
        .await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let handle = manager
                .submit_replayable("work", "job", json!({ "n": n }))
                .await
                .unwrap();
            ids.push(handle.id());
            assert!(handle.await.is_err());
        }
        stop_and_drain(&manager).await;
        ids
    };
    broken.store(false, Ordering::SeqCst);
    let (manager, store) = durable_manager(
        dir.path(),
        LaneConfig::new(1, 1),
        10,
        switchable(broken.clone()),
    )
    .await;
    let dlq = manager.dead_letters().unwrap();
    let reloaded: Vec<u64> = dlq.list().await.iter().map(|l| l.command_id).collect();
    assert_eq!(reloaded, ids);
    let first = &dlq.list().await[0];
    assert_eq!(first.payload, Some(json!({ "n": 0 })));
    assert_eq!(first.error, "command failed: upstream unavailable");
    // The failed commands themselves are no longer pending anywhere.
    assert!(store.load_commands().await.unwrap().is_empty());

    // Re-drive one, pop one: both leave the store too.
    manager.redrive(ids[1]).await.unwrap().await.unwrap();
    assert_eq!(dlq.pop().await.unwrap().command_id, ids[0]);
    stop_and_drain(&manager).await;
    let stored: Vec<u64> = store
        .load_dead_letters()
        .await
        .unwrap()
        .iter()
        .map(|l| l.command_id)
        .collect();
    assert_eq!(stored, [ids[2]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_forgets_evicted_and_cleared_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    {
        let (manager, store) = durable_manager(
            dir.path(),
            LaneConfig::new(1, 1),
            2,
            switchable(broken.clone()),
        )
        .await;
        let mut ids = Vec::new();
        for n in 0..5 {
            let handle = manager
                .submit_replayable("work", "job", json!({ "n": n }))
                .await
                .unwrap();
            ids.push(handle.id());
            let _ = handle.await;
        }
        stop_and_drain(&manager).await;
        let stored: Vec<u64> = store
            .load_dead_letters()
            .await
            .unwrap()
            .iter()
            .map(|l| l.command_id)
            .collect();
        assert_eq!(
            stored,
            ids[3..],
            "capacity 2: the store keeps the two newest"
        );
    }
    {
        // Reopened with a smaller capacity: the oldest is evicted from the store as well.
        let (manager, store) = durable_manager(
            dir.path(),
            LaneConfig::new(1, 1),
            1,
            switchable(broken.clone()),
        )
        .await;
        assert_eq!(manager.dead_letters().unwrap().len().await, 1);
        stop_and_drain(&manager).await;
        assert_eq!(store.load_dead_letters().await.unwrap().len(), 1);
        manager.dead_letters().unwrap().clear().await;
        stop_and_drain(&manager).await;
        assert!(store.load_dead_letters().await.unwrap().is_empty());
    }
    let store = storage(dir.path()).await;
    assert!(store.load_dead_letters().await.unwrap().is_empty());
}
