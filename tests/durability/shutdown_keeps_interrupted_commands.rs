//! Shutdown: `shutdown()` + `drain(timeout)` let work finish; `shutdown_now()` cancels
//! running commands, and a durable command it interrupts stays in storage with its
//! attempt count for the next start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use a3s_lane::{
    CommandContext, LaneConfig, LaneError, QueueManager, RetryPolicy, event_keys, handler_fn,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{ValueLog, durable_manager, one_lane, stop_and_drain};

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work_and_drain_waits_for_the_rest() {
    let manager = one_lane(LaneConfig::new(1, 1)).build().await.unwrap();
    manager.start().await.unwrap();
    let mut events = manager.subscribe_filtered(|e| e.key.starts_with("queue.shutdown"));
    let slow = |ms| {
        move |_ctx: CommandContext| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(ms))
        }
    };
    let running = manager.submit_fn("work", "slow", slow(300)).await.unwrap();
    let pending = manager.submit_fn("work", "slow", slow(200)).await.unwrap();
    manager.shutdown().await;
    assert!(manager.is_shutting_down());
    let refused = manager
        .submit_fn("work", "slow", slow(1))
        .await
        .unwrap_err();
    assert!(refused.is_shutdown(), "{refused:?}");

    let started = tokio::time::Instant::now();
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(running.await.unwrap(), json!(300));
    assert_eq!(pending.await.unwrap(), json!(200));
    let keys: Vec<String> = vec![
        events.next().await.unwrap().key,
        events.next().await.unwrap().key,
    ];
    assert_eq!(
        keys,
        [event_keys::SHUTDOWN_STARTED, event_keys::SHUTDOWN_COMPLETE]
    );
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_after_its_timeout() {
    let manager = one_lane(LaneConfig::new(1, 1)).build().await.unwrap();
    manager.start().await.unwrap();
    let _stuck = manager
        .submit_fn("work", "stuck", |_ctx| std::future::pending())
        .await
        .unwrap();
    manager.shutdown().await;
    let error = manager.drain(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(error, LaneError::Timeout(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_now_cancels_running_commands() {
    let manager = one_lane(LaneConfig::new(1, 2).with_cancel_grace(Duration::from_millis(100)))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let noticed = ValueLog::default();
    let cooperative = {
        let noticed = noticed.clone();
        manager
            .submit_fn("work", "cooperative", move |ctx| {
                let noticed = noticed.clone();
                async move {
                    ctx.cancelled().await;
                    noticed.push(json!("stopped"));
                    Err(LaneError::Cancelled("noticed".into()))
                }
            })
            .await
            .unwrap()
    };
    let ignoring = manager
        .submit_fn("work", "ignoring", |_ctx| std::future::pending())
        .await
        .unwrap();
    let queued = manager
        .submit_fn("work", "queued", |_ctx| async { Ok(Value::Null) })
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(manager.shutdown_now().await, 3);
    assert!(cooperative.await.unwrap_err().is_cancelled());
    assert!(ignoring.await.unwrap_err().is_cancelled());
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_eq!(noticed.values(), [json!("stopped")]);
    manager.drain(Duration::from_secs(1)).await.unwrap();
}

/// Fails its first attempt; on later attempts waits until it is cancelled.
fn fail_once_then_hang(log: &ValueLog) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, ctx: CommandContext| {
        let log = log.clone();
        async move {
            log.push(json!({ "n": payload["n"], "attempt": ctx.attempt() }));
            if ctx.attempt() == 1 {
                return Err(LaneError::CommandError("first attempt fails".into()));
            }
            ctx.cancelled().await;
            Err(LaneError::Cancelled("stopped".into()))
        }
    })
}

fn recording(log: &ValueLog) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, ctx: CommandContext| {
        let log = log.clone();
        async move {
            log.push(json!({ "n": payload["n"], "attempt": ctx.attempt() }));
            Ok(payload)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_interrupted_by_shutdown_now_stays_stored_with_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let config = LaneConfig::new(1, 1)
        .with_retry_policy(RetryPolicy::fixed(3, Duration::ZERO))
        .with_cancel_grace(Duration::from_millis(50));
    let log = ValueLog::default();
    {
        let (manager, store) =
            durable_manager(dir.path(), config.clone(), 10, fail_once_then_hang(&log)).await;
        let mut started = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_STARTED);
        let handle = manager
            .submit_replayable("work", "job", json!({ "n": 1 }))
            .await
            .unwrap();
        // Wait for the second attempt to start, then stop hard.
        loop {
            let event = started.next().await.unwrap();
            if event.payload["attempt"] == json!(2) {
                break;
            }
        }
        manager.shutdown_now().await;
        assert!(handle.await.unwrap_err().is_cancelled());
        manager.drain(Duration::from_secs(5)).await.unwrap();
        let stored = store.load_commands().await.unwrap();
        assert_eq!(stored.len(), 1, "the interrupted command stays in storage");
        assert_eq!(
            stored[0].attempts, 1,
            "the interruption is not a failed attempt"
        );
        assert!(manager.dead_letters().unwrap().is_empty().await);
    }
    // Next start: it runs again as attempt 2 (the interrupted attempt did not count).
    let log = ValueLog::default();
    let (manager, store) = durable_manager(dir.path(), config, 10, recording(&log)).await;
    stop_and_drain(&manager).await;
    assert_eq!(log.values(), [json!({ "n": 1, "attempt": 2 })]);
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_errors_out_while_a_hard_stop_cancels_it_stays_in_storage() {
    let dir = tempfile::tempdir().unwrap();
    let config = LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::fixed(3, Duration::ZERO));
    // The command itself triggers the hard stop and then returns an error (as a command
    // that loses its connection while the process stops would): it was cancelled by the
    // stop, so it waits in storage, attempts untouched, instead of becoming a dead letter.
    let manager_cell = Arc::new(OnceLock::<QueueManager>::new());
    let handler = {
        let manager_cell = manager_cell.clone();
        handler_fn(move |_payload: Value, _ctx: CommandContext| {
            let manager = manager_cell.get().unwrap().clone();
            async move {
                manager.shutdown_now().await;
                Err(LaneError::CommandError(
                    "lost the connection while stopping".into(),
                ))
            }
        })
    };
    let (manager, store) = durable_manager(dir.path(), config, 10, handler).await;
    manager_cell.set(manager.clone()).unwrap();
    let handle = manager
        .submit_replayable("work", "job", json!({ "n": 1 }))
        .await
        .unwrap();
    let error = handle.await.unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    manager.drain(Duration::from_secs(5)).await.unwrap();
    let stored = store.load_commands().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].attempts, 0,
        "an interrupted run is not a failed attempt"
    );
    assert!(manager.dead_letters().unwrap().is_empty().await);
    assert!(store.load_dead_letters().await.unwrap().is_empty());
}
