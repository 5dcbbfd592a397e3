//! Rate limits through a real QueueManager, on paused time: a full bucket admits a burst
//! at once, then commands start exactly when permits are due; a permit is taken only
//! when a command really starts; HTTP-429 style timed pauses.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandHandle, EventEmitter, LaneConfig, LaneError, QueueManager, QueueManagerBuilder,
    RateLimitConfig,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn manager(config: LaneConfig) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_lane("api", config, 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

/// Submits `n` commands that record when they start (relative to `origin`) and run `work`.
async fn submit_recorded(
    manager: &QueueManager,
    n: usize,
    origin: Instant,
    work: Duration,
    starts: &Arc<Mutex<Vec<Duration>>>,
) -> Vec<CommandHandle> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let starts = starts.clone();
        handles.push(
            manager
                .submit_fn("api", "call", move |_| {
                    let starts = starts.clone();
                    async move {
                        starts.lock().push(origin.elapsed());
                        tokio::time::sleep(work).await;
                        Ok(Value::Null)
                    }
                })
                .await
                .unwrap(),
        );
    }
    handles
}

async fn all_done(handles: Vec<CommandHandle>) {
    tokio::time::timeout(Duration::from_secs(3600), async {
        for handle in handles {
            handle.await.unwrap();
        }
    })
    .await
    .expect("every command finishes");
}

#[tokio::test(start_paused = true)]
async fn per_second_10_starts_a_burst_of_10_then_one_every_100ms() {
    let manager =
        manager(LaneConfig::new(1, 100).with_rate_limit(RateLimitConfig::per_second(10))).await;
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 25, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    let mut expected = vec![Duration::ZERO; 10];
    expected.extend((1..=15).map(|k| MS(100 * k)));
    assert_eq!(*starts.lock(), expected);
}

#[tokio::test(start_paused = true)]
async fn a_sliding_window_admits_its_limit_once_per_window() {
    let manager = manager(
        LaneConfig::new(1, 100).with_rate_limit(RateLimitConfig::sliding_window(3, MS(1000))),
    )
    .await;
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 7, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(
        *starts.lock(),
        [0, 0, 0, 1000, 1000, 1000, 2000].map(MS).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn a_permit_is_taken_only_when_a_command_really_starts() {
    // One running at a time, one permit per second. The second command waits for the
    // slot, not for a permit: it starts the moment the first finishes (5 s), and the
    // third one second later. Permits spent on passes that start nothing would delay both.
    let manager =
        manager(LaneConfig::new(1, 1).with_rate_limit(RateLimitConfig::per_second(1))).await;
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut handles = submit_recorded(&manager, 1, origin, MS(5000), &starts).await;
    handles.extend(submit_recorded(&manager, 2, origin, Duration::ZERO, &starts).await);
    all_done(handles).await;
    assert_eq!(*starts.lock(), [0, 5000, 6000].map(MS).to_vec());
}

#[tokio::test(start_paused = true)]
async fn fractional_refill_is_kept_between_permits() {
    // 3 per second, burst 3: permits every 333.33 ms. The timer wheel wakes the lane at
    // the next whole millisecond, but no fraction is lost: the third refill lands at
    // exactly 1 s, and the fourth at 1333.33 ms (woken at 1334).
    let manager = manager(
        LaneConfig::new(1, 10).with_rate_limit(RateLimitConfig::token_bucket(
            3,
            Duration::from_secs(1),
            3,
        )),
    )
    .await;
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 7, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(
        *starts.lock(),
        [0, 0, 0, 334, 667, 1000, 1334].map(MS).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn pause_lane_for_holds_a_lane_then_resumes_it_by_itself() {
    let manager = manager(LaneConfig::new(1, 10)).await;
    let origin = Instant::now();
    manager.pause_lane_for("api", MS(2000)).unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 3, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(*starts.lock(), [2000, 2000, 2000].map(MS).to_vec());
}

#[tokio::test(start_paused = true)]
async fn a_later_429_extends_the_pause_and_is_not_cut_short_by_the_earlier_one() {
    let manager = manager(LaneConfig::new(1, 10)).await;
    let origin = Instant::now();
    manager.pause_lane_for("api", MS(2000)).unwrap();
    tokio::time::sleep(MS(1000)).await;
    manager.pause_lane_for("api", MS(4000)).unwrap(); // until 5 s
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 1, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(*starts.lock(), vec![MS(5000)]);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_429_does_not_cut_a_longer_pause_short() {
    let manager = manager(LaneConfig::new(1, 10)).await;
    let origin = Instant::now();
    manager.pause_lane_for("api", MS(3000)).unwrap();
    manager.pause_lane_for("api", MS(1000)).unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 1, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(*starts.lock(), vec![MS(3000)]);
}

#[tokio::test(start_paused = true)]
async fn a_lane_paused_by_hand_stays_paused_through_a_timed_pause() {
    let manager = manager(LaneConfig::new(1, 10)).await;
    let origin = Instant::now();
    manager.pause_lane_for("api", MS(1000)).unwrap();
    manager.pause_lane("api").unwrap();
    manager.pause_lane_for("api", MS(2000)).unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 1, origin, Duration::ZERO, &starts).await;
    tokio::time::sleep(MS(10_000)).await;
    assert!(starts.lock().is_empty(), "still paused by hand after 10 s");
    manager.resume_lane("api").unwrap();
    all_done(handles).await;
    assert_eq!(*starts.lock(), vec![MS(10_000)]);
}

#[tokio::test]
async fn a_zero_rate_is_rejected_when_the_queue_is_built() {
    for limit in [
        RateLimitConfig::per_second(0),
        RateLimitConfig::per_minute(0),
        RateLimitConfig::sliding_window(0, MS(10)),
        RateLimitConfig::token_bucket(5, Duration::ZERO, 5),
    ] {
        let error = QueueManagerBuilder::new(EventEmitter::new(8))
            .with_lane("api", LaneConfig::new(1, 1).with_rate_limit(limit), 0)
            .build()
            .await
            .unwrap_err();
        let LaneError::ConfigError(message) = &error else {
            panic!("expected a ConfigError, got {error:?}");
        };
        assert!(message.starts_with("lane 'api': rate limit: "), "{message}");
    }
}

#[tokio::test(start_paused = true)]
async fn unlimited_starts_everything_at_once() {
    let manager =
        manager(LaneConfig::new(1, 100).with_rate_limit(RateLimitConfig::unlimited())).await;
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handles = submit_recorded(&manager, 50, origin, Duration::ZERO, &starts).await;
    all_done(handles).await;
    assert_eq!(*starts.lock(), vec![Duration::ZERO; 50]);
}
