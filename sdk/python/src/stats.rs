//! Read-only snapshots: queue statistics, groups and dead letters.

use std::collections::HashMap;

use a3s_lane::{
    DeadLetter as CoreDeadLetter, GroupStatus as CoreGroupStatus, LaneStatus as CoreLaneStatus,
    QueueStats as CoreStats,
};
use pyo3::prelude::*;

use crate::convert::to_py;

/// One lane's counts and settings at the time of `stats()`.
#[pyclass(frozen, module = "a3s_lane", name = "LaneStatus", get_all)]
pub(crate) struct LaneStatus {
    /// The lane id.
    id: String,
    /// Configured priority (0 runs first).
    priority: u8,
    /// Priority now, after any boost.
    effective_priority: u8,
    /// Commands waiting to start.
    pending: usize,
    /// Commands running.
    active: usize,
    /// Slots reserved under a global budget.
    min_concurrency: usize,
    /// Most commands running at once.
    max_concurrency: usize,
    /// Whether the lane is paused.
    paused: bool,
    /// Whether a rate limit holds it back now.
    throttled: bool,
    /// Commands waiting for their start time (`delay=`, `run_at=`) or a retry delay.
    delayed: usize,
    /// Commands that were not started by their start-by deadline, since the lane was made.
    expired: u64,
    /// Submits refused because the lane was full, since the lane was made.
    rejected_full: u64,
    /// Its bound on waiting commands (pending and delayed), or None.
    max_waiting: Option<usize>,
    /// Runs answered (timed out, or cancelled after the grace period) whose handler went
    /// on running, since the lane was made.
    abandoned: u64,
    /// Of those, the ones still running: each keeps its slot (counted in `active`).
    abandoned_running: usize,
}

impl From<CoreLaneStatus> for LaneStatus {
    fn from(status: CoreLaneStatus) -> Self {
        Self {
            id: status.id,
            priority: status.priority,
            effective_priority: status.effective_priority,
            pending: status.pending,
            active: status.active,
            min_concurrency: status.min,
            max_concurrency: status.max,
            paused: status.paused,
            throttled: status.throttled,
            delayed: status.delayed,
            expired: status.expired,
            rejected_full: status.rejected_full,
            max_waiting: status.max_waiting,
            abandoned: status.abandoned,
            abandoned_running: status.abandoned_running,
        }
    }
}

#[pymethods]
impl LaneStatus {
    fn __repr__(&self) -> String {
        format!(
            "LaneStatus(id={:?}, priority={}, pending={}, delayed={}, active={}, max_concurrency={}, paused={})",
            self.id,
            self.priority,
            self.pending,
            self.delayed,
            self.active,
            self.max_concurrency,
            if self.paused { "True" } else { "False" }
        )
    }
}

/// One group of a lane at the time of `group_status()` or `groups()`.
#[pyclass(frozen, eq, module = "a3s_lane", name = "GroupStatus", get_all)]
#[derive(PartialEq, Eq)]
pub(crate) struct GroupStatus {
    /// The lane.
    lane: String,
    /// The group key.
    group: String,
    /// Its commands waiting for their turn.
    pending: usize,
    /// Its commands running.
    active: usize,
    /// Whether it is paused (`pause_group`).
    paused: bool,
    /// Whether its rate limit holds it back now.
    throttled: bool,
    /// Its concurrency cap, or None (the lane's cap only).
    max_concurrency: Option<usize>,
}

impl From<CoreGroupStatus> for GroupStatus {
    fn from(status: CoreGroupStatus) -> Self {
        Self {
            lane: status.lane,
            group: status.group,
            pending: status.pending,
            active: status.active,
            paused: status.paused,
            throttled: status.throttled,
            max_concurrency: status.max_concurrency,
        }
    }
}

#[pymethods]
impl GroupStatus {
    fn __repr__(&self) -> String {
        let flag = |b: bool| if b { "True" } else { "False" };
        format!(
            "GroupStatus(lane={:?}, group={:?}, pending={}, active={}, paused={}, throttled={}, max_concurrency={})",
            self.lane,
            self.group,
            self.pending,
            self.active,
            flag(self.paused),
            flag(self.throttled),
            self.max_concurrency
                .map_or_else(|| "None".to_owned(), |max| max.to_string())
        )
    }
}

/// The queue's counts at the time of `stats()` (a `RedisQueue`'s are a
/// `RedisQueueStats`, which adds its workers and lifetime counters).
#[pyclass(subclass, frozen, module = "a3s_lane", name = "QueueStats")]
pub(crate) struct QueueStats {
    pub(crate) total_pending: usize,
    pub(crate) total_active: usize,
    pub(crate) total_delayed: usize,
    lanes: HashMap<String, Py<LaneStatus>>,
}

impl QueueStats {
    pub(crate) fn new(py: Python<'_>, stats: CoreStats) -> PyResult<Self> {
        let mut lanes = HashMap::with_capacity(stats.lanes.len());
        for (id, status) in stats.lanes {
            lanes.insert(id, Py::new(py, LaneStatus::from(status))?);
        }
        Ok(Self {
            total_pending: stats.total_pending,
            total_active: stats.total_active,
            total_delayed: stats.total_delayed,
            lanes,
        })
    }

    /// How many lanes it counts.
    pub(crate) fn lane_count(&self) -> usize {
        self.lanes.len()
    }
}

#[pymethods]
impl QueueStats {
    /// Commands waiting to start, over all lanes.
    #[getter]
    fn total_pending(&self) -> usize {
        self.total_pending
    }

    /// Commands running, over all lanes.
    #[getter]
    fn total_active(&self) -> usize {
        self.total_active
    }

    /// Commands waiting for their start time or a retry delay, over all lanes.
    #[getter]
    fn total_delayed(&self) -> usize {
        self.total_delayed
    }

    /// Each lane's status, by lane id.
    #[getter]
    fn lanes(&self, py: Python<'_>) -> HashMap<String, Py<LaneStatus>> {
        self.lanes
            .iter()
            .map(|(id, status)| (id.clone(), status.clone_ref(py)))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "QueueStats(total_pending={}, total_active={}, total_delayed={}, lanes={})",
            self.total_pending,
            self.total_active,
            self.total_delayed,
            self.lanes.len()
        )
    }
}

/// A command that failed for good, kept for inspection and `redrive()`.
#[pyclass(frozen, module = "a3s_lane", name = "DeadLetter")]
pub(crate) struct DeadLetter {
    letter: CoreDeadLetter,
}

impl From<CoreDeadLetter> for DeadLetter {
    fn from(letter: CoreDeadLetter) -> Self {
        Self { letter }
    }
}

#[pymethods]
impl DeadLetter {
    /// The command's id (pass it to `redrive`).
    #[getter]
    fn command_id(&self) -> u64 {
        self.letter.command_id
    }

    /// The command type.
    #[getter]
    fn command_type(&self) -> &str {
        &self.letter.command_type
    }

    /// The lane it ran in.
    #[getter]
    fn lane_id(&self) -> &str {
        &self.letter.lane_id
    }

    /// The last error, as text.
    #[getter]
    fn error(&self) -> &str {
        &self.letter.error
    }

    /// How many times it ran.
    #[getter]
    fn attempts(&self) -> u32 {
        self.letter.attempts
    }

    /// When it failed for good, in milliseconds since the Unix epoch.
    #[getter]
    fn failed_at(&self) -> u64 {
        self.letter.failed_at
    }

    /// Its JSON payload.
    #[getter]
    fn payload(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.letter.payload {
            Some(payload) => Ok(to_py(py, payload)?.unbind()),
            None => Ok(py.None()),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "DeadLetter(command_id={}, command_type={:?}, lane_id={:?}, attempts={}, error={:?})",
            self.letter.command_id,
            self.letter.command_type,
            self.letter.lane_id,
            self.letter.attempts,
            self.letter.error
        )
    }
}
