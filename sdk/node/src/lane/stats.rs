//! What a `Lane` reports: [`QueueStats`] with each lane's [`LaneStatus`], and its
//! [`DeadLetter`]s, converted from the core's.

use std::collections::HashMap;

use a3s_lane::{DeadLetter as CoreLetter, LaneStatus as CoreStatus, QueueStats as CoreStats};
use napi_derive::napi;
use serde_json::Value;

/// Counts for the whole queue and each lane.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct QueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: u32,
    /// Commands running, over all lanes.
    pub total_active: u32,
    /// Failed commands waiting for their retry delay.
    pub total_delayed: u32,
    /// Each lane's status by lane id.
    pub lanes: HashMap<String, LaneStatus>,
}

/// One lane's counts and settings.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct LaneStatus {
    /// The lane id.
    pub id: String,
    /// Its priority (lower runs first).
    pub priority: u32,
    /// Commands waiting to start.
    pub pending: u32,
    /// Commands running.
    pub active: u32,
    /// Slots reserved for it under a global `maxConcurrency`.
    pub min_concurrency: u32,
    /// Most of its commands that run at once.
    pub max_concurrency: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Its priority now: `priority` lowered by its `priorityBoost` as its oldest pending
    /// command waits (equal to `priority` without a boost or pending commands).
    pub effective_priority: u32,
    /// Whether its `rateLimit` holds it back now (it starts again when a permit is due).
    pub throttled: bool,
}

/// A command that failed for good.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The command's id (pass it to `redrive`).
    pub command_id: f64,
    /// Its type.
    pub command_type: String,
    /// The lane it ran in.
    pub lane_id: String,
    /// Its last error (for a handler's error: the error's stack).
    pub error: String,
    /// How many times it ran.
    pub attempts: u32,
    /// When it failed for good, in milliseconds since the Unix epoch.
    pub failed_at: f64,
    /// Its payload.
    #[napi(ts_type = "unknown")]
    pub payload: Value,
}

/// A count for JavaScript (saturating: no count of a queue comes near 2^32).
pub fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<CoreStats> for QueueStats {
    fn from(stats: CoreStats) -> Self {
        Self {
            total_pending: count(stats.total_pending),
            total_active: count(stats.total_active),
            total_delayed: count(stats.total_delayed),
            lanes: stats
                .lanes
                .into_iter()
                .map(|(id, lane)| (id, lane.into()))
                .collect(),
        }
    }
}

impl From<CoreStatus> for LaneStatus {
    fn from(lane: CoreStatus) -> Self {
        Self {
            id: lane.id,
            priority: lane.priority.into(),
            pending: count(lane.pending),
            active: count(lane.active),
            min_concurrency: count(lane.min),
            max_concurrency: count(lane.max),
            paused: lane.paused,
            effective_priority: lane.effective_priority.into(),
            throttled: lane.throttled,
        }
    }
}

impl From<CoreLetter> for DeadLetter {
    fn from(letter: CoreLetter) -> Self {
        Self {
            command_id: letter.command_id as f64,
            command_type: letter.command_type,
            lane_id: letter.lane_id,
            error: letter.error,
            attempts: letter.attempts,
            failed_at: letter.failed_at as f64,
            payload: letter.payload.unwrap_or(Value::Null),
        }
    }
}
