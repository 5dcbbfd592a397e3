//! Reading counts: the queue's and each lane's.

use tokio::time::Instant;

use super::CommandQueue;
use crate::error::Result;
use crate::stats::{LaneStatus, QueueStats};

impl CommandQueue {
    /// Counts for the whole queue and each lane.
    pub fn stats_now(&self) -> QueueStats {
        self.state.lock().stats(Instant::now())
    }

    /// Counts for the whole queue and each lane (async form of the 0.3 API).
    pub async fn stats(&self) -> QueueStats {
        self.stats_now()
    }

    /// One lane's status, or [`LaneError::LaneNotFound`](crate::LaneError::LaneNotFound).
    pub fn lane_status(&self, lane_id: &str) -> Result<LaneStatus> {
        let state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        Ok(state.lane(lane).status(Instant::now()))
    }

    /// The lane ids, in the order they were added.
    pub fn lane_ids(&self) -> Vec<String> {
        self.state
            .lock()
            .lanes
            .iter()
            .map(|l| l.id.to_string())
            .collect()
    }
}
