//! The client surface: what every engine offers for replayable commands (a type name and
//! a JSON payload, run by a registered handler), behind one trait.
//!
//! Code written against [`QueueClient`] runs unchanged on the in-process queue
//! ([`QueueManager`](crate::QueueManager), with or without durable storage) and on the
//! Redis engine (`RedisQueue`); the SDKs, and operator tools, are written against it
//! once. What only one engine can do stays on that engine's type: in-process commands
//! (`Box<dyn Command>`, closures) on `QueueManager`, workers and leases on Redis.
//!
//! ```
//! use a3s_lane::{EventEmitter, QueueClient, QueueManagerBuilder, handler_fn};
//! use serde_json::json;
//!
//! async fn double(client: &dyn QueueClient) -> a3s_lane::Result<serde_json::Value> {
//!     client.submit("query", "double", json!(21)).await?.await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> a3s_lane::Result<()> {
//! let manager = QueueManagerBuilder::new(EventEmitter::new(64))
//!     .with_default_lanes()
//!     .with_handler("double", handler_fn(|n, _ctx| async move { Ok(json!(n.as_i64().unwrap_or(0) * 2)) }))
//!     .build()
//!     .await?;
//! manager.start().await?;
//! assert_eq!(double(&manager).await?, json!(42));
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::CommandId;
use crate::dead_letter::DeadLetter;
use crate::error::Result;
use crate::event::EventStream;
use crate::group::GroupStatus;
use crate::retention::{CommandFailure, Page};
use crate::schedule::{Schedule, ScheduleInfo};
use crate::stats::QueueStats;
use crate::timing::SubmitOptions;

/// The operations every engine offers for replayable commands. See the [module
/// docs](self).
#[async_trait]
pub trait QueueClient: Send + Sync + fmt::Debug {
    /// Submits a replayable command to the end of `lane`; the returned handle resolves
    /// with its result. Fails with [`LaneError::LaneNotFound`](crate::LaneError::LaneNotFound)
    /// for an unknown lane, and (in process) with
    /// [`LaneError::HandlerNotFound`](crate::LaneError::HandlerNotFound) for a type
    /// without a handler.
    async fn submit(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<SubmittedCommand> {
        self.submit_with(lane, command_type, payload, SubmitOptions::default())
            .await
    }

    /// [`submit`](Self::submit) with options: a delay or start time (the command shows
    /// as delayed until then, then takes its place at the back of its lane), and a
    /// start-by deadline (not started by then, it ends with
    /// [`LaneError::Expired`](crate::LaneError::Expired) and never runs). Bad options
    /// are refused with [`LaneError::InvalidInput`](crate::LaneError::InvalidInput); a
    /// lane at its `max_waiting` refuses with
    /// [`LaneError::LaneFull`](crate::LaneError::LaneFull) or waits, as the lane says.
    async fn submit_with(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> Result<SubmittedCommand>;

    /// Cancels a command: a pending or delayed one ends now as cancelled; a running one
    /// is signalled and ends as cancelled once it stops (cooperatively, or dropped after
    /// its lane's cancel grace).
    async fn cancel(&self, id: CommandId) -> Result<CancelOutcome>;

    /// Where a command is in its life, with its result or error once finished, or
    /// `None` if the engine knows nothing of it. Every engine knows live commands
    /// (pending, delayed, running), dead letters, and finished commands for as long as
    /// their lane's [`Retention`](crate::Retention) keeps them (the last 1000 of each
    /// final state for a day, by default); a client that reconnects reads the result of
    /// a command it submitted before here.
    async fn command(&self, id: CommandId) -> Result<Option<CommandStatus>>;

    /// A lane's commands in `state`, paged: pending ones in the order they will start,
    /// delayed ones by due time, running ones by start, finished ones (and dead
    /// letters) newest first. An unknown lane is
    /// [`LaneError::LaneNotFound`](crate::LaneError::LaneNotFound), a bad page
    /// [`LaneError::InvalidInput`](crate::LaneError::InvalidInput).
    async fn list_commands(
        &self,
        lane: &str,
        state: CommandState,
        page: Page,
    ) -> Result<Vec<CommandStatus>>;

    /// Creates or replaces the recurring schedule of `schedule.name`: from now on it
    /// submits its command at each of its instants (each instant once, however many
    /// processes run the queue). A replaced schedule keeps its counts and whether it is
    /// paused. Refused ([`LaneError::InvalidInput`](crate::LaneError::InvalidInput),
    /// `LaneNotFound`, …) when the schedule is invalid or its lane unknown.
    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleInfo>;

    /// Removes a schedule; false when there was none of that name.
    async fn remove_schedule(&self, name: &str) -> Result<bool>;

    /// Every schedule with its next instant and counts, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleInfo>>;

    /// Pauses a schedule: it fires nothing until resumed. An unknown name is
    /// [`LaneError::InvalidInput`](crate::LaneError::InvalidInput).
    async fn pause_schedule(&self, name: &str) -> Result<()>;

    /// Resumes a paused schedule: its next instant is the first after now (the instants
    /// in between are skipped and reported).
    async fn resume_schedule(&self, name: &str) -> Result<()>;

    /// Counts for the queue and each lane.
    async fn stats(&self) -> Result<QueueStats>;

    /// Waits until fewer than `limit` commands wait to start (pending and delayed) in
    /// `lane`, or in all lanes together for `None`; at once if that holds now. A
    /// producer's backpressure (p-queue's `onSizeLessThan`). `limit` 0 is
    /// [`LaneError::InvalidInput`](crate::LaneError::InvalidInput); an unknown lane
    /// [`LaneError::LaneNotFound`](crate::LaneError::LaneNotFound).
    async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()>;

    /// Stops starting the lane's commands (running ones go on) until resumed.
    async fn pause_lane(&self, lane: &str) -> Result<()>;

    /// Pauses the lane for `duration`, then resumes it by itself.
    async fn pause_lane_for(&self, lane: &str, duration: Duration) -> Result<()>;

    /// Starts the lane's commands again.
    async fn resume_lane(&self, lane: &str) -> Result<()>;

    /// Stops starting the commands of group `group` in `lane` (running ones go on, other
    /// groups take its turns) until [`resume_group`](Self::resume_group). A group may be
    /// paused before it has commands. A bad key is
    /// [`LaneError::InvalidInput`](crate::LaneError::InvalidInput), an unknown lane
    /// [`LaneError::LaneNotFound`](crate::LaneError::LaneNotFound).
    async fn pause_group(&self, lane: &str, group: &str) -> Result<()>;

    /// Starts the commands of a paused group again.
    async fn resume_group(&self, lane: &str, group: &str) -> Result<()>;

    /// Cancels every command of group `group` in `lane`: pending and delayed ones end
    /// now as cancelled, running ones are signalled (as [`cancel`](Self::cancel) does).
    /// Returns how many commands the cancel reached.
    async fn cancel_group(&self, lane: &str, group: &str) -> Result<usize>;

    /// A group's counts (all zero for a group with nothing waiting or running).
    async fn group_status(&self, lane: &str, group: &str) -> Result<GroupStatus>;

    /// The lane's groups that have commands waiting or running, or are paused, sorted by
    /// key and paged (commands of no group are not listed).
    async fn groups(&self, lane: &str, page: Page) -> Result<Vec<GroupStatus>>;

    /// Commands that failed for good, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Sends a dead letter back to the end of its lane as a fresh attempt; the handle
    /// resolves with its new result.
    async fn redrive(&self, id: CommandId) -> Result<SubmittedCommand>;

    /// Deletes every dead letter; returns how many there were.
    async fn purge_dead_letters(&self) -> Result<usize>;

    /// Deletes one dead letter without running it again; false when there was none with
    /// that id. An engine that cannot delete a single letter answers
    /// [`LaneError::QueueError`](crate::LaneError::QueueError) (the default); the
    /// in-process queue and the Redis engine can.
    async fn delete_dead_letter(&self, id: CommandId) -> Result<bool> {
        Err(crate::LaneError::QueueError(format!(
            "this engine cannot delete the single dead letter {id}; redrive it or purge all \
             dead letters"
        )))
    }

    /// Subscribes to the queue's events from now on: every command's lifecycle events
    /// and progress reports, with the keys of [`event_keys`](crate::event_keys). On Redis
    /// they come from the queue's event stream, so a subscriber sees the commands of
    /// every process.
    fn subscribe(&self) -> EventStream;
}

fn _client_is_dyn_compatible(_: Box<dyn QueueClient>) {}

/// The rule for [`QueueClient::wait_waiting_below`]'s `limit`, on every engine: at least
/// 1 (no count is below 0).
pub fn check_waiting_limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(crate::LaneError::InvalidInput(
            "a waiting count below 0 never comes; give a limit of 1 or more (1 waits until \
             nothing waits to start)"
                .into(),
        ));
    }
    Ok(())
}

/// What [`QueueClient::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The command was pending or waiting for a retry; it ended now as cancelled.
    Cancelled,
    /// The command is running: it was told through its cancellation signal and ends as
    /// cancelled once it stops.
    Signalled,
    /// The command had already finished.
    AlreadyFinished,
    /// No such command (or its record expired).
    Unknown,
}

impl CancelOutcome {
    /// Whether the cancel reached the command (it ended, or was told to stop).
    pub fn took_effect(self) -> bool {
        matches!(self, Self::Cancelled | Self::Signalled)
    }
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CommandState {
    /// Waiting in its lane.
    Pending,
    /// Waiting for its start time or a retry delay.
    Delayed,
    /// Running.
    Running,
    /// Finished with a value.
    Completed,
    /// Failed for good, on a queue without dead letters (with them it is
    /// [`DeadLettered`](Self::DeadLettered)).
    Failed,
    /// Cancelled.
    Cancelled,
    /// Failed for good and kept as a dead letter.
    DeadLettered,
    /// Not started by its start-by deadline; it never ran.
    Expired,
}

impl CommandState {
    /// Whether the command will not run again (short of a redrive).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::DeadLettered | Self::Expired
        )
    }

    /// Its name, as in events and the SDKs (`"dead_lettered"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delayed => "delayed",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::DeadLettered => "dead_lettered",
            Self::Expired => "expired",
        }
    }

    /// Every state, in life order.
    pub const ALL: [CommandState; 8] = [
        Self::Pending,
        Self::Delayed,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::DeadLettered,
        Self::Expired,
    ];
}

impl std::str::FromStr for CommandState {
    type Err = crate::LaneError;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| {
                crate::LaneError::InvalidInput(format!(
                    "unknown command state '{name}'; one of: {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// A command as [`QueueClient::command`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandStatus {
    /// Its id.
    pub id: CommandId,
    /// Its lane.
    pub lane_id: String,
    /// Its handler type.
    pub command_type: String,
    /// Where it is.
    pub state: CommandState,
    /// How many runs started, this one included when it is running.
    pub attempts: u32,
    /// When it was submitted, ms since the Unix epoch (`None` where the engine did not
    /// record it, such as a command recovered from an older store).
    pub submitted_at_ms: Option<u64>,
    /// When its last run started, ms since the Unix epoch; `None` before the first.
    pub started_at_ms: Option<u64>,
    /// When it finished, ms since the Unix epoch; `None` while it lives.
    pub finished_at_ms: Option<u64>,
    /// Its result, once completed.
    pub result: Option<Value>,
    /// Why it failed, was cancelled or expired, once it did.
    pub error: Option<CommandFailure>,
}

impl CommandStatus {
    /// A command in `state` with nothing else known yet (no times, no result).
    pub fn new(
        id: CommandId,
        lane_id: impl Into<String>,
        command_type: impl Into<String>,
        state: CommandState,
        attempts: u32,
    ) -> Self {
        Self {
            id,
            lane_id: lane_id.into(),
            command_type: command_type.into(),
            state,
            attempts,
            submitted_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            result: None,
            error: None,
        }
    }

    /// Its outcome as its submitter got it, once finished: the value, or the error.
    pub fn outcome(&self) -> Option<Result<Value>> {
        if let Some(error) = &self.error {
            return Some(Err(error.to_error()));
        }
        (self.state == CommandState::Completed)
            .then(|| Ok(self.result.clone().unwrap_or(Value::Null)))
    }
}

/// A submitted command: its id, and a future of its result.
#[must_use = "a submitted command runs anyway; await it for the result"]
pub struct SubmittedCommand {
    id: CommandId,
    duplicate: bool,
    result: Pin<Box<dyn Future<Output = Result<Value>> + Send>>,
}

impl fmt::Debug for SubmittedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmittedCommand")
            .field("id", &self.id)
            .field("duplicate", &self.duplicate)
            .finish_non_exhaustive()
    }
}

impl SubmittedCommand {
    /// Wraps an engine's handle: `result` resolves with the command's result.
    pub fn new(
        id: CommandId,
        result: impl Future<Output = Result<Value>> + Send + 'static,
    ) -> Self {
        Self {
            id,
            duplicate: false,
            result: Box::pin(result),
        }
    }

    /// Marks the handle as an earlier command's, returned for a submit whose
    /// idempotency key that command holds.
    pub fn into_duplicate(mut self) -> Self {
        self.duplicate = true;
        self
    }

    /// The command's id, for [`QueueClient::cancel`] and [`QueueClient::command`].
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// True when this submit queued nothing: its idempotency key
    /// ([`SubmitOptions::with_key`](crate::SubmitOptions::with_key)) belonged to a
    /// command still waiting or running, and this is that command (awaiting it gives its
    /// result; cancelling it cancels it for every submitter).
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }
}

impl Future for SubmittedCommand {
    type Output = Result<Value>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.result.as_mut().poll(cx)
    }
}
