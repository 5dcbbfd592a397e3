//! Lifecycle events: [`EventEmitter`], [`LaneEvent`] and the [`EventStream`] subscribers read.
//!
//! The emitter allocates its ring buffer only when the first subscriber arrives, and the
//! queue builds no event at all while nobody listens. A subscriber that falls more than the
//! emitter's capacity behind is never waited for: it receives one
//! [`keys::EVENTS_LAGGED`] event carrying the number of events it missed.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

/// The event capacity used where none is given (the SDKs, the Redis engine): how far a
/// subscriber may fall behind before it misses events and gets a `queue.events.lagged`.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// The event keys the queue emits.
pub mod keys {
    /// `submit()` accepted a command. Payload: `lane_id`, `command_id`, `command_type`.
    pub const COMMAND_SUBMITTED: &str = "queue.command.submitted";
    /// The scheduler started a command. Payload: `lane_id`, `command_id`, `command_type`, `attempt`.
    pub const COMMAND_STARTED: &str = "queue.command.started";
    /// A command returned `Ok`. Payload: `lane_id`, `command_id`, `duration_ms`.
    pub const COMMAND_COMPLETED: &str = "queue.command.completed";
    /// A command failed and will run again. Payload: `lane_id`, `command_id`, `attempt` (the number
    /// of the attempt that will run next), `delay_ms`, `error`.
    pub const COMMAND_RETRY: &str = "queue.command.retry";
    /// A command was moved to the dead letters. Payload: `lane_id`, `command_id`, `command_type`, `error`.
    pub const COMMAND_DEAD_LETTERED: &str = "queue.command.dead_lettered";
    /// A command failed for good (not a timeout). Payload: `lane_id`, `command_id`, `error`.
    pub const COMMAND_FAILED: &str = "queue.command.failed";
    /// A command timed out for good. Payload: `lane_id`, `command_id`, `error`.
    pub const COMMAND_TIMEOUT: &str = "queue.command.timeout";
    /// A command was cancelled. Payload: `lane_id`, `command_id`, `was_running`, `reason`.
    pub const COMMAND_CANCELLED: &str = "queue.command.cancelled";
    /// A running command reported progress. Payload: `lane_id`, `command_id`, `progress`.
    pub const COMMAND_PROGRESS: &str = "queue.command.progress";
    /// A command was answered (timed out, or cancelled after the grace period) but its
    /// handler ignores that and is still running; its lane slot stays taken until it
    /// returns. Payload: `lane_id`, `command_id`, `reason`.
    pub const COMMAND_ABANDONED: &str = "queue.command.abandoned";
    /// A command's start-by deadline passed before it started; it never runs. Payload:
    /// `lane_id`, `command_id`, `command_type`, `start_by_ms`.
    pub const COMMAND_EXPIRED: &str = "queue.command.expired";
    /// A submit carried an idempotency key that a waiting or running command holds: it
    /// queued nothing and returned that command. Payload: `lane_id`, `command_id` (the
    /// existing command's), `command_type`, `key`.
    pub const COMMAND_DEDUPLICATED: &str = "queue.command.deduplicated";
    /// A recurring schedule fired an instant. Payload: `schedule`, `lane_id`,
    /// `command_id`, `instant_ms`.
    pub const SCHEDULE_FIRED: &str = "queue.schedule.fired";
    /// A recurring schedule skipped instants (missed while down or paused, or its lane
    /// refused the command). Payload: `schedule`, `from_ms`, `until_ms` (the instants
    /// skipped, inclusive), `reason`.
    pub const SCHEDULE_SKIPPED: &str = "queue.schedule.skipped";
    /// `shutdown()` was called. Empty payload.
    pub const SHUTDOWN_STARTED: &str = "queue.shutdown.started";
    /// The queue has no pending, delayed or running command left after `shutdown()`. Empty payload.
    pub const SHUTDOWN_COMPLETE: &str = "queue.shutdown.complete";
    /// A lane's pending count reached its pressure threshold. Payload: `lane_id`, `pending`.
    pub const LANE_PRESSURE: &str = "queue.lane.pressure";
    /// A pressured lane's pending count fell back to zero. Payload: `lane_id`.
    pub const LANE_IDLE: &str = "queue.lane.idle";
    /// A rate limit held back the next start of a lane with work waiting, once per
    /// wait. Payload: `lane_id`, `group` (the group held back, or null), `limit`
    /// (`"lane"`, `"group"` or `"budget"`: whose rate limit), `until_ms` (when it may
    /// start again, in milliseconds since the Unix epoch).
    pub const LANE_THROTTLED: &str = "queue.lane.throttled";
    /// The journal failed to write to storage. Payload: `error`.
    pub const STORAGE_FAILED: &str = "queue.storage.failed";
    /// This subscriber fell behind and missed events. Payload: `missed`.
    pub const EVENTS_LAGGED: &str = "queue.events.lagged";

    /// Every key above, in this order (the SDKs check the keys a subscriber asks for
    /// against it).
    pub const ALL: [&str; 21] = [
        COMMAND_SUBMITTED,
        COMMAND_STARTED,
        COMMAND_COMPLETED,
        COMMAND_RETRY,
        COMMAND_DEAD_LETTERED,
        COMMAND_FAILED,
        COMMAND_TIMEOUT,
        COMMAND_CANCELLED,
        COMMAND_PROGRESS,
        COMMAND_ABANDONED,
        COMMAND_EXPIRED,
        COMMAND_DEDUPLICATED,
        SCHEDULE_FIRED,
        SCHEDULE_SKIPPED,
        SHUTDOWN_STARTED,
        SHUTDOWN_COMPLETE,
        LANE_PRESSURE,
        LANE_IDLE,
        LANE_THROTTLED,
        STORAGE_FAILED,
        EVENTS_LAGGED,
    ];
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneEvent {
    /// What happened, one of [`keys`].
    pub key: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Details; the fields each key carries are listed in [`keys`].
    pub payload: Value,
}

impl LaneEvent {
    /// Builds an event stamped with the current time.
    pub fn new(key: impl Into<String>, payload: Value) -> Self {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            key: key.into(),
            timestamp,
            payload,
        }
    }

    /// The `lane_id` field of the payload, if present.
    pub fn lane_id(&self) -> Option<&str> {
        self.payload.get("lane_id").and_then(Value::as_str)
    }

    /// The `command_id` field of the payload, if present.
    pub fn command_id(&self) -> Option<u64> {
        self.payload.get("command_id").and_then(Value::as_u64)
    }
}

impl fmt::Display for LaneEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} {}", self.timestamp, self.key, self.payload)
    }
}

/// Publishes [`LaneEvent`]s to any number of subscribers. Cheap to clone.
#[derive(Clone)]
pub struct EventEmitter {
    inner: Arc<EmitterInner>,
}

struct EmitterInner {
    capacity: usize,
    sender: OnceLock<broadcast::Sender<Arc<LaneEvent>>>,
}

impl fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventEmitter")
            .field("capacity", &self.inner.capacity)
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

impl EventEmitter {
    /// Creates an emitter whose subscribers may fall up to `capacity` events behind
    /// before they start missing events. A capacity of 0 is treated as 1, and subscribers
    /// of a capacity above [`MAX_EVENT_CAPACITY`](crate::MAX_EVENT_CAPACITY) get that
    /// maximum (a queue builder refuses such an emitter; [`EventEmitter::try_new`] refuses
    /// it at once).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(EmitterInner {
                capacity: capacity.max(1),
                sender: OnceLock::new(),
            }),
        }
    }

    /// Creates an emitter as [`EventEmitter::new`] does, refusing a capacity of 0 or
    /// above [`MAX_EVENT_CAPACITY`](crate::MAX_EVENT_CAPACITY) with a
    /// [`LaneError::ConfigError`](crate::LaneError::ConfigError) instead of adjusting it.
    ///
    /// ```
    /// use a3s_lane::EventEmitter;
    ///
    /// assert!(EventEmitter::try_new(1024).is_ok());
    /// assert!(EventEmitter::try_new(0).is_err());
    /// assert!(EventEmitter::try_new(usize::MAX).is_err());
    /// ```
    pub fn try_new(capacity: usize) -> crate::Result<Self> {
        if capacity == 0 || capacity > crate::config::MAX_EVENT_CAPACITY {
            return Err(crate::LaneError::ConfigError(format!(
                "event_capacity must be from 1 to {} (how many events a subscriber may fall \
                 behind), got {capacity}",
                crate::config::MAX_EVENT_CAPACITY
            )));
        }
        Ok(Self::new(capacity))
    }

    /// The capacity subscribers get.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    fn sender(&self) -> &broadcast::Sender<Arc<LaneEvent>> {
        self.inner.sender.get_or_init(|| {
            // The channel panics on a capacity above usize::MAX / 2.
            broadcast::channel(self.inner.capacity.min(crate::config::MAX_EVENT_CAPACITY)).0
        })
    }

    /// How many subscribers are listening now.
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .sender
            .get()
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Whether anyone listens; the queue builds no event while this is false.
    pub fn has_subscribers(&self) -> bool {
        self.subscriber_count() > 0
    }

    /// Publishes an event; with no subscriber it is dropped at once. Never blocks.
    pub fn emit(&self, event: LaneEvent) {
        if let Some(sender) = self.inner.sender.get() {
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Builds and publishes an event only if someone listens.
    pub fn emit_with(&self, key: &str, payload: impl FnOnce() -> Value) {
        if self.has_subscribers() {
            self.emit(LaneEvent::new(key, payload()));
        }
    }

    /// Subscribes to every event emitted from now on.
    pub fn subscribe(&self) -> EventStream {
        EventStream::new(self.sender().subscribe(), None)
    }

    /// Subscribes to the events for which `filter` returns true (lag notices always pass).
    pub fn subscribe_filtered<F>(&self, filter: F) -> EventStream
    where
        F: Fn(&LaneEvent) -> bool + Send + Sync + 'static,
    {
        EventStream::new(self.sender().subscribe(), Some(Arc::new(filter)))
    }
}

type EventFilter = Arc<dyn Fn(&LaneEvent) -> bool + Send + Sync>;
type RecvFuture =
    Pin<Box<dyn Future<Output = (RecvOutcome, broadcast::Receiver<Arc<LaneEvent>>)> + Send>>;

enum RecvOutcome {
    Event(Arc<LaneEvent>),
    Lagged(u64),
    Closed,
}

/// The error [`EventStream::recv`] returns once the emitter is gone and every event was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event emitter closed")]
pub struct EventStreamClosed;

/// A subscription: read it with [`EventStream::recv`] or as a [`futures_core::Stream`].
pub struct EventStream {
    receiver: Option<broadcast::Receiver<Arc<LaneEvent>>>,
    pending: Option<RecvFuture>,
    filter: Option<EventFilter>,
    missed: u64,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("filtered", &self.filter.is_some())
            .field("missed", &self.missed)
            .finish()
    }
}

impl EventStream {
    fn new(receiver: broadcast::Receiver<Arc<LaneEvent>>, filter: Option<EventFilter>) -> Self {
        Self {
            receiver: Some(receiver),
            pending: None,
            filter,
            missed: 0,
        }
    }

    /// Total number of events this subscriber missed by falling behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Waits for the next event. A subscriber that fell behind first receives a
    /// [`keys::EVENTS_LAGGED`] event with the number it missed.
    pub async fn recv(&mut self) -> Result<LaneEvent, EventStreamClosed> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .ok_or(EventStreamClosed)
    }

    fn accept(&mut self, outcome: RecvOutcome) -> Option<Option<LaneEvent>> {
        match outcome {
            RecvOutcome::Event(event) => {
                if self.filter.as_ref().is_some_and(|f| !f(&event)) {
                    return None;
                }
                Some(Some(Arc::unwrap_or_clone(event)))
            }
            RecvOutcome::Lagged(missed) => {
                self.missed += missed;
                Some(Some(LaneEvent::new(
                    keys::EVENTS_LAGGED,
                    serde_json::json!({ "missed": missed }),
                )))
            }
            RecvOutcome::Closed => Some(None),
        }
    }
}

impl Stream for EventStream {
    type Item = LaneEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LaneEvent>> {
        loop {
            // Fast path: take what is already buffered without allocating a future.
            if let Some(receiver) = self.receiver.as_mut() {
                let outcome = match receiver.try_recv() {
                    Ok(event) => Some(RecvOutcome::Event(event)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Some(RecvOutcome::Lagged(n)),
                    Err(broadcast::error::TryRecvError::Closed) => Some(RecvOutcome::Closed),
                    Err(broadcast::error::TryRecvError::Empty) => None,
                };
                match outcome {
                    Some(outcome) => match self.accept(outcome) {
                        Some(item) => return Poll::Ready(item),
                        None => continue,
                    },
                    None => {
                        let mut receiver = self.receiver.take().expect("checked above");
                        self.pending = Some(Box::pin(async move {
                            let outcome = match receiver.recv().await {
                                Ok(event) => RecvOutcome::Event(event),
                                Err(broadcast::error::RecvError::Lagged(n)) => {
                                    RecvOutcome::Lagged(n)
                                }
                                Err(broadcast::error::RecvError::Closed) => RecvOutcome::Closed,
                            };
                            (outcome, receiver)
                        }));
                    }
                }
            }
            let Some(pending) = self.pending.as_mut() else {
                return Poll::Ready(None);
            };
            let (outcome, receiver) = std::task::ready!(pending.as_mut().poll(cx));
            self.pending = None;
            self.receiver = Some(receiver);
            if let Some(item) = self.accept(outcome) {
                return Poll::Ready(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::keys;

    #[test]
    fn all_lists_every_key_once() {
        let distinct: std::collections::HashSet<&str> = keys::ALL.iter().copied().collect();
        assert_eq!(distinct.len(), keys::ALL.len());
        assert!(keys::ALL.iter().all(|key| key.starts_with("queue.")));
        assert!(keys::ALL.contains(&keys::EVENTS_LAGGED));
    }
}
