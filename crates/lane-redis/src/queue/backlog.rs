//! A producer's backpressure: waiting until a lane's backlog is below a limit.

use lane_core::event::keys;
use lane_core::{LaneError, Result};

use super::RedisQueue;

impl RedisQueue {
    /// Waits until fewer than `limit` commands wait to start (pending and delayed) in
    /// `lane`, or in all lanes together for `None`; at once if that holds now (the same
    /// rule as `QueueManager::wait_waiting_below`). Woken by the queue's event stream
    /// (a start, cancel or expiry anywhere), so it needs the stream on
    /// ([`RedisQueueConfig::with_events`](crate::RedisQueueConfig::with_events)).
    pub async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()> {
        lane_core::check_waiting_limit(limit)?;
        // Subscribed before the first count, so no change after it goes unseen.
        let watched = lane.map(str::to_owned);
        let mut events = self.subscribe_filtered(move |event| match event.key.as_str() {
            keys::COMMAND_STARTED | keys::COMMAND_CANCELLED | keys::COMMAND_EXPIRED => {
                watched.is_none() || event.lane_id() == watched.as_deref()
            }
            keys::EVENTS_LAGGED => true,
            _ => false,
        });
        if !self.events_enabled().await? {
            return Err(LaneError::QueueError(
                "wait_waiting_below is woken by the queue's event stream, which is off for \
                 this queue; turn it on with RedisQueueConfig::with_events(true)"
                    .into(),
            ));
        }
        loop {
            let stats = self.stats().await?.queue;
            let waiting = match lane {
                Some(lane) => {
                    let Some(status) = stats.lanes.get(lane) else {
                        let known = stats.lanes.into_keys().collect();
                        return Err(super::control::lane_not_found(lane, known));
                    };
                    status.pending + status.delayed
                }
                None => stats.total_pending + stats.total_delayed,
            };
            if waiting < limit {
                return Ok(());
            }
            if events.recv().await.is_err() {
                return Err(LaneError::QueueError(
                    "the queue's event stream ended while waiting for its backlog to shrink".into(),
                ));
            }
        }
    }
}
