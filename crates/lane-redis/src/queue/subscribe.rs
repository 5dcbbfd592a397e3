//! Subscribing to a queue's events, read from its event stream in Redis.

use lane_core::{EventStream, LaneEvent};
use tokio::sync::oneshot;

use super::RedisQueue;

impl RedisQueue {
    /// Subscribes to the events of every command of the queue, whichever process
    /// submitted it and whichever worker runs it, from now on: the keys and payloads of
    /// the in-process queue ([`keys`](lane_core::event::keys): submitted, started,
    /// completed, retry, failed or timeout then dead_lettered, cancelled, expired,
    /// abandoned, progress). They come from the queue's event stream in Redis (see the
    /// crate docs), read by one task per `RedisQueue` that runs while the queue lives,
    /// from its first subscriber on (a submit waiting for room in a full lane starts it
    /// too). A subscriber that falls more
    /// than 1024 events behind receives a [`EVENTS_LAGGED`](lane_core::event::keys::EVENTS_LAGGED) event.
    pub fn subscribe(&self) -> EventStream {
        let stream = self.inner.events.subscribe();
        self.ensure_event_reader();
        stream
    }

    /// Subscribes to the events `filter` accepts; see [`RedisQueue::subscribe`].
    pub fn subscribe_filtered<F>(&self, filter: F) -> EventStream
    where
        F: Fn(&LaneEvent) -> bool + Send + Sync + 'static,
    {
        let stream = self.inner.events.subscribe_filtered(filter);
        self.ensure_event_reader();
        stream
    }

    fn ensure_event_reader(&self) {
        let mut reader = self.inner.event_reader.lock();
        if reader.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        *reader = Some(stop_tx);
        self.inner.runtime.spawn(crate::events::run_reader(
            self.inner.target.clone(),
            format!("{}:events", self.inner.prefix),
            crate::events::stream_id_now(
                self.inner.clock_offset_ms,
                self.inner.clock_uncertainty_ms,
            ),
            self.inner.events.clone(),
            stop_rx,
        ));
    }

    /// Turns the queue's event stream on or off for every process (see
    /// [`RedisQueueConfig::with_events`](crate::RedisQueueConfig::with_events)).
    pub(super) async fn set_events(&self, enabled: bool) -> lane_core::Result<()> {
        redis::cmd("HSET")
            .arg(format!("{}:meta", self.inner.prefix))
            .arg("events")
            .arg(if enabled { "1" } else { "0" })
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| crate::wire::redis_error(&e))
    }

    /// Whether the queue writes its event stream (the setting kept in Redis; on unless
    /// turned off).
    pub async fn events_enabled(&self) -> lane_core::Result<bool> {
        let setting: Option<String> = redis::cmd("HGET")
            .arg(format!("{}:meta", self.inner.prefix))
            .arg("events")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| crate::wire::redis_error(&e))?;
        Ok(setting.as_deref() != Some("0"))
    }
}
