//! Where metrics go: the 0.3 API's async [`MetricsBackend`] and the synchronous, per-lane
//! [`MetricsRecorder`] capability the queue's hot path uses.

use async_trait::async_trait;

use crate::histogram::HistogramStats;
use crate::names::{LaneCounter, LaneGauge, LaneHistogram};
use crate::snapshot::MetricsSnapshot;
use crate::watched::WatchedQueues;

/// Synchronous, per-lane recording: what the queue calls, on its own tasks, as commands
/// move. Implementations must be quick and must not block (no I/O, no async lock); they
/// run right after a state change, outside every queue lock.
///
/// A [`MetricsBackend`] that can record this way returns itself from
/// [`MetricsBackend::recorder`]; [`LocalMetrics`](crate::LocalMetrics) and
/// `OtelMetricsBackend` do.
///
/// ```
/// use a3s_lane::{LaneCounter, LaneGauge, LaneHistogram, MetricsRecorder};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[derive(Default)]
/// struct CountFailures(AtomicU64);
///
/// impl MetricsRecorder for CountFailures {
///     fn add(&self, _lane: &str, counter: LaneCounter, value: u64) {
///         if counter == LaneCounter::Failed {
///             self.0.fetch_add(value, Ordering::Relaxed);
///         }
///     }
///     fn set(&self, _lane: &str, _gauge: LaneGauge, _value: f64) {}
///     fn observe(&self, _lane: &str, _histogram: LaneHistogram, _value_ms: f64) {}
/// }
/// ```
pub trait MetricsRecorder: Send + Sync + 'static {
    /// Adds `value` to one lane's counter.
    fn add(&self, lane: &str, counter: LaneCounter, value: u64);
    /// Sets one lane's gauge.
    fn set(&self, lane: &str, gauge: LaneGauge, value: f64);
    /// Records one value (milliseconds) into one lane's histogram.
    fn observe(&self, lane: &str, histogram: LaneHistogram, value_ms: f64);
    /// The queues whose lane gauges (depth, active) this recorder may read when it
    /// exports: the queue does not push them per change. A recorder that exports on its
    /// own schedule keeps `queues` and reads [`WatchedQueues::lane_gauges`] then;
    /// otherwise gauges arrive through [`MetricsRecorder::set`] when a
    /// [`QueueMetrics`](crate::QueueMetrics) snapshot is taken.
    fn watch_queues(&self, _queues: WatchedQueues) {}
}

fn _recorder_is_dyn_compatible(_: &dyn MetricsRecorder) {}

/// A metrics store or exporter (the 0.3 API's trait): counters, gauges and histograms by
/// name, read back as a [`MetricsSnapshot`].
///
/// How a backend given to [`QueueMetrics::new`](crate::QueueMetrics::new) is fed by the
/// queue:
/// - if [`recorder`](MetricsBackend::recorder) returns a [`MetricsRecorder`], the queue
///   calls it synchronously, per lane, as commands move;
/// - otherwise the queue records into an in-memory outbox (a few nanoseconds, never
///   blocking) and a forwarder task hands the **totals** to the async methods below:
///   counter increments summed over lanes, gauges summed over lanes, each histogram
///   value (at 0.1% precision). The forwarder coalesces: however slow the backend, the
///   outbox stays bounded (one cell per lane and metric) and nothing is dropped.
///   [`QueueMetrics::flush`](crate::QueueMetrics::flush) waits until everything recorded
///   so far was handed over.
///
/// ```
/// use a3s_lane::{HistogramStats, MetricsBackend, MetricsSnapshot};
/// use async_trait::async_trait;
/// use std::collections::BTreeMap;
/// use std::sync::Mutex;
///
/// /// Keeps counters only, in a plain map.
/// #[derive(Default)]
/// struct Counters(Mutex<BTreeMap<String, u64>>);
///
/// #[async_trait]
/// impl MetricsBackend for Counters {
///     async fn increment_counter(&self, name: &str, value: u64) {
///         *self.0.lock().unwrap().entry(name.to_owned()).or_default() += value;
///     }
///     async fn set_gauge(&self, _name: &str, _value: f64) {}
///     async fn record_histogram(&self, _name: &str, _value: f64) {}
///     async fn get_counter(&self, name: &str) -> Option<u64> {
///         self.0.lock().unwrap().get(name).copied()
///     }
///     async fn get_gauge(&self, _name: &str) -> Option<f64> {
///         None
///     }
///     async fn get_histogram_stats(&self, _name: &str) -> Option<HistogramStats> {
///         None
///     }
///     async fn reset(&self) {
///         self.0.lock().unwrap().clear();
///     }
///     async fn snapshot(&self) -> MetricsSnapshot {
///         MetricsSnapshot { counters: self.0.lock().unwrap().clone(), ..Default::default() }
///     }
/// }
/// ```
#[async_trait]
pub trait MetricsBackend: Send + Sync + 'static {
    /// Adds `value` to a counter.
    async fn increment_counter(&self, name: &str, value: u64);
    /// Sets a gauge.
    async fn set_gauge(&self, name: &str, value: f64);
    /// Records one histogram value.
    async fn record_histogram(&self, name: &str, value: f64);
    /// A counter's current value, if it exists.
    async fn get_counter(&self, name: &str) -> Option<u64>;
    /// A gauge's current value, if it was set.
    async fn get_gauge(&self, name: &str) -> Option<f64>;
    /// A histogram's statistics, if it has values.
    async fn get_histogram_stats(&self, name: &str) -> Option<HistogramStats>;
    /// Forgets every value.
    async fn reset(&self);
    /// Every metric now.
    async fn snapshot(&self) -> MetricsSnapshot;

    /// The synchronous per-lane recorder, if this backend has one (see the trait docs).
    fn recorder(&self) -> Option<&dyn MetricsRecorder> {
        None
    }
}

fn _backend_is_dyn_compatible(_: std::sync::Arc<dyn MetricsBackend>) {}
