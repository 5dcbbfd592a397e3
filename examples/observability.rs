//! Observability: metrics the queue records by itself, alerts with hysteresis, a
//! background monitor, Prometheus text, and (with `OTEL_EXPORTER_OTLP_ENDPOINT` set)
//! OpenTelemetry export of the same metrics and of one span per command run.
//!
//! ```text
//! cargo run --example observability
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run --example observability
//! ```

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    AlertLevel, AlertManager, EventEmitter, LaneConfig, LaneError, LatencyAlertConfig,
    MonitorConfig, OtelMetricsBackend, OtlpConfig, OtlpTracing, QueueDepthAlertConfig,
    QueueManagerBuilder, QueueMetrics, QueueMonitor, metric_names,
};
use serde_json::json;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // With a collector configured, export metrics and spans over OTLP/HTTP; otherwise
    // keep the metrics in memory.
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok();
    let config = OtlpConfig::default()
        .with_service_name("observability-example")
        .with_export_interval(Duration::from_secs(5));
    let (metrics, otel, tracing_export) = if otlp {
        let otel = Arc::new(OtelMetricsBackend::otlp(&config)?);
        let tracing_export = OtlpTracing::new(&config)?;
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(tracing_export.layer()),
        )?;
        println!("exporting to {}", config.endpoint);
        (
            QueueMetrics::new(otel.clone()),
            Some(otel),
            Some(tracing_export),
        )
    } else {
        println!("OTEL_EXPORTER_OTLP_ENDPOINT not set: metrics stay in memory");
        (QueueMetrics::local(), None, None)
    };

    // Depth alerts at 20 / 40 pending, latency alerts at 50 / 200 ms; each fires once
    // per crossing, and again only after 2 s of recovery.
    let alerts = Arc::new(AlertManager::with_configs(
        QueueDepthAlertConfig::new(20, 40)?.with_recovery_window(Duration::from_secs(2)),
        LatencyAlertConfig::new(50.0, 200.0)?.with_recovery_window(Duration::from_secs(2)),
    )?);
    alerts
        .add_callback(|alert| {
            let level = match alert.level {
                AlertLevel::Warning => "WARN",
                AlertLevel::Critical => "CRIT",
                AlertLevel::Info => "INFO",
            };
            println!("[alert {level}] {}", alert.message);
        })
        .await;

    let manager = QueueManagerBuilder::new(EventEmitter::new(100))
        .with_lane("control", LaneConfig::new(1, 2), 1)
        .with_lane(
            "prompt",
            LaneConfig::new(1, 4).with_timeout(Duration::from_millis(300)),
            5,
        )
        .with_dlq(100)
        .with_metrics(metrics.clone())
        .with_alerts(alerts.clone())
        .build()
        .await?;
    manager.start().await?;

    let monitor = Arc::new(QueueMonitor::with_config(
        manager.queue(),
        MonitorConfig {
            interval: Duration::from_millis(100),
            pending_warning_threshold: 30,
            active_warning_threshold: 10,
        },
    ));
    monitor
        .add_callback(|alert| println!("[monitor] {}", alert.message))
        .await;
    monitor.clone().start().await;

    // 50 prompts: most take 20-80 ms, every 10th fails, two run past the timeout.
    let request = tracing::info_span!("agent_turn", session = "demo");
    let handles = async {
        let mut handles = Vec::new();
        for i in 0..50u64 {
            let handle = manager
                .submit_fn("prompt", "generate", move |_ctx| async move {
                    let ms = if i == 7 || i == 33 {
                        1_000
                    } else {
                        20 + (i * 13) % 60
                    };
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if i % 10 == 9 {
                        return Err(LaneError::CommandError(format!("prompt {i} failed")));
                    }
                    Ok(json!({ "tokens": ms }))
                })
                .await?;
            handles.push(handle);
        }
        for _ in 0..5 {
            handles.push(
                manager
                    .submit_fn("control", "pause", |_ctx| async { Ok(json!("paused")) })
                    .await?,
            );
        }
        Ok::<_, LaneError>(handles)
    }
    .instrument(request)
    .await?;
    for handle in handles {
        let _ = handle.await;
    }
    manager.drain(Duration::from_secs(10)).await?;

    let snapshot = metrics.snapshot().await;
    println!(
        "\nsubmitted {}, completed {}, failed {}, timed out {}, dead-lettered {}",
        snapshot.counter(metric_names::COMMANDS_SUBMITTED),
        snapshot.counter(metric_names::COMMANDS_COMPLETED),
        snapshot.counter(metric_names::COMMANDS_FAILED),
        snapshot.counter(metric_names::COMMANDS_TIMED_OUT),
        snapshot.counter(metric_names::COMMANDS_DEAD_LETTERED),
    );
    if let Some(latency) = snapshot.histograms.get(metric_names::COMMAND_LATENCY_MS) {
        println!(
            "latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} runs",
            latency.percentiles.p50,
            latency.percentiles.p90,
            latency.percentiles.p99,
            latency.max,
            latency.count
        );
    }
    println!("\n--- Prometheus text ---\n{}", snapshot.to_prometheus());

    monitor.stop();
    manager.shutdown().await;
    if let Some(otel) = otel {
        otel.shutdown().await?;
    }
    if let Some(tracing_export) = tracing_export {
        tracing_export.shutdown().await?;
    }
    Ok(())
}
