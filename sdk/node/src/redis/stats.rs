//! What a `RedisQueue`'s `stats()` reports: a [`QueueStats`]
//! over all its producers and workers, plus its workers and lifetime counters.

use std::collections::HashMap;

use a3s_lane::RedisQueueStats as CoreStats;
use napi_derive::napi;

use crate::stats::{LaneStatus, QueueStats, count};

/// Counts of a Redis queue, over all its producers and workers: the `QueueStats` of a
/// `Lane`, with the queue's workers and lifetime counters.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisQueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: u32,
    /// Commands running on workers, over all lanes.
    pub total_active: u32,
    /// Commands waiting for their start time (`delayMs`, `runAt`) or a retry delay,
    /// over all lanes.
    pub total_delayed: u32,
    /// Each lane's status by lane id.
    pub lanes: HashMap<String, LaneStatus>,
    /// Workers registered with the queue.
    pub workers: u32,
    /// Workers waiting for work.
    pub idle_workers: u32,
    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a dead worker), `released`, `stale` (results refused
    /// because the run's lease was taken over), `workers_lost`.
    pub counters: HashMap<String, f64>,
}

/// Deprecated: a `RedisQueue`'s lanes report a `LaneStatus`, as a `Lane`'s do.
#[napi]
pub type RedisLaneStatus = LaneStatus;

impl From<CoreStats> for RedisQueueStats {
    fn from(stats: CoreStats) -> Self {
        let QueueStats {
            total_pending,
            total_active,
            total_delayed,
            lanes,
        } = stats.queue.into();
        Self {
            total_pending,
            total_active,
            total_delayed,
            lanes,
            workers: count(stats.workers),
            idle_workers: count(stats.idle_workers),
            counters: stats
                .counters
                .into_iter()
                .map(|(name, n)| (name, n as f64))
                .collect(),
        }
    }
}
