//! [`CommandQueue`]: accepts commands, runs them on tokio tasks, and applies the
//! scheduler's decisions.
//!
//! There is no scheduler task. Whoever changes the state (a submit, a finished run, a
//! cancel, a resume, the timer task) dispatches every command that now fits, while it
//! holds the state lock, and acts on the result after releasing it. A runner that
//! finishes a command keeps going with the next dispatched one instead of spawning,
//! which is why a saturated lane costs no task spawn per command.

mod budget;
mod control;
mod directory;
mod effects;
mod lifecycle;
mod run;
mod schedules;
mod stats;
mod submit;
mod timers;

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::command::{CommandId, HandlerRegistry};
use crate::config::LaneConfig;
use crate::dead_letter::DeadLetterQueue;
use crate::error::Result;
use crate::event::EventEmitter;
use crate::journal::Journal;
use crate::observer::{CommandInfo, Observer, QueueProbe};
use crate::scheduler::{LaneIdx, State, Task};
use crate::spawner::Spawner;

use directory::LaneDirectory;

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
    /// Woken when commands may have left a lane (started, cancelled, expired), for
    /// submits waiting for room in a full lane; only while some wait.
    room: Notify,
    room_waiters: std::sync::atomic::AtomicUsize,
    /// Durable submits with an idempotency key hold their key's lock from the key check
    /// to the insert, across the journal write, so two submits of one key never both
    /// write a record (a crash would recover both). Made at the first such submit.
    key_locks: OnceLock<Box<[tokio::sync::Mutex<()>]>>,
    /// Recurring schedules, made at the first one.
    schedules: OnceLock<Box<schedules::Schedules>>,
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
            room: Notify::new(),
            room_waiters: Default::default(),
            key_locks: OnceLock::new(),
            schedules: OnceLock::new(),
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

    /// Adds a lane. Fails with [`LaneError::ConfigError`](crate::LaneError::ConfigError)
    /// for a duplicate id, an invalid config, or reserved slots beyond the global budget.
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

    pub(crate) fn next_id(&self) -> CommandId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn lane_index_of(&self, lane_id: &str) -> Result<LaneIdx> {
        self.state.lock().lane_index(lane_id)
    }

    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }
}

impl CommandQueue {
    /// Tells each of `observers`; a panicking observer is logged and skipped, so the
    /// others are still told and the caller (a submit, a runner) goes on.
    pub(crate) fn observe(&self, observers: &[Arc<dyn Observer>], call: impl Fn(&dyn Observer)) {
        for observer in observers {
            if let Err(panic) = crate::contain::contain(|| call(observer.as_ref())) {
                tracing::error!(
                    target: "a3s_lane",
                    observer = ?observer,
                    panic,
                    "an observer panicked; the queue goes on"
                );
            }
        }
    }
}

fn info<'a>(task: &'a Task, lane: &'a str, attempt: u32) -> CommandInfo<'a> {
    CommandInfo {
        id: task.id,
        lane,
        command_type: task.command.command_type(),
        attempt,
        group: task.group.as_deref(),
    }
}
