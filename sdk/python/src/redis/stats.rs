//! `RedisQueueStats`: what `RedisQueue.stats()` returns.

use std::collections::HashMap;

use a3s_lane::RedisQueueStats as CoreStats;
use pyo3::prelude::*;

use crate::stats::LaneStatus;

/// Counts of a Redis queue at the time of `RedisQueue.stats()`.
#[pyclass(frozen, module = "a3s_lane", name = "RedisQueueStats")]
pub(crate) struct RedisQueueStats {
    stats: CoreStats,
    lanes: HashMap<String, Py<LaneStatus>>,
}

impl RedisQueueStats {
    pub(crate) fn new(py: Python<'_>, mut stats: CoreStats) -> PyResult<Self> {
        let mut lanes = HashMap::with_capacity(stats.queue.lanes.len());
        for (id, status) in std::mem::take(&mut stats.queue.lanes) {
            lanes.insert(id, Py::new(py, LaneStatus::from(status))?);
        }
        Ok(Self { stats, lanes })
    }
}

#[pymethods]
impl RedisQueueStats {
    /// Commands waiting in their lanes, over all lanes.
    #[getter]
    fn total_pending(&self) -> usize {
        self.stats.queue.total_pending
    }

    /// Commands running on workers, over all lanes.
    #[getter]
    fn total_active(&self) -> usize {
        self.stats.queue.total_active
    }

    /// Failed commands waiting for their retry delay.
    #[getter]
    fn total_delayed(&self) -> usize {
        self.stats.queue.total_delayed
    }

    /// Each lane's status, by lane id (`min_concurrency` is 0: Redis lanes reserve none).
    #[getter]
    fn lanes(&self, py: Python<'_>) -> HashMap<String, Py<LaneStatus>> {
        self.lanes
            .iter()
            .map(|(id, status)| (id.clone(), status.clone_ref(py)))
            .collect()
    }

    /// Registered workers.
    #[getter]
    fn workers(&self) -> usize {
        self.stats.workers
    }

    /// Workers waiting for work.
    #[getter]
    fn idle_workers(&self) -> usize {
        self.stats.idle_workers
    }

    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a lost worker), `released`, `stale` (results refused
    /// by fencing), `workers_lost`.
    #[getter]
    fn counters(&self) -> HashMap<String, u64> {
        self.stats.counters.clone()
    }

    /// A lifetime counter, 0 if it never moved.
    fn counter(&self, name: &str) -> u64 {
        self.stats.counter(name)
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisQueueStats(total_pending={}, total_active={}, total_delayed={}, workers={}, lanes={})",
            self.stats.queue.total_pending,
            self.stats.queue.total_active,
            self.stats.queue.total_delayed,
            self.stats.workers,
            self.lanes.len()
        )
    }
}
