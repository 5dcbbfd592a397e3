//! What a queue reports, the same from a `Lane` and a `RedisQueue`: [`QueueStats`] with
//! each lane's [`LaneStatus`], its [`DeadLetter`]s and a command's [`CommandStatus`],
//! converted from the core's. The names of cancel outcomes and command states are the
//! core's own (their serialised, snake case form).

use std::collections::HashMap;

use a3s_lane::{
    CancelOutcome, CommandState, CommandStatus as CoreCommand, DeadLetter as CoreLetter,
    GroupStatus as CoreGroup, LaneStatus as CoreStatus, QueueStats as CoreStats,
};
use napi::bindgen_prelude::{Either, Null};
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
    /// Commands waiting for their start time (`delayMs`, `runAt`) or a retry delay,
    /// over all lanes.
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
    /// Commands running (on a `RedisQueue`: on all its workers).
    pub active: u32,
    /// Slots reserved for it under a global `maxConcurrency` (0 on a `RedisQueue`).
    pub min_concurrency: u32,
    /// Most of its commands that run at once (on a `RedisQueue`: over all its workers).
    pub max_concurrency: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Its priority now: `priority` lowered by its `priorityBoost` as its oldest pending
    /// command waits (equal to `priority` without a boost or pending commands).
    pub effective_priority: u32,
    /// Whether its `rateLimit` holds it back now (it starts again when a permit is due).
    pub throttled: bool,
    /// Commands waiting for their start time (`delayMs`, `runAt`) or a retry delay.
    pub delayed: u32,
    /// Commands not started by their start-by deadline (`startBy`, `startWithinMs`),
    /// since the queue was made; each rejected with code `EXPIRED`.
    pub expired: f64,
    /// Submits refused because the lane held `maxWaiting` commands, since the queue was
    /// made; each rejected with code `LANE_FULL`.
    pub rejected_full: f64,
    /// Its bound on waiting commands (pending and delayed), or `null` for none.
    pub max_waiting: Either<u32, Null>,
    /// Runs answered (timed out, or cancelled after the grace period) whose handler went
    /// on running, since the queue was made (0 on a `RedisQueue`, which does not count
    /// them yet). Each also emits `queue.command.abandoned`.
    pub abandoned: f64,
    /// Of those, the ones still running now: each keeps its slot (counted in `active`),
    /// so `maxConcurrency` holds even for a handler that ignores its `ctx.signal`.
    pub abandoned_running: u32,
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

/// Where a command is in its life, from `command(id)` and `listCommands`: while it
/// lives, and after it finished for as long as its lane keeps it (`keepLast`,
/// `keepForMs`), with its times and its result or error.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct CommandStatus {
    /// Its id.
    pub id: f64,
    /// Its lane.
    pub lane_id: String,
    /// Its type.
    pub command_type: String,
    /// Where it is: `'pending'`, `'delayed'` (waiting for its start time or a retry),
    /// `'running'`, `'completed'`, `'failed'` (failed for good, on a queue without dead
    /// letters), `'cancelled'`, `'dead_lettered'` or `'expired'` (not started by its
    /// start-by deadline; it never ran).
    #[napi(ts_type = "CommandState")]
    pub state: String,
    /// How many runs started, this one included when it is running.
    pub attempts: u32,
    /// When it was submitted, in milliseconds since the Unix epoch (like
    /// `DeadLetter.failedAt`); `null` where the queue did not record it (a command
    /// recovered from an older store, a dead letter).
    pub submitted_at: Either<f64, Null>,
    /// When its last run started, in milliseconds since the Unix epoch; `null` before
    /// its first run (and for a command that never ran).
    pub started_at: Either<f64, Null>,
    /// When it finished, in milliseconds since the Unix epoch; `null` while it lives.
    pub finished_at: Either<f64, Null>,
    /// What its handler returned, once `'completed'`; `null` otherwise.
    #[napi(ts_type = "unknown")]
    pub result: Value,
    /// Why it failed, was cancelled or expired, once it did (`'failed'`, `'cancelled'`,
    /// `'dead_lettered'`, `'expired'`); `null` otherwise.
    pub error: Either<CommandFailure, Null>,
}

/// Why a finished command did not complete, as `CommandStatus.error` keeps it.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct CommandFailure {
    /// A stable name: `'failed'` (its handler threw; for a dead letter too),
    /// `'non_retryable'` (it threw an error with `retryable: false`, or returned a
    /// value JSON cannot hold), `'timeout'`, `'cancelled'`, `'expired'`,
    /// `'handler_not_found'`, `'invalid_input'` or `'other'`.
    #[napi(ts_type = "CommandFailureKind")]
    pub kind: String,
    /// What went wrong (for a handler's error: its type, message and stack).
    pub message: String,
    /// For kind `'timeout'`: the lane's `timeoutMs` the run exceeded; `null` otherwise.
    pub timeout_ms: Either<f64, Null>,
}

/// One group of a lane (`options.group` of a submit), from `groupStatus` and `groups`.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct GroupStatus {
    /// The lane.
    pub lane: String,
    /// The group key.
    pub group: String,
    /// Its commands waiting for their turn.
    pub pending: u32,
    /// Its commands running (on a `RedisQueue`: on all its workers).
    pub active: u32,
    /// Whether it is paused (`pauseGroup`).
    pub paused: bool,
    /// Whether its rate limit (`groupRateLimit`, or its override's) holds it back now.
    pub throttled: bool,
    /// Its cap (`groupMaxConcurrency`, or its override's), or `null` for none.
    pub max_concurrency: Either<u32, Null>,
}

impl From<CoreGroup> for GroupStatus {
    fn from(group: CoreGroup) -> Self {
        Self {
            lane: group.lane,
            group: group.group,
            pending: count(group.pending),
            active: count(group.active),
            paused: group.paused,
            throttled: group.throttled,
            max_concurrency: group
                .max_concurrency
                .map_or(Either::B(Null), |max| Either::A(count(max))),
        }
    }
}

/// A count for JavaScript (saturating: no count of a queue comes near 2^32).
pub fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The core's name of a value of one of its snake case enums (`CancelOutcome`,
/// `CommandState`), given serialised: the names JavaScript sees are the core's, as in
/// Python.
fn core_name(serialised: serde_json::Result<Value>, debug: &dyn std::fmt::Debug) -> String {
    match serialised {
        Ok(Value::String(name)) => name,
        _ => format!("{debug:?}"),
    }
}

/// `'cancelled'`, `'signalled'`, `'already_finished'` or `'unknown'`.
pub fn outcome_name(outcome: CancelOutcome) -> String {
    core_name(serde_json::to_value(outcome), &outcome)
}

fn state_name(state: CommandState) -> String {
    core_name(serde_json::to_value(state), &state)
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
            delayed: count(lane.delayed),
            expired: lane.expired as f64,
            rejected_full: lane.rejected_full as f64,
            max_waiting: lane
                .max_waiting
                .map_or(Either::B(Null), |max| Either::A(count(max))),
            abandoned: lane.abandoned as f64,
            abandoned_running: count(lane.abandoned_running),
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

/// A time in milliseconds (since the Unix epoch, or a duration), or `null`.
fn millis_or_null(ms: Option<u64>) -> Either<f64, Null> {
    ms.map_or(Either::B(Null), |ms| Either::A(ms as f64))
}

impl From<CoreCommand> for CommandStatus {
    fn from(status: CoreCommand) -> Self {
        Self {
            id: status.id as f64,
            lane_id: status.lane_id,
            command_type: status.command_type,
            state: state_name(status.state),
            attempts: status.attempts,
            submitted_at: millis_or_null(status.submitted_at_ms),
            started_at: millis_or_null(status.started_at_ms),
            finished_at: millis_or_null(status.finished_at_ms),
            result: status.result.unwrap_or(Value::Null),
            error: status.error.map_or(Either::B(Null), |failure| {
                Either::A(CommandFailure {
                    kind: failure.kind,
                    message: failure.message,
                    timeout_ms: millis_or_null(failure.timeout_ms),
                })
            }),
        }
    }
}
