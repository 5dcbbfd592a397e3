//! [`QueueManager`] and [`QueueManagerBuilder`]: assembling a queue, its lanes and its
//! extensions, and running it from start to shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::client::{CancelOutcome, CommandState, CommandStatus, QueueClient, SubmittedCommand};
use crate::command::{
    Command, CommandContext, CommandId, Handler, HandlerRegistry, ReplayableCommand, command_fn,
};
use crate::config::{DEFAULT_LANES, LaneConfig};
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::{LaneError, Result};
use crate::event::{EventEmitter, EventStream, LaneEvent, keys};
use crate::handle::CommandHandle;
use crate::journal::Journal;
use crate::observer::{IntoObserver, Observer};
use crate::queue::{CommandQueue, QueueParts, now_ms};
use crate::retention::Page;
use crate::schedule::{Schedule, ScheduleInfo};
use crate::scheduler::{LaneIdx, Task};
use crate::spawner::Spawner;
use crate::stats::QueueStats;
use crate::storage::{Storage, StorageOp, StoredCommand};
use crate::timing::{SubmitOptions, Timing};

/// Assembles a [`QueueManager`].
///
/// ```
/// # async fn demo() -> a3s_lane::Result<()> {
/// use a3s_lane::{EventEmitter, LaneConfig, QueueManagerBuilder};
///
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_lane("interactive", LaneConfig::new(1, 4), 0)
///     .with_lane("batch", LaneConfig::new(1, 8), 1)
///     .with_max_concurrency(8)
///     .build()
///     .await?;
/// manager.start().await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct QueueManagerBuilder {
    events: EventEmitter,
    lanes: Vec<(String, LaneConfig, u8)>,
    max_concurrency: Option<usize>,
    observers: Vec<Arc<dyn Observer>>,
    handlers: HandlerRegistry,
    dlq: Option<DeadLetterQueue>,
    storage: Option<Arc<dyn Storage>>,
    spawner: Option<Arc<dyn Spawner>>,
}

impl std::fmt::Debug for QueueManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueManagerBuilder")
            .field("lanes", &self.lanes)
            .field("max_concurrency", &self.max_concurrency)
            .field("observers", &self.observers)
            .field("handlers", &self.handlers)
            .field("dlq", &self.dlq.as_ref().map(DeadLetterQueue::max_size))
            .field("storage", &self.storage.is_some())
            .field("spawner", &self.spawner)
            .finish()
    }
}

impl QueueManagerBuilder {
    /// A builder whose queue publishes its events on `events`.
    pub fn new(events: EventEmitter) -> Self {
        Self {
            events,
            lanes: Vec::new(),
            max_concurrency: None,
            observers: Vec::new(),
            handlers: HandlerRegistry::default(),
            dlq: None,
            storage: None,
            spawner: None,
        }
    }

    /// Adds a lane; lower `priority` runs first.
    pub fn with_lane(mut self, id: impl Into<String>, config: LaneConfig, priority: u8) -> Self {
        self.lanes.push((id.into(), config, priority));
        self
    }

    /// Adds the six default lanes (`system` 0/5, `control` 1/3, `query` 2/10,
    /// `session` 3/5, `skill` 4/3, `prompt` 5/2 as priority/max concurrency).
    pub fn with_default_lanes(mut self) -> Self {
        for (id, priority, max) in DEFAULT_LANES {
            self.lanes
                .push((id.to_owned(), LaneConfig::new(1, max), priority));
        }
        self
    }

    /// A global budget: at most `max` commands run at once over all lanes. Each lane's
    /// `min_concurrency` slots are reserved for it; the rest is shared by priority.
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = Some(max);
        self
    }

    /// Adds an observer (metrics, alerts, tracing, your own).
    pub fn with_observer(mut self, observer: impl IntoObserver) -> Self {
        self.observers.push(observer.into_observer());
        self
    }

    /// Feeds a metrics collector (such as `QueueMetrics`) from the queue's lifecycle.
    pub fn with_metrics(self, metrics: impl IntoObserver) -> Self {
        self.with_observer(metrics)
    }

    /// Lets an alert manager (such as `Arc<AlertManager>`) watch depth and latency.
    pub fn with_alerts(self, alerts: impl IntoObserver) -> Self {
        self.with_observer(alerts)
    }

    /// Registers the handler for a replayable command type; a blank type fails
    /// [`QueueManagerBuilder::build`].
    pub fn with_handler(self, command_type: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.register(command_type, handler);
        self
    }

    /// Keeps up to `max_size` dead letters (oldest evicted first).
    pub fn with_dlq(mut self, max_size: usize) -> Self {
        self.dlq = Some(DeadLetterQueue::new(max_size));
        self
    }

    /// Records dead letters in an existing [`DeadLetterQueue`].
    pub fn with_dead_letter_queue(mut self, dlq: DeadLetterQueue) -> Self {
        self.dlq = Some(dlq);
        self
    }

    /// Makes replayable commands durable in `storage` and recovers unfinished ones on start.
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Runs the queue's commands with `spawner` instead of as tokio tasks on the runtime
    /// `start()` is called on (see [`Spawner`]).
    pub fn with_spawner(mut self, spawner: impl Spawner) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// Validates the configuration and builds the manager (not started yet).
    pub async fn build(self) -> Result<QueueManager> {
        if self.max_concurrency == Some(0) {
            return Err(LaneError::ConfigError(
                "global max_concurrency must be at least 1 (leave it unset for no global budget)"
                    .into(),
            ));
        }
        if self.events.capacity() > crate::config::MAX_EVENT_CAPACITY {
            return Err(LaneError::ConfigError(format!(
                "the EventEmitter's capacity {} is above {}; use EventEmitter::try_new to check it",
                self.events.capacity(),
                crate::config::MAX_EVENT_CAPACITY
            )));
        }
        if let Some(blank) = self
            .handlers
            .command_types()
            .into_iter()
            .find(|command_type| command_type.trim().is_empty())
        {
            return Err(LaneError::ConfigError(format!(
                "with_handler: command type must not be empty or blank (got {blank:?}); give \
                 the handler the name its commands are submitted with"
            )));
        }
        if self.dlq.as_ref().is_some_and(|dlq| dlq.max_size() == 0) {
            return Err(LaneError::ConfigError(
                "a dead-letter queue of size 0 keeps nothing; use a size of at least 1, or none"
                    .into(),
            ));
        }
        let mut first_id = 1;
        let mut recovered = Vec::new();
        let mut finished = Vec::new();
        let mut schedules = Vec::new();
        let journal = match self.storage {
            Some(storage) => {
                first_id = storage.max_command_id().await?.saturating_add(1);
                recovered = storage.load_commands().await?;
                finished = storage.load_finished().await?;
                schedules = storage.load_schedules().await?;
                let letters = storage.load_dead_letters().await?;
                let journal = Journal::spawn(storage, self.events.clone());
                if let Some(dlq) = &self.dlq {
                    for letter in letters {
                        // A smaller capacity than last time: the store forgets the evicted.
                        if let Some(evicted) = dlq.restore(letter) {
                            journal.write(StorageOp::RemoveDeadLetter(evicted.command_id));
                        }
                    }
                    dlq.attach_journal(journal.clone());
                }
                Some(journal)
            }
            None => None,
        };
        let queue = CommandQueue::from_parts(QueueParts {
            events: self.events,
            observers: self.observers,
            handlers: self.handlers,
            dlq: self.dlq,
            journal,
            spawner: self.spawner,
            max_concurrency: self.max_concurrency,
            first_id,
        });
        for (id, config, priority) in self.lanes {
            queue.add_lane(&id, config, priority)?;
        }
        queue.restore_finished(finished);
        queue.restore_schedules(schedules);
        let queue = Arc::new(queue);
        queue.attach_observers();
        Ok(QueueManager {
            queue,
            recovered: Arc::new(Mutex::new(recovered)),
        })
    }
}

/// The error of the dead letter made at start for a stored command that cannot be
/// replayed.
const NOT_REPLAYABLE: &str = "not replayable: a Box<dyn Command> without a replay payload \
     (Command::replay_payload) was accepted before a crash or shutdown_now() and had not \
     finished; it cannot run again";

/// Runs a [`CommandQueue`]: start, submit, cancel, pause, observe, shut down.
/// Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct QueueManager {
    queue: Arc<CommandQueue>,
    recovered: Arc<Mutex<Vec<StoredCommand>>>,
}

impl std::fmt::Debug for QueueManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueManager")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl QueueManager {
    /// Starts the scheduler on the current tokio runtime. Unfinished commands recovered
    /// from storage go back to the front of their lanes, in their original order; one
    /// whose lane or handler is missing becomes a dead letter with that reason, and so
    /// does one that cannot be replayed (a `Box<dyn Command>` without a
    /// [`Command::replay_payload`], accepted before a crash or a `shutdown_now()`), with
    /// an error that starts with "not replayable".
    pub async fn start(&self) -> Result<()> {
        let recovered = std::mem::take(&mut *self.recovered.lock());
        // Dead letters in their original order; the rest go to the front of their lanes
        // newest first, which leaves them in their original order.
        let mut runnable = Vec::with_capacity(recovered.len());
        for stored in recovered {
            if !stored.replayable {
                self.dead_letter_recovered(stored, NOT_REPLAYABLE.to_owned());
                continue;
            }
            let lane = self.queue.lane_index_of(&stored.lane_id);
            let handler = self.queue.handlers().get(&stored.command_type);
            match (lane, handler) {
                (Ok(lane), Ok(handler)) => runnable.push((stored, lane, handler)),
                (Err(error), _) | (_, Err(error)) => {
                    self.dead_letter_recovered(stored, format!("not recovered: {error}"));
                }
            }
        }
        for (stored, lane, handler) in runnable.into_iter().rev() {
            self.requeue_recovered(stored, lane, handler);
        }
        self.queue.start()
    }

    fn dead_letter_recovered(&self, stored: StoredCommand, error: String) {
        let letter = DeadLetter {
            command_id: stored.id,
            command_type: stored.command_type,
            lane_id: stored.lane_id,
            error,
            attempts: stored.attempts,
            failed_at: now_ms(),
            payload: stored.replayable.then_some(stored.payload),
        };
        let command_id = letter.command_id;
        self.queue
            .events()
            .emit_with(keys::COMMAND_DEAD_LETTERED, || {
                serde_json::json!({
                    "lane_id": &letter.lane_id,
                    "command_id": letter.command_id,
                    "command_type": &letter.command_type,
                    "error": &letter.error,
                })
            });
        // The dead letter is recorded before the command is removed, so a crash
        // in between leaves the command to recover rather than losing it.
        match (self.queue.dead_letters(), self.queue.journal()) {
            // A record of a command that cannot be replayed never pushes out a letter
            // that can be redriven; one that finds no room is logged instead.
            (Some(dlq), _) if letter.payload.is_none() => {
                let (id, lane, ctype) = (
                    letter.command_id,
                    letter.lane_id.clone(),
                    letter.command_type.clone(),
                );
                if !dlq.push_record(letter) {
                    tracing::warn!(
                        target: "a3s_lane",
                        command_id = id,
                        lane = %lane,
                        command_type = %ctype,
                        "a command accepted before a crash cannot be replayed, and the dead \
                         letters are full of letters that can be redriven: it is not kept"
                    );
                }
            }
            (Some(dlq), _) => {
                dlq.push_sync(letter);
            }
            (None, Some(journal)) => journal.write(StorageOp::SaveDeadLetter(letter)),
            (None, None) => {}
        }
        if let Some(journal) = self.queue.journal() {
            journal.write(StorageOp::RemoveCommand(command_id));
        }
    }

    fn requeue_recovered(&self, stored: StoredCommand, lane: LaneIdx, handler: Arc<dyn Handler>) {
        let command = Box::new(ReplayableCommand {
            command_type: stored.command_type,
            payload: stored.payload.clone(),
            handler,
        });
        let (task, _) = Task::new(
            stored.id,
            lane,
            command,
            Some(stored.payload),
            stored.attempts,
            stored.created_at,
            tracing::Span::none(),
            Timing::from_stored(stored.not_before, stored.start_by, SystemTime::now()),
            stored.key.map(String::into_boxed_str),
            stored.group.map(Arc::from),
        );
        self.queue.recover(task);
    }

    /// Submits a command to a lane; the receiver yields its result (`rx.await??`).
    pub async fn submit(
        &self,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<oneshot::Receiver<Result<Value>>> {
        self.queue.submit(lane_id, command).await
    }

    /// Submits a command and returns a handle to await or cancel it.
    pub async fn submit_with_handle(
        &self,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<CommandHandle> {
        self.queue.submit_with_handle(lane_id, command).await
    }

    /// Submits a closure command; the closure receives the run's [`CommandContext`].
    pub async fn submit_fn<F, Fut>(
        &self,
        lane_id: &str,
        command_type: &str,
        run: F,
    ) -> Result<CommandHandle>
    where
        F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        self.queue
            .submit_with_handle(lane_id, Box::new(command_fn(command_type, run)))
            .await
    }

    /// Submits a replayable command (type + JSON payload) run by its registered handler.
    pub async fn submit_replayable(
        &self,
        lane_id: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<CommandHandle> {
        self.queue
            .submit_replayable(lane_id, command_type, payload)
            .await
    }

    /// [`submit_replayable`](Self::submit_replayable) with [`SubmitOptions`]: a delay or
    /// start time, a start-by deadline (see [`QueueClient::submit_with`]).
    pub async fn submit_replayable_with(
        &self,
        lane_id: &str,
        command_type: &str,
        payload: Value,
        options: &SubmitOptions,
    ) -> Result<CommandHandle> {
        self.queue
            .submit_replayable_with(lane_id, command_type, payload, options)
            .await
    }

    /// Submits a command (the 0.3 API's `Command` or a closure's) with [`SubmitOptions`]
    /// and returns a handle to await or cancel it.
    pub async fn submit_with_options(
        &self,
        lane_id: &str,
        command: Box<dyn Command>,
        options: &SubmitOptions,
    ) -> Result<CommandHandle> {
        self.queue
            .submit_with_options(lane_id, command, options)
            .await
    }

    /// Registers (or replaces) the handler for a replayable command type. A blank type
    /// can never run: a submit of a blank type is refused with
    /// [`LaneError::InvalidInput`].
    pub fn register_handler(&self, command_type: impl Into<String>, handler: impl Handler) {
        self.queue.handlers().register(command_type, handler);
    }

    /// Cancels a command by id; see [`CommandQueue::cancel`].
    pub fn cancel(&self, id: CommandId) -> bool {
        self.queue.cancel(id)
    }

    /// Cancels every command of a lane; returns how many.
    pub fn cancel_lane(&self, lane_id: &str) -> Result<usize> {
        self.queue.cancel_lane(lane_id)
    }

    /// Stops starting commands from a lane.
    pub fn pause_lane(&self, lane_id: &str) -> Result<()> {
        self.queue.pause_lane(lane_id)
    }

    /// Pauses a lane for `duration`, for example after an HTTP 429.
    pub fn pause_lane_for(&self, lane_id: &str, duration: Duration) -> Result<()> {
        self.queue.pause_lane_for(lane_id, duration)
    }

    /// Resumes a paused lane.
    pub fn resume_lane(&self, lane_id: &str) -> Result<()> {
        self.queue.resume_lane(lane_id)
    }

    /// Counts for the queue and each lane.
    pub async fn stats(&self) -> QueueStats {
        self.queue.stats_now()
    }

    /// The underlying queue.
    pub fn queue(&self) -> Arc<CommandQueue> {
        self.queue.clone()
    }

    /// The first observer of type `T` given to the builder: `manager.observer::<QueueMetrics>()`
    /// finds the metrics given to [`QueueManagerBuilder::with_metrics`]. The
    /// `metrics()` and `alerts()` of the 0.3 API are built on it (`ObservabilityExt` in
    /// `lane-metrics`).
    pub fn observer<T: Observer>(&self) -> Option<Arc<T>> {
        self.queue.observer::<T>()
    }

    /// The dead letters, if configured with [`QueueManagerBuilder::with_dlq`].
    pub fn dead_letters(&self) -> Option<DeadLetterQueue> {
        self.queue.dead_letters().cloned()
    }

    /// Re-submits a dead-lettered replayable command to its lane (under a new id, with a
    /// fresh attempt count); it leaves the dead letters, and the store, once the new
    /// command is accepted. On error the letter stays where it was.
    pub async fn redrive(&self, command_id: CommandId) -> Result<CommandHandle> {
        let dlq = self.queue.dead_letters().ok_or_else(|| {
            LaneError::QueueError(
                "this queue keeps no dead letters; build it with with_dlq(size)".into(),
            )
        })?;
        let (index, letter) = dlq.take_quietly(command_id).ok_or_else(|| {
            LaneError::QueueError(format!("no dead letter with command id {command_id}"))
        })?;
        let Some(payload) = letter.payload.clone() else {
            dlq.put_back(index, letter);
            return Err(LaneError::QueueError(format!(
                "dead letter {command_id} is an in-process command without a payload; only replayable commands can be re-driven"
            )));
        };
        match self
            .queue
            .submit_replayable(&letter.lane_id, &letter.command_type, payload)
            .await
        {
            Ok(handle) => {
                // Only now that the new command is durable does the store forget the letter.
                if let Some(journal) = self.queue.journal() {
                    journal.write(StorageOp::RemoveDeadLetter(command_id));
                }
                Ok(handle)
            }
            Err(error) => {
                dlq.put_back(index, letter);
                Err(error)
            }
        }
    }

    /// Subscribes to every event.
    pub fn subscribe(&self) -> EventStream {
        self.queue.events().subscribe()
    }

    /// Subscribes to the events `filter` accepts.
    pub fn subscribe_filtered<F>(&self, filter: F) -> EventStream
    where
        F: Fn(&LaneEvent) -> bool + Send + Sync + 'static,
    {
        self.queue.events().subscribe_filtered(filter)
    }

    /// Stops accepting commands; pending, delayed and running ones still finish
    /// (wait for them with [`QueueManager::drain`]).
    pub async fn shutdown(&self) {
        if self.queue.begin_shutdown(false) {
            self.queue
                .events()
                .emit_with(keys::SHUTDOWN_STARTED, || serde_json::json!({}));
        }
        self.queue.check_idle();
    }

    /// Stops at once: no new commands, pending and delayed ones are cancelled, running
    /// ones are signalled and dropped after their grace period. Durable commands stay in
    /// storage for the next start and keep their attempt count. Returns how many
    /// commands were cancelled.
    pub async fn shutdown_now(&self) -> usize {
        if self.queue.begin_shutdown(true) {
            self.queue
                .events()
                .emit_with(keys::SHUTDOWN_STARTED, || serde_json::json!({}));
        }
        let cancelled = self.queue.cancel_all("the queue was stopped", true);
        self.queue.check_idle();
        cancelled
    }

    /// Waits until fewer than `limit` commands wait to start (pending and delayed) in
    /// `lane`, or in all lanes together for `None`; at once if that holds now. The
    /// producer's side of backpressure (p-queue's `onSizeLessThan`): submit more only
    /// when the backlog went down. A `limit` of 0 is `InvalidInput`.
    pub async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()> {
        self.queue.wait_waiting_below(limit, lane).await
    }

    /// Waits until no command is pending, delayed or running, or fails with
    /// [`LaneError::Timeout`] after `timeout`. With storage, also waits until the
    /// journal is written.
    pub async fn drain(&self, timeout: Duration) -> Result<()> {
        let drained = async {
            self.queue.wait_idle().await;
            if let Some(journal) = self.queue.journal() {
                journal.flush().await?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, drained)
            .await
            .map_err(|_| LaneError::Timeout(timeout))?
    }

    /// Whether [`QueueManager::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.queue.is_shutting_down()
    }
}

#[async_trait]
impl QueueClient for QueueManager {
    async fn submit_with(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> Result<SubmittedCommand> {
        let handle = self
            .submit_replayable_with(lane, command_type, payload, &options)
            .await?;
        let duplicate = handle.is_duplicate();
        let submitted = SubmittedCommand::new(handle.id(), handle);
        Ok(if duplicate {
            submitted.into_duplicate()
        } else {
            submitted
        })
    }

    async fn cancel(&self, id: CommandId) -> Result<CancelOutcome> {
        Ok(self.queue().cancel_command(id))
    }

    async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()> {
        QueueManager::wait_waiting_below(self, limit, lane).await
    }

    async fn command(&self, id: CommandId) -> Result<Option<CommandStatus>> {
        Ok(self.queue().command_status(id))
    }

    async fn list_commands(
        &self,
        lane: &str,
        state: CommandState,
        page: Page,
    ) -> Result<Vec<CommandStatus>> {
        self.queue().list_commands(lane, state, page)
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        self.queue().put_schedule(schedule).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool> {
        self.queue().remove_schedule(name).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.queue().schedules())
    }

    async fn pause_schedule(&self, name: &str) -> Result<()> {
        self.queue().set_schedule_paused(name, true).await
    }

    async fn resume_schedule(&self, name: &str) -> Result<()> {
        self.queue().set_schedule_paused(name, false).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        Ok(self.queue().stats_now())
    }

    async fn pause_lane(&self, lane: &str) -> Result<()> {
        QueueManager::pause_lane(self, lane)
    }

    async fn pause_lane_for(&self, lane: &str, duration: Duration) -> Result<()> {
        QueueManager::pause_lane_for(self, lane, duration)
    }

    async fn resume_lane(&self, lane: &str) -> Result<()> {
        QueueManager::resume_lane(self, lane)
    }

    async fn pause_group(&self, lane: &str, group: &str) -> Result<()> {
        self.queue.pause_group(lane, group)
    }

    async fn resume_group(&self, lane: &str, group: &str) -> Result<()> {
        self.queue.resume_group(lane, group)
    }

    async fn cancel_group(&self, lane: &str, group: &str) -> Result<usize> {
        self.queue.cancel_group(lane, group)
    }

    async fn group_status(&self, lane: &str, group: &str) -> Result<crate::GroupStatus> {
        self.queue.group_status(lane, group)
    }

    async fn groups(&self, lane: &str, page: Page) -> Result<Vec<crate::GroupStatus>> {
        self.queue.groups(lane, page)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let Some(dlq) = QueueManager::dead_letters(self) else {
            return Ok(Vec::new());
        };
        let mut letters = dlq.list().await;
        letters.truncate(limit);
        Ok(letters)
    }

    async fn redrive(&self, id: CommandId) -> Result<SubmittedCommand> {
        let handle = QueueManager::redrive(self, id).await?;
        Ok(SubmittedCommand::new(handle.id(), handle))
    }

    async fn purge_dead_letters(&self) -> Result<usize> {
        Ok(QueueManager::dead_letters(self).map_or(0, |dlq| dlq.purge()))
    }

    async fn delete_dead_letter(&self, id: CommandId) -> Result<bool> {
        Ok(QueueManager::dead_letters(self).is_some_and(|dlq| dlq.take(id).is_some()))
    }

    fn subscribe(&self) -> EventStream {
        QueueManager::subscribe(self)
    }
}
