//! Python callables as queue handlers.
//!
//! A plain `def` runs on the runtime's blocking thread pool (one thread per running
//! command, so the lanes' concurrency limits are the pool's limits); an `async def` runs
//! on the queue's event loop (`coroutine`).
//!
//! The handler's exception is kept for the caller (the queue itself only carries error
//! messages) in [`ErrorSlots`], under the command id, and raised as is with its
//! traceback when the result arrives.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use a3s_lane::{Command, CommandContext as CoreContext, CommandId, Handler, LaneError, Result};
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyBaseException, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple};
use serde_json::Value;

use crate::convert::{to_json, to_py};
use crate::coroutine::{CoroutineHandler, run_on_loop};
use crate::error::{config_error, handler_failure};
use crate::event_loop::LoopHome;
use crate::runtime::{python_attr, runtime};

/// A handler's exception, shared by every waiter of its command (a command returned to
/// several submits of one idempotency key has several).
pub(crate) type SharedException = Arc<Py<PyBaseException>>;

/// The last exception of each failed command that a caller waits for, by command id.
///
/// Every command submitted through this module has a waiter that takes its entry when
/// the result arrives. Commands recovered from storage have none; they are recognised by
/// their ids, which are below the first id accepted through this module (ids only
/// grow). That first id is recorded in the same GIL hold in which the queue accepted the
/// command, and a handler needs the GIL to raise anything, so no exception of a waited-for
/// command is ever dropped.
///
/// A queue with recurring schedules also accepts commands nobody waits for, at each
/// instant, with ids among those of the submits: keeping their exceptions would keep one
/// per failed instant for ever. Once a queue has a schedule ([`track_each`]), each id
/// registered from then on is kept in a set until its waiter takes it, and only those
/// ids' exceptions are kept. (Queues without schedules keep to the watermark alone: no
/// set to update on every submit.)
///
/// A submit whose idempotency key a live command holds gets that command (a duplicate):
/// one more waiter of the same id. Each is counted, and the entry stays until the last
/// waiter took it, so every submitter sees the handler's own exception. (A duplicate that
/// registers only after the first waiter took the entry, or one of a command recovered
/// from storage, gets the `CommandError` carrying its type and message instead.)
///
/// [`track_each`]: Self::track_each
pub(crate) struct ErrorSlots {
    first_awaited: AtomicU64,
    /// The highest id registered before [`track_each`](Self::track_each).
    last_awaited: AtomicU64,
    /// From this id on, only ids in `Slots::awaited` are waited for (`u64::MAX` while
    /// the queue has had no schedule).
    tracked_from: AtomicU64,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Ids from `tracked_from` on that a waiter will take the outcome of, until it did.
    awaited: HashSet<CommandId>,
    exceptions: HashMap<CommandId, (u32, SharedException)>,
    /// Waiters besides the first, by command id (submits that were duplicates).
    extra_waiters: HashMap<CommandId, u32>,
}

impl Default for ErrorSlots {
    fn default() -> Self {
        Self {
            first_awaited: AtomicU64::new(u64::MAX),
            last_awaited: AtomicU64::new(0),
            tracked_from: AtomicU64::new(u64::MAX),
            slots: Mutex::new(Slots::default()),
        }
    }
}

impl ErrorSlots {
    /// A waiter will take the outcome of command `id` (call with the GIL held, in the
    /// hold that accepted the command).
    pub(crate) fn awaited(&self, id: CommandId) {
        self.first_awaited.fetch_min(id, Ordering::AcqRel);
        if self.tracked_from.load(Ordering::Acquire) == u64::MAX {
            self.last_awaited.fetch_max(id, Ordering::AcqRel);
        } else {
            self.slots.lock().awaited.insert(id);
        }
    }

    /// The queue has (or may have) recurring schedules, whose commands nobody waits for:
    /// from now on only the ids registered by [`awaited`](Self::awaited) are (call with
    /// the GIL held, before the queue can fire a schedule).
    pub(crate) fn track_each(&self) {
        // Every id accepted so far through this module is registered (in the GIL hold
        // that accepted it); every command of a schedule has a later id.
        let from = self.last_awaited.load(Ordering::Acquire).saturating_add(1);
        let _ =
            self.tracked_from
                .compare_exchange(u64::MAX, from, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A waiter will take the outcome of the command `handle` is for: the first, or one
    /// more for a submit that was a duplicate (call as for [`awaited`](Self::awaited)).
    pub(crate) fn awaited_handle(&self, handle: &a3s_lane::CommandHandle) {
        if handle.is_duplicate() {
            *self
                .slots
                .lock()
                .extra_waiters
                .entry(handle.id())
                .or_default() += 1;
        } else {
            self.awaited(handle.id());
        }
    }

    /// Keeps `exception` of attempt `attempt` of command `id` for its waiter, if it has
    /// one; a later attempt's exception replaces an earlier one, never the other way
    /// round (a timed-out attempt's thread may finish after the next attempt).
    fn store(&self, id: CommandId, attempt: u32, exception: Py<PyBaseException>) {
        if id < self.first_awaited.load(Ordering::Acquire) {
            return;
        }
        let tracked = id >= self.tracked_from.load(Ordering::Acquire);
        let mut slots = self.slots.lock();
        if tracked && !slots.awaited.contains(&id) && !slots.extra_waiters.contains_key(&id) {
            // A schedule's command: nobody will take it.
            drop(slots);
            return;
        }
        let replaced = match slots.exceptions.get_mut(&id) {
            Some(slot) if slot.0 > attempt => Some(Arc::new(exception)),
            Some(slot) => Some(std::mem::replace(slot, (attempt, Arc::new(exception))).1),
            None => {
                slots.exceptions.insert(id, (attempt, Arc::new(exception)));
                None
            }
        };
        drop(slots);
        drop(replaced);
    }

    /// Takes one waiter's share of the entry of `id`: the exception of its last failed
    /// attempt. The entry goes with the last waiter.
    pub(crate) fn take(&self, id: CommandId) -> Option<SharedException> {
        let tracked = id >= self.tracked_from.load(Ordering::Acquire);
        let mut slots = self.slots.lock();
        if tracked {
            slots.awaited.remove(&id);
        }
        if slots.exceptions.is_empty() && slots.extra_waiters.is_empty() {
            return None;
        }
        if let Some(extra) = slots.extra_waiters.get_mut(&id) {
            *extra -= 1;
            if *extra == 0 {
                slots.extra_waiters.remove(&id);
            }
            return slots.exceptions.get(&id).map(|(_, e)| e.clone());
        }
        slots.exceptions.remove(&id).map(|(_, exception)| exception)
    }
}

/// What a queue shares with its handlers: the error slots and the event loop on which
/// `async def` handlers run.
#[derive(Default)]
pub(crate) struct HandlerEnv {
    /// Handler exceptions for waiting callers.
    pub(crate) slots: ErrorSlots,
    /// The loop `async def` handlers run on (shared with the queue's `LoopSpawner`).
    pub(crate) home: Arc<LoopHome>,
}

/// A registered Python callable.
pub(crate) struct HandlerFn {
    /// None once the garbage collector cleared the lane that registered it (a handler
    /// that refers to its lane makes a cycle only the collector can break).
    func: Mutex<Option<Py<PyAny>>>,
    command_type: String,
    is_async: bool,
    takes_context: bool,
}

static DESCRIBE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl HandlerFn {
    /// Checks `func` and finds out how to call it: `async def` or not, and whether it
    /// takes a second, context argument.
    pub(crate) fn new(command_type: &str, func: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = func.py();
        let (is_async, takes_context): (bool, bool) =
            python_attr(py, &DESCRIBE, "a3s_lane._support", "describe_handler")?
                .call1((func, command_type))?
                .extract()?;
        Ok(Self {
            func: Mutex::new(Some(func.clone().unbind())),
            command_type: command_type.to_owned(),
            is_async,
            takes_context,
        })
    }

    /// Reports the callable to the garbage collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(func) = self.func.try_lock() {
            visit.call(func.as_ref())?;
        }
        Ok(())
    }

    /// Drops the callable (the garbage collector breaks a cycle through the lane).
    pub(crate) fn clear(&self) {
        let func = self.func.lock().take();
        drop(func);
    }

    fn call<'py>(
        &self,
        py: Python<'py>,
        payload: &Value,
        ctx: &CoreContext,
    ) -> PyResult<Bound<'py, PyAny>> {
        let payload = to_py(py, payload)?;
        let func = self.func.lock().as_ref().map(|func| func.clone_ref(py));
        let Some(func) = func else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "the lane that registered handler '{}' was garbage collected",
                self.command_type
            )));
        };
        let func = func.bind(py);
        if self.takes_context {
            let ctx = Py::new(py, CommandContext { ctx: ctx.clone() })?;
            func.call1((payload, ctx))
        } else {
            func.call1((payload,))
        }
    }

    fn result_to_json(&self, result: &Bound<'_, PyAny>) -> PyResult<Value> {
        let py = result.py();
        to_json(result, "result").map_err(|error| {
            let detail = error
                .value(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let path = error
                .value(py)
                .getattr("path")
                .and_then(|p| p.extract::<String>())
                .unwrap_or_else(|_| "result".into());
            let message = format!("handler '{}' returned {detail}", self.command_type);
            crate::error::not_json(py, &path, message)
        })
    }
}

/// Checks `func` and wraps it as the handler of `command_type`, for a lane or a Redis
/// worker sharing `env`.
pub(crate) fn python_handler(
    py: Python<'_>,
    command_type: &str,
    func: &Bound<'_, PyAny>,
    env: Arc<HandlerEnv>,
) -> PyResult<Arc<PyHandler>> {
    if command_type.is_empty() {
        return Err(config_error(py, "command type must not be empty"));
    }
    if !func.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "handler for '{command_type}' must be callable"
        )));
    }
    let func = Arc::new(HandlerFn::new(command_type, func)?);
    Ok(Arc::new(PyHandler::new(func, env)))
}

/// The decorator that `@owner.handler(command_type)` returns: it calls `register` with
/// the decorated function and returns the function unchanged. `what` names the call in
/// errors (`"lane.handler(type)"`).
pub(crate) fn decorator(
    py: Python<'_>,
    command_type: &str,
    what: &'static str,
    register: impl Fn(Python<'_>, &Bound<'_, PyAny>) -> PyResult<()> + Send + Sync + 'static,
) -> PyResult<Py<PyAny>> {
    if command_type.is_empty() {
        return Err(config_error(py, "command type must not be empty"));
    }
    let decorator = PyCFunction::new_closure(
        py,
        None,
        None,
        move |args: &Bound<'_, PyTuple>,
              _kwargs: Option<&Bound<'_, PyDict>>|
              -> PyResult<Py<PyAny>> {
            let func = args
                .get_item(0)
                .map_err(|_| PyTypeError::new_err(format!("{what} decorates a function")))?;
            register(args.py(), &func)?;
            Ok(func.unbind())
        },
    )?;
    Ok(decorator.into_any().unbind())
}

/// The handlers of a `Lane` or a `RedisWorker`, by command type.
pub(crate) type Handlers = RwLock<HashMap<String, Arc<PyHandler>>>;

/// Shows the garbage collector the handlers' callables (none while another thread
/// registers one: the collector must not block).
pub(crate) fn traverse_handlers(
    handlers: &Handlers,
    visit: &PyVisit<'_>,
) -> std::result::Result<(), PyTraverseError> {
    if let Some(handlers) = handlers.try_read() {
        for handler in handlers.values() {
            handler.func().traverse(visit)?;
        }
    }
    Ok(())
}

/// Drops the handlers' callables, breaking reference cycles through them.
pub(crate) fn clear_handlers(handlers: &Handlers) {
    let handlers = std::mem::take(&mut *handlers.write());
    for handler in handlers.values() {
        handler.func().clear();
    }
}

/// The queue's [`Handler`] for a Python callable.
pub(crate) struct PyHandler {
    func: Arc<HandlerFn>,
    env: Arc<HandlerEnv>,
}

impl PyHandler {
    pub(crate) fn new(func: Arc<HandlerFn>, env: Arc<HandlerEnv>) -> Self {
        Self { func, env }
    }

    /// The command type it handles.
    pub(crate) fn command_type(&self) -> &str {
        &self.func.command_type
    }

    /// Whether it is an `async def` (it runs on the owner's event loop).
    pub(crate) fn is_async(&self) -> bool {
        self.func.is_async
    }

    /// The callable, for the garbage collector.
    pub(crate) fn func(&self) -> &HandlerFn {
        &self.func
    }

    /// Runs the handler for one attempt.
    pub(crate) async fn run(
        self: &Arc<Self>,
        payload: Arc<Value>,
        ctx: CoreContext,
    ) -> Result<Value> {
        if !self.func.is_async {
            return run_sync(self.clone(), payload, ctx).await;
        }
        let Some(bridge) = self.env.home.get() else {
            return Err(LaneError::Other(format!(
                "no event loop runs async handler '{}'; start the lane with lane.start()",
                self.func.command_type
            )));
        };
        run_on_loop(bridge, self.clone(), payload, ctx).await
    }

    /// Keeps the exception of a failed attempt for the caller; returns what the queue
    /// records of it.
    fn failure(&self, py: Python<'_>, ctx: &CoreContext, error: PyErr) -> LaneError {
        let failure = handler_failure(py, &error);
        self.env
            .slots
            .store(ctx.id(), ctx.attempt(), error.into_value(py));
        failure
    }
}

impl CoroutineHandler for PyHandler {
    fn call<'py>(
        &self,
        py: Python<'py>,
        payload: &Value,
        ctx: &CoreContext,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.func.call(py, payload, ctx)
    }

    /// A result JSON cannot hold fails the command for good (retrying returns it again).
    fn succeeded(
        &self,
        py: Python<'_>,
        ctx: &CoreContext,
        value: &Bound<'_, PyAny>,
    ) -> Result<Value> {
        self.func.result_to_json(value).map_err(|error| {
            let failure = LaneError::NonRetryable(error.to_string());
            self.env
                .slots
                .store(ctx.id(), ctx.attempt(), error.into_value(py));
            failure
        })
    }

    fn failed(&self, py: Python<'_>, ctx: &CoreContext, error: PyErr) -> LaneError {
        self.failure(py, ctx, error)
    }
}

/// A [`PyHandler`] shared by the queue's handler registry (replayable commands) and the
/// lane (direct commands).
pub(crate) struct SharedHandler(pub(crate) Arc<PyHandler>);

#[async_trait]
impl Handler for SharedHandler {
    async fn handle(&self, payload: Value, ctx: CoreContext) -> Result<Value> {
        self.0.run(Arc::new(payload), ctx).await
    }

    /// A Python handler goes on after its future is dropped (a thread cannot be
    /// stopped, a coroutine may swallow `CancelledError`): its slot stays taken until it
    /// returns.
    fn stops_when_dropped(&self) -> bool {
        false
    }
}

/// A command of a lane that keeps nothing (no storage, no dead letters): the payload is
/// held once and lent to each attempt, where a replayable command clones it for the
/// record, for the command and again for every attempt, and looks its handler up by name.
pub(crate) struct DirectCommand {
    pub(crate) handler: Arc<PyHandler>,
    pub(crate) payload: Arc<Value>,
}

#[async_trait]
impl Command for DirectCommand {
    async fn execute(&self) -> Result<Value> {
        let ctx = CoreContext::current().unwrap_or_else(CoreContext::detached);
        self.handler.run(self.payload.clone(), ctx).await
    }

    fn command_type(&self) -> &str {
        self.handler.command_type()
    }

    /// See `SharedHandler::stops_when_dropped`.
    fn stops_when_dropped(&self) -> bool {
        false
    }
}

async fn run_sync(handler: Arc<PyHandler>, payload: Arc<Value>, ctx: CoreContext) -> Result<Value> {
    let thread = runtime().spawn_blocking(move || {
        crate::exit::attach_if_alive(|py| {
            if ctx.is_cancelled() {
                return Err(LaneError::Cancelled(
                    "cancelled before the handler started".into(),
                ));
            }
            let func = &handler.func;
            let outcome = func.call(py, &payload, &ctx).and_then(|result| {
                if result.hasattr(pyo3::intern!(py, "__await__"))? {
                    let _ = result.call_method0("close");
                    return Err(PyTypeError::new_err(format!(
                        "handler '{}' is a plain function but returned an awaitable; \
                         declare it with `async def` so it runs on the event loop",
                        func.command_type
                    )));
                }
                Ok(result)
            });
            match outcome {
                Ok(result) => handler.succeeded(py, &ctx, &result),
                Err(error) => Err(handler.failure(py, &ctx, error)),
            }
        })
        .unwrap_or_else(|| {
            Err(LaneError::Cancelled(
                "the Python interpreter is exiting".into(),
            ))
        })
    });
    match thread.await {
        Ok(outcome) => outcome,
        Err(error) => Err(LaneError::CommandError(format!(
            "the handler's thread failed: {error}"
        ))),
    }
}

/// What a running handler knows about its command. A handler receives it as a second
/// argument if it takes one: `def handle(payload, ctx)`.
#[pyclass(frozen, module = "a3s_lane", name = "CommandContext")]
pub(crate) struct CommandContext {
    ctx: CoreContext,
}

#[pymethods]
impl CommandContext {
    /// The command's id (as returned by the submit calls).
    #[getter]
    fn id(&self) -> CommandId {
        self.ctx.id()
    }

    /// The lane it runs in.
    #[getter]
    fn lane(&self) -> &str {
        self.ctx.lane()
    }

    /// Which attempt this is, starting at 1 (retries count up).
    #[getter]
    fn attempt(&self) -> u32 {
        self.ctx.attempt()
    }

    /// Whether the command was cancelled. A plain `def` handler cannot be interrupted:
    /// it checks this and returns early; after the lane's cancel grace period its result
    /// is ignored either way.
    fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    /// Publishes a `queue.command.progress` event carrying `progress` (any JSON value);
    /// on a `RedisWorker`, to the submitting process (its `RedisQueue.events()`).
    fn report_progress(&self, progress: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctx.report_progress(to_json(progress, "progress")?);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "CommandContext(id={}, lane={:?}, attempt={}, cancelled={})",
            self.ctx.id(),
            self.ctx.lane(),
            self.ctx.attempt(),
            if self.ctx.is_cancelled() {
                "True"
            } else {
                "False"
            }
        )
    }
}
