//! Observability for a3s-lane: metrics the queue feeds by itself, and (feature
//! `monitoring`) alerts and a background monitor.
//!
//! - [`QueueMetrics`] is an [`Observer`](lane_core::Observer): give it to
//!   [`QueueManagerBuilder::with_metrics`](lane_core::QueueManagerBuilder::with_metrics)
//!   and the queue records, per lane and in total, the counters, gauges and HDR latency
//!   histograms named in [`metric_names`]. Read them with [`QueueMetrics::snapshot`] or
//!   as Prometheus text with [`MetricsSnapshot::to_prometheus`].
//! - Per-group metrics are opt-in and bounded ([`GroupMetricsConfig`],
//!   [`QueueMetrics::with_group_metrics`]).
//! - [`MetricsBackend`] (the 0.3 API's async trait) is where metrics go: [`LocalMetrics`]
//!   in memory, `OtelMetricsBackend` (crate `lane-telemetry`) to OpenTelemetry, or your
//!   own. [`MetricsRecorder`] is the synchronous per-lane capability the hot path uses.
//! - `AlertManager` fires callbacks when a lane's depth or a run's latency crosses a
//!   threshold, once per crossing; `QueueMonitor` samples the queue on an interval.
//!
//! Most users depend on the `a3s-lane` facade, which re-exports this crate behind its
//! `metrics` and `monitoring` features.

#![forbid(unsafe_code)]

mod backend;
mod groups;
mod histogram;
mod local;
mod manager_ext;
mod names;
mod queue_metrics;
mod snapshot;
mod watched;

#[cfg(feature = "monitoring")]
mod alerts;
#[cfg(feature = "monitoring")]
mod monitor;

pub use backend::{MetricsBackend, MetricsRecorder};
pub use groups::{GroupMetricsConfig, group_metric_names};
pub use histogram::{HistogramStats, Percentiles};
pub use local::LocalMetrics;
pub use manager_ext::ObservabilityExt;
pub use names::{LaneCounter, LaneGauge, LaneHistogram, metric_names};
pub use queue_metrics::QueueMetrics;
pub use snapshot::{
    GroupMetricsSnapshot, LaneGroupsSnapshot, LaneMetricsSnapshot, MetricsSnapshot,
};
pub use watched::WatchedQueues;

#[cfg(feature = "monitoring")]
pub use alerts::{
    Alert, AlertKind, AlertLevel, AlertManager, DEFAULT_ALERT_RECOVERY_WINDOW, LatencyAlertConfig,
    QueueDepthAlertConfig,
};
#[cfg(feature = "monitoring")]
pub use monitor::{MonitorConfig, QueueMonitor};

#[cfg(test)]
mod send_sync {
    fn is_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        is_send_sync::<crate::QueueMetrics>();
        is_send_sync::<crate::LocalMetrics>();
        is_send_sync::<crate::MetricsSnapshot>();
        #[cfg(feature = "monitoring")]
        {
            is_send_sync::<crate::AlertManager>();
            is_send_sync::<crate::QueueMonitor>();
        }
    }
}
