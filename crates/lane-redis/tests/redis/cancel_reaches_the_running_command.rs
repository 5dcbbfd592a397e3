//! Cancelling commands of a Redis queue: a pending one ends at once; a running one is
//! cancelled through its cancellation signal on whichever worker runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, HandlerRegistry, LaneConfig, LaneError, RedisWorker, RedisWorkerConfig,
    RemoteState, handler_fn,
};
use serde_json::{Value, json};

use crate::support::{TestQueue, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_command_sees_its_cancellation_signal_and_the_submitter_gets_cancelled() {
    let test = TestQueue::connect("cancel-running", |c| {
        c.with_lane("prompt", LaneConfig::new(1, 2), 5)
    })
    .await;
    let noticed = Arc::new(AtomicBool::new(false));
    let handlers = HandlerRegistry::default();
    let seen = noticed.clone();
    handlers.register(
        "generate",
        handler_fn(move |_, ctx| {
            let seen = seen.clone();
            async move {
                ctx.cancelled().await;
                seen.store(true, Ordering::SeqCst);
                Ok(json!("stopped early"))
            }
        }),
    );
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        RedisWorkerConfig::new(2).with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let handle = test
        .queue
        .submit("prompt", "generate", json!({}))
        .await
        .unwrap();
    let id = handle.id();
    let queue = test.queue.clone();
    eventually("the command runs", Duration::from_secs(10), || {
        let queue = queue.clone();
        async move { queue.command(id).await.unwrap().unwrap().state == RemoteState::Running }
    })
    .await;
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Signalled);
    let error = handle.await.unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    assert!(
        noticed.load(Ordering::SeqCst),
        "the handler saw ctx.cancelled()"
    );
    assert_eq!(
        test.queue.command(id).await.unwrap().unwrap().state,
        RemoteState::Cancelled
    );
    assert_eq!(
        test.queue.cancel(id).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    assert_eq!(
        test.queue.cancel(999_999).await.unwrap(),
        CancelOutcome::Unknown
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_ignores_cancellation_is_dropped_after_the_grace_period() {
    let test = TestQueue::connect("cancel-grace", |c| {
        c.with_lane(
            "prompt",
            LaneConfig::new(1, 2).with_cancel_grace(Duration::from_millis(100)),
            5,
        )
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "stubborn",
        handler_fn(|_, _| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Value::Null)
        }),
    );
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        RedisWorkerConfig::new(2).with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let handle = test
        .queue
        .submit("prompt", "stubborn", json!({}))
        .await
        .unwrap();
    let id = handle.id();
    let queue = test.queue.clone();
    eventually("the command runs", Duration::from_secs(10), || {
        let queue = queue.clone();
        async move { queue.command(id).await.unwrap().unwrap().state == RemoteState::Running }
    })
    .await;
    handle.cancel().await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error,
        LaneError::Cancelled("cancelled while running; dropped after the grace period".into())
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_command_is_cancelled_without_running() {
    let test = TestQueue::connect("cancel-pending", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 1), 0)
    })
    .await;
    let ran = Arc::new(AtomicBool::new(false));
    let handlers = HandlerRegistry::default();
    let seen = ran.clone();
    handlers.register(
        "block",
        handler_fn(|_, ctx| async move {
            ctx.cancelled().await;
            Ok(Value::Null)
        }),
    );
    handlers.register(
        "never",
        handler_fn(move |_, _| {
            let seen = seen.clone();
            async move {
                seen.store(true, Ordering::SeqCst);
                Ok(Value::Null)
            }
        }),
    );
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        RedisWorkerConfig::new(4).with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    // The lane's cap is 1: the blocker holds it, the second command waits.
    let blocker = test.queue.submit("jobs", "block", json!({})).await.unwrap();
    let waiting = test.queue.submit("jobs", "never", json!({})).await.unwrap();
    let blocker_id = blocker.id();
    let queue = test.queue.clone();
    eventually("the blocker runs", Duration::from_secs(10), || {
        let queue = queue.clone();
        async move { queue.command(blocker_id).await.unwrap().unwrap().state == RemoteState::Running }
    })
    .await;
    assert_eq!(waiting.cancel().await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(
        waiting.await.unwrap_err(),
        LaneError::Cancelled("cancelled by request".into())
    );
    assert_eq!(
        test.queue.stats().await.unwrap().queue.lanes["jobs"].pending,
        0
    );
    blocker.cancel().await.unwrap();
    assert!(blocker.await.unwrap_err().is_cancelled());
    assert!(!ran.load(Ordering::SeqCst));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_now_hands_running_commands_to_another_worker() {
    let test = TestQueue::connect("handover", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "slow",
        handler_fn(|_, ctx| async move {
            tokio::select! {
                () = ctx.cancelled() => Err(LaneError::Cancelled("stopping".into())),
                () = tokio::time::sleep(Duration::from_millis(300)) => Ok(json!(ctx.attempt())),
            }
        }),
    );
    let config = RedisWorkerConfig::new(4).with_block_timeout(Duration::from_secs(1));
    let first = RedisWorker::start(&test.queue, handlers.clone(), config.clone())
        .await
        .unwrap();
    let handle = test.queue.submit("jobs", "slow", json!({})).await.unwrap();
    let id = handle.id();
    let queue = test.queue.clone();
    eventually("the command runs", Duration::from_secs(10), || {
        let queue = queue.clone();
        async move { queue.command(id).await.unwrap().unwrap().state == RemoteState::Running }
    })
    .await;
    assert_eq!(first.shutdown_now().await, 1);
    let second = RedisWorker::start(&test.queue, handlers, config)
        .await
        .unwrap();
    // Released runs do not count as attempts: the second worker runs attempt 1 again.
    assert_eq!(handle.await.unwrap(), json!(1));
    assert_eq!(test.queue.stats().await.unwrap().counter("released"), 1);
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_worker_handle_stops_the_worker_and_hands_its_commands_back() {
    let test = TestQueue::connect("dropped-worker", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "slow",
        handler_fn(|_, ctx| async move {
            tokio::select! {
                () = ctx.cancelled() => Err(LaneError::Cancelled("stopping".into())),
                () = tokio::time::sleep(Duration::from_millis(200)) => Ok(json!(ctx.attempt())),
            }
        }),
    );
    let config = RedisWorkerConfig::new(4).with_block_timeout(Duration::from_secs(1));
    let first = RedisWorker::start(&test.queue, handlers.clone(), config.clone())
        .await
        .unwrap();
    let handle = test.queue.submit("jobs", "slow", json!({})).await.unwrap();
    let id = handle.id();
    let queue = test.queue.clone();
    eventually("the command runs", Duration::from_secs(10), || {
        let queue = queue.clone();
        async move { queue.command(id).await.unwrap().unwrap().state == RemoteState::Running }
    })
    .await;
    drop(first);
    let queue = test.queue.clone();
    eventually(
        "the dropped worker leaves the queue",
        Duration::from_secs(10),
        || {
            let queue = queue.clone();
            async move { queue.stats().await.unwrap().workers == 0 }
        },
    )
    .await;
    assert_eq!(test.queue.stats().await.unwrap().counter("released"), 1);
    let second = RedisWorker::start(&test.queue, handlers, config)
        .await
        .unwrap();
    assert_eq!(handle.await.unwrap(), json!(1));
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}
