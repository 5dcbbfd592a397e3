//! `/metrics`: Prometheus text (exposition format 0.0.4).
//!
//! Always: the lanes' counts and settings from [`QueueClient::stats`](lane_core::QueueClient::stats)
//! under `a3s_lane_lane_*`. With a [`QueueMetrics`](lane_metrics::QueueMetrics) configured:
//! every series it renders (`lane_commands_*_total`, `lane_command_latency_ms`,
//! `lane_command_wait_ms`, …).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lane_core::{LaneStatus, QueueStats};

use crate::AppState;
use crate::error::ApiError;

pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.client.stats().await?;
    let mut text = render_stats(&stats);
    if let Some(metrics) = state.config.metrics() {
        text.push_str(&metrics.render_prometheus().await);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A series family from the stats: name, type, help, and the value of a lane.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LaneStatus) -> f64,
);

/// The stats as gauges and counters, one series per lane (sorted by lane id).
pub(crate) fn render_stats(stats: &QueueStats) -> String {
    let mut lanes: Vec<_> = stats.lanes.values().collect();
    lanes.sort_by(|a, b| a.id.cmp(&b.id));
    let families: [Family; 13] = [
        (
            "a3s_lane_lane_pending",
            "gauge",
            "Commands waiting to start",
            |l| l.pending as f64,
        ),
        (
            "a3s_lane_lane_delayed",
            "gauge",
            "Commands waiting for their start time or a retry delay",
            |l| l.delayed as f64,
        ),
        ("a3s_lane_lane_active", "gauge", "Commands running", |l| {
            l.active as f64
        }),
        (
            "a3s_lane_lane_max_concurrency",
            "gauge",
            "Most commands the lane runs at once",
            |l| l.max as f64,
        ),
        (
            "a3s_lane_lane_min_concurrency",
            "gauge",
            "Slots reserved for the lane under a global budget",
            |l| l.min as f64,
        ),
        (
            "a3s_lane_lane_priority",
            "gauge",
            "Configured priority (lower runs first)",
            |l| f64::from(l.priority),
        ),
        (
            "a3s_lane_lane_effective_priority",
            "gauge",
            "Priority now, after any deadline boost",
            |l| f64::from(l.effective_priority),
        ),
        (
            "a3s_lane_lane_paused",
            "gauge",
            "1 while the lane is paused",
            |l| f64::from(u8::from(l.paused)),
        ),
        (
            "a3s_lane_lane_throttled",
            "gauge",
            "1 while the lane's rate limit holds it back",
            |l| f64::from(u8::from(l.throttled)),
        ),
        (
            "a3s_lane_lane_abandoned_running",
            "gauge",
            "Abandoned runs still holding a slot",
            |l| l.abandoned_running as f64,
        ),
        (
            "a3s_lane_lane_expired_total",
            "counter",
            "Commands that expired unstarted since the queue was made",
            |l| l.expired as f64,
        ),
        (
            "a3s_lane_lane_rejected_full_total",
            "counter",
            "Submits refused because the lane was full since the queue was made",
            |l| l.rejected_full as f64,
        ),
        (
            "a3s_lane_lane_abandoned_total",
            "counter",
            "Runs answered whose handler went on running since the queue was made",
            |l| l.abandoned as f64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}.");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for lane in &lanes {
            let _ = writeln!(
                out,
                "{name}{{lane=\"{}\"}} {}",
                escape(&lane.id),
                value(lane)
            );
        }
    }
    let _ = writeln!(out, "# HELP a3s_lane_lanes Lanes in the queue.");
    let _ = writeln!(out, "# TYPE a3s_lane_lanes gauge");
    let _ = writeln!(out, "a3s_lane_lanes {}", stats.lanes.len());
    out
}
