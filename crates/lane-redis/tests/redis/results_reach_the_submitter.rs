//! Producers submit replayable commands to a Redis queue; workers run them with their
//! registered handlers; results, errors, retries and dead letters come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, LaneError, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
    RemoteState, Retention, RetryPolicy, RetryStrategy, handler_fn,
};
use serde_json::json;

use crate::support::TestQueue;

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
        c.with_lane("fast", LaneConfig::new(1, 1), 0)
            .with_lane("slow", LaneConfig::new(1, 1), 1)
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

/// A retry strategy only this process can run.
#[derive(Debug)]
struct TwiceQuickly;

impl RetryStrategy for TwiceQuickly {
    fn retry_delay(&self, failures: u32, _error: &LaneError) -> Option<Duration> {
        (failures <= 2).then_some(Duration::from_millis(50))
    }
}

#[test]
fn options_the_redis_engine_cannot_honour_are_refused_naming_them() {
    let refused = |lane: LaneConfig| {
        RedisQueueConfig::new("redis://127.0.0.1:6379")
            .with_lane("jobs", lane, 0)
            .validate()
            .unwrap_err()
            .to_string()
    };
    let custom_retry = refused(LaneConfig::new(1, 2).with_retry_policy(TwiceQuickly));
    assert!(
        custom_retry.contains("lane 'jobs'")
            && custom_retry.contains("custom retry strategy")
            && custom_retry.contains("Redis engine")
            && custom_retry.contains("use RetryPolicy"),
        "{custom_retry}"
    );
    let pressure = refused(LaneConfig::new(1, 2).with_pressure_threshold(10));
    assert!(
        pressure.contains("pressure_threshold") && pressure.contains("Redis engine"),
        "{pressure}"
    );
    let forever = refused(LaneConfig::new(1, 2).with_timeout(Duration::MAX));
    assert!(
        forever.contains("timeout") && forever.contains("longer than"),
        "{forever}"
    );
    // The rules of the one lane model hold here as in process.
    let inverted = refused(LaneConfig::new(3, 2));
    assert!(
        inverted.contains("min_concurrency (3) is greater than max_concurrency (2)"),
        "{inverted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_through_redis_then_become_dead_letters_that_can_be_redriven() {
    // The lane's retry policy is kept in Redis; every worker retries by it.
    let test = TestQueue::connect("retry", |c| {
        c.with_lane(
            "jobs",
            LaneConfig::new(1, 2)
                .with_retry_policy(RetryPolicy::fixed(2, Duration::from_millis(50))),
            0,
        )
    })
    .await;
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
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
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
    let test = TestQueue::connect("no-handler", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 2), 0)
    })
    .await;
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
    let test = TestQueue::connect("timeout", |c| {
        c.with_lane(
            "jobs",
            LaneConfig::new(1, 2).with_timeout(Duration::from_millis(100)),
            0,
        )
    })
    .await;
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
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
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

/// A finished record goes after its lane's keep_for (the result ttl is only the transport
/// of results now): hidden from lookups at once, deleted by a later round trip. Dead
/// letters stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_records_go_after_their_lanes_keep_for_but_dead_letters_stay() {
    let brief =
        LaneConfig::new(1, 4).with_retention(Retention::new(100, Duration::from_millis(300)));
    let test = TestQueue::connect("keep-for", |c| c.with_lane("query", brief, 0)).await;
    let handlers = HandlerRegistry::default();
    handlers.register("echo", handler_fn(|payload, _| async move { Ok(payload) }));
    handlers.register(
        "broken",
        handler_fn(|_, _| async { Err(LaneError::NonRetryable("broken".into())) }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
        .await
        .unwrap();
    let done = test
        .queue
        .submit("query", "echo", json!("hi"))
        .await
        .unwrap();
    let done_id = done.id();
    assert_eq!(done.await.unwrap(), json!("hi"));
    let dead = test
        .queue
        .submit("query", "broken", json!(1))
        .await
        .unwrap();
    let dead_id = dead.id();
    assert!(dead.await.is_err());
    assert_eq!(
        test.queue.command(done_id).await.unwrap().unwrap().state,
        RemoteState::Done
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        test.queue.command(done_id).await.unwrap().is_none(),
        "hidden once past keep_for, trimmed or not"
    );
    // Each later round trip deletes records past their expiry; keep the worker talking.
    let queue = test.queue.clone();
    let done_key = format!("{}:done", test.queue.key_prefix());
    crate::support::eventually(
        "the finished record is deleted",
        Duration::from_secs(20),
        || {
            let (queue, done_key) = (queue.clone(), done_key.clone());
            async move {
                let _ = queue
                    .submit("query", "echo", json!("tick"))
                    .await
                    .unwrap()
                    .await;
                let kept: bool = redis::cmd("HEXISTS")
                    .arg(&done_key)
                    .arg(done_id)
                    .query_async(&mut redis_connection().await)
                    .await
                    .unwrap();
                !kept
            }
        },
    )
    .await;
    let letter = test.queue.command(dead_id).await.unwrap().unwrap();
    assert_eq!(letter.state, RemoteState::Dead);
    assert_eq!(test.queue.dead_letters(10).await.unwrap().len(), 1);
    assert!(test.queue.dead_letters(0).await.unwrap().is_empty());
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(crate::support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Work that arrives while a worker's round trip is on its way must wake the worker: a
/// lost wake-up would leave it idle until its next heartbeat (here 60 s away) while
/// commands wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_trickle_of_work_never_waits_for_the_heartbeat() {
    let test = TestQueue::connect("trickle", |c| c.with_default_lanes()).await;
    let handlers = HandlerRegistry::default();
    handlers.register("echo", handler_fn(|payload, _| async move { Ok(payload) }));
    let config = RedisWorkerConfig::new(4)
        .with_lease_ttl(Duration::from_secs(180))
        .with_heartbeat_interval(Duration::from_secs(60));
    let worker = RedisWorker::start(&test.queue, handlers, config)
        .await
        .unwrap();
    for round in 0..6u64 {
        // Single submits a fraction of a round trip apart land at every point of the
        // worker's round trips, idle or busy.
        let mut handles = Vec::new();
        for i in 0..500u64 {
            handles.push(test.queue.submit("query", "echo", json!(i)).await.unwrap());
            if (i + round) % 3 == 0 {
                tokio::time::sleep(Duration::from_micros((i * 7919) % 400)).await;
            }
        }
        let results = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join_all(handles),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: commands waited for the heartbeat"));
        assert!(results.iter().all(Result::is_ok));
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}
