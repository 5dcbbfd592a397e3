//! The [`Observer`] hook: metrics, alerts and tracing watch the queue through it.

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::command::CommandId;
use crate::error::LaneError;
use crate::queue::CommandQueue;
use crate::stats::QueueStats;

/// Identifies the command an observer callback is about.
#[derive(Debug, Clone, Copy)]
pub struct CommandInfo<'a> {
    /// The command's id.
    pub id: CommandId,
    /// Its lane.
    pub lane: &'a str,
    /// Its [`Command::command_type`](crate::Command::command_type).
    pub command_type: &'a str,
    /// The attempt (1 for the first run).
    pub attempt: u32,
    /// The group it was submitted in, if any.
    pub group: Option<&'a str>,
}

/// How a command's run ended, as seen by [`Observer::on_finish`].
#[derive(Debug, Clone, Copy)]
pub enum RunOutcome<'a> {
    /// It returned `Ok`.
    Completed,
    /// It failed; `retrying` tells whether it will run again.
    Failed {
        /// The error.
        error: &'a LaneError,
        /// Whether the retry policy schedules another attempt.
        retrying: bool,
    },
    /// It ran past its lane's timeout; `retrying` tells whether it will run again.
    TimedOut {
        /// Whether the retry policy schedules another attempt.
        retrying: bool,
    },
    /// It was cancelled while running.
    Cancelled,
}

/// Watches the queue. Every method has a no-op default; implement what you need.
///
/// Callbacks run on the queue's tasks right after the state change, never under a queue
/// lock; keep them short and non-blocking.
///
/// ```
/// use a3s_lane::{CommandInfo, Observer};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[derive(Debug, Default)]
/// struct CountSubmits(AtomicU64);
///
/// impl Observer for CountSubmits {
///     fn on_submit(&self, _command: &CommandInfo<'_>) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// ```
pub trait Observer: Any + Send + Sync + std::fmt::Debug {
    /// A command was accepted into its lane.
    fn on_submit(&self, _command: &CommandInfo<'_>) {}
    /// A command started; `waited` is the time since it was queued (or re-queued for a retry).
    fn on_start(&self, _command: &CommandInfo<'_>, _waited: Duration) {}
    /// A run ended after `elapsed`.
    fn on_finish(&self, _command: &CommandInfo<'_>, _outcome: RunOutcome<'_>, _elapsed: Duration) {}
    /// A failed command was scheduled to run again after `delay`.
    fn on_retry(&self, _command: &CommandInfo<'_>, _delay: Duration) {}
    /// A command was cancelled before it started running (pending or waiting for a retry).
    fn on_cancel_pending(&self, _command: &CommandInfo<'_>) {}
    /// A command was accepted with a delayed start (after [`Observer::on_submit`]): it
    /// waits `delay` before it joins its lane.
    fn on_delay(&self, _command: &CommandInfo<'_>, _delay: Duration) {}
    /// A delayed command's start time came: it joined the back of its lane.
    fn on_promote(&self, _command: &CommandInfo<'_>) {}
    /// A submit carried the idempotency key of this live command: it queued nothing and
    /// returned this command.
    fn on_deduplicate(&self, _command: &CommandInfo<'_>) {}
    /// A command had not started by its start-by deadline: it ended unrun.
    fn on_expire(&self, _command: &CommandInfo<'_>) {}
    /// A submit was refused because the lane held its `max_waiting` commands (with
    /// `WhenFull::Wait`, once its wait for room ended without room).
    fn on_reject_full(&self, _lane: &str) {}

    /// A rate limit (the lane's, one of its groups' or its shared budget's) held back the
    /// lane's next start for `wait`; once per wait.
    fn on_throttle(&self, _lane: &str, _group: Option<&str>, _wait: Duration) {}
    /// A recurring schedule fired an instant into `lane`.
    fn on_schedule_fire(&self, _schedule: &str, _lane: &str) {}
    /// A recurring schedule of `lane` skipped instants (missed, paused, or refused by
    /// its lane).
    fn on_schedule_skip(&self, _schedule: &str, _lane: &str) {}
    /// A command failed for good and was recorded as a dead letter.
    fn on_dead_letter(&self, _command: &CommandInfo<'_>) {}
    /// A lane's pending or active count changed. Called only when
    /// [`Observer::wants_lane_depth`] says so. Reports made on different threads may
    /// arrive out of order: for the exact depth now, read the [`QueueProbe`].
    fn on_lane_depth(&self, _lane: &str, _pending: usize, _active: usize) {}
    /// Whether the queue should call [`Observer::on_lane_depth`] after every change
    /// (asked once, when the queue is built). Observers that only need depth now and then
    /// (gauges read at export time) say no and read the [`QueueProbe`] instead, which
    /// costs the queue nothing per command.
    fn wants_lane_depth(&self) -> bool {
        true
    }
    /// Called once when the queue is built, with a probe of it.
    fn attach(&self, _queue: QueueProbe) {}
}

/// Reads a queue's current state, for observers that pull (gauges read when a snapshot
/// is taken or exported). It does not keep the queue alive.
#[derive(Clone)]
pub struct QueueProbe {
    queue: Weak<CommandQueue>,
}

impl QueueProbe {
    pub(crate) fn new(queue: &Arc<CommandQueue>) -> Self {
        Self {
            queue: Arc::downgrade(queue),
        }
    }

    /// The queue's counts now, or `None` once the queue was dropped.
    pub fn stats(&self) -> Option<QueueStats> {
        self.queue.upgrade().map(|queue| queue.stats_now())
    }

    /// Whether the queue still exists.
    pub fn is_alive(&self) -> bool {
        self.queue.strong_count() > 0
    }

    /// Whether both probes read the same queue.
    pub fn same_queue(&self, other: &QueueProbe) -> bool {
        Weak::ptr_eq(&self.queue, &other.queue)
    }
}

impl std::fmt::Debug for QueueProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProbe")
            .field("alive", &(self.queue.strong_count() > 0))
            .finish()
    }
}

fn _observer_is_dyn_compatible(_: Box<dyn Observer>) {}

/// Converts something that observes the queue into a shared observer; implemented for
/// every `Observer` and every `Arc<impl Observer>`.
pub trait IntoObserver {
    /// Performs the conversion.
    fn into_observer(self) -> Arc<dyn Observer>;
}

impl<T: Observer> IntoObserver for T {
    fn into_observer(self) -> Arc<dyn Observer> {
        Arc::new(self)
    }
}

impl<T: Observer> IntoObserver for Arc<T> {
    fn into_observer(self) -> Arc<dyn Observer> {
        self
    }
}
