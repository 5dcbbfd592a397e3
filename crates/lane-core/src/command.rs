//! The command model: [`Command`] (the 0.3 API's trait), closure commands, the per-run
//! [`CommandContext`], and replayable commands (a type name plus a JSON payload run by a
//! registered [`Handler`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{LaneError, Result};
use crate::event::{EventEmitter, keys};

/// Identifies one accepted command for its whole life, across retries.
pub type CommandId = u64;

/// A unit of work submitted to a lane.
///
/// ```
/// use a3s_lane::{Command, Result};
/// use async_trait::async_trait;
///
/// struct Greet(String);
///
/// #[async_trait]
/// impl Command for Greet {
///     async fn execute(&self) -> Result<serde_json::Value> {
///         Ok(serde_json::json!({ "greeting": format!("hello {}", self.0) }))
///     }
///     fn command_type(&self) -> &str {
///         "greet"
///     }
/// }
/// ```
///
/// A command that wants its run's id, attempt, cancellation signal or progress reporting
/// calls [`CommandContext::current`] inside `execute`.
#[async_trait]
pub trait Command: Send + Sync {
    /// Runs the command. It may be called again for a retry.
    async fn execute(&self) -> Result<Value>;

    /// A short name for the kind of command, used in events, metrics and dead letters.
    fn command_type(&self) -> &str;

    /// Whether dropping the future of [`Command::execute`] stops the work. True for Rust
    /// futures. Return false when the work goes on after the future is dropped (a
    /// host-language handler: a Python coroutine, a JavaScript promise): the engine then
    /// still answers the caller when the cancel grace or the timeout ends, but keeps the
    /// lane slot taken until the future really completes, so `max_concurrency` holds even
    /// for a handler that ignores cancellation (see
    /// [`supervise_keeping_slot`](crate::supervise_keeping_slot)).
    fn stops_when_dropped(&self) -> bool {
        true
    }

    /// The command's JSON payload for replay, if it can be run again from one: `None`
    /// (the default) for a command that cannot.
    ///
    /// With storage configured (`with_storage`) every accepted command is recorded until
    /// it ends, so `load_commands()` lists it with its type and lane while it waits or
    /// runs. A command that gives a payload here is recorded like a replayable one
    /// ([`submit_replayable`](crate::QueueManager::submit_replayable)): after a crash it
    /// is recovered and run by the [`Handler`] registered for its
    /// [`command_type`](Command::command_type) with this payload (with no such handler at
    /// the restart it becomes a dead letter saying so), and a dead letter of it keeps the
    /// payload, so it can be re-driven. One that gives none cannot run again: after a
    /// crash (or a `shutdown_now()` that interrupted it) it becomes a dead letter whose
    /// error says it was not replayable, never silently gone.
    ///
    /// Called once per submit, and only by a queue with storage or dead letters; the
    /// payload is checked as any replayable payload is
    /// ([`MAX_PAYLOAD_DEPTH`](crate::MAX_PAYLOAD_DEPTH),
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES)).
    ///
    /// ```
    /// use a3s_lane::{Command, Result};
    /// use async_trait::async_trait;
    /// use serde_json::{Value, json};
    ///
    /// struct SendEmail { to: String }
    ///
    /// #[async_trait]
    /// impl Command for SendEmail {
    ///     async fn execute(&self) -> Result<Value> {
    ///         Ok(json!({ "sent": &self.to }))
    ///     }
    ///     fn command_type(&self) -> &str {
    ///         "send_email"
    ///     }
    ///     // Recovered after a crash by the handler registered for "send_email".
    ///     fn replay_payload(&self) -> Option<Value> {
    ///         Some(json!({ "to": &self.to }))
    ///     }
    /// }
    /// ```
    fn replay_payload(&self) -> Option<Value> {
        None
    }
}

fn _assert_command_is_dyn_compatible(_: Box<dyn Command>) {}

/// A [`Command`] made from a closure that receives the run's [`CommandContext`].
pub struct FnCommand<F> {
    command_type: String,
    run: F,
}

impl<F> fmt::Debug for FnCommand<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCommand")
            .field("command_type", &self.command_type)
            .finish()
    }
}

/// Makes a [`Command`] from a closure returning a future; the closure runs once per attempt.
///
/// ```
/// let cmd = a3s_lane::command_fn("sum", |_ctx| async { Ok(serde_json::json!(1 + 2)) });
/// # let _ = cmd;
/// ```
pub fn command_fn<F, Fut>(command_type: impl Into<String>, run: F) -> FnCommand<F>
where
    F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    FnCommand {
        command_type: command_type.into(),
        run,
    }
}

#[async_trait]
impl<F, Fut> Command for FnCommand<F>
where
    F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    async fn execute(&self) -> Result<Value> {
        let ctx = CommandContext::current().unwrap_or_else(CommandContext::detached);
        (self.run)(ctx).await
    }

    fn command_type(&self) -> &str {
        &self.command_type
    }
}

/// The cancellation state shared by a command's runner and its [`CommandContext`]s.
#[derive(Default)]
pub(crate) struct CancelSignal {
    requested: AtomicBool,
    /// The runner's waker: woken to start the grace period.
    runner: AtomicWaker,
    /// Commands awaiting [`CommandContext::cancelled`].
    cooperative: Notify,
}

impl CancelSignal {
    pub(crate) fn request(&self) -> bool {
        let first = !self.requested.swap(true, Ordering::AcqRel);
        if first {
            self.runner.wake();
            self.cooperative.notify_waiters();
        }
        first
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Resolves once cancellation is requested; registers with the single-runner waker.
    pub(crate) fn requested(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_requested() {
                return std::task::Poll::Ready(());
            }
            self.runner.register(cx.waker());
            if self.is_requested() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }
}

/// What holds a run's cancel signal: the signal itself, or a queue's task, which keeps
/// its signals inline so a command costs no allocation for them.
pub(crate) trait CancelSource: Send + Sync {
    fn signal(&self) -> &CancelSignal;
}

impl CancelSource for CancelSignal {
    fn signal(&self) -> &CancelSignal {
        self
    }
}

/// Cancels a run whose [`CommandContext`] came from [`CommandContext::with_cancel_trigger`].
#[derive(Clone)]
pub struct CancelTrigger(Arc<CancelSignal>);

impl fmt::Debug for CancelTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelTrigger")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelTrigger {
    /// Requests cancellation: the run's [`CommandContext::is_cancelled`] turns true and
    /// [`CommandContext::cancelled`] resolves. Returns true the first time.
    pub fn cancel(&self) -> bool {
        self.0.request()
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_requested()
    }
}

/// Where [`CommandContext::report_progress`] sends a report.
#[derive(Clone)]
enum ProgressTarget {
    /// Dropped: a detached run.
    None,
    /// A [`keys::COMMAND_PROGRESS`] event on the queue's emitter.
    Events(EventEmitter),
    /// A sink set with [`CommandContext::with_progress_sink`].
    Sink(Arc<dyn Fn(Value) + Send + Sync>),
}

/// What a running command knows about its run: id, lane, attempt, cancellation, progress.
#[derive(Clone)]
pub struct CommandContext {
    id: CommandId,
    lane: Arc<str>,
    attempt: u32,
    cancel: Arc<dyn CancelSource>,
    progress: ProgressTarget,
}

impl fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandContext")
            .field("id", &self.id)
            .field("lane", &self.lane)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

tokio::task_local! {
    static CURRENT: CommandContext;
}

impl CommandContext {
    pub(crate) fn new(
        id: CommandId,
        lane: Arc<str>,
        attempt: u32,
        cancel: Arc<dyn CancelSource>,
        events: EventEmitter,
    ) -> Self {
        Self {
            id,
            lane,
            attempt,
            cancel,
            progress: ProgressTarget::Events(events),
        }
    }

    /// A context for a command run outside any queue (id 0, never cancelled).
    pub fn detached() -> Self {
        Self {
            id: 0,
            lane: Arc::from(""),
            attempt: 1,
            cancel: Arc::new(CancelSignal::default()),
            progress: ProgressTarget::None,
        }
    }

    /// A context for a run executed outside a [`CommandQueue`](crate::CommandQueue) (for
    /// example by a distributed worker), and the trigger with which that executor cancels
    /// the run. Run the command inside [`CommandContext::scope`] so that
    /// [`CommandContext::current`] finds the context.
    ///
    /// ```
    /// use a3s_lane::CommandContext;
    ///
    /// let (ctx, trigger) = CommandContext::with_cancel_trigger(7, "query", 1);
    /// assert!(!ctx.is_cancelled());
    /// assert!(trigger.cancel());
    /// assert!(ctx.is_cancelled());
    /// ```
    pub fn with_cancel_trigger(id: CommandId, lane: &str, attempt: u32) -> (Self, CancelTrigger) {
        let cancel = Arc::<CancelSignal>::default();
        let ctx = Self {
            id,
            lane: Arc::from(lane),
            attempt,
            cancel: cancel.clone(),
            progress: ProgressTarget::None,
        };
        (ctx, CancelTrigger(cancel))
    }

    /// This context with its [`CommandContext::report_progress`] calls going to `sink`
    /// (for example an executor outside a [`CommandQueue`](crate::CommandQueue) that
    /// forwards progress to the submitter) instead of the queue's events. The sink runs on
    /// the reporting task, so it should hand the value on rather than block.
    ///
    /// ```
    /// use a3s_lane::CommandContext;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let (ctx, _trigger) = CommandContext::with_cancel_trigger(7, "query", 1);
    /// let ctx = ctx.with_progress_sink(move |progress| sink.lock().unwrap().push(progress));
    /// ctx.report_progress(serde_json::json!({"done": 1}));
    /// assert_eq!(*seen.lock().unwrap(), vec![serde_json::json!({"done": 1})]);
    /// ```
    pub fn with_progress_sink(mut self, sink: impl Fn(Value) + Send + Sync + 'static) -> Self {
        self.progress = ProgressTarget::Sink(Arc::new(sink));
        self
    }

    /// The context of the command running on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context as [`CommandContext::current`].
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }

    /// The command's id.
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// The lane it runs in.
    pub fn lane(&self) -> &str {
        &self.lane
    }

    /// Which attempt this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn cancel_signal(&self) -> &CancelSignal {
        self.cancel.signal()
    }

    /// Whether cancellation was requested; a cooperative command checks this and stops.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_signal().is_requested()
    }

    /// Resolves when cancellation is requested. After the lane's grace period the
    /// command's future is dropped whether or not it noticed.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.cancel_signal().cooperative.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Publishes a [`keys::COMMAND_PROGRESS`] event with `progress` (only if someone
    /// listens), or hands it to the sink set with [`CommandContext::with_progress_sink`].
    /// A detached context drops it.
    pub fn report_progress(&self, progress: Value) {
        match &self.progress {
            ProgressTarget::None => {}
            ProgressTarget::Events(events) => events.emit_with(keys::COMMAND_PROGRESS, || {
                serde_json::json!({ "lane_id": &*self.lane, "command_id": self.id, "progress": progress })
            }),
            ProgressTarget::Sink(sink) => sink(progress),
        }
    }
}

/// Runs replayable commands of one type: a JSON payload in, a JSON value out.
///
/// ```
/// use a3s_lane::{CommandContext, Handler, Result};
/// use async_trait::async_trait;
/// use serde_json::Value;
///
/// struct Echo;
///
/// #[async_trait]
/// impl Handler for Echo {
///     async fn handle(&self, payload: Value, _ctx: CommandContext) -> Result<Value> {
///         Ok(payload)
///     }
/// }
/// ```
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one command of this handler's type.
    async fn handle(&self, payload: Value, ctx: CommandContext) -> Result<Value>;

    /// Whether dropping the future of [`Handler::handle`] stops the work; false for a
    /// host-language handler whose work goes on. See [`Command::stops_when_dropped`].
    fn stops_when_dropped(&self) -> bool {
        true
    }
}

fn _assert_handler_is_dyn_compatible(_: Arc<dyn Handler>) {}

/// A [`Handler`] made from a closure; see [`handler_fn`].
pub struct FnHandler<F>(F);

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnHandler")
    }
}

/// Makes a [`Handler`] from a closure `(payload, ctx) -> future`.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Value, CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    FnHandler(f)
}

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Value, CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    async fn handle(&self, payload: Value, ctx: CommandContext) -> Result<Value> {
        (self.0)(payload, ctx).await
    }
}

/// The handlers for replayable command types, shared by the queue and recovery.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    // FxHash: looked up at every replayable submit; only registered types are stored,
    // so a submitted type cannot grow the map (no flooding).
    handlers: Arc<RwLock<rustc_hash::FxHashMap<String, Arc<dyn Handler>>>>,
}

impl fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.handlers.read().keys()).finish()
    }
}

impl HandlerRegistry {
    /// Registers (or replaces) the handler for `command_type`.
    pub fn register(&self, command_type: impl Into<String>, handler: impl Handler) {
        self.handlers
            .write()
            .insert(command_type.into(), Arc::new(handler));
    }

    /// Registers an already shared handler.
    pub fn register_arc(&self, command_type: impl Into<String>, handler: Arc<dyn Handler>) {
        self.handlers.write().insert(command_type.into(), handler);
    }

    /// The handler for `command_type`, or [`LaneError::HandlerNotFound`] listing the known types.
    pub fn get(&self, command_type: &str) -> Result<Arc<dyn Handler>> {
        let handlers = self.handlers.read();
        handlers.get(command_type).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = handlers.keys().map(String::as_str).collect();
            known.sort_unstable();
            LaneError::HandlerNotFound {
                command_type: command_type.to_owned(),
                registered: if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// The registered type names, sorted.
    pub fn command_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.handlers.read().keys().cloned().collect();
        types.sort_unstable();
        types
    }
}

/// A replayable command: its type, its JSON payload and the handler that runs it.
pub(crate) struct ReplayableCommand {
    pub(crate) command_type: String,
    pub(crate) payload: Value,
    pub(crate) handler: Arc<dyn Handler>,
}

#[async_trait]
impl Command for ReplayableCommand {
    async fn execute(&self) -> Result<Value> {
        let ctx = CommandContext::current().unwrap_or_else(CommandContext::detached);
        self.handler.handle(self.payload.clone(), ctx).await
    }

    fn command_type(&self) -> &str {
        &self.command_type
    }

    fn stops_when_dropped(&self) -> bool {
        self.handler.stops_when_dropped()
    }

    fn replay_payload(&self) -> Option<Value> {
        Some(self.payload.clone())
    }
}
