//! Retries at queue level, on paused tokio time: the delays and counts of the policy, the
//! attempt in retry events, "do not retry this error", and a retried command keeping its
//! place at the front of its lane.

use std::time::Duration;

use a3s_lane::{
    CommandContext, LaneConfig, LaneError, RetryJitter, RetryPolicy, event_keys, handler_fn,
};
use futures_util::StreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{ValueLog, one_lane};

/// A handler that records (n, attempt, time since `t0`) and fails while `attempt <=
/// fail_until` (or the payload's `fails`, when given).
fn flaky(log: &ValueLog, t0: Instant, fail_until: u32) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, ctx: CommandContext| {
        let log = log.clone();
        async move {
            log.push(json!({
                "n": payload["n"],
                "attempt": ctx.attempt(),
                "at_ms": t0.elapsed().as_millis() as u64,
            }));
            if let Some(ms) = payload["work_ms"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let fail_until = payload["fails"].as_u64().map_or(fail_until, |f| f as u32);
            if ctx.attempt() <= fail_until {
                Err(LaneError::CommandError(format!(
                    "attempt {} failed",
                    ctx.attempt()
                )))
            } else {
                Ok(payload)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn exponential_retries_wait_100_200_400_ms_then_dead_letter() {
    let log = ValueLog::default();
    let t0 = Instant::now();
    let manager = one_lane(LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::exponential(3)))
        .with_dlq(10)
        .with_handler("job", flaky(&log, t0, u32::MAX))
        .build()
        .await
        .unwrap();
    let mut retries = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_RETRY);
    manager.start().await.unwrap();
    let handle = manager
        .submit_replayable("work", "job", json!({ "n": 1 }))
        .await
        .unwrap();
    let id = handle.id();
    let error = handle.await.unwrap_err();
    assert_eq!(error, LaneError::CommandError("attempt 4 failed".into()));
    let at: Vec<u64> = log
        .values()
        .iter()
        .map(|v| v["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [0, 100, 300, 700]);
    // The event's `attempt` is the number of the attempt that will run next.
    for (attempt, delay) in [(2, 100), (3, 200), (4, 400)] {
        let event = retries.next().await.unwrap();
        assert_eq!(event.payload["command_id"], json!(id));
        assert_eq!(event.payload["attempt"], json!(attempt));
        assert_eq!(event.payload["delay_ms"], json!(delay));
    }
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_is_not_retried() {
    let manager = one_lane(LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::exponential(5)))
        .with_dlq(10)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let runs = ValueLog::default();
    let counter = runs.clone();
    let handle = manager
        .submit_fn("work", "validate", move |_ctx| {
            counter.push(json!(1));
            async { Err(LaneError::non_retryable("the input is malformed")) }
        })
        .await
        .unwrap();
    assert!(matches!(handle.await, Err(LaneError::NonRetryable(_))));
    assert_eq!(runs.len(), 1);
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters[0].attempts, 1);
    assert!(letters[0].error.contains("the input is malformed"));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_command_is_retried_by_the_policy() {
    let log = ValueLog::default();
    let t0 = Instant::now();
    let manager = one_lane(
        LaneConfig::new(1, 1)
            .with_timeout(Duration::from_millis(50))
            .with_retry_policy(RetryPolicy::fixed(1, Duration::from_millis(10))),
    )
    .with_handler("job", flaky(&log, t0, 0))
    .build()
    .await
    .unwrap();
    manager.start().await.unwrap();
    let handle = manager
        .submit_replayable("work", "job", json!({ "n": 1, "work_ms": 1000 }))
        .await
        .unwrap();
    assert!(handle.await.unwrap_err().is_timeout());
    let at: Vec<u64> = log
        .values()
        .iter()
        .map(|v| v["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [0, 60]);
}

#[tokio::test(start_paused = true)]
async fn a_retried_command_keeps_its_place_at_the_front_of_its_lane() {
    let log = ValueLog::default();
    let t0 = Instant::now();
    let manager = one_lane(
        LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::fixed(1, Duration::from_millis(100))),
    )
    .with_handler("job", flaky(&log, t0, 0))
    .build()
    .await
    .unwrap();
    manager.start().await.unwrap();
    // A fails at once; B (1 s of work) takes the slot; C waits. A's retry is due while B
    // runs and must go before C, which was queued before A came back.
    let a = manager
        .submit_replayable("work", "job", json!({ "n": "A", "fails": 1 }))
        .await
        .unwrap();
    let b = manager
        .submit_replayable("work", "job", json!({ "n": "B", "work_ms": 1000 }))
        .await
        .unwrap();
    let c = manager
        .submit_replayable("work", "job", json!({ "n": "C" }))
        .await
        .unwrap();
    let _ = (a.await, b.await, c.await);
    let order: Vec<(String, u64)> = log
        .values()
        .iter()
        .map(|v| {
            (
                v["n"].as_str().unwrap().to_owned(),
                v["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [("A", 1), ("B", 1), ("A", 2), ("C", 1)]
        .map(|(n, a)| (n.to_owned(), a))
        .to_vec();
    assert_eq!(order, expected);
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_the_policy() {
    let log = ValueLog::default();
    let t0 = Instant::now();
    let policy = RetryPolicy::exponential(4).with_jitter(RetryJitter::Equal);
    let manager = one_lane(LaneConfig::new(1, 1).with_retry_policy(policy))
        .with_handler("job", flaky(&log, t0, u32::MAX))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let handle = manager
        .submit_replayable("work", "job", json!({ "n": 1 }))
        .await
        .unwrap();
    let _ = handle.await;
    let at: Vec<u64> = log
        .values()
        .iter()
        .map(|v| v["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at.len(), 5);
    for (i, base) in [100u64, 200, 400, 800].iter().enumerate() {
        let gap = at[i + 1] - at[i];
        assert!(
            gap >= base / 2 && gap <= *base,
            "retry {}: waited {gap} ms, base {base}",
            i + 1
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For any policy, a command that always fails runs exactly `max_retries + 1` times,
    /// waits the policy's delays in between, and its dead letter counts every attempt.
    #[test]
    fn the_queue_runs_exactly_the_retries_the_policy_grants(
        retries in 0u32..6,
        initial_ms in 0u64..500,
        multiplier in 1.0f64..3.0,
        cap_extra_ms in 0u64..2_000,
    ) {
        let policy = RetryPolicy::builder()
            .max_retries(retries)
            .initial_delay(Duration::from_millis(initial_ms))
            .multiplier(multiplier)
            .max_delay(Duration::from_millis(initial_ms + cap_extra_ms))
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (at, letter) = runtime.block_on(async {
            let log = ValueLog::default();
            let t0 = Instant::now();
            let manager = one_lane(LaneConfig::new(1, 1).with_retry_policy(policy.clone()))
                .with_dlq(4)
                .with_handler("job", flaky(&log, t0, u32::MAX))
                .build()
                .await
                .unwrap();
            manager.start().await.unwrap();
            let handle = manager.submit_replayable("work", "job", json!({ "n": 1 })).await.unwrap();
            let _ = handle.await;
            let at: Vec<u64> = log.values().iter().map(|v| v["at_ms"].as_u64().unwrap()).collect();
            (at, manager.dead_letters().unwrap().pop().await.unwrap())
        });
        prop_assert_eq!(at.len() as u32, retries + 1);
        prop_assert_eq!(letter.attempts, retries + 1);
        for n in 1..=retries {
            let expected = policy.base_delay(n).unwrap().as_millis() as u64;
            let gap = at[n as usize] - at[n as usize - 1];
            // Paused time advances in whole milliseconds here; allow the sub-ms rounding.
            prop_assert!(gap.abs_diff(expected) <= 1, "retry {}: waited {} ms, policy says {} ms", n, gap, expected);
        }
    }
}

/// A strategy of one's own that asks for a delay the clock cannot hold.
#[derive(Debug)]
struct Never;

impl a3s_lane::RetryStrategy for Never {
    fn retry_delay(&self, _failures: u32, _error: &LaneError) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_retry_delay_past_the_clock_ends_the_command_instead_of_panicking() {
    let manager = one_lane(LaneConfig::new(1, 1).with_retry_policy(Never))
        .with_dlq(10)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let runs = ValueLog::default();
    let counter = runs.clone();
    let handle = manager
        .submit_fn("work", "flaky", move |_ctx| {
            counter.push(json!(1));
            async { Err(LaneError::CommandError("down".into())) }
        })
        .await
        .unwrap();
    assert!(matches!(handle.await, Err(LaneError::CommandError(_))));
    assert_eq!(runs.len(), 1, "no retry was scheduled");
    assert_eq!(manager.dead_letters().unwrap().list().await.len(), 1);
    // The queue goes on: the lane runs the next command.
    let next = manager
        .submit_fn("work", "ok", |_ctx| async { Ok(json!("fine")) })
        .await
        .unwrap();
    assert_eq!(next.await.unwrap(), json!("fine"));
}
