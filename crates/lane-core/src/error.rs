//! The error type shared by every layer of a3s-lane.

use std::time::Duration;

/// Result alias used across a3s-lane.
pub type Result<T, E = LaneError> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring the queue, submitting or running a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    /// A lane id that the queue does not know.
    #[error("lane '{lane}' not found; known lanes: {known}")]
    LaneNotFound {
        /// The id that was asked for.
        lane: String,
        /// The lanes the queue has, comma separated.
        known: String,
    },
    /// The queue refused an operation because of its current state.
    #[error("queue error: {0}")]
    QueueError(String),
    /// An invalid configuration value, with the reason.
    #[error("invalid configuration: {0}")]
    ConfigError(String),
    /// The command itself returned an error (or panicked).
    #[error("command failed: {0}")]
    CommandError(String),
    /// A command failed with an error that must not be retried.
    #[error("command failed (not retryable): {0}")]
    NonRetryable(String),
    /// The command ran longer than its lane's timeout.
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// The command was cancelled before it finished.
    #[error("command cancelled: {0}")]
    Cancelled(String),
    /// The queue is shutting down and accepts no new commands.
    #[error("queue is shutting down; no new commands are accepted")]
    ShutdownInProgress,
    /// No handler is registered for a replayable command type.
    #[error("no handler registered for command type '{command_type}'; registered: {registered}")]
    HandlerNotFound {
        /// The type that was asked for.
        command_type: String,
        /// The registered types, comma separated.
        registered: String,
    },
    /// A value given to the queue (a payload, a command type) that it refuses, with what
    /// is wrong and what to do.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The command's start-by deadline passed before it started; it never ran.
    #[error("command expired: {0}")]
    Expired(String),
    /// The lane already holds as many waiting commands (pending and delayed) as its
    /// `max_waiting` allows.
    #[error(
        "lane '{lane}' is full: {limit} commands are waiting, its max_waiting; submit again \
         later, raise max_waiting, or let the lane wait for room (WhenFull::Wait)"
    )]
    LaneFull {
        /// The lane.
        lane: String,
        /// Its `max_waiting`.
        limit: usize,
    },
    /// The durable store failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl LaneError {
    /// Builds a [`LaneError::NonRetryable`]: return it from a command to skip the retry policy.
    pub fn non_retryable(message: impl Into<String>) -> Self {
        Self::NonRetryable(message.into())
    }

    /// True for [`LaneError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// True for [`LaneError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled(_))
    }

    /// True for [`LaneError::ShutdownInProgress`].
    pub fn is_shutdown(&self) -> bool {
        matches!(self, Self::ShutdownInProgress)
    }

    /// True for [`LaneError::Expired`].
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired(_))
    }

    /// True for [`LaneError::LaneFull`].
    pub fn is_lane_full(&self) -> bool {
        matches!(self, Self::LaneFull { .. })
    }

    /// Whether a retry policy may run the command again after this error.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::CommandError(_) | Self::Timeout(_) | Self::Other(_) | Self::Storage(_)
        )
    }
}

impl From<serde_json::Error> for LaneError {
    fn from(error: serde_json::Error) -> Self {
        Self::CommandError(format!("JSON error: {error}"))
    }
}

impl From<tokio::sync::oneshot::error::RecvError> for LaneError {
    fn from(_: tokio::sync::oneshot::error::RecvError) -> Self {
        Self::QueueError("the queue dropped the command without a result".into())
    }
}
