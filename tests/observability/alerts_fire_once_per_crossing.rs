//! `AlertManager` given to the builder is fed by the queue: depth alerts as lanes fill,
//! latency alerts as runs end; each fires once per crossing and again only after the
//! lane recovered for the recovery window. Paused time drives the window.
#![cfg(feature = "monitoring")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_lane::{
    Alert, AlertKind, AlertLevel, AlertManager, CommandQueue, EventEmitter, LaneConfig,
    LatencyAlertConfig, QueueDepthAlertConfig, QueueManager, QueueManagerBuilder,
};
use serde_json::json;

type Seen = Arc<Mutex<Vec<(AlertLevel, AlertKind, String, f64)>>>;

/// Records each alert; and reads the queue's stats from inside the callback, which would
/// deadlock if the callback ran under the queue's lock.
async fn recording(alerts: &AlertManager, queue: Arc<CommandQueue>) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    alerts
        .add_callback(move |alert: &Alert| {
            let _ = queue.stats_now();
            sink.lock().unwrap().push((
                alert.level,
                alert.kind,
                alert.lane_id.clone(),
                alert.value,
            ));
        })
        .await;
    seen
}

async fn submit_quick(manager: &QueueManager, lane: &str, n: usize) {
    for _ in 0..n {
        let handle = manager
            .submit_fn(lane, "quick", |_ctx| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(json!(null))
            })
            .await
            .unwrap();
        drop(handle); // detached: the test waits on the queue instead
    }
}

fn levels(seen: &Seen) -> Vec<AlertLevel> {
    seen.lock().unwrap().iter().map(|a| a.0).collect()
}

#[tokio::test(start_paused = true)]
async fn depth_alerts_fire_once_per_crossing_and_again_after_recovery() {
    let depth = QueueDepthAlertConfig::new(5, 10)
        .unwrap()
        .with_recovery_threshold(2)
        .with_recovery_window(Duration::from_secs(10));
    let alerts =
        Arc::new(AlertManager::with_configs(depth, LatencyAlertConfig::disabled()).unwrap());
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 1), 0)
        .with_alerts(alerts.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let seen = recording(&alerts, manager.queue()).await;

    // Fill the paused lane to 12: one warning at 5, one critical at 10, nothing else.
    manager.pause_lane("work").unwrap();
    submit_quick(&manager, "work", 12).await;
    assert_eq!(levels(&seen), [AlertLevel::Warning, AlertLevel::Critical]);
    assert_eq!(seen.lock().unwrap()[0].3, 5.0);
    assert_eq!(seen.lock().unwrap()[1].2, "work");
    assert!(alerts.is_raised("work", AlertKind::QueueDepth));

    // Drain, and fill again within the recovery window: still raised, no storm.
    manager.resume_lane("work").unwrap();
    manager.queue().wait_idle().await;
    manager.pause_lane("work").unwrap();
    submit_quick(&manager, "work", 12).await;
    manager.resume_lane("work").unwrap();
    manager.queue().wait_idle().await;
    assert_eq!(levels(&seen).len(), 2);

    // Quiet for longer than the window: the next depth change reports the recovery …
    tokio::time::sleep(Duration::from_secs(11)).await;
    submit_quick(&manager, "work", 1).await;
    manager.queue().wait_idle().await;
    assert_eq!(
        levels(&seen),
        [AlertLevel::Warning, AlertLevel::Critical, AlertLevel::Info]
    );
    assert!(!alerts.is_raised("work", AlertKind::QueueDepth));

    // … and the next crossing fires again.
    manager.pause_lane("work").unwrap();
    submit_quick(&manager, "work", 6).await;
    assert_eq!(
        levels(&seen),
        [
            AlertLevel::Warning,
            AlertLevel::Critical,
            AlertLevel::Info,
            AlertLevel::Warning
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_runs_raise_one_latency_alert_not_one_per_run() {
    let alerts = Arc::new(AlertManager::with_latency_alerts(100.0, 500.0));
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("llm", LaneConfig::new(1, 2), 0)
        .with_alerts(alerts.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let seen = recording(&alerts, manager.queue()).await;
    let run = |ms: u64| {
        let manager = manager.clone();
        async move {
            manager
                .submit_fn("llm", "generate", move |_ctx| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!(ms))
                })
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    for ms in [10, 300, 20, 250, 10, 300] {
        run(ms).await;
    }
    assert_eq!(levels(&seen), [AlertLevel::Warning]);
    assert_eq!(seen.lock().unwrap()[0].1, AlertKind::Latency);
    assert_eq!(seen.lock().unwrap()[0].3, 300.0);
    run(600).await;
    assert_eq!(levels(&seen), [AlertLevel::Warning, AlertLevel::Critical]);
    // Fast runs for longer than the default 10 s window clear it.
    for _ in 0..12 {
        run(1_000).await; // above recovery (50 ms): keeps it raised …
    }
    assert_eq!(levels(&seen).len(), 2);
    for _ in 0..3 {
        run(10).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    run(10).await;
    assert_eq!(
        levels(&seen),
        [AlertLevel::Warning, AlertLevel::Critical, AlertLevel::Info]
    );
    run(150).await;
    assert_eq!(levels(&seen).last(), Some(&AlertLevel::Warning));
}

#[tokio::test]
async fn the_0_3_api_thresholds_fire_warning_then_critical() {
    let alerts = AlertManager::with_latency_alerts(100.0, 500.0);
    assert_eq!(
        alerts.check_latency("api", 250.0).await.map(|a| a.level),
        Some(AlertLevel::Warning)
    );
    assert_eq!(
        alerts.check_latency("api", 600.0).await.map(|a| a.level),
        Some(AlertLevel::Critical)
    );
    let depth = AlertManager::with_queue_depth_alerts(100, 200);
    assert_eq!(
        depth.check_queue_depth("api", 150).await.map(|a| a.level),
        Some(AlertLevel::Warning)
    );
    assert_eq!(
        depth.check_queue_depth("api", 250).await.map(|a| a.level),
        Some(AlertLevel::Critical)
    );
    assert!(depth.check_queue_depth("api", 260).await.is_none());
}

#[test]
fn invalid_thresholds_are_refused_with_a_reason() {
    let err = AlertManager::try_with_queue_depth_alerts(200, 100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration: queue depth alerts: warning_threshold (200) is above critical_threshold (100)"
    );
    assert!(AlertManager::try_with_latency_alerts(f64::NAN, 1.0).is_err());
}
