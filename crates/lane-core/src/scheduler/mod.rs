//! The scheduler's state: lanes, the ready index, the global budget and the timers.
//!
//! Everything here is synchronous and runs under the queue's one state lock, which is
//! never held across an await or while user code runs. The queue ([`crate::queue`])
//! calls in, collects what must happen next (commands to start, replies, events) and
//! acts on it after releasing the lock.

mod pending;
mod ready;
mod task_map;
pub(crate) mod timers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::budget::{Acquire, BudgetWake, BudgetWaker};
use crate::client::{CommandState, CommandStatus};
use crate::command::{CancelSignal, CancelSource, Command, CommandId};
use crate::config::LaneConfig;
use crate::contain::contain;
use crate::error::{LaneError, Result};
use crate::policy::Admission;
use crate::retention::{CommandFailure, Retained};
use crate::stats::{LaneStatus, QueueStats};
use crate::timing::Timing;

use pending::Pending;
use ready::ReadyIndex;
use task_map::TaskMap;
use timers::{TimerKind, Timers};

pub(crate) type LaneIdx = u32;

/// Where a command is in its life; changed only under the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Pending = 0,
    Running = 1,
    Delayed = 2,
    Done = 3,
}

/// One accepted command, shared by its lane queue, its runner and its handle.
pub(crate) struct Task {
    pub(crate) id: CommandId,
    /// Its lane; set once, under the state lock, before the task is queued (a new
    /// command's lane is looked up in the same lock hold that queues it).
    lane: AtomicU32,
    pub(crate) command: Box<dyn Command>,
    /// The JSON payload of a replayable command (journaled, dead-lettered with it).
    pub(crate) payload: Option<Value>,
    /// When it was submitted (ms since the Unix epoch); 0 when not known (a command
    /// recovered from a store that did not record it).
    pub(crate) created_at_ms: u64,
    /// When its last run started (ms since the Unix epoch); 0 before the first.
    started_at_ms: AtomicU64,
    /// When it is due while delayed (ms since the Unix epoch), for listings.
    due_at_ms: AtomicU64,
    /// Its lane keeps finished commands (set when it goes live): its result is copied
    /// for the record before the state lock is taken.
    retained: std::sync::atomic::AtomicBool,
    pub(crate) cancel: CancelSignal,
    /// The first attempt's own signal for a command whose work outlives its future
    /// (`Command::stops_when_dropped` false); later attempts get a new one.
    first_attempt: CancelSignal,
    first_attempt_taken: std::sync::atomic::AtomicBool,
    /// Its command stops when its future is dropped (read once).
    pub(crate) stops_when_dropped: bool,
    reply: Mutex<Replies>,
    phase: AtomicU8,
    /// Failed attempts so far.
    failures: AtomicU32,
    /// Set when the cancel came from a hard shutdown: the journal keeps the command.
    pub(crate) interrupted: std::sync::atomic::AtomicBool,
    /// The submitter's span (disabled when nobody traces): each run's `lane.command`
    /// span is its child, so a trace crosses the queue.
    pub(crate) span: tracing::Span,
    /// Its start time and start-by deadline as submitted (kept by the journal).
    pub(crate) timing: Timing,
    /// When it was made: its delay and its start-by deadline both count from here
    /// (read only for a command with either).
    pub(crate) origin: Option<Instant>,
    /// The start-by deadline on the queue's clock: not started by then, it expires.
    pub(crate) start_by: Option<Instant>,
    /// Set at its first start: a deadline no longer applies.
    started_once: std::sync::atomic::AtomicBool,
    /// Its idempotency key: while it lives, a submit with the same key returns it.
    pub(crate) key: Option<Box<str>>,
    /// Its group inside its lane (see [`crate::group`]).
    pub(crate) group: Option<Arc<str>>,
}

/// A context's view of the task: its cancel signal, or for a command whose work outlives
/// its future, the first attempt's signal (see [`Task::take_first_attempt`]).
impl CancelSource for Task {
    fn signal(&self) -> &CancelSignal {
        if self.stops_when_dropped {
            &self.cancel
        } else {
            &self.first_attempt
        }
    }
}

/// Who gets a command's result: its submitter, and the submitters of duplicates (a
/// submit with its idempotency key; an empty `Vec` allocates nothing).
struct Replies {
    submitter: Option<oneshot::Sender<Result<Value>>>,
    duplicates: Vec<oneshot::Sender<Result<Value>>>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("lane", &self.lane)
            .finish_non_exhaustive()
    }
}

impl Task {
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor for submit and recovery; each argument is a field"
    )]
    pub(crate) fn new(
        id: CommandId,
        lane: LaneIdx,
        command: Box<dyn Command>,
        payload: Option<Value>,
        failures: u32,
        created_at_ms: u64,
        span: tracing::Span,
        timing: Timing,
        key: Option<Box<str>>,
        group: Option<Arc<str>>,
    ) -> (Arc<Self>, oneshot::Receiver<Result<Value>>) {
        let (tx, rx) = oneshot::channel();
        // Checked at the boundary: at most 100 years ahead, which the clock holds.
        let origin = (!timing.delay.is_zero() || timing.start_within.is_some()).then(Instant::now);
        let start_by = timing
            .start_within
            .zip(origin)
            .and_then(|(within, origin)| origin.checked_add(within));
        let stops_when_dropped = command.stops_when_dropped();
        let task = Arc::new(Self {
            id,
            lane: AtomicU32::new(lane),
            command,
            payload,
            created_at_ms,
            started_at_ms: AtomicU64::new(0),
            due_at_ms: AtomicU64::new(timing.not_before_ms.unwrap_or(0)),
            retained: Default::default(),
            cancel: CancelSignal::default(),
            first_attempt: CancelSignal::default(),
            first_attempt_taken: Default::default(),
            stops_when_dropped,
            reply: Mutex::new(Replies {
                submitter: Some(tx),
                duplicates: Vec::new(),
            }),
            phase: AtomicU8::new(Phase::Pending as u8),
            failures: AtomicU32::new(failures),
            interrupted: Default::default(),
            span,
            timing,
            origin,
            start_by,
            started_once: Default::default(),
            key,
            group,
        });
        (task, rx)
    }

    /// Whether this run may use the first attempt's signal (once; then the caller makes
    /// its own: an abandoned earlier run may still hold this one).
    pub(crate) fn take_first_attempt(&self) -> bool {
        !self.first_attempt_taken.swap(true, Ordering::Relaxed)
    }

    /// Its lane.
    pub(crate) fn lane(&self) -> LaneIdx {
        self.lane.load(Ordering::Relaxed)
    }

    /// Assigns its lane (under the state lock, before it is queued).
    pub(crate) fn set_lane(&self, lane: LaneIdx) {
        self.lane.store(lane, Ordering::Relaxed);
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Pending,
            1 => Phase::Running,
            2 => Phase::Delayed,
            _ => Phase::Done,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Whether its start-by deadline has passed before it ever started.
    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.start_by.is_some_and(|by| by <= now) && !self.started_once.load(Ordering::Relaxed)
    }

    /// Whether it ever started (a delayed one then waits for a retry).
    pub(crate) fn started_once(&self) -> bool {
        self.started_once.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// When its last run started, ms since the Unix epoch.
    pub(crate) fn started_at_ms(&self) -> Option<u64> {
        Some(self.started_at_ms.load(Ordering::Relaxed)).filter(|ms| *ms != 0)
    }

    /// Whether its lane keeps finished commands.
    pub(crate) fn is_retained(&self) -> bool {
        self.retained.load(Ordering::Relaxed)
    }

    /// When it is due, while delayed (ms since the Unix epoch).
    pub(crate) fn due_at_ms(&self) -> u64 {
        self.due_at_ms.load(Ordering::Relaxed)
    }

    /// What a lookup shows of it while it lives (pending, delayed or running).
    pub(crate) fn live_status(&self, lane: &str) -> CommandStatus {
        let (state, attempts) = match self.phase() {
            Phase::Pending => (CommandState::Pending, self.failures()),
            Phase::Delayed => (CommandState::Delayed, self.failures()),
            Phase::Running | Phase::Done => (CommandState::Running, self.failures() + 1),
        };
        let mut status =
            CommandStatus::new(self.id, lane, self.command.command_type(), state, attempts);
        status.submitted_at_ms = Some(self.created_at_ms).filter(|ms| *ms != 0);
        status.started_at_ms = self.started_at_ms();
        status
    }

    /// Sends the final result to the submitter (once; later calls do nothing).
    pub(crate) fn reply(&self, result: Result<Value>) {
        let mut replies = self.reply.lock();
        for tx in std::mem::take(&mut replies.duplicates) {
            let _ = tx.send(result.clone());
        }
        if let Some(tx) = replies.submitter.take() {
            let _ = tx.send(result);
        }
    }

    /// A receiver of its result for the submitter of a duplicate. Called under the state
    /// lock while the task is live, so before [`reply`](Self::reply).
    fn add_duplicate(&self) -> oneshot::Receiver<Result<Value>> {
        let (tx, rx) = oneshot::channel();
        self.reply.lock().duplicates.push(tx);
        rx
    }
}

/// The error of a command that expired unstarted, as its submitter gets it.
pub(crate) fn expired_error(task: &Task, lane: &str) -> LaneError {
    let by = task.timing.start_by_ms.unwrap_or_default();
    LaneError::Expired(format!(
        "command {} in lane '{lane}' had not started by its start-by deadline ({by} ms since \
         the Unix epoch), so it never ran",
        task.id
    ))
}

/// A pending command in its lane's FIFO.
pub(crate) struct Queued {
    pub(crate) task: Arc<Task>,
    pub(crate) queued_at: Instant,
}

pub(crate) struct LaneState {
    pub(crate) id: Arc<str>,
    pub(crate) priority: u8,
    pub(crate) config: LaneConfig,
    pub(crate) pending: Pending,
    pub(crate) active: usize,
    paused: bool,
    /// End of a timed pause ([`State::pause_until`]); `None` while paused indefinitely.
    paused_until: Option<Instant>,
    throttled: bool,
    /// Waiting for a slot (or a permit) of its shared budget.
    budget_blocked: bool,
    pressured: bool,
    admission: Option<Box<dyn Admission>>,
    level: u8,
    in_ready: bool,
    in_reserved: bool,
    /// Commands waiting for their start time or a retry delay.
    pub(crate) delayed: usize,
    /// Commands that expired unstarted, since the queue was made.
    pub(crate) expired: u64,
    /// Submits refused because the lane was full, since the queue was made.
    pub(crate) rejected_full: u64,
    /// Runs answered while their handler went on; see `LaneStatus::abandoned`.
    pub(crate) abandoned: u64,
    pub(crate) abandoned_running: usize,
}

impl LaneState {
    fn new(id: &str, config: LaneConfig, priority: u8) -> Self {
        let admission = config.admission_policy().and_then(|p| p.admission());
        Self {
            id: Arc::from(id),
            priority,
            config,
            pending: Pending::default(),
            active: 0,
            paused: false,
            paused_until: None,
            throttled: false,
            budget_blocked: false,
            pressured: false,
            admission,
            level: 0,
            in_ready: false,
            in_reserved: false,
            delayed: 0,
            expired: 0,
            rejected_full: 0,
            abandoned: 0,
            abandoned_running: 0,
        }
    }

    /// Can start a command as far as the lane itself is concerned.
    fn can_start(&self) -> bool {
        self.pending.may_start()
            && !self.paused
            && !self.throttled
            && !self.budget_blocked
            && self.active < self.config.max_concurrency
    }

    /// Commands waiting in the lane: pending and delayed (what `max_waiting` bounds).
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len() + self.delayed
    }

    /// Whether a new command would exceed the lane's `max_waiting`.
    pub(crate) fn is_full(&self) -> bool {
        self.config
            .max_waiting
            .is_some_and(|max| self.waiting() >= max)
    }

    fn has_reserved_slot(&self) -> bool {
        self.active < self.config.min_concurrency
    }

    /// The lane's priority with its boost applied; a boost that panics counts as none
    /// here (dispatch reports it, see [`LaneState::try_effective_priority`]).
    pub(crate) fn effective_priority(&self, now: Instant) -> u8 {
        self.try_effective_priority(now).unwrap_or(self.priority)
    }

    /// The effective priority, or what the lane's boost panicked with.
    fn try_effective_priority(&self, now: Instant) -> Result<u8, String> {
        match (self.config.priority_boost(), self.pending.front()) {
            (Some(boost), Some(head)) => {
                let waited = now.saturating_duration_since(head.queued_at);
                let boost = contain(|| boost.boost(waited))?;
                Ok(self.priority.saturating_sub(boost))
            }
            _ => Ok(self.priority),
        }
    }

    pub(crate) fn status(&self, now: Instant) -> LaneStatus {
        LaneStatus {
            id: self.id.to_string(),
            priority: self.priority,
            effective_priority: self.effective_priority(now),
            pending: self.pending.len(),
            active: self.active,
            min: self.config.min_concurrency,
            max: self.config.max_concurrency,
            paused: self.paused,
            throttled: self.throttled,
            delayed: self.delayed,
            expired: self.expired,
            rejected_full: self.rejected_full,
            max_waiting: self.config.max_waiting,
            abandoned: self.abandoned,
            abandoned_running: self.abandoned_running,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Slots not reserved by any lane's `min_concurrency`.
    shared: usize,
    /// Shared slots in use: the sum over lanes of `max(0, active - min)`.
    shared_used: usize,
    total: usize,
}

/// A lane-level event produced under the lock and published after it.
#[derive(Debug, Clone)]
pub(crate) enum LaneSignal {
    Pressure {
        lane: Arc<str>,
        pending: usize,
    },
    Idle {
        lane: Arc<str>,
    },
    /// A rate limit held the lane's next start back until `until`.
    Throttled {
        lane: Arc<str>,
        /// The group held back, when it was a group's rate limit.
        group: Option<Arc<str>>,
        limit: ThrottleLimit,
        until: Instant,
    },
}

/// Whose rate limit held a start back (`queue.lane.throttled`'s `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThrottleLimit {
    /// The lane's own rate limit.
    Lane,
    /// The rate limit of one group of the lane.
    Group,
    /// The rate limit of the shared budget the lane draws from.
    Budget,
}

impl ThrottleLimit {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Lane => "lane",
            Self::Group => "group",
            Self::Budget => "budget",
        }
    }
}

/// The commands one state change started; rarely more than one, so kept inline.
pub(crate) type Dispatches = smallvec::SmallVec<[Dispatch; 2]>;

/// A command taken off its lane to run now.
pub(crate) struct Dispatch {
    pub(crate) task: Arc<Task>,
    pub(crate) lane: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) waited: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    /// Set when the lane's policy panicked while choosing this command: it is not run,
    /// it ends with this error (the slot taken for it is released as for any run).
    pub(crate) refused: Option<LaneError>,
    /// The group that counts this run as running (released with the lane's slot).
    pub(crate) group: Option<Arc<str>>,
    /// The run holds a slot of its lane's shared budget (released with the lane's slot).
    pub(crate) holds_budget: bool,
}

/// What [`State::pick`] chose.
struct Picked {
    lane: LaneIdx,
    /// The lane's policy panicked while choosing: the head command ends with this error.
    refused: Option<LaneError>,
    /// A slot of the lane's shared budget was taken for the command.
    holds_budget: bool,
}

impl Picked {
    fn refused(lane: LaneIdx, error: LaneError) -> Self {
        Self {
            lane,
            refused: Some(error),
            holds_budget: false,
        }
    }
}

/// The error a command ends with when its lane's policy panicked while choosing it.
fn policy_panicked(policy: &str, panic: String) -> LaneError {
    LaneError::NonRetryable(format!(
        "the lane's {policy} panicked while choosing this command, which was not started: \
         {panic}; fix the policy (a panic in it ends each command it is asked about)"
    ))
}

/// The whole mutable state of one queue.
pub(crate) struct State {
    pub(crate) lanes: Vec<LaneState>,
    by_name: FxHashMap<Arc<str>, LaneIdx>,
    /// Distinct lane priorities, ascending; a lane's level is its position here.
    priorities: Vec<u8>,
    ready: ReadyIndex,
    reserved: ReadyIndex,
    boosted: Vec<LaneIdx>,
    budget: Option<Budget>,
    /// Every live command by id (for cancel).
    pub(crate) tasks: TaskMap<Arc<Task>>,
    pub(crate) timers: Timers,
    pub(crate) total_pending: usize,
    pub(crate) total_active: usize,
    pub(crate) total_delayed: usize,
    pub(crate) started: bool,
    pub(crate) shutting_down: bool,
    /// A hard stop: no retries, delayed commands are cancelled.
    pub(crate) hard_stop: bool,
    pub(crate) shutdown_complete_sent: bool,
    /// Commands that expired unstarted under the lock, to be answered after it.
    pub(crate) expired: Vec<Arc<Task>>,
    /// The idempotency keys of live commands (see `SubmitOptions::with_key`).
    /// (SipHash: keys come from users, maybe from untrusted input.)
    pub(crate) keys: std::collections::HashMap<Box<str>, CommandId>,
    /// Finished commands kept by their lanes' retention, for lookup and listing.
    pub(crate) retained: Retained,
    /// This queue as its lanes' shared budgets know it (set at start).
    pub(crate) budget_waker: Option<std::sync::Weak<dyn BudgetWaker>>,
    /// Budget slots handed to waiting lanes (of any queue) under the lock: woken after it.
    pub(crate) budget_wakes: Vec<BudgetWake>,
}

impl State {
    pub(crate) fn new(max_concurrency: Option<usize>) -> Self {
        Self {
            lanes: Vec::new(),
            by_name: FxHashMap::default(),
            priorities: Vec::new(),
            ready: ReadyIndex::default(),
            reserved: ReadyIndex::default(),
            boosted: Vec::new(),
            budget: max_concurrency.map(|total| Budget {
                shared: total,
                shared_used: 0,
                total,
            }),
            tasks: TaskMap::default(),
            keys: Default::default(),
            retained: Retained::default(),
            budget_waker: None,
            budget_wakes: Vec::new(),
            timers: Timers::default(),
            total_pending: 0,
            total_active: 0,
            total_delayed: 0,
            started: false,
            shutting_down: false,
            hard_stop: false,
            shutdown_complete_sent: false,
            expired: Vec::new(),
        }
    }

    /// Adds a lane after validating it against the others and the global budget.
    pub(crate) fn add_lane(&mut self, id: &str, config: LaneConfig, priority: u8) -> Result<()> {
        if id.is_empty() {
            return Err(LaneError::ConfigError("lane id must not be empty".into()));
        }
        if self.by_name.contains_key(id) {
            return Err(LaneError::ConfigError(format!("duplicate lane id '{id}'")));
        }
        config.validate(id)?;
        if let Some(budget) = &mut self.budget {
            let reserved = budget.total - budget.shared;
            // Checked: a huge min_concurrency must not wrap the sum below the budget.
            let sum = reserved.checked_add(config.min_concurrency);
            if sum.is_none_or(|sum| sum > budget.total) {
                return Err(LaneError::ConfigError(format!(
                    "lane '{id}': the lanes' min_concurrency would add up to {}, more than the global \
                     max_concurrency of {}; lower a min_concurrency or raise the budget",
                    sum.map_or_else(|| "more than usize::MAX".to_owned(), |sum| sum.to_string()),
                    budget.total
                )));
            }
            let shared = budget.shared - config.min_concurrency;
            let starved = std::iter::once((id, config.min_concurrency))
                .chain(
                    self.lanes
                        .iter()
                        .map(|l| (&*l.id, l.config.min_concurrency)),
                )
                .find(|(_, min)| *min == 0);
            if let (0, Some((starved, _))) = (shared, starved) {
                return Err(LaneError::ConfigError(format!(
                    "lane '{starved}' has min_concurrency 0, but the lanes' reserved slots take the whole \
                     global max_concurrency of {}, so it could never run; raise the budget or give it a \
                     min_concurrency",
                    budget.total
                )));
            }
            budget.shared = shared;
        }
        let index = self.lanes.len() as LaneIdx;
        let lane = LaneState::new(id, config, priority);
        if lane.config.priority_boost().is_some() {
            self.boosted.push(index);
        }
        self.by_name.insert(lane.id.clone(), index);
        self.lanes.push(lane);
        self.rebuild_index();
        Ok(())
    }

    fn rebuild_index(&mut self) {
        let mut priorities: Vec<u8> = self.lanes.iter().map(|l| l.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        self.ready = ReadyIndex::with_levels(priorities.len());
        self.reserved = ReadyIndex::with_levels(priorities.len());
        for lane in &mut self.lanes {
            lane.level = priorities.binary_search(&lane.priority).unwrap_or(0) as u8;
            lane.in_ready = false;
            lane.in_reserved = false;
        }
        self.priorities = priorities;
        for index in 0..self.lanes.len() as LaneIdx {
            self.mark_ready(index);
        }
    }

    pub(crate) fn lane_index(&self, id: &str) -> Result<LaneIdx> {
        self.by_name
            .get(id)
            .copied()
            .ok_or_else(|| self.lane_not_found(id))
    }

    fn lane_not_found(&self, id: &str) -> LaneError {
        let known: Vec<&str> = self.lanes.iter().map(|l| &*l.id).collect();
        LaneError::LaneNotFound {
            lane: id.to_owned(),
            known: if known.is_empty() {
                "(none)".into()
            } else {
                known.join(", ")
            },
        }
    }

    pub(crate) fn lane(&self, index: LaneIdx) -> &LaneState {
        &self.lanes[index as usize]
    }

    /// Puts a lane in the ready sets it now belongs to (no-op if already there).
    pub(crate) fn mark_ready(&mut self, index: LaneIdx) {
        if !self.started {
            return;
        }
        let has_budget = self.budget.is_some();
        let lane = &mut self.lanes[index as usize];
        if !lane.can_start() {
            return;
        }
        if !lane.in_ready {
            lane.in_ready = true;
            self.ready.push(lane.level, index);
        }
        if has_budget && lane.has_reserved_slot() && !lane.in_reserved {
            lane.in_reserved = true;
            self.reserved.push(lane.level, index);
        }
    }

    /// Queues a command at the back (new) or front (retry, recovery) of its lane.
    pub(crate) fn enqueue(
        &mut self,
        task: Arc<Task>,
        now: Instant,
        front: bool,
    ) -> Option<LaneSignal> {
        let index = task.lane();
        task.set_phase(Phase::Pending);
        let lane = &mut self.lanes[index as usize];
        let queued = Queued {
            task,
            queued_at: now,
        };
        lane.pending
            .push(queued, front, now, lane.config.group_rules());
        self.total_pending += 1;
        let signal = match lane.config.pressure_threshold {
            Some(threshold) if !lane.pressured && lane.pending.len() >= threshold => {
                lane.pressured = true;
                Some(LaneSignal::Pressure {
                    lane: lane.id.clone(),
                    pending: lane.pending.len(),
                })
            }
            _ => None,
        };
        self.mark_ready(index);
        signal
    }

    fn after_dequeue(&mut self, index: LaneIdx) -> Option<LaneSignal> {
        let lane = &mut self.lanes[index as usize];
        self.total_pending -= 1;
        if lane.pressured && lane.pending.is_empty() {
            lane.pressured = false;
            return Some(LaneSignal::Idle {
                lane: lane.id.clone(),
            });
        }
        None
    }

    /// Takes every command that may start now, most urgent first.
    pub(crate) fn dispatch(
        &mut self,
        now: Instant,
        out: &mut Dispatches,
        signals: &mut Vec<LaneSignal>,
    ) {
        if !self.started {
            return;
        }
        while let Some(Picked {
            lane: index,
            refused,
            holds_budget,
        }) = self.pick(now, signals)
        {
            let lane = &mut self.lanes[index as usize];
            let Some((queued, group)) = lane.pending.pop(now) else {
                continue;
            };
            if queued.task.is_expired(now) {
                if let Some(group) = &group {
                    lane.pending.release(group, now);
                }
                if holds_budget && let Some(budget) = lane.config.budget() {
                    self.budget_wakes.extend(budget.release());
                }
                // Its deadline timer has not fired yet; it never starts.
                lane.expired += 1;
                queued.task.set_phase(Phase::Done);
                Self::forget_live(&mut self.tasks, &mut self.keys, &queued.task);
                if let Some(signal) = self.after_dequeue(index) {
                    signals.push(signal);
                }
                self.retain_expired(&queued.task, now);
                self.expired.push(queued.task);
                self.mark_ready(index);
                continue;
            }
            lane.active += 1;
            if let Some(budget) = &mut self.budget
                && lane.active > lane.config.min_concurrency
            {
                budget.shared_used += 1;
            }
            self.total_active += 1;
            let task = queued.task;
            task.set_phase(Phase::Running);
            task.started_once.store(true, Ordering::Relaxed);
            task.started_at_ms
                .store(crate::queue::now_ms(), Ordering::Relaxed);
            out.push(Dispatch {
                attempt: task.failures() + 1,
                lane: lane.id.clone(),
                waited: now.saturating_duration_since(queued.queued_at),
                timeout: lane.config.timeout,
                grace: lane.config.cancel_grace,
                task,
                group,
                holds_budget,
                refused,
            });
            if let Some(signal) = self.after_dequeue(index) {
                signals.push(signal);
            }
        }
    }

    /// The lane to start a command from now, with its admission permit taken; or a lane
    /// whose boost or admission policy panicked, with the error its head command ends with
    /// (so the command is answered and the scheduler goes on).
    fn pick(&mut self, now: Instant, signals: &mut Vec<LaneSignal>) -> Option<Picked> {
        loop {
            let shared_free = self.budget.is_none_or(|b| b.shared_used < b.shared);
            let index = if shared_free {
                &mut self.ready
            } else {
                &mut self.reserved
            };
            let (level, front) = index.front()?;
            let lane = &self.lanes[front as usize];
            let still_ready = lane.can_start() && (shared_free || lane.has_reserved_slot());
            if !still_ready {
                index.pop_front(level);
                let lane = &mut self.lanes[front as usize];
                if shared_free {
                    lane.in_ready = false;
                } else {
                    lane.in_reserved = false;
                }
                continue;
            }
            // Round robin among equal priorities: the chosen lane goes to the back.
            index.pop_front(level);
            index.push(level, front);
            let mut chosen = front;
            if !self.boosted.is_empty() {
                let mut best = match self.lanes[front as usize].try_effective_priority(now) {
                    Ok(priority) => priority,
                    Err(panic) => {
                        return Some(Picked::refused(
                            front,
                            policy_panicked("priority boost", panic),
                        ));
                    }
                };
                for &candidate in &self.boosted {
                    let lane = &self.lanes[candidate as usize];
                    if lane.can_start() && (shared_free || lane.has_reserved_slot()) {
                        let priority = match lane.try_effective_priority(now) {
                            Ok(priority) => priority,
                            Err(panic) => {
                                return Some(Picked::refused(
                                    candidate,
                                    policy_panicked("priority boost", panic),
                                ));
                            }
                        };
                        if priority < best {
                            best = priority;
                            chosen = candidate;
                        }
                    }
                }
            }
            let lane = &mut self.lanes[chosen as usize];
            let mut throttled = Vec::new();
            let ready = lane.pending.settle(now, &mut throttled);
            for (group, at) in throttled {
                signals.push(LaneSignal::Throttled {
                    lane: lane.id.clone(),
                    group: Some(group.clone()),
                    limit: ThrottleLimit::Group,
                    until: at,
                });
                self.timers
                    .schedule(at, TimerKind::GroupUnthrottle(chosen, group));
            }
            if !ready {
                // No group may start: the lane leaves the ready sets on the next pass.
                continue;
            }
            let mut holds_budget = false;
            if let (Some(budget), Some(waker)) = (lane.config.budget(), &self.budget_waker) {
                match budget.try_acquire(waker, chosen, now) {
                    Acquire::Granted => holds_budget = true,
                    Acquire::Wait => {
                        // Woken with a slot (`unblock_budget`); the lane leaves the ready
                        // sets on the next pass.
                        lane.budget_blocked = true;
                        continue;
                    }
                    Acquire::Throttled(at) => {
                        lane.budget_blocked = true;
                        signals.push(LaneSignal::Throttled {
                            lane: lane.id.clone(),
                            group: None,
                            limit: ThrottleLimit::Budget,
                            until: at,
                        });
                        self.timers.schedule(at, TimerKind::BudgetRetry(chosen));
                        continue;
                    }
                }
            }
            let lane = &mut self.lanes[chosen as usize];
            if let Some(admission) = lane.admission.as_mut() {
                match contain(|| admission.try_acquire(now)) {
                    Ok(Ok(())) => {}
                    Ok(Err(retry_at)) => {
                        lane.throttled = true;
                        signals.push(LaneSignal::Throttled {
                            lane: lane.id.clone(),
                            group: None,
                            limit: ThrottleLimit::Lane,
                            until: retry_at,
                        });
                        if holds_budget && let Some(budget) = lane.config.budget() {
                            self.budget_wakes.extend(budget.release());
                        }
                        self.timers
                            .schedule(retry_at, TimerKind::Unthrottle(chosen));
                        continue;
                    }
                    Err(panic) => {
                        return Some(Picked {
                            lane: chosen,
                            refused: Some(policy_panicked("rate limit", panic)),
                            holds_budget,
                        });
                    }
                }
            }
            return Some(Picked {
                lane: chosen,
                refused: None,
                holds_budget,
            });
        }
    }

    /// Releases the slot of a finished run (and its group's, if a group counts it, and
    /// its shared budget's, if it holds one).
    pub(crate) fn release(&mut self, index: LaneIdx, group: Option<&str>, holds_budget: bool) {
        let lane = &mut self.lanes[index as usize];
        if let Some(group) = group {
            lane.pending.release(group, Instant::now());
        }
        if holds_budget && let Some(budget) = lane.config.budget() {
            self.budget_wakes.extend(budget.release());
        }
        if let Some(budget) = &mut self.budget
            && lane.active > lane.config.min_concurrency
        {
            budget.shared_used -= 1;
        }
        lane.active -= 1;
        self.total_active -= 1;
        self.mark_ready(index);
    }

    /// Removes every pending command of `tasks` from its lane, in one pass per lane
    /// concerned; returns the removed tasks.
    pub(crate) fn remove_pending_many(
        &mut self,
        tasks: &[Arc<Task>],
        signals: &mut Vec<LaneSignal>,
    ) -> Vec<Arc<Task>> {
        let ids: std::collections::HashSet<CommandId> = tasks.iter().map(|t| t.id).collect();
        let mut lanes: Vec<LaneIdx> = tasks.iter().map(|t| t.lane()).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let mut removed = Vec::new();
        let now = Instant::now();
        for index in lanes {
            let mut groups: Vec<&str> = tasks
                .iter()
                .filter(|task| task.lane() == index)
                .map(|task| task.group.as_deref().unwrap_or(crate::group::UNGROUPED))
                .collect();
            groups.sort_unstable();
            groups.dedup();
            let lane = &mut self.lanes[index as usize];
            let taken = lane
                .pending
                .remove_where(|task| ids.contains(&task.id), &groups, now);
            for _ in 0..taken.len() {
                signals.extend(self.after_dequeue(index));
            }
            removed.extend(taken);
        }
        removed
    }

    /// A failed command waits for its retry delay.
    pub(crate) fn set_delayed(&mut self, task: &Arc<Task>, at: Instant) {
        task.failures.fetch_add(1, Ordering::Relaxed);
        let wait = at.saturating_duration_since(Instant::now());
        task.due_at_ms.store(
            crate::queue::now_ms()
                .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            Ordering::Relaxed,
        );
        self.enter_delayed(task);
        self.timers.schedule(at, TimerKind::Retry(task.clone()));
    }

    /// A new command waits for its start time, then goes to the back of its lane.
    pub(crate) fn set_not_before(&mut self, task: &Arc<Task>, at: Instant) {
        self.enter_delayed(task);
        self.timers.schedule(at, TimerKind::Due(task.clone()));
    }

    /// Arms a new command's start-by deadline.
    pub(crate) fn arm_deadline(&mut self, task: &Arc<Task>) {
        if let Some(at) = task.start_by {
            self.timers.schedule(at, TimerKind::Expire(task.clone()));
        }
    }

    fn enter_delayed(&mut self, task: &Arc<Task>) {
        task.set_phase(Phase::Delayed);
        self.total_delayed += 1;
        self.lanes[task.lane() as usize].delayed += 1;
    }

    /// A delayed command leaves the delayed set (due, cancelled or expired).
    pub(crate) fn leave_delayed(&mut self, task: &Task) {
        self.total_delayed -= 1;
        self.lanes[task.lane() as usize].delayed -= 1;
    }

    /// Ends a command whose start-by deadline passed before it started (its timer
    /// fired); a command that started, or already ended, is left alone.
    pub(crate) fn expire(&mut self, task: &Arc<Task>, now: Instant, signals: &mut Vec<LaneSignal>) {
        if !task.is_expired(now) {
            return;
        }
        match task.phase() {
            Phase::Pending => {
                if self
                    .remove_pending_many(std::slice::from_ref(task), signals)
                    .is_empty()
                {
                    return;
                }
            }
            Phase::Delayed => self.leave_delayed(task),
            Phase::Running | Phase::Done => return,
        }
        self.lanes[task.lane() as usize].expired += 1;
        self.finish_task(task);
        self.retain_expired(task, now);
        self.expired.push(task.clone());
    }

    fn retain_expired(&mut self, task: &Task, now: Instant) {
        let error = expired_error(task, &self.lanes[task.lane() as usize].id);
        self.retain(
            task,
            CommandState::Expired,
            None,
            Some(CommandFailure::from_error(&error)),
            false,
            now,
        );
    }

    /// Keeps a finished command's record as its lane's retention says (call right after
    /// [`finish_task`](Self::finish_task), in the same lock hold, so a lookup finds the
    /// command live or finished, never neither).
    pub(crate) fn retain(
        &mut self,
        task: &Task,
        state: CommandState,
        result: Option<Value>,
        error: Option<CommandFailure>,
        ended_a_run: bool,
        now: Instant,
    ) {
        let index = task.lane() as usize;
        let lane = &self.lanes[index];
        let retention = lane.config.retention;
        if !retention.keeps_any() {
            return;
        }
        // Failed runs are counted as they end; a run that ends the command completed or
        // cancelled is the one more (a command cancelled while waiting ran only failures).
        let attempts = match state {
            CommandState::Completed => task.failures() + 1,
            CommandState::Cancelled if ended_a_run => task.failures() + 1,
            _ => task.failures(),
        };
        let mut status = CommandStatus::new(
            task.id,
            &*lane.id,
            task.command.command_type(),
            state,
            attempts,
        );
        status.submitted_at_ms = Some(task.created_at_ms).filter(|ms| *ms != 0);
        status.started_at_ms = task.started_at_ms();
        status.finished_at_ms = Some(crate::queue::now_ms());
        status.result = result;
        status.error = error;
        self.retained.keep(index, retention, status, now);
    }

    pub(crate) fn record_failure(&self, task: &Task) {
        task.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finish_task(&mut self, task: &Task) {
        task.set_phase(Phase::Done);
        Self::forget_live(&mut self.tasks, &mut self.keys, task);
    }

    /// Adds a live command (and its idempotency key).
    pub(crate) fn add_live(&mut self, task: &Arc<Task>) {
        let retention = self.lanes[task.lane() as usize].config.retention;
        task.retained
            .store(retention.keeps_any(), Ordering::Relaxed);
        if let Some(key) = &task.key {
            self.keys.insert(key.clone(), task.id);
        }
        self.tasks.insert(task.id, task.clone());
    }

    /// The live command holding idempotency key `key`, if any, with a new receiver of
    /// its result for the submit that found it (registered under the state lock, so
    /// before the holder's reply).
    pub(crate) fn join_holder(
        &self,
        key: &str,
    ) -> Option<(Arc<Task>, oneshot::Receiver<Result<Value>>)> {
        let holder = self.keys.get(key).and_then(|id| self.tasks.get(id))?;
        Some((holder.clone(), holder.add_duplicate()))
    }

    /// Drops a command that ended from the live map, and frees its key (fields apart,
    /// for callers that hold a borrow of a lane).
    fn forget_live(
        tasks: &mut TaskMap<Arc<Task>>,
        keys: &mut std::collections::HashMap<Box<str>, CommandId>,
        task: &Task,
    ) {
        tasks.remove(&task.id);
        if let Some(key) = &task.key
            && keys.get(key) == Some(&task.id)
        {
            keys.remove(key);
        }
    }

    /// Pauses (indefinitely) or resumes a lane; either ends any timed pause.
    pub(crate) fn set_paused(&mut self, index: LaneIdx, paused: bool) {
        let lane = &mut self.lanes[index as usize];
        lane.paused = paused;
        lane.paused_until = None;
        self.mark_ready(index);
    }

    /// Pauses a lane until `until`, extending (never shortening) a timed pause in effect.
    /// Returns false, changing nothing, when the lane is paused indefinitely.
    pub(crate) fn pause_until(&mut self, index: LaneIdx, until: Instant) -> bool {
        let lane = &mut self.lanes[index as usize];
        if lane.paused && lane.paused_until.is_none() {
            return false;
        }
        lane.paused = true;
        lane.paused_until = Some(
            lane.paused_until
                .map_or(until, |current| current.max(until)),
        );
        true
    }

    /// Ends a timed pause whose end has come (a later extension keeps the lane paused).
    pub(crate) fn resume_if_due(&mut self, index: LaneIdx, now: Instant) {
        let lane = &mut self.lanes[index as usize];
        if lane.paused && lane.paused_until.is_some_and(|until| until <= now) {
            lane.paused = false;
            lane.paused_until = None;
        }
        self.mark_ready(index);
    }

    pub(crate) fn unthrottle(&mut self, index: LaneIdx) {
        self.lanes[index as usize].throttled = false;
        self.mark_ready(index);
    }

    /// A lane waiting for its shared budget may ask again: a slot was handed to it, or
    /// the budget's next permit is due.
    pub(crate) fn unblock_budget(&mut self, index: LaneIdx) {
        self.lanes[index as usize].budget_blocked = false;
        self.mark_ready(index);
    }

    /// A slot handed to lane `index` that it did not use (nothing to start after all)
    /// goes on to the next waiting lane. A lane waiting for the budget's next permit
    /// keeps it.
    pub(crate) fn give_back_unused_budget(&mut self, index: LaneIdx) {
        if self.lanes[index as usize].budget_blocked {
            return;
        }
        if let (Some(budget), Some(waker)) = (
            self.lanes[index as usize].config.budget(),
            &self.budget_waker,
        ) {
            self.budget_wakes
                .extend(budget.give_back_grant(waker, index));
        }
    }

    /// A group's rate limit may admit again.
    pub(crate) fn unthrottle_group(&mut self, index: LaneIdx, group: &str, now: Instant) {
        self.lanes[index as usize]
            .pending
            .unthrottle_group(group, now);
        self.mark_ready(index);
    }

    /// Pauses or resumes a group of a lane.
    pub(crate) fn set_group_paused(&mut self, index: LaneIdx, group: &str, paused: bool) {
        let lane = &mut self.lanes[index as usize];
        let rules = lane.config.group_rules().clone();
        lane.pending
            .set_group_paused(group, paused, Instant::now(), &rules);
        self.mark_ready(index);
    }

    pub(crate) fn shutting_down_hard(&self) -> bool {
        self.hard_stop
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.total_pending == 0 && self.total_active == 0 && self.total_delayed == 0
    }

    pub(crate) fn stats(&self, now: Instant) -> QueueStats {
        QueueStats {
            total_pending: self.total_pending,
            total_active: self.total_active,
            total_delayed: self.total_delayed,
            lanes: self
                .lanes
                .iter()
                .map(|l| (l.id.to_string(), l.status(now)))
                .collect(),
        }
    }
}
