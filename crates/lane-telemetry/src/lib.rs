//! OpenTelemetry export for a3s-lane, over OTLP/HTTP with protobuf bodies.
//!
//! - [`OtelMetricsBackend`] is a metrics backend for
//!   [`QueueMetrics::new`](lane_metrics::QueueMetrics::new): the queue's counters,
//!   gauges and latency histograms become OpenTelemetry instruments with the lane as an
//!   attribute, exported every interval.
//! - [`OtlpTracing`] exports `tracing` spans: the queue runs every command in a
//!   `lane.command` span whose parent is the submitter's span, so a trace crosses the
//!   queue.
//!
//! Both send their requests on the tokio runtime they were built in, one HTTP/1.1
//! request per export (see the `http` module docs for why this transport). Most users
//! depend on the `a3s-lane` facade, which re-exports this crate behind its `telemetry`
//! feature.

#![forbid(unsafe_code)]

mod config;
mod http;
mod metrics;
mod tracing;

pub use config::{DEFAULT_OTLP_ENDPOINT, OtlpConfig, TelemetryError};
pub use metrics::{LATENCY_BUCKETS_MS, OtelMetricsBackend};
pub use tracing::OtlpTracing;

#[cfg(test)]
mod send_sync {
    fn is_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_handles_are_send_and_sync() {
        is_send_sync::<crate::OtelMetricsBackend>();
        is_send_sync::<crate::OtlpTracing>();
        is_send_sync::<crate::TelemetryError>();
    }
}
