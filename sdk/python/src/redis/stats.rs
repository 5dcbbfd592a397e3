//! `RedisQueueStats`: what `RedisQueue.stats()` returns.

use std::collections::HashMap;

use a3s_lane::RedisQueueStats as CoreStats;
use pyo3::prelude::*;

use crate::stats::QueueStats;

/// Counts of a Redis queue at the time of `RedisQueue.stats()`: a `QueueStats` (each
/// lane's `min_concurrency` is 0: Redis lanes reserve none), plus the registered workers
/// and lifetime counters.
#[pyclass(frozen, extends = QueueStats, module = "a3s_lane", name = "RedisQueueStats")]
pub(crate) struct RedisQueueStats {
    workers: usize,
    idle_workers: usize,
    counters: HashMap<String, u64>,
}

impl RedisQueueStats {
    pub(crate) fn new(py: Python<'_>, stats: CoreStats) -> PyResult<PyClassInitializer<Self>> {
        Ok(
            PyClassInitializer::from(QueueStats::new(py, stats.queue)?).add_subclass(Self {
                workers: stats.workers,
                idle_workers: stats.idle_workers,
                counters: stats.counters,
            }),
        )
    }
}

#[pymethods]
impl RedisQueueStats {
    /// Registered workers.
    #[getter]
    fn workers(&self) -> usize {
        self.workers
    }

    /// Workers waiting for work.
    #[getter]
    fn idle_workers(&self) -> usize {
        self.idle_workers
    }

    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a lost worker), `released`, `stale` (results refused
    /// by fencing), `workers_lost`.
    #[getter]
    fn counters(&self) -> HashMap<String, u64> {
        self.counters.clone()
    }

    /// A lifetime counter, 0 if it never moved.
    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        let queue = slf.as_super().get();
        format!(
            "RedisQueueStats(total_pending={}, total_active={}, total_delayed={}, workers={}, lanes={})",
            queue.total_pending,
            queue.total_active,
            queue.total_delayed,
            this.workers,
            queue.lane_count()
        )
    }
}
