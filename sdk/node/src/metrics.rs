//! Queue metrics for JavaScript: `new Lane(lanes, { metrics: true })` gives the queue the
//! Rust crate's in-memory `QueueMetrics`, which the queue feeds by itself; `lane.metrics()`
//! reads them and `lane.metricsPrometheus()` renders them as Prometheus text.
//!
//! Counters count commands as the queue books them (before a command's promise settles),
//! so after awaiting a batch of commands their counters are exact. Gauges (depth, active)
//! are reported after the queue's lock is released; `await lane.drain(ms)` waits for the
//! final ones.

use std::collections::BTreeMap;

use a3s_lane::{
    GroupMetricsSnapshot, HistogramStats, LaneMetricsSnapshot, MetricsSnapshot as CoreSnapshot,
};
use futures_util::FutureExt;
use napi::Env;
use napi_derive::napi;

use crate::error::JsFailure;
use crate::lane::Lane;

/// Statistics of one latency histogram, in milliseconds. Count, sum, min, max and mean
/// are exact; percentiles are within 0.1% and never outside `min`..`max`.
#[napi(object)]
#[derive(Debug, Clone, Copy)]
pub struct HistogramSummary {
    /// How many values were recorded.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The mean (0 when empty).
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// One lane's metrics.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct LaneMetrics {
    /// Counters by name: `lane.commands.submitted`, `.started`, `.completed`, `.failed`,
    /// `.timed_out`, `.retried`, `.dead_lettered`, `.cancelled` (0 if they never moved).
    pub counters: BTreeMap<String, f64>,
    /// Gauges by name: `lane.queue.depth` (pending commands) and `lane.commands.active`.
    pub gauges: BTreeMap<String, f64>,
    /// Histograms by name: `lane.command.latency_ms` (run time of commands that ended by
    /// themselves) and `lane.command.wait_ms` (time waited before starting).
    pub histograms: BTreeMap<String, HistogramSummary>,
}

/// Every metric at one moment: the totals over all lanes, and each lane's own.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// Counter totals by name (see `LaneMetrics.counters`).
    pub counters: BTreeMap<String, f64>,
    /// Gauge totals by name (summed over lanes).
    pub gauges: BTreeMap<String, f64>,
    /// Histograms merged over lanes, by name.
    pub histograms: BTreeMap<String, HistogramSummary>,
    /// Each lane's metrics, by lane id (every lane of the queue, and any lane recorded by hand).
    pub lanes: BTreeMap<String, LaneMetrics>,
    /// Per-group metrics by lane id, then group (with `{ groupMetrics: n }`):
    /// `group.commands.started`, `.completed`, `.failed`, `.cancelled`, `group.throttled`
    /// and the histogram `group.command.wait_ms` (no gauges).
    pub groups: BTreeMap<String, BTreeMap<String, LaneMetrics>>,
    /// Each lane's `other` bucket: its groups beyond the `groupMetrics` bound, together.
    pub other_groups: BTreeMap<String, LaneMetrics>,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub timestamp: f64,
}

fn summary(stats: &HistogramStats) -> HistogramSummary {
    HistogramSummary {
        count: stats.count as f64,
        sum: stats.sum,
        min: stats.min,
        max: stats.max,
        mean: stats.mean,
        p50: stats.percentiles.p50,
        p90: stats.percentiles.p90,
        p95: stats.percentiles.p95,
        p99: stats.percentiles.p99,
    }
}

fn counters(counters: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    counters
        .iter()
        .map(|(name, value)| (name.clone(), *value as f64))
        .collect()
}

fn histograms(histograms: &BTreeMap<String, HistogramStats>) -> BTreeMap<String, HistogramSummary> {
    histograms
        .iter()
        .map(|(name, stats)| (name.clone(), summary(stats)))
        .collect()
}

fn group_metrics(group: &GroupMetricsSnapshot) -> LaneMetrics {
    LaneMetrics {
        counters: counters(&group.counters),
        gauges: BTreeMap::new(),
        histograms: histograms(&group.histograms),
    }
}

fn lane_metrics(lane: &LaneMetricsSnapshot) -> LaneMetrics {
    LaneMetrics {
        counters: counters(&lane.counters),
        gauges: lane.gauges.clone(),
        histograms: histograms(&lane.histograms),
    }
}

impl Lane {
    fn snapshot(&self, env: &Env) -> napi::Result<CoreSnapshot> {
        let metrics = self.queue_metrics().ok_or_else(|| {
            JsFailure::error(
                "CONFIG",
                "this lane records no metrics; create it with new Lane(lanes, { metrics: true })",
            )
            .throw(env)
        })?;
        // The in-memory store answers at once: nothing to await.
        metrics.snapshot().now_or_never().ok_or_else(|| {
            JsFailure::error(
                "QUEUE",
                "internal: the metrics snapshot did not complete at once",
            )
            .throw(env)
        })
    }
}

#[napi]
impl Lane {
    /// Every metric now: counters, gauges and latency histograms in total and per lane.
    /// Throws (code `CONFIG`) unless the lane was created with `{ metrics: true }`. Works
    /// after a shutdown too.
    #[napi]
    pub fn metrics(&self, env: Env) -> napi::Result<MetricsSnapshot> {
        let snapshot = self.snapshot(&env)?;
        Ok(MetricsSnapshot {
            counters: counters(&snapshot.counters),
            gauges: snapshot.gauges.clone(),
            histograms: histograms(&snapshot.histograms),
            lanes: snapshot
                .lanes
                .iter()
                .map(|(id, lane)| (id.clone(), lane_metrics(lane)))
                .collect(),
            groups: snapshot
                .groups
                .iter()
                .map(|(lane, groups)| {
                    let named = groups
                        .groups
                        .iter()
                        .map(|(group, m)| (group.clone(), group_metrics(m)))
                        .collect();
                    (lane.clone(), named)
                })
                .collect(),
            other_groups: snapshot
                .groups
                .iter()
                .filter_map(|(lane, groups)| {
                    Some((lane.clone(), group_metrics(groups.other.as_ref()?)))
                })
                .collect(),
            timestamp: snapshot.timestamp as f64,
        })
    }

    /// The metrics in the Prometheus text format (version 0.0.4): names with `_` for
    /// `.`, counters ending in `_total`, histograms as summaries (quantiles 0.5, 0.9,
    /// 0.95, 0.99, `_sum`, `_count`), one series per lane with a `lane` label. Throws
    /// (code `CONFIG`) unless the lane was created with `{ metrics: true }`.
    #[napi]
    pub fn metrics_prometheus(&self, env: Env) -> napi::Result<String> {
        Ok(self.snapshot(&env)?.to_prometheus())
    }
}
