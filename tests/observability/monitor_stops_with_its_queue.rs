//! `QueueMonitor` samples on its interval, warns once per crossing, and stops when asked,
//! when its queue is dropped, or when the queue shut down and has nothing left to run.
#![cfg(feature = "monitoring")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_lane::{
    AlertKind, AlertLevel, EventEmitter, LaneConfig, MonitorConfig, QueueManager,
    QueueManagerBuilder, QueueMonitor,
};
use serde_json::json;

const INTERVAL: Duration = Duration::from_secs(1);

async fn manager() -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 2), 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

fn monitor(manager: &QueueManager) -> Arc<QueueMonitor> {
    Arc::new(QueueMonitor::with_config(
        manager.queue(),
        MonitorConfig {
            interval: INTERVAL,
            pending_warning_threshold: 3,
            active_warning_threshold: 10,
        },
    ))
}

/// Waits for the sampler to end, failing (in paused time, instantly) after `limit`.
async fn ends_within(monitor: &QueueMonitor, limit: Duration) {
    tokio::time::timeout(limit, monitor.stopped())
        .await
        .expect("the monitor should have stopped");
    assert!(!monitor.is_running());
}

#[tokio::test(start_paused = true)]
async fn it_stops_when_its_queue_is_dropped() {
    let manager = manager().await;
    let monitor = monitor(&manager);
    monitor.clone().start().await;
    assert!(monitor.is_running());
    tokio::time::sleep(INTERVAL * 3).await;
    assert!(monitor.is_running());
    drop(manager);
    ends_within(&monitor, INTERVAL * 2).await;
    // The last sample is still there.
    assert_eq!(monitor.stats().await.total_pending, 0);
}

#[tokio::test(start_paused = true)]
async fn it_stops_when_asked_and_can_start_again() {
    let manager = manager().await;
    let monitor = monitor(&manager);
    monitor.clone().start().await;
    monitor.stop();
    ends_within(&monitor, Duration::from_millis(1)).await;
    monitor.clone().start().await;
    assert!(monitor.is_running());
    monitor.stop();
    ends_within(&monitor, Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn it_stops_after_the_queue_shut_down_and_drained() {
    let manager = manager().await;
    let monitor = monitor(&manager);
    monitor.clone().start().await;
    let slow = manager
        .submit_fn("work", "slow", |_ctx| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(json!(null))
        })
        .await
        .unwrap();
    manager.shutdown().await;
    // Still running while the queue drains …
    tokio::time::sleep(INTERVAL * 2).await;
    assert!(monitor.is_running());
    slow.await.unwrap();
    // … and done at the first sample after.
    ends_within(&monitor, INTERVAL * 2).await;
}

#[tokio::test(start_paused = true)]
async fn it_warns_once_per_crossing_and_says_when_it_is_over() {
    let manager = manager().await;
    let monitor = monitor(&manager);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    monitor
        .add_callback(move |alert| {
            sink.lock()
                .unwrap()
                .push((alert.level, alert.kind, alert.value))
        })
        .await;
    monitor.clone().start().await;
    manager.pause_lane("work").unwrap();
    for _ in 0..4 {
        let handle = manager
            .submit_fn("work", "quick", |_ctx| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(json!(null))
            })
            .await
            .unwrap();
        drop(handle); // detached: the test waits on the queue instead
    }
    // Half an interval off the sampler's ticks, so that no tick coincides with a change.
    tokio::time::sleep(INTERVAL * 3 + INTERVAL / 2).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [(AlertLevel::Warning, AlertKind::TotalPending, 4.0)]
    );
    assert_eq!(monitor.last_sample().total_pending, 4);
    manager.resume_lane("work").unwrap();
    manager.queue().wait_idle().await;
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (AlertLevel::Warning, AlertKind::TotalPending, 4.0),
            (AlertLevel::Info, AlertKind::TotalPending, 0.0)
        ]
    );
    monitor.stop();
}

#[test]
fn a_zero_interval_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let manager = runtime.block_on(manager_without_start());
    let err = QueueMonitor::try_with_config(
        manager.queue(),
        MonitorConfig {
            interval: Duration::ZERO,
            ..MonitorConfig::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: monitor interval must be greater than zero"
    );
}

async fn manager_without_start() -> QueueManager {
    QueueManagerBuilder::new(EventEmitter::new(16))
        .with_default_lanes()
        .build()
        .await
        .unwrap()
}
