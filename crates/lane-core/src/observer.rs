//! The [`Observer`] hook: metrics, alerts and tracing watch the queue through it.

use std::time::Duration;

use crate::command::CommandId;
use crate::error::LaneError;

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
pub trait Observer: Send + Sync + std::fmt::Debug + 'static {
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
    /// A command failed for good and was recorded as a dead letter.
    fn on_dead_letter(&self, _command: &CommandInfo<'_>) {}
    /// A lane's pending or active count changed.
    fn on_lane_depth(&self, _lane: &str, _pending: usize, _active: usize) {}
}

fn _observer_is_dyn_compatible(_: Box<dyn Observer>) {}

/// Converts something that observes the queue into a shared observer; implemented for
/// every `Observer` and every `Arc<impl Observer>`.
pub trait IntoObserver {
    /// Performs the conversion.
    fn into_observer(self) -> std::sync::Arc<dyn Observer>;
}

impl<T: Observer> IntoObserver for T {
    fn into_observer(self) -> std::sync::Arc<dyn Observer> {
        std::sync::Arc::new(self)
    }
}

impl<T: Observer> IntoObserver for std::sync::Arc<T> {
    fn into_observer(self) -> std::sync::Arc<dyn Observer> {
        self
    }
}
