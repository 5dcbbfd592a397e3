//! Producers submit replayable commands to a Redis queue; workers run them with their
//! registered handlers; results, errors, retries and dead letters come back.
#![cfg(feature = "distributed")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneError, RedisLane, RedisWorker, RedisWorkerConfig, RemoteState,
    RetryStrategy, handler_fn,
};
use serde_json::json;
use support::redis::TestQueue;

fn config(slots: usize) -> RedisWorkerConfig {
    RedisWorkerConfig::new(slots)
        .with_lease_ttl(Duration::from_secs(2))
        .with_block_timeout(Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_a_submitted_command_and_the_result_comes_back() {
    let test = TestQueue::connect("roundtrip", |c| c.with_default_lanes()).await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "double",
        handler_fn(|payload, ctx| async move {
            Ok(json!({ "value": payload["n"].as_i64().unwrap() * 2, "lane": ctx.lane(), "attempt": ctx.attempt() }))
        }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, config(4))
        .await
        .unwrap();
    let handle = test
        .queue
        .submit("query", "double", json!({"n": 21}))
        .await
        .unwrap();
    let id = handle.id();
    assert_eq!(
        handle.await.unwrap(),
        json!({"value": 42, "lane": "query", "attempt": 1})
    );
    let record = test.queue.command(id).await.unwrap().unwrap();
    assert_eq!(record.state, RemoteState::Done);
    assert_eq!(record.worker.as_deref(), Some(worker.id()));
    assert_eq!(
        record.result,
        Some(Ok(json!({"value": 42, "lane": "query", "attempt": 1})))
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.workers, 0, "a worker that shut down left the queue");
    assert_eq!(stats.counter("completed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_lane_is_rejected_with_the_known_lanes() {
    let test = TestQueue::connect("unknown-lane", |c| {
        c.with_lane("fast", RedisLane::new(0, 1))
            .with_lane("slow", RedisLane::new(1, 1))
    })
    .await;
    let error = test
        .queue
        .submit("fsat", "t", json!(null))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LaneError::LaneNotFound {
            lane: "fsat".into(),
            known: "fast, slow".into()
        }
    );
}

#[derive(Debug)]
struct TwiceQuickly;

impl RetryStrategy for TwiceQuickly {
    fn retry_delay(&self, failures: u32, _error: &LaneError) -> Option<Duration> {
        (failures <= 2).then_some(Duration::from_millis(50))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_through_redis_then_become_dead_letters_that_can_be_redriven() {
    let test = TestQueue::connect("retry", |c| c.with_lane("jobs", RedisLane::new(0, 2))).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let handlers = HandlerRegistry::default();
    let seen = attempts.clone();
    handlers.register(
        "flaky",
        handler_fn(move |payload, ctx| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if payload["succeed_on"].as_u64() == Some(u64::from(ctx.attempt())) {
                    Ok(json!({"attempt": ctx.attempt()}))
                } else {
                    Err(LaneError::CommandError(format!(
                        "attempt {} failed",
                        ctx.attempt()
                    )))
                }
            }
        }),
    );
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        config(2).with_retry_policy(TwiceQuickly),
    )
    .await
    .unwrap();

    // Succeeds on the third attempt, after two delayed retries kept in Redis.
    let value = test
        .queue
        .submit("jobs", "flaky", json!({"succeed_on": 3}))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(value, json!({"attempt": 3}));

    // Never succeeds: three attempts, then a dead letter.
    let handle = test
        .queue
        .submit("jobs", "flaky", json!({"succeed_on": 99}))
        .await
        .unwrap();
    let id = handle.id();
    assert_eq!(
        handle.await.unwrap_err(),
        LaneError::CommandError("attempt 3 failed".into())
    );
    let letters = test.queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].command_id, id);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].payload, Some(json!({"succeed_on": 99})));
    assert_eq!(
        test.queue.command(id).await.unwrap().unwrap().state,
        RemoteState::Dead
    );

    // Re-driven: a fresh command again (three more attempts), dead again.
    let again = test.queue.redrive(id).await.unwrap();
    assert_eq!(
        again.await.unwrap_err(),
        LaneError::CommandError("attempt 3 failed".into())
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3 + 3 + 3);
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_a_handler_becomes_a_dead_letter_naming_the_registered_types() {
    let test =
        TestQueue::connect("no-handler", |c| c.with_lane("jobs", RedisLane::new(0, 2))).await;
    let handlers = HandlerRegistry::default();
    handlers.register("known", handler_fn(|p, _| async move { Ok(p) }));
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
        .await
        .unwrap();
    let error = test
        .queue
        .submit("jobs", "unknown", json!({}))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LaneError::HandlerNotFound {
            command_type: "unknown".into(),
            registered: "known".into()
        }
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_and_a_panic_are_reported_as_errors() {
    let test = TestQueue::connect("timeout", |c| c.with_lane("jobs", RedisLane::new(0, 2))).await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "sleepy",
        handler_fn(|_, _| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(json!(null))
        }),
    );
    handlers.register(
        "panics",
        handler_fn(|_, _| async move {
            if true {
                panic!("kaboom");
            }
            Ok(json!(null))
        }),
    );
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        config(2).with_lane_timeout("jobs", Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let sleepy = test
        .queue
        .submit("jobs", "sleepy", json!({}))
        .await
        .unwrap();
    assert_eq!(
        sleepy.await.unwrap_err(),
        LaneError::Timeout(Duration::from_millis(100))
    );
    let panics = test
        .queue
        .submit("jobs", "panics", json!({}))
        .await
        .unwrap();
    assert_eq!(
        panics.await.unwrap_err(),
        LaneError::CommandError("command panicked: kaboom".into())
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}
