//! Recovery with `LocalStorage`: unfinished replayable commands come back after a restart,
//! at the front of their lanes, in their original order, with their attempt counts.

use std::time::Duration;

use a3s_lane::{
    CommandContext, LaneConfig, RetryPolicy, Storage, StorageOp, StoredCommand, handler_fn,
};
use serde_json::{Value, json};

use crate::support::{ValueLog, durable_manager, one_lane, stop_and_drain, storage, stored_ns};

fn recording(log: &ValueLog) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, ctx: CommandContext| {
        let log = log.clone();
        async move {
            log.push(json!({ "n": payload["n"], "attempt": ctx.attempt(), "id": ctx.id() }));
            Ok(payload)
        }
    })
}

/// A handler that never finishes on its own: it waits until it is cancelled.
fn stuck() -> impl a3s_lane::Handler {
    handler_fn(|_payload: Value, ctx: CommandContext| async move {
        ctx.cancelled().await;
        Err(a3s_lane::LaneError::Cancelled("stopped".into()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_commands_run_after_restart_in_their_original_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        // First life: the lane is paused, so nothing runs before the "crash".
        let (manager, store) =
            durable_manager(dir.path(), LaneConfig::new(1, 1), 10, stuck()).await;
        manager.pause_lane("work").unwrap();
        for n in 0..5 {
            let handle = manager
                .submit_replayable("work", "job", json!({ "n": n }))
                .await
                .unwrap();
            drop(handle);
        }
        assert_eq!(stored_ns(&*store).await, [0, 1, 2, 3, 4]);
        manager.shutdown_now().await;
        manager.drain(Duration::from_secs(5)).await.unwrap();
    }
    // Second life: one command is submitted before start; the recovered ones go first.
    let log = ValueLog::default();
    let store = storage(dir.path()).await;
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_storage(store.clone())
        .with_handler("job", recording(&log))
        .build()
        .await
        .unwrap();
    let late = manager
        .submit_replayable("work", "job", json!({ "n": 99 }))
        .await
        .unwrap();
    manager.start().await.unwrap();
    late.await.unwrap();
    stop_and_drain(&manager).await;
    let order: Vec<u64> = log
        .values()
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 99]);
    // The new command got an id above every recovered one.
    let ids: Vec<u64> = log
        .values()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert!(ids[5] > ids[..5].iter().copied().max().unwrap(), "{ids:?}");
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_command_keeps_its_attempt_count() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = storage(dir.path()).await;
        // As the journal leaves it after two failed attempts.
        store
            .save_command(StoredCommand {
                id: 7,
                lane_id: "work".into(),
                command_type: "job".into(),
                payload: json!({ "n": 1 }),
                attempts: 2,
                created_at: 1,
                not_before: None,
                start_by: None,
                key: None,
                group: None,
                replayable: true,
            })
            .await
            .unwrap();
    }
    let log = ValueLog::default();
    let (manager, store) = durable_manager(
        dir.path(),
        LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::fixed(5, Duration::ZERO)),
        10,
        recording(&log),
    )
    .await;
    stop_and_drain(&manager).await;
    assert_eq!(log.values(), [json!({ "n": 1, "attempt": 3, "id": 7 })]);
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_never_reused_after_every_command_finished() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let log = ValueLog::default();
        let (manager, _store) =
            durable_manager(dir.path(), LaneConfig::new(1, 4), 10, recording(&log)).await;
        let handle = manager
            .submit_replayable("work", "job", json!({ "n": 1 }))
            .await
            .unwrap();
        let id = handle.id();
        handle.await.unwrap();
        stop_and_drain(&manager).await;
        id
    };
    let log = ValueLog::default();
    let (manager, _store) =
        durable_manager(dir.path(), LaneConfig::new(1, 4), 10, recording(&log)).await;
    let handle = manager
        .submit_replayable("work", "job", json!({ "n": 2 }))
        .await
        .unwrap();
    assert!(
        handle.id() > first,
        "id {} reused after {first}",
        handle.id()
    );
    handle.await.unwrap();
    stop_and_drain(&manager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_command_without_handler_or_lane_becomes_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = storage(dir.path()).await;
        let stored = |id, lane: &str, ty: &str| {
            StorageOp::SaveCommand(StoredCommand {
                id,
                lane_id: lane.into(),
                command_type: ty.into(),
                payload: json!({ "n": id }),
                attempts: 1,
                created_at: 5,
                not_before: None,
                start_by: None,
                key: None,
                group: None,
                replayable: true,
            })
        };
        store
            .apply(vec![
                stored(1, "work", "retired_type"),
                stored(2, "gone_lane", "job"),
                stored(3, "work", "job"),
            ])
            .await
            .unwrap();
    }
    let log = ValueLog::default();
    let (manager, store) =
        durable_manager(dir.path(), LaneConfig::new(1, 1), 10, recording(&log)).await;
    stop_and_drain(&manager).await;
    assert_eq!(log.values(), [json!({ "n": 3, "attempt": 2, "id": 3 })]);
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].command_id, 1);
    assert!(
        letters[0]
            .error
            .contains("no handler registered for command type 'retired_type'"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].payload, Some(json!({ "n": 1 })));
    assert_eq!(letters[1].command_id, 2);
    assert!(
        letters[1].error.contains("lane 'gone_lane' not found"),
        "{}",
        letters[1].error
    );
    // Never silently dropped: the store now holds them as dead letters, not as commands.
    assert!(store.load_commands().await.unwrap().is_empty());
    let stored: Vec<u64> = store
        .load_dead_letters()
        .await
        .unwrap()
        .iter()
        .map(|l| l.command_id)
        .collect();
    assert_eq!(stored, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_storage_implements_every_storage_method() {
    let dir = tempfile::tempdir().unwrap();
    let store = storage(dir.path()).await;
    assert!(store.was_created());
    let command = |id| StoredCommand {
        id,
        lane_id: "l".into(),
        command_type: "t".into(),
        payload: json!({ "n": id, "nested": [1, "two", null] }),
        attempts: 0,
        created_at: 42,
        not_before: None,
        start_by: None,
        key: None,
        group: None,
        replayable: true,
    };
    store.save_command(command(3)).await.unwrap();
    store.save_command(command(1)).await.unwrap();
    let mut replaced = command(3);
    replaced.attempts = 4;
    store.save_command(replaced.clone()).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap(), [command(1), replaced]);
    store.remove_command(1).await.unwrap();
    store.remove_command(12345).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap().len(), 1);

    let letter = |id| a3s_lane::StoredDeadLetter {
        command_id: id,
        command_type: "t".into(),
        lane_id: "l".into(),
        error: "boom".into(),
        attempts: 2,
        failed_at: 9,
        payload: (id % 2 == 0).then(|| json!({ "n": id })),
    };
    for id in [10, 11, 12] {
        store.save_dead_letter(letter(id)).await.unwrap();
    }
    assert_eq!(
        store.load_dead_letters().await.unwrap(),
        [letter(10), letter(11), letter(12)]
    );
    store.remove_dead_letter(11).await.unwrap();
    assert_eq!(
        store.load_dead_letters().await.unwrap(),
        [letter(10), letter(12)]
    );
    assert_eq!(store.max_command_id().await.unwrap(), 12);
    store.clear_dead_letters().await.unwrap();
    assert!(store.load_dead_letters().await.unwrap().is_empty());
    store.save_dead_letter(letter(20)).await.unwrap();
    store.clear_all().await.unwrap();
    assert!(store.load_commands().await.unwrap().is_empty());
    assert!(store.load_dead_letters().await.unwrap().is_empty());
    // The high-water mark survives clear_all: ids are never handed out twice.
    assert_eq!(store.max_command_id().await.unwrap(), 20);
    drop(store);
    let reopened = storage(dir.path()).await;
    assert!(!reopened.was_created());
    assert_eq!(reopened.max_command_id().await.unwrap(), 20);
}

#[test]
fn public_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<a3s_lane::LocalStorage>();
    assert_send_sync::<a3s_lane::RetryPolicy>();
    assert_send_sync::<a3s_lane::LocalStorageConfig>();
}
