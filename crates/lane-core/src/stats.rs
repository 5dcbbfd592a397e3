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
}

/// The whole queue's counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: usize,
    /// Commands running, over all lanes.
    pub total_active: usize,
    /// Failed commands waiting for their retry delay.
    pub total_delayed: usize,
    /// Per-lane status by lane id.
    pub lanes: HashMap<String, LaneStatus>,
}
