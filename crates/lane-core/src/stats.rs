//! Point-in-time statistics of a queue and its lanes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One lane's counts and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneStatus {
    /// The lane id.
    pub id: String,
    /// Its configured priority (lower runs first).
    pub priority: u8,
    /// Its priority now, after any deadline boost.
    pub effective_priority: u8,
    /// Commands waiting to start.
    pub pending: usize,
    /// Commands running.
    pub active: usize,
    /// Reserved slots under a global budget.
    pub min: usize,
    /// Most commands that run at once.
    pub max: usize,
    /// Whether the lane is paused.
    pub paused: bool,
    /// Whether its rate limit holds it back now.
    pub throttled: bool,
    /// Commands waiting for their start time or a retry delay.
    #[serde(default)]
    pub delayed: usize,
    /// Commands that expired unstarted (start-by deadline), since the queue was made.
    #[serde(default)]
    pub expired: u64,
    /// Submits refused because the lane was full, since the queue was made.
    #[serde(default)]
    pub rejected_full: u64,
    /// Its bound on waiting commands (pending and delayed), if any.
    #[serde(default)]
    pub max_waiting: Option<usize>,
    /// Runs answered (timed out, or cancelled after the grace period) whose handler went
    /// on running, since the queue was made; see
    /// [`Command::stops_when_dropped`](crate::Command::stops_when_dropped).
    #[serde(default)]
    pub abandoned: u64,
    /// Of those, the ones still running now; each keeps its slot (counted in `active`).
    #[serde(default)]
    pub abandoned_running: usize,
}

/// The whole queue's counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: usize,
    /// Commands running, over all lanes.
    pub total_active: usize,
    /// Commands waiting for their start time or a retry delay, over all lanes.
    pub total_delayed: usize,
    /// Per-lane status by lane id.
    pub lanes: HashMap<String, LaneStatus>,
}
