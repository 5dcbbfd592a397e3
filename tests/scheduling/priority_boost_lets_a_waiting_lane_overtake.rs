//! Priority boosting through a real QueueManager, on paused time: a low-priority lane
//! whose head command waits long enough starts before a busier, more urgent lane.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{EventEmitter, LaneConfig, PriorityBoostConfig, QueueManager, QueueManagerBuilder};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

const S: fn(u64) -> Duration = Duration::from_secs;

/// One slot shared by `interactive` (priority 1, each command takes 1 s) and `batch`
/// (priority 5, boosted by `boost`). Returns when the batch command started.
async fn batch_start(boost: PriorityBoostConfig) -> (Duration, QueueManager) {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_lane("interactive", LaneConfig::new(0, 1), 1)
        .with_lane("batch", LaneConfig::new(0, 1).with_priority_boost(boost), 5)
        .with_max_concurrency(1)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let origin = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..20 {
        handles.push(
            manager
                .submit_fn("interactive", "chat", |_| async {
                    tokio::time::sleep(S(1)).await;
                    Ok(Value::Null)
                })
                .await
                .unwrap(),
        );
    }
    let started = Arc::new(Mutex::new(None));
    let seen = started.clone();
    let batch = manager
        .submit_fn("batch", "report", move |_| {
            let seen = seen.clone();
            async move {
                *seen.lock() = Some(origin.elapsed());
                Ok(Value::Null)
            }
        })
        .await
        .unwrap();
    batch.await.unwrap();
    let at = started.lock().unwrap();
    (at, manager)
}

#[tokio::test(start_paused = true)]
async fn without_boost_the_batch_command_waits_for_every_interactive_one() {
    let (at, _) = batch_start(PriorityBoostConfig::disabled()).await;
    assert_eq!(at, S(20));
}

#[tokio::test(start_paused = true)]
async fn with_standard_boost_the_batch_command_starts_at_its_deadline() {
    // Priority 5 boosted by 1..4 reaches 1 (a tie, which the more urgent lane keeps) at
    // 90% of the deadline; past the deadline it is 0 and wins the next free slot.
    let (at, _) = batch_start(PriorityBoostConfig::standard(S(8))).await;
    assert_eq!(at, S(8));
}

#[tokio::test(start_paused = true)]
async fn with_aggressive_boost_it_overtakes_sooner() {
    // Boost 4 at 40% of the deadline passed: priority 5 - 4 = 1 ties; 6 at 60%: 0 wins.
    let (at, _) = batch_start(PriorityBoostConfig::aggressive(S(10))).await;
    assert_eq!(at, S(6));
}

#[tokio::test(start_paused = true)]
async fn a_custom_step_boosts_as_configured() {
    // Fully boosted (priority 5 - 5 = 0) once 7 s or less remain of a 10 s deadline.
    let boost = PriorityBoostConfig::new(S(10)).with_boost(S(7), 5);
    let (at, _) = batch_start(boost).await;
    assert_eq!(at, S(3));
}

#[tokio::test(start_paused = true)]
async fn effective_priority_shows_the_boost_of_the_waiting_head_command() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(8))
        .with_lane(
            "batch",
            LaneConfig::new(1, 1).with_priority_boost(PriorityBoostConfig::standard(S(100))),
            5,
        )
        .build()
        .await
        .unwrap();
    manager.pause_lane("batch").unwrap();
    manager.start().await.unwrap();
    let queue = manager.queue();
    assert_eq!(queue.lane_status("batch").unwrap().effective_priority, 5);
    let _pending = manager
        .submit_fn("batch", "report", |_| async { Ok(Value::Null) })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for at in [0, 25, 50, 75, 90, 100] {
        let now = Instant::now();
        let target = queue_start(&seen) + S(at);
        if target > now {
            tokio::time::sleep_until(target).await;
        }
        seen.push(Instant::now());
        let status = queue.lane_status("batch").unwrap();
        assert_eq!(status.priority, 5);
        let expected = match at {
            0 => 5,
            25 => 4,
            50 => 3,
            75 => 2,
            90 => 1,
            _ => 0,
        };
        assert_eq!(status.effective_priority, expected, "after {at} s");
    }
}

/// The instant of the first observation (the submit), for the test above.
fn queue_start(seen: &[Instant]) -> Instant {
    seen.first().copied().unwrap_or_else(Instant::now)
}

#[tokio::test]
async fn a_boost_step_without_a_deadline_is_rejected_when_the_queue_is_built() {
    let error = QueueManagerBuilder::new(EventEmitter::new(8))
        .with_lane(
            "batch",
            LaneConfig::new(1, 1)
                .with_priority_boost(PriorityBoostConfig::disabled().with_boost(S(1), 1)),
            5,
        )
        .build()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("lane 'batch': priority boost: with_boost needs a deadline"),
        "{error}"
    );
}
