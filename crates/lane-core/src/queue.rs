//! [`CommandQueue`]: accepts commands, runs them on tokio tasks, and applies the
//! scheduler's decisions.
//!
//! There is no scheduler task. Whoever changes the state (a submit, a finished run, a
//! cancel, a resume, the timer task) dispatches every command that now fits, while it
//! holds the state lock, and acts on the result after releasing it. A runner that
//! finishes a command keeps going with the next dispatched one instead of spawning,
//! which is why a saturated lane costs no task spawn per command.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{CancelOutcome, CommandState, CommandStatus};
use crate::command::{Command, CommandContext, CommandId, HandlerRegistry, ReplayableCommand};
use crate::config::LaneConfig;
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::{LaneError, Result};
use crate::event::{EventEmitter, keys};
use crate::handle::CommandHandle;
use crate::journal::Journal;
use crate::observer::{CommandInfo, Observer, QueueProbe, RunOutcome};
use crate::runner::{self, RunEnd, RunLimits};
use crate::scheduler::timers::TimerKind;
use crate::scheduler::{Dispatch, Dispatches, LaneIdx, LaneSignal, Phase, State, Task};
use crate::spawner::Spawner;
use crate::stats::{LaneStatus, QueueStats};
use crate::storage::{StorageOp, StoredCommand};

/// The lanes, their pending commands and the scheduler. Usually reached through
/// [`QueueManager`](crate::QueueManager); shared as `Arc<CommandQueue>`.
pub struct CommandQueue {
    state: Mutex<State>,
    /// Lane names readable without the state lock; allocated only for a queue with
    /// observers, so an unobserved queue stays small.
    directory: Option<Box<LaneDirectory>>,
    events: EventEmitter,
    observers: Vec<Arc<dyn Observer>>,
    /// The observers that asked for [`Observer::on_lane_depth`] reports.
    depth_observers: Vec<Arc<dyn Observer>>,
    handlers: HandlerRegistry,
    dlq: Option<DeadLetterQueue>,
    journal: Option<Journal>,
    spawner: Option<Arc<dyn Spawner>>,
    next_id: AtomicU64,
    runtime: OnceLock<Handle>,
    timer_wake: Arc<Notify>,
    idle: Notify,
}

impl std::fmt::Debug for CommandQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("CommandQueue")
            .field("lanes", &state.lanes.len())
            .field("pending", &state.total_pending)
            .field("active", &state.total_active)
            .field("started", &state.started)
            .finish_non_exhaustive()
    }
}

/// What to do after the state lock is released.
#[derive(Default)]
struct Effects {
    start: Dispatches,
    signals: Vec<LaneSignal>,
    /// Each touched lane's depth, read under the lock, for observers.
    depths: Depths,
    idle: bool,
}

pub(crate) struct QueueParts {
    pub(crate) events: EventEmitter,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    pub(crate) handlers: HandlerRegistry,
    pub(crate) dlq: Option<DeadLetterQueue>,
    pub(crate) journal: Option<Journal>,
    pub(crate) spawner: Option<Arc<dyn Spawner>>,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) first_id: CommandId,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl CommandQueue {
    /// An empty queue (add lanes with [`CommandQueue::add_lane`]).
    pub fn new(events: EventEmitter) -> Self {
        Self::from_parts(QueueParts {
            events,
            observers: Vec::new(),
            handlers: HandlerRegistry::default(),
            dlq: None,
            journal: None,
            spawner: None,
            max_concurrency: None,
            first_id: 1,
        })
    }

    /// An empty queue that records failed commands in `dlq`.
    pub fn with_dlq(events: EventEmitter, dlq: DeadLetterQueue) -> Self {
        let mut queue = Self::new(events);
        queue.dlq = Some(dlq);
        queue
    }

    pub(crate) fn from_parts(parts: QueueParts) -> Self {
        Self {
            state: Mutex::new(State::new(parts.max_concurrency)),
            directory: (!parts.observers.is_empty()).then(Box::default),
            events: parts.events,
            depth_observers: parts
                .observers
                .iter()
                .filter(|observer| observer.wants_lane_depth())
                .cloned()
                .collect(),
            observers: parts.observers,
            handlers: parts.handlers,
            dlq: parts.dlq,
            journal: parts.journal,
            spawner: parts.spawner,
            next_id: AtomicU64::new(parts.first_id),
            runtime: OnceLock::new(),
            timer_wake: Arc::new(Notify::new()),
            idle: Notify::new(),
        }
    }

    /// The first observer of type `T` given to the builder (for example the
    /// `QueueMetrics` or `AlertManager` that watches this queue).
    pub fn observer<T: Observer>(&self) -> Option<Arc<T>> {
        self.observers.iter().find_map(|observer| {
            let any: Arc<dyn Any + Send + Sync> = observer.clone();
            any.downcast::<T>().ok()
        })
    }

    /// Hands each observer a [`QueueProbe`] of this queue.
    pub(crate) fn attach_observers(self: &Arc<Self>) {
        for observer in &self.observers {
            observer.attach(QueueProbe::new(self));
        }
    }

    /// Adds a lane. Fails with [`LaneError::ConfigError`] for a duplicate id, an invalid
    /// config, or reserved slots beyond the global budget.
    pub fn add_lane(&self, id: &str, config: LaneConfig, priority: u8) -> Result<()> {
        let mut state = self.state.lock();
        state.add_lane(id, config, priority)?;
        if let Some(directory) = &self.directory {
            let index = state.lanes.len() - 1;
            directory.register(index, state.lanes[index].id.clone());
        }
        Ok(())
    }

    /// The emitter this queue publishes its events on.
    pub fn events(&self) -> &EventEmitter {
        &self.events
    }

    /// The handlers for replayable commands.
    pub fn handlers(&self) -> &HandlerRegistry {
        &self.handlers
    }

    /// The dead letters, if the queue keeps them.
    pub fn dead_letters(&self) -> Option<&DeadLetterQueue> {
        self.dlq.as_ref()
    }

    /// Starts dispatching on the current tokio runtime. Commands submitted before are
    /// kept in their lanes and start now. Calling it again does nothing.
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let handle = Handle::try_current().map_err(|_| {
            LaneError::QueueError("start() must be called from inside a tokio runtime".into())
        })?;
        let _ = self.runtime.set(handle);
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            if state.started {
                return Ok(());
            }
            state.started = true;
            for index in 0..state.lanes.len() as LaneIdx {
                state.mark_ready(index);
            }
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            // Deadlines set before start (a timed pause) had no runtime to drive them.
            if state.timers.next_deadline().is_some() {
                self.ensure_timer_driver(&mut state);
            }
            self.capture_depths(&state, &mut effects, &[]);
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Whether [`CommandQueue::start`] was called.
    pub fn is_started(&self) -> bool {
        self.state.lock().started
    }

    pub(crate) fn next_id(&self) -> CommandId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits a command; the receiver yields its final result.
    pub async fn submit(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<oneshot::Receiver<Result<Value>>> {
        let (_, rx) = self.accept(lane_id, command, None, 0).await?;
        Ok(rx)
    }

    /// Submits a command and returns a [`CommandHandle`] to await or cancel it.
    pub async fn submit_with_handle(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<CommandHandle> {
        let (id, rx) = self.accept(lane_id, command, None, 0).await?;
        Ok(CommandHandle::new(id, Arc::downgrade(self), rx))
    }

    /// Submits a replayable command: `payload` runs with the handler registered for
    /// `command_type`. With storage configured it is durable before this returns.
    pub async fn submit_replayable(
        self: &Arc<Self>,
        lane_id: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<CommandHandle> {
        let handler = self.handlers.get(command_type)?;
        let command = Box::new(ReplayableCommand {
            command_type: command_type.to_owned(),
            payload: payload.clone(),
            handler,
        });
        let (id, rx) = self.accept(lane_id, command, Some(payload), 0).await?;
        Ok(CommandHandle::new(id, Arc::downgrade(self), rx))
    }

    async fn accept(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
        payload: Option<Value>,
        failures: u32,
    ) -> Result<(CommandId, oneshot::Receiver<Result<Value>>)> {
        // Without a journal the lane is looked up in the lock hold that queues the
        // command: one acquisition of the state lock per submit.
        let mut lane = LaneRef::Name(lane_id);
        let id = self.next_id();
        let created_at_ms = now_ms();
        if let (Some(journal), Some(payload)) = (&self.journal, &payload) {
            // Checked before the durable write, which a refused command must not make.
            lane = LaneRef::Index({
                let state = self.state.lock();
                if state.shutting_down {
                    return Err(LaneError::ShutdownInProgress);
                }
                state.lane_index(lane_id)?
            });
            journal
                .write_durably(StorageOp::SaveCommand(StoredCommand {
                    id,
                    lane_id: lane_id.to_owned(),
                    command_type: command.command_type().to_owned(),
                    payload: payload.clone(),
                    attempts: failures,
                    created_at: created_at_ms,
                }))
                .await?;
        }
        // The submitter's span, if someone traces; its `lane.command` children are the runs.
        let span = tracing::Span::current();
        // Lane 0 until `insert` sets the real one under the lock.
        let (task, rx) = Task::new(id, 0, command, payload, failures, created_at_ms, span);
        self.insert(task, lane)?;
        Ok((id, rx))
    }

    /// Puts an accepted task at the back of its lane and dispatches.
    fn insert(self: &Arc<Self>, task: Arc<Task>, lane_ref: LaneRef<'_>) -> Result<()> {
        let mut effects = Effects::default();
        let lane;
        {
            let mut state = self.state.lock();
            let now = Instant::now();
            if state.shutting_down {
                drop(state);
                self.forget(&task);
                return Err(LaneError::ShutdownInProgress);
            }
            task.set_lane(match lane_ref {
                LaneRef::Index(index) => index,
                LaneRef::Name(name) => state.lane_index(name)?,
            });
            state.tasks.insert(task.id, task.clone());
            effects
                .signals
                .extend(state.enqueue(task.clone(), now, false));
            self.dispatch_locked(&mut state, now, &mut effects);
            self.capture_depths(&state, &mut effects, &[task.lane()]);
            lane = (!self.observers.is_empty() || self.events.has_subscribers())
                .then(|| self.lane_name(&state, task.lane()));
        }
        if let Some(lane) = lane {
            let lane: &str = &lane;
            let info = info(&task, lane, task.failures() + 1);
            for observer in &self.observers {
                observer.on_submit(&info);
            }
            self.events.emit_with(keys::COMMAND_SUBMITTED, || {
                json!({ "lane_id": &*lane, "command_id": task.id, "command_type": task.command.command_type() })
            });
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Drops the journal record of a command that was never queued.
    fn forget(&self, task: &Task) {
        if let (Some(journal), Some(_)) = (&self.journal, &task.payload) {
            journal.write(StorageOp::RemoveCommand(task.id));
        }
    }

    /// A lane's name: borrowed from the directory, or cloned from `state` for lanes
    /// beyond the directory.
    fn lane_name<'a>(&'a self, state: &State, lane: LaneIdx) -> LaneName<'a> {
        match self.directory.as_ref().and_then(|d| d.name(lane)) {
            Some(name) => LaneName::Borrowed(name),
            None => LaneName::Owned(state.lane(lane).id.clone()),
        }
    }

    /// [`CommandQueue::lane_name`] without the state lock held: the lock is taken only
    /// for lanes beyond the directory.
    fn lane_name_unlocked(&self, lane: LaneIdx) -> LaneName<'_> {
        match self.directory.as_ref().and_then(|d| d.name(lane)) {
            Some(name) => LaneName::Borrowed(name),
            None => LaneName::Owned(self.state.lock().lane(lane).id.clone()),
        }
    }

    fn spawn(self: &Arc<Self>, dispatch: Dispatch) {
        let runner = self.clone().run(dispatch);
        if let Some(spawner) = &self.spawner {
            spawner.spawn(Box::pin(runner));
            return;
        }
        let handle = self
            .runtime
            .get()
            .expect("dispatch happens only after start()");
        handle.spawn(runner);
    }

    /// Publishes effects and starts dispatched commands; returns one to run inline when
    /// the caller is a runner (`keep_one`).
    fn apply(self: &Arc<Self>, mut effects: Effects, keep_one: bool) -> Option<Dispatch> {
        let notify_observers = !self.observers.is_empty();
        if notify_observers || self.events.has_subscribers() {
            for dispatch in &effects.start {
                let info = info(&dispatch.task, &dispatch.lane, dispatch.attempt);
                for observer in &self.observers {
                    observer.on_start(&info, dispatch.waited);
                }
                self.events.emit_with(keys::COMMAND_STARTED, || {
                    json!({
                        "lane_id": &*dispatch.lane,
                        "command_id": dispatch.task.id,
                        "command_type": dispatch.task.command.command_type(),
                        "attempt": dispatch.attempt,
                    })
                });
            }
            for signal in &effects.signals {
                match signal {
                    LaneSignal::Pressure { lane, pending } => self.events.emit_with(
                        keys::LANE_PRESSURE,
                        || json!({ "lane_id": &**lane, "pending": pending }),
                    ),
                    LaneSignal::Idle { lane } => self
                        .events
                        .emit_with(keys::LANE_IDLE, || json!({ "lane_id": &**lane })),
                }
            }
        }
        if !effects.depths.is_empty() {
            self.report_depths(&effects.depths);
        }
        if effects.idle {
            self.became_idle();
        }
        let keep = if keep_one { effects.start.pop() } else { None };
        for dispatch in effects.start {
            self.spawn(dispatch);
        }
        keep
    }

    /// Under the state lock: records the depth of the lanes in `touched` and of the lanes
    /// commands were just dispatched from, for the observers that want depth reports.
    fn capture_depths(&self, state: &State, effects: &mut Effects, touched: &[LaneIdx]) {
        if self.depth_observers.is_empty() {
            return;
        }
        let started = effects.start.iter().map(|d| d.task.lane());
        for index in touched.iter().copied().chain(started) {
            if !effects.depths.contains(index) {
                let lane = state.lane(index);
                effects.depths.push(Depth {
                    lane: index,
                    pending: lane.pending.len(),
                    active: lane.active,
                });
            }
        }
    }

    /// Reports captured depths, after the lock is released. Reports made on different
    /// threads may arrive out of order; the exact depth now is always one
    /// [`QueueProbe`](crate::QueueProbe) read away.
    fn report_depths(&self, depths: &Depths) {
        for depth in depths.iter() {
            let name = self.lane_name_unlocked(depth.lane);
            for observer in &self.depth_observers {
                observer.on_lane_depth(&name, depth.pending, depth.active);
            }
        }
    }

    async fn run(self: Arc<Self>, mut dispatch: Dispatch) {
        loop {
            // Run time is reported to observers and subscribers only; nobody, no clock read.
            let timed = !self.observers.is_empty() || self.events.has_subscribers();
            let started = timed.then(Instant::now);
            let result = Self::execute(&dispatch, &self.events).await;
            let elapsed = started.map_or(Duration::ZERO, |started| started.elapsed());
            match self.finish(dispatch, result, elapsed) {
                Some(next) => {
                    dispatch = next;
                    tokio::task::consume_budget().await;
                }
                None => return,
            }
        }
    }

    async fn execute(dispatch: &Dispatch, events: &EventEmitter) -> RunEnd {
        let task = &dispatch.task;
        if task.cancel.is_requested() {
            return RunEnd::Cancelled(runner::CANCELLED_BEFORE_START);
        }
        let ctx = CommandContext::new(
            task.id,
            dispatch.lane.clone(),
            dispatch.attempt,
            task.cancel.clone(),
            events.clone(),
        );
        // One span per run, a child of the submitter's span. Without a subscriber this is
        // a disabled span: no allocation, and entering it does nothing.
        let span = tracing::info_span!(
            target: "a3s_lane",
            parent: &task.span,
            "lane.command",
            lane = &*dispatch.lane,
            command_id = task.id,
            command_type = task.command.command_type(),
            attempt = i64::from(dispatch.attempt),
            otel.kind = "consumer",
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let limits = RunLimits {
            timeout: dispatch.timeout,
            cancel_grace: dispatch.grace,
        };
        let run = ctx.scope(task.command.execute()).instrument(span.clone());
        let result = runner::supervise_with(&task.cancel, limits, run).await;
        if !span.is_disabled() {
            let (outcome, failed) = match &result {
                RunEnd::Ok(_) => ("completed", false),
                RunEnd::Err(error) if error.is_timeout() => ("timed_out", true),
                RunEnd::Err(_) => ("failed", true),
                RunEnd::Cancelled(_) => ("cancelled", false),
            };
            span.record("outcome", outcome);
            if failed {
                span.record("otel.status_code", "ERROR");
            }
        }
        result
    }

    /// Books a finished run: retry, dead letter or final reply; then dispatches.
    fn finish(
        self: &Arc<Self>,
        dispatch: Dispatch,
        result: RunEnd,
        elapsed: Duration,
    ) -> Option<Dispatch> {
        let Dispatch {
            task,
            lane: lane_name,
            attempt,
            ..
        } = dispatch;
        let mut effects = Effects::default();
        let mut retry_delay = None;
        let mut stopped_before_retry = false;
        let now = Instant::now();
        {
            let mut state = self.state.lock();
            state.release(task.lane());
            if let RunEnd::Err(error) = &result
                && error.is_retryable()
            {
                let lane = state.lane(task.lane());
                retry_delay = lane
                    .config
                    .retry_strategy()
                    .and_then(|strategy| strategy.retry_delay(task.failures() + 1, error));
                // After a hard stop a failure that would be retried is not a dead letter:
                // like a delayed retry cancelled by the stop, it stays in storage (with
                // this failure counted) and runs again on the next start.
                if retry_delay.is_some() && state.shutting_down_hard() {
                    retry_delay = None;
                    stopped_before_retry = true;
                }
            }
            match retry_delay {
                Some(delay) if delay.is_zero() => {
                    state.record_failure(&task);
                    effects
                        .signals
                        .extend(state.enqueue(task.clone(), now, true));
                }
                Some(delay) => state.set_delayed(&task, now + delay),
                None => {
                    if matches!(result, RunEnd::Err(_)) {
                        state.record_failure(&task);
                    }
                    state.finish_task(&task);
                }
            }
            self.dispatch_locked(&mut state, now, &mut effects);
            self.capture_depths(&state, &mut effects, &[task.lane()]);
            effects.idle = state.is_idle();
            if retry_delay.is_some_and(|d| !d.is_zero()) {
                self.ensure_timer_driver(&mut state);
            }
        }
        if stopped_before_retry {
            self.report_stopped_before_retry(&task, &lane_name, attempt, result, elapsed);
        } else {
            self.report_finish(&task, &lane_name, attempt, result, retry_delay, elapsed);
        }
        self.apply(effects, true)
    }

    /// A command failed during a hard stop and would have been retried: it is reported
    /// as cancelled by the stop and its journal record keeps the new failure count.
    fn report_stopped_before_retry(
        &self,
        task: &Arc<Task>,
        lane: &Arc<str>,
        attempt: u32,
        result: RunEnd,
        elapsed: Duration,
    ) {
        let RunEnd::Err(error) = result else {
            return;
        };
        let info = info(task, lane, attempt);
        for observer in &self.observers {
            observer.on_finish(
                &info,
                RunOutcome::Failed {
                    error: &error,
                    retrying: false,
                },
                elapsed,
            );
        }
        const REASON: &str = "the queue was stopped before the command's retry";
        self.events.emit_with(keys::COMMAND_CANCELLED, || {
            json!({ "lane_id": &**lane, "command_id": task.id, "was_running": true, "reason": REASON, "error": error.to_string() })
        });
        self.journal_failure_count(task, lane);
        task.reply(Err(LaneError::Cancelled(REASON.into())));
    }

    fn report_finish(
        &self,
        task: &Arc<Task>,
        lane: &Arc<str>,
        attempt: u32,
        result: RunEnd,
        retry_delay: Option<Duration>,
        elapsed: Duration,
    ) {
        let info = info(task, lane, attempt);
        let retrying = retry_delay.is_some();
        match result {
            RunEnd::Ok(value) => {
                for observer in &self.observers {
                    observer.on_finish(&info, RunOutcome::Completed, elapsed);
                }
                self.events.emit_with(keys::COMMAND_COMPLETED, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "duration_ms": elapsed.as_secs_f64() * 1000.0 })
                });
                self.journal_remove(task);
                task.reply(Ok(value));
            }
            RunEnd::Cancelled(reason) => {
                for observer in &self.observers {
                    observer.on_finish(&info, RunOutcome::Cancelled, elapsed);
                }
                self.events.emit_with(keys::COMMAND_CANCELLED, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "was_running": true, "reason": reason })
                });
                if !task.interrupted.load(Ordering::Relaxed) {
                    self.journal_remove(task);
                }
                task.reply(Err(LaneError::Cancelled(reason.into())));
            }
            RunEnd::Err(error) => {
                let outcome = if error.is_timeout() {
                    RunOutcome::TimedOut { retrying }
                } else {
                    RunOutcome::Failed {
                        error: &error,
                        retrying,
                    }
                };
                for observer in &self.observers {
                    observer.on_finish(&info, outcome, elapsed);
                }
                if let Some(delay) = retry_delay {
                    for observer in &self.observers {
                        observer.on_retry(&info, delay);
                    }
                    self.events.emit_with(keys::COMMAND_RETRY, || {
                        json!({
                            "lane_id": &**lane,
                            "command_id": task.id,
                            "attempt": task.failures() + 1,
                            "delay_ms": delay.as_millis() as u64,
                            "error": error.to_string(),
                        })
                    });
                    self.journal_failure_count(task, lane);
                    return;
                }
                let key = if error.is_timeout() {
                    keys::COMMAND_TIMEOUT
                } else {
                    keys::COMMAND_FAILED
                };
                self.events.emit_with(key, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "error": error.to_string() })
                });
                self.dead_letter(task, lane, &info, &error);
                task.reply(Err(error));
            }
        }
    }

    fn dead_letter(&self, task: &Arc<Task>, lane: &str, info: &CommandInfo<'_>, error: &LaneError) {
        let letter = DeadLetter {
            command_id: task.id,
            command_type: task.command.command_type().to_owned(),
            lane_id: lane.to_owned(),
            error: error.to_string(),
            attempts: task.failures(),
            failed_at: now_ms(),
            payload: task.payload.clone(),
        };
        if self.dlq.is_none() && self.journal.is_none() {
            return;
        }
        for observer in &self.observers {
            observer.on_dead_letter(info);
        }
        self.events.emit_with(keys::COMMAND_DEAD_LETTERED, || {
            json!({
                "lane_id": lane,
                "command_id": task.id,
                "command_type": task.command.command_type(),
                "error": error.to_string(),
            })
        });
        // The dead letter is recorded before the command is removed, so a crash in
        // between leaves the command to recover rather than losing it. A queue with a
        // journal has attached it to its dead letters, so `push_sync` writes the letter.
        match (&self.dlq, &self.journal) {
            (Some(dlq), _) => {
                dlq.push_sync(letter);
            }
            (None, Some(journal)) => journal.write(StorageOp::SaveDeadLetter(letter)),
            (None, None) => {}
        }
        self.journal_remove(task);
    }

    /// Rewrites a durable command's record with its new failure count.
    fn journal_failure_count(&self, task: &Task, lane: &str) {
        if let (Some(journal), Some(payload)) = (&self.journal, &task.payload) {
            journal.write(StorageOp::SaveCommand(StoredCommand {
                id: task.id,
                lane_id: lane.to_owned(),
                command_type: task.command.command_type().to_owned(),
                payload: payload.clone(),
                attempts: task.failures(),
                created_at: task.created_at_ms,
            }));
        }
    }

    fn journal_remove(&self, task: &Task) {
        if let (Some(journal), Some(_)) = (&self.journal, &task.payload) {
            journal.write(StorageOp::RemoveCommand(task.id));
        }
    }

    /// Dispatches under the lock; when that throttled a lane (its admission policy named
    /// the instant it may start again), makes sure the timer task will wake it then.
    fn dispatch_locked(self: &Arc<Self>, state: &mut State, now: Instant, effects: &mut Effects) {
        state.dispatch(now, &mut effects.start, &mut effects.signals);
        if state.timers.take_scheduled() {
            self.ensure_timer_driver(state);
        }
    }

    /// Spawns the timer task if it is not running, or wakes it to re-read the deadline.
    fn ensure_timer_driver(self: &Arc<Self>, state: &mut State) {
        state.timers.take_scheduled();
        if state.timers.driver_running {
            self.timer_wake.notify_one();
            return;
        }
        let Some(handle) = self.runtime.get() else {
            return;
        };
        state.timers.driver_running = true;
        let queue = Arc::downgrade(self);
        let wake = self.timer_wake.clone();
        handle.spawn(async move {
            loop {
                // A weak reference: a dropped queue ends the timer task at its next wake-up.
                let Some(deadline) = queue.upgrade().and_then(|queue| queue.fire_timers()) else {
                    return;
                };
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }

    /// Acts on every due timer and dispatches; returns the next deadline, or `None`
    /// (and marks the driver stopped) when no timer is left.
    fn fire_timers(self: &Arc<Self>) -> Option<Instant> {
        let mut effects = Effects::default();
        let mut cancelled_while_delayed = Vec::new();
        let next = {
            let mut state = self.state.lock();
            let now = Instant::now();
            while let Some(kind) = state.timers.pop_due(now) {
                match kind {
                    TimerKind::Retry(task) => {
                        if task.phase() == Phase::Delayed {
                            state.total_delayed -= 1;
                            if state.shutting_down_hard() {
                                cancelled_while_delayed.push(task);
                                continue;
                            }
                            effects.signals.extend(state.enqueue(task, now, true));
                        }
                    }
                    TimerKind::Unthrottle(lane) => state.unthrottle(lane),
                    TimerKind::Resume(lane) => state.resume_if_due(lane, now),
                }
            }
            state.dispatch(now, &mut effects.start, &mut effects.signals);
            self.capture_depths(&state, &mut effects, &[]);
            // This is the timer task: it reads the next deadline below, so new ones need no wake-up.
            state.timers.take_scheduled();
            effects.idle = state.is_idle();
            let next = state.timers.next_deadline();
            if next.is_none() {
                state.timers.driver_running = false;
            }
            for task in &cancelled_while_delayed {
                state.finish_task(task);
            }
            next
        };
        for task in cancelled_while_delayed {
            task.reply(Err(LaneError::Cancelled("the queue was stopped".into())));
        }
        self.apply(effects, false);
        next
    }

    /// Cancels a pending, delayed or running command. Returns false when no such command
    /// is live (it finished, or the id is unknown).
    pub fn cancel(self: &Arc<Self>, id: CommandId) -> bool {
        let select = |state: &State| state.tasks.get(&id).cloned().into_iter().collect();
        self.cancel_where(select, "cancelled by request", false) > 0
    }

    /// Cancels every pending, delayed and running command of a lane; returns how many.
    pub fn cancel_lane(self: &Arc<Self>, lane_id: &str) -> Result<usize> {
        let lane = self.state.lock().lane_index(lane_id)?;
        Ok(self.cancel_where(
            live_where(|task| task.lane() == lane),
            "lane cancelled",
            false,
        ))
    }

    /// Cancels everything live; `interrupted` keeps the commands in the journal.
    pub(crate) fn cancel_all(self: &Arc<Self>, reason: &'static str, interrupted: bool) -> usize {
        self.cancel_where(live_where(|_| true), reason, interrupted)
    }

    /// Cancels the live commands `select` picks (under the state lock).
    fn cancel_where(
        self: &Arc<Self>,
        select: impl FnOnce(&State) -> Vec<Arc<Task>>,
        reason: &'static str,
        interrupted: bool,
    ) -> usize {
        let mut effects = Effects::default();
        let mut dropped = Vec::new();
        let mut pending = Vec::new();
        let mut signalled = 0;
        {
            let mut state = self.state.lock();
            for task in select(&state) {
                if interrupted {
                    task.interrupted.store(true, Ordering::Relaxed);
                }
                match task.phase() {
                    Phase::Pending => {
                        pending.push(task);
                    }
                    Phase::Delayed => {
                        state.total_delayed -= 1;
                        state.finish_task(&task);
                        dropped.push(task);
                    }
                    Phase::Running => {
                        if task.cancel.request() {
                            signalled += 1;
                        }
                    }
                    Phase::Done => {}
                }
            }
            // One pass over the lanes for all of them: removing pending commands one by
            // one would cost O(pending) each, O(n^2) for a whole lane or a hard stop.
            if !pending.is_empty() {
                for task in state.remove_pending_many(&pending, &mut effects.signals) {
                    state.finish_task(&task);
                    dropped.push(task);
                }
            }
            if !dropped.is_empty() {
                self.dispatch_locked(&mut state, Instant::now(), &mut effects);
                let touched: Vec<LaneIdx> = dropped.iter().map(|t| t.lane()).collect();
                self.capture_depths(&state, &mut effects, &touched);
                effects.idle = state.is_idle();
            }
        }
        let count = dropped.len() + signalled;
        for task in dropped {
            let lane = self.lane_name_unlocked(task.lane());
            let info = info(&task, &lane, task.failures() + 1);
            for observer in &self.observers {
                observer.on_cancel_pending(&info);
            }
            self.events.emit_with(keys::COMMAND_CANCELLED, || {
                json!({ "lane_id": &*lane, "command_id": task.id, "was_running": false, "reason": reason })
            });
            if !interrupted {
                self.journal_remove(&task);
            }
            task.reply(Err(LaneError::Cancelled(reason.into())));
        }
        self.apply(effects, false);
        count
    }

    /// Cancels a command and says what that did ([`CancelOutcome`]).
    pub fn cancel_command(self: &Arc<Self>, id: CommandId) -> CancelOutcome {
        if self.cancel(id) {
            // A cancelled pending or delayed command is gone at once; a running one stays
            // until it stops.
            let running = self
                .state
                .lock()
                .tasks
                .get(&id)
                .is_some_and(|task| task.phase() == Phase::Running);
            return if running {
                CancelOutcome::Signalled
            } else {
                CancelOutcome::Cancelled
            };
        }
        if self.command_status(id).is_some() || id < self.next_id.load(Ordering::Relaxed) {
            CancelOutcome::AlreadyFinished
        } else {
            CancelOutcome::Unknown
        }
    }

    /// Where a live command or a dead letter is; `None` for a command that finished
    /// otherwise (or never existed).
    pub fn command_status(&self, id: CommandId) -> Option<CommandStatus> {
        {
            let state = self.state.lock();
            if let Some(task) = state.tasks.get(&id) {
                let (state_now, attempts) = match task.phase() {
                    Phase::Pending => (CommandState::Pending, task.failures()),
                    Phase::Delayed => (CommandState::Delayed, task.failures()),
                    Phase::Running => (CommandState::Running, task.failures() + 1),
                    Phase::Done => (CommandState::Completed, task.failures() + 1),
                };
                return Some(CommandStatus {
                    id,
                    lane_id: self.lane_name(&state, task.lane()).to_string(),
                    command_type: task.command.command_type().to_owned(),
                    state: state_now,
                    attempts,
                });
            }
        }
        let letter = self.dlq.as_ref()?.get(id)?;
        Some(CommandStatus {
            id,
            lane_id: letter.lane_id,
            command_type: letter.command_type,
            state: CommandState::DeadLettered,
            attempts: letter.attempts,
        })
    }

    /// Stops starting commands from a lane; running ones continue.
    pub fn pause_lane(&self, lane_id: &str) -> Result<()> {
        let mut state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        state.set_paused(lane, true);
        Ok(())
    }

    /// Pauses a lane for `duration` (for example after an HTTP 429), then resumes it. A
    /// later call extends the pause and an earlier, shorter one never cuts it short; a
    /// lane paused with [`CommandQueue::pause_lane`] stays paused until resumed.
    pub fn pause_lane_for(self: &Arc<Self>, lane_id: &str, duration: Duration) -> Result<()> {
        let mut state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        let until = Instant::now() + duration;
        if state.pause_until(lane, until) {
            state.timers.schedule(until, TimerKind::Resume(lane));
            self.ensure_timer_driver(&mut state);
        }
        Ok(())
    }

    /// Resumes a paused lane and starts what now fits.
    pub fn resume_lane(self: &Arc<Self>, lane_id: &str) -> Result<()> {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let lane = state.lane_index(lane_id)?;
            state.set_paused(lane, false);
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            self.capture_depths(&state, &mut effects, &[]);
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Counts for the whole queue and each lane.
    pub fn stats_now(&self) -> QueueStats {
        self.state.lock().stats(Instant::now())
    }

    /// Counts for the whole queue and each lane (async form of the 0.3 API).
    pub async fn stats(&self) -> QueueStats {
        self.stats_now()
    }

    /// One lane's status, or [`LaneError::LaneNotFound`].
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

    pub(crate) fn begin_shutdown(&self, hard: bool) -> bool {
        let mut state = self.state.lock();
        let first = !state.shutting_down;
        state.shutting_down = true;
        if hard {
            state.hard_stop = true;
        }
        first
    }

    /// Whether shutdown (graceful or hard) has begun; no new command is accepted.
    pub fn is_shutting_down(&self) -> bool {
        self.state.lock().shutting_down
    }

    fn became_idle(&self) {
        let complete = {
            let mut state = self.state.lock();
            if state.shutting_down && state.is_idle() && !state.shutdown_complete_sent {
                state.shutdown_complete_sent = true;
                true
            } else {
                false
            }
        };
        if complete {
            self.events.emit_with(keys::SHUTDOWN_COMPLETE, || json!({}));
        }
        self.idle.notify_waiters();
    }

    /// Reports idleness after `shutdown()` when nothing was running.
    pub(crate) fn check_idle(&self) {
        if self.state.lock().is_idle() {
            self.became_idle();
        }
    }

    /// Waits until no command is pending, delayed or running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }

    /// Puts a recovered command at the FRONT of its lane (ahead of anything submitted
    /// before `start`); the manager feeds them newest first, so they keep their order.
    pub(crate) fn recover(self: &Arc<Self>, task: Arc<Task>) {
        let mut state = self.state.lock();
        state.tasks.insert(task.id, task.clone());
        let _ = state.enqueue(task, Instant::now(), true);
    }

    pub(crate) fn lane_index_of(&self, lane_id: &str) -> Result<LaneIdx> {
        self.state.lock().lane_index(lane_id)
    }

    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }
}

/// A new command's lane: known already (looked up before a journal write), or by name.
enum LaneRef<'a> {
    Index(LaneIdx),
    Name(&'a str),
}

/// Selects the live commands that `matches` (for [`CommandQueue::cancel_where`]).
fn live_where(matches: impl Fn(&Task) -> bool) -> impl FnOnce(&State) -> Vec<Arc<Task>> {
    move |state| {
        state
            .tasks
            .values()
            .filter(|task| matches(task))
            .cloned()
            .collect()
    }
}

fn info<'a>(task: &'a Task, lane: &'a str, attempt: u32) -> CommandInfo<'a> {
    CommandInfo {
        id: task.id,
        lane,
        command_type: task.command.command_type(),
        attempt,
    }
}

/// A lane name, borrowed when possible.
enum LaneName<'a> {
    Borrowed(&'a str),
    Owned(Arc<str>),
}

impl std::ops::Deref for LaneName<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            LaneName::Borrowed(name) => name,
            LaneName::Owned(name) => name,
        }
    }
}

/// One lane's depth, captured under the state lock.
#[derive(Clone, Copy)]
struct Depth {
    lane: LaneIdx,
    pending: usize,
    active: usize,
}

/// The depths one state change touched: almost always one or two lanes, kept inline.
#[derive(Default)]
struct Depths {
    inline: [Option<Depth>; 2],
    more: Vec<Depth>,
}

impl Depths {
    fn is_empty(&self) -> bool {
        self.inline[0].is_none()
    }

    fn contains(&self, lane: LaneIdx) -> bool {
        self.iter().any(|d| d.lane == lane)
    }

    fn push(&mut self, depth: Depth) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(depth),
            None => self.more.push(depth),
        }
    }

    fn iter(&self) -> impl Iterator<Item = Depth> + '_ {
        self.inline
            .iter()
            .flatten()
            .copied()
            .chain(self.more.iter().copied())
    }
}

/// Lanes per directory chunk, and chunks: the first 4096 lanes are in the directory.
const DIRECTORY_CHUNK: usize = 64;
const DIRECTORY_CHUNKS: usize = 64;

/// Lane names, readable without the state lock. Lanes are only ever added, so entries are
/// written once (under the state lock).
struct LaneDirectory {
    chunks: [OnceLock<Box<[DirectoryEntry]>>; DIRECTORY_CHUNKS],
}

/// One lane's entry.
#[derive(Default)]
struct DirectoryEntry {
    name: OnceLock<Arc<str>>,
}

impl Default for LaneDirectory {
    fn default() -> Self {
        Self {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl LaneDirectory {
    fn entry(&self, lane: usize) -> Option<&DirectoryEntry> {
        self.chunks
            .get(lane / DIRECTORY_CHUNK)?
            .get()
            .map(|chunk| &chunk[lane % DIRECTORY_CHUNK])
    }

    fn register(&self, lane: usize, name: Arc<str>) {
        let Some(chunk) = self.chunks.get(lane / DIRECTORY_CHUNK) else {
            return;
        };
        let chunk = chunk.get_or_init(|| {
            (0..DIRECTORY_CHUNK)
                .map(|_| DirectoryEntry::default())
                .collect()
        });
        let _ = chunk[lane % DIRECTORY_CHUNK].name.set(name);
    }

    fn name(&self, lane: LaneIdx) -> Option<&str> {
        self.entry(lane as usize)?.name.get().map(|name| &**name)
    }
}
