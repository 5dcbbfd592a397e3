//! The 0.3 README's observability examples, as written there (imports completed where
//! the README left them out), run against the facade.
#![cfg(feature = "monitoring")]

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    AlertLevel, AlertManager, EventEmitter, LaneConfig, MonitorConfig, QueueManagerBuilder,
    QueueMetrics, QueueMonitor,
};

#[tokio::test]
async fn metrics_collection() -> Result<(), Box<dyn std::error::Error>> {
    let emitter = EventEmitter::new(100);

    // Create local metrics collector
    let metrics = QueueMetrics::local();

    // Build queue manager with metrics
    let manager = QueueManagerBuilder::new(emitter)
        .with_metrics(metrics.clone())
        .with_lane("api", LaneConfig::new(1, 5), 0)
        .build()
        .await?;

    // Record metrics manually (or integrate into command execution)
    metrics.record_submit("api").await;
    metrics.record_complete("api", 150.0).await; // 150ms latency

    // Get metrics snapshot
    let snapshot = metrics.snapshot().await;
    println!(
        "Commands submitted: {:?}",
        snapshot.counters.get("lane.commands.submitted")
    );

    // Get latency histogram stats
    if let Some(stats) = snapshot.histograms.get("lane.command.latency_ms") {
        println!(
            "Latency p50: {}ms, p99: {}ms",
            stats.percentiles.p50, stats.percentiles.p99
        );
    }

    assert_eq!(snapshot.counters.get("lane.commands.submitted"), Some(&1));
    assert_eq!(
        snapshot.histograms["lane.command.latency_ms"]
            .percentiles
            .p99,
        150.0
    );
    drop(manager);
    Ok(())
}

#[tokio::test]
async fn queue_depth_alerts() -> Result<(), Box<dyn std::error::Error>> {
    let emitter = EventEmitter::new(100);

    // Create alert manager with queue depth thresholds
    let alerts = Arc::new(AlertManager::with_queue_depth_alerts(
        100, // Warning threshold
        200, // Critical threshold
    ));

    // Add alert callback
    let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = fired.clone();
    alerts
        .add_callback(move |alert| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            println!(
                "[{}] {}: {}",
                match alert.level {
                    AlertLevel::Warning => "WARN",
                    AlertLevel::Critical => "CRIT",
                    _ => "INFO",
                },
                alert.lane_id,
                alert.message
            );
        })
        .await;

    // Build queue manager with alerts
    let manager = QueueManagerBuilder::new(emitter)
        .with_alerts(alerts.clone())
        .with_lane("api", LaneConfig::new(1, 5), 0)
        .build()
        .await?;

    // Check queue depth (triggers alerts if thresholds exceeded)
    alerts.check_queue_depth("api", 150).await; // Triggers warning
    alerts.check_queue_depth("api", 250).await; // Triggers critical
    assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(manager);
    Ok(())
}

#[tokio::test]
async fn latency_alerts() {
    // Create alert manager with latency thresholds
    let alerts = AlertManager::with_latency_alerts(
        100.0, // Warning threshold (ms)
        500.0, // Critical threshold (ms)
    );

    // Check latency after command execution
    let warning = alerts.check_latency("api", 250.0).await; // Triggers warning
    let critical = alerts.check_latency("api", 600.0).await; // Triggers critical
    assert_eq!(warning.map(|a| a.level), Some(AlertLevel::Warning));
    assert_eq!(critical.map(|a| a.level), Some(AlertLevel::Critical));
}

#[tokio::test]
async fn queue_monitoring() -> Result<(), Box<dyn std::error::Error>> {
    let manager = QueueManagerBuilder::new(EventEmitter::new(100))
        .with_default_lanes()
        .build()
        .await?;
    manager.start().await?;

    let config = MonitorConfig {
        interval: Duration::from_secs(5),
        pending_warning_threshold: 50,
        active_warning_threshold: 25,
    };

    let monitor = Arc::new(QueueMonitor::with_config(manager.queue(), config));

    // Start monitoring (runs in background)
    monitor.clone().start().await;

    // Get current stats
    let stats = monitor.stats().await;
    println!(
        "Pending: {}, Active: {}",
        stats.total_pending, stats.total_active
    );
    assert!(monitor.is_running());
    monitor.stop();
    monitor.stopped().await;
    Ok(())
}
