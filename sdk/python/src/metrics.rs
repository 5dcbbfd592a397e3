//! Metrics of a `Lane(..., metrics=True)`: the queue feeds a `QueueMetrics` (kept in
//! memory) from its lifecycle; `Lane.metrics()` returns a [`MetricsSnapshot`] of it and
//! `Lane.metrics_prometheus()` its Prometheus text.

use std::collections::{BTreeMap, HashMap};

use a3s_lane::{
    HistogramStats as CoreHistogram, LaneMetricsSnapshot as CoreLaneMetrics,
    MetricsSnapshot as CoreSnapshot, QueueMetrics,
};
use pyo3::prelude::*;

use crate::error::{IntoPyErr, lane_error};
use crate::runtime::block_on;

/// `Lane(group_metrics=, group_metrics_always=)` as a config (`None` when not given).
pub(crate) fn group_metrics_config(
    py: Python<'_>,
    metrics: bool,
    first: Option<usize>,
    always: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<a3s_lane::GroupMetricsConfig>> {
    let always = always.filter(|a| !a.is_none());
    let Some(first) = first else {
        if always.is_some() {
            return Err(crate::error::config_error(
                py,
                "group_metrics_always needs group_metrics=N (how many other groups get a series)",
            ));
        }
        return Ok(None);
    };
    if !metrics {
        return Err(crate::error::config_error(
            py,
            "group_metrics records into the lane's metrics; pass metrics=True too",
        ));
    }
    let mut config = a3s_lane::GroupMetricsConfig::first(first).map_err(|e| e.into_py_err(py))?;
    if let Some(always) = always {
        if always.is_instance_of::<pyo3::types::PyString>() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "group_metrics_always must be a list of group keys, not one string",
            ));
        }
        for group in always.try_iter()? {
            let group: String = group?.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err("group_metrics_always must hold strings")
            })?;
            config = config.with_group(group).map_err(|e| e.into_py_err(py))?;
        }
    }
    Ok(Some(config))
}

/// The snapshot of `metrics`, or the error that explains how to get one.
pub(crate) fn snapshot(py: Python<'_>, metrics: Option<&QueueMetrics>) -> PyResult<CoreSnapshot> {
    let Some(metrics) = metrics else {
        return Err(lane_error(
            py,
            "this lane records no metrics; create it with Lane(..., metrics=True)",
        ));
    };
    // In-memory metrics answer at once; nothing here waits.
    let mut snapshot = std::pin::pin!(metrics.snapshot());
    block_on(py, snapshot.as_mut())
}

fn histograms(
    py: Python<'_>,
    source: &BTreeMap<String, CoreHistogram>,
) -> PyResult<HashMap<String, Py<HistogramStats>>> {
    source
        .iter()
        .map(|(name, stats)| Ok((name.clone(), Py::new(py, HistogramStats::from(*stats))?)))
        .collect()
}

/// Statistics of one latency histogram, in milliseconds. `count`, `sum`, `min`, `max`
/// and `mean` are exact; the percentiles are within 0.1% (an HDR histogram) and never
/// outside `min..max`.
#[pyclass(frozen, module = "a3s_lane", name = "HistogramStats", get_all)]
pub(crate) struct HistogramStats {
    /// How many values were recorded.
    count: u64,
    /// Their sum.
    sum: f64,
    /// The smallest.
    min: f64,
    /// The largest.
    max: f64,
    /// The mean (0 when empty).
    mean: f64,
    /// The median.
    p50: f64,
    /// The 90th percentile.
    p90: f64,
    /// The 95th percentile.
    p95: f64,
    /// The 99th percentile.
    p99: f64,
}

impl From<CoreHistogram> for HistogramStats {
    fn from(stats: CoreHistogram) -> Self {
        Self {
            count: stats.count,
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
}

#[pymethods]
impl HistogramStats {
    fn __repr__(&self) -> String {
        format!(
            "HistogramStats(count={}, min={}, max={}, mean={}, p50={}, p99={})",
            self.count, self.min, self.max, self.mean, self.p50, self.p99
        )
    }
}

/// One lane's metrics at the time of `Lane.metrics()`: the same names as the totals.
#[pyclass(frozen, module = "a3s_lane", name = "LaneMetrics")]
pub(crate) struct LaneMetrics {
    lane: CoreLaneMetrics,
}

#[pymethods]
impl LaneMetrics {
    /// Counters by name (every queue counter, 0 if it never moved).
    #[getter]
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lane.counters.clone()
    }

    /// Gauges by name (those set at least once).
    #[getter]
    fn gauges(&self) -> BTreeMap<String, f64> {
        self.lane.gauges.clone()
    }

    /// Histograms by name (those with at least one value).
    #[getter]
    fn histograms(&self, py: Python<'_>) -> PyResult<HashMap<String, Py<HistogramStats>>> {
        histograms(py, &self.lane.histograms)
    }

    /// A counter's value, 0 if absent.
    fn counter(&self, name: &str) -> u64 {
        self.lane.counter(name)
    }

    fn __repr__(&self) -> String {
        format!("LaneMetrics(counters={:?})", self.lane.counters)
    }
}

/// A group's metrics in the shape of a lane's (no gauges).
fn as_lane(group: &a3s_lane::GroupMetricsSnapshot) -> CoreLaneMetrics {
    CoreLaneMetrics {
        counters: group.counters.clone(),
        gauges: BTreeMap::new(),
        histograms: group.histograms.clone(),
    }
}

/// Every metric of a lane queue at one moment (`Lane.metrics()`).
///
/// `counters`, `gauges` and `histograms` are totals over all lanes; `lanes` has the
/// same names per lane. Counters: `lane.commands.submitted`, `.started` (every attempt),
/// `.completed`, `.failed`, `.timed_out`, `.retried`, `.dead_lettered`, `.cancelled`.
/// Gauges: `lane.queue.depth`, `lane.commands.active`. Histograms (milliseconds):
/// `lane.command.latency_ms` (run time), `lane.command.wait_ms` (time in the lane
/// before the run).
#[pyclass(frozen, module = "a3s_lane", name = "MetricsSnapshot")]
pub(crate) struct MetricsSnapshot {
    snapshot: CoreSnapshot,
}

impl From<CoreSnapshot> for MetricsSnapshot {
    fn from(snapshot: CoreSnapshot) -> Self {
        Self { snapshot }
    }
}

#[pymethods]
impl MetricsSnapshot {
    /// Counter totals by name.
    #[getter]
    fn counters(&self) -> BTreeMap<String, u64> {
        self.snapshot.counters.clone()
    }

    /// Gauge totals by name (summed over lanes).
    #[getter]
    fn gauges(&self) -> BTreeMap<String, f64> {
        self.snapshot.gauges.clone()
    }

    /// Histograms by name, merged over lanes.
    #[getter]
    fn histograms(&self, py: Python<'_>) -> PyResult<HashMap<String, Py<HistogramStats>>> {
        histograms(py, &self.snapshot.histograms)
    }

    /// Per-lane metrics by lane id (every lane of the queue, and any lane recorded by hand).
    #[getter]
    fn lanes(&self, py: Python<'_>) -> PyResult<HashMap<String, Py<LaneMetrics>>> {
        self.snapshot
            .lanes
            .iter()
            .map(|(id, lane)| Ok((id.clone(), Py::new(py, LaneMetrics { lane: lane.clone() })?)))
            .collect()
    }

    /// Per-group metrics by lane id, then group (with `Lane(..., group_metrics=N)`):
    /// `group.commands.started`, `.completed`, `.failed`, `.cancelled`,
    /// `group.throttled`, and the histogram `group.command.wait_ms`.
    #[getter]
    fn groups(
        &self,
        py: Python<'_>,
    ) -> PyResult<HashMap<String, HashMap<String, Py<LaneMetrics>>>> {
        self.snapshot
            .groups
            .iter()
            .map(|(lane, groups)| {
                let groups = groups
                    .groups
                    .iter()
                    .map(|(group, m)| {
                        Ok((
                            group.clone(),
                            Py::new(py, LaneMetrics { lane: as_lane(m) })?,
                        ))
                    })
                    .collect::<PyResult<_>>()?;
                Ok((lane.clone(), groups))
            })
            .collect()
    }

    /// Each lane's `other` bucket: its groups beyond the `group_metrics` bound, together.
    #[getter]
    fn other_groups(&self, py: Python<'_>) -> PyResult<HashMap<String, Py<LaneMetrics>>> {
        self.snapshot
            .groups
            .iter()
            .filter_map(|(lane, groups)| groups.other.as_ref().map(|m| (lane, m)))
            .map(|(lane, m)| Ok((lane.clone(), Py::new(py, LaneMetrics { lane: as_lane(m) })?)))
            .collect()
    }

    /// When it was taken, in milliseconds since the Unix epoch.
    #[getter]
    fn timestamp(&self) -> u64 {
        self.snapshot.timestamp
    }

    /// A counter total, 0 if absent.
    fn counter(&self, name: &str) -> u64 {
        self.snapshot.counter(name)
    }

    /// The snapshot in the Prometheus text format (0.0.4): `.` becomes `_`, counters end
    /// in `_total`, histograms are summaries, and lanes are a `lane` label.
    fn to_prometheus(&self) -> String {
        self.snapshot.to_prometheus()
    }

    fn __repr__(&self) -> String {
        format!(
            "MetricsSnapshot(counters={:?}, lanes={})",
            self.snapshot.counters,
            self.snapshot.lanes.len()
        )
    }
}
