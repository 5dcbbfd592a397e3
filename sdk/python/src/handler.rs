//! Python callables as queue handlers.
//!
//! A plain `def` runs on the runtime's blocking thread pool (one thread per running
//! command, so the lanes' concurrency limits are the pool's limits).
//!
//! An `async def` runs on the queue's event loop, inside a [`Worker`]: a coroutine
//! written in Rust that an asyncio task drives, and that itself drives handler
//! coroutines one after another, each in its own `contextvars.Context`. A handler that
//! finishes without suspending costs no task, no loop callback and no thread switch; one
//! that suspends keeps its worker, and the rest of the queue goes to another worker
//! (idle, or a new task). `asyncio.current_task()` inside a handler is its worker's
//! task, so `asyncio.timeout()` and friends work; cancelling the command cancels that
//! task, and the worker takes the `CancelledError` back (`Task.uncancel()`) once the
//! handler has ended. The command's runner only pushes a start request into the loop's
//! inbox and waits for the reply; a worker's step is a safe point where the replies it
//! made wake their runners, which finish their commands and start the next ones, so a
//! busy queue runs many commands in one step.
//!
//! The handler's exception is kept for the caller (the queue itself only carries error
//! messages) in [`ErrorSlots`], under the command id, and raised as is with its
//! traceback when the result arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use a3s_lane::{Command, CommandContext as CoreContext, CommandId, Handler, LaneError, Result};
use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use pyo3::PyTraverseError;
use pyo3::exceptions::{
    PyBaseException, PyKeyboardInterrupt, PyStopIteration, PySystemExit, PyTypeError,
};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyDict, PyTuple, PyWeakrefReference};
use serde_json::Value;

use crate::convert::{to_json, to_py};
use crate::error::{config_error, handler_failure};
use crate::runtime::{
    LoopBridge, SafePoint, Work, private_loop, python_attr, running_loop, runtime,
};

/// The last exception of each failed command that a caller waits for, by command id.
///
/// Every command submitted through this module has a waiter that takes its entry when
/// the result arrives. Commands recovered from storage have none; they are recognised by
/// their ids, which are below the first id accepted through this module (ids only
/// grow). That first id is recorded in the same GIL hold in which the queue accepted the
/// command, and a handler needs the GIL to raise anything, so no exception of a waited-for
/// command is ever dropped.
pub(crate) struct ErrorSlots {
    first_awaited: AtomicU64,
    slots: Mutex<HashMap<CommandId, (u32, Py<PyBaseException>)>>,
}

impl Default for ErrorSlots {
    fn default() -> Self {
        Self {
            first_awaited: AtomicU64::new(u64::MAX),
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl ErrorSlots {
    /// A waiter will take the outcome of command `id` (call with the GIL held, in the
    /// hold that accepted the command).
    pub(crate) fn awaited(&self, id: CommandId) {
        self.first_awaited.fetch_min(id, Ordering::AcqRel);
    }

    /// Keeps `exception` of attempt `attempt` of command `id` for its waiter; a later
    /// attempt's exception replaces an earlier one, never the other way round (a timed-out
    /// attempt's thread may finish after the next attempt).
    fn store(&self, id: CommandId, attempt: u32, exception: Py<PyBaseException>) {
        if id < self.first_awaited.load(Ordering::Acquire) {
            return;
        }
        let mut slots = self.slots.lock();
        let replaced = match slots.get_mut(&id) {
            Some(slot) if slot.0 > attempt => Some(exception),
            Some(slot) => Some(std::mem::replace(slot, (attempt, exception)).1),
            None => {
                slots.insert(id, (attempt, exception));
                None
            }
        };
        drop(slots);
        drop(replaced);
    }

    /// Removes the entry of `id`, returning the exception of its last failed attempt.
    pub(crate) fn take(&self, id: CommandId) -> Option<Py<PyBaseException>> {
        let mut slots = self.slots.lock();
        if slots.is_empty() {
            return None;
        }
        slots.remove(&id).map(|(_, exception)| exception)
    }
}

/// What a queue shares with its handlers: the error slots and the event loop on which
/// `async def` handlers run.
#[derive(Default)]
pub(crate) struct HandlerEnv {
    /// Handler exceptions for waiting callers.
    pub(crate) slots: ErrorSlots,
    home: RwLock<Option<Arc<LoopBridge>>>,
}

impl HandlerEnv {
    /// The loop `async def` handlers run on.
    pub(crate) fn home(&self) -> Option<Arc<LoopBridge>> {
        self.home.read().clone()
    }

    /// Sets the loop `async def` handlers run on.
    pub(crate) fn set_home(&self, bridge: Arc<LoopBridge>) {
        *self.home.write() = Some(bridge);
    }

    /// Gives `async def` handlers a loop unless they have one: the loop running in this
    /// thread, or else a private loop on a daemon thread, whose `LoopThread` goes to
    /// `thread` for its owner to stop (see [`stop_loop_thread`]).
    pub(crate) fn ensure_home(
        &self,
        py: Python<'_>,
        thread: &mut Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if self.home().is_some() {
            return Ok(());
        }
        match running_loop(py)? {
            Some(event_loop) => self.set_home(LoopBridge::of(py, &event_loop)?),
            None => {
                let (loop_thread, bridge) = private_loop(py)?;
                *thread = Some(loop_thread);
                self.set_home(bridge);
            }
        }
        Ok(())
    }
}

/// Stops a private loop made by [`HandlerEnv::ensure_home`] (its owner is dropped).
pub(crate) fn stop_loop_thread(thread: Py<PyAny>) {
    Python::attach(|py| {
        if let Err(error) = thread.bind(py).call_method0("stop") {
            error.write_unraisable(py, None);
        }
    });
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
            let message = format!("handler '{}' returned {detail}", self.command_type);
            PyErr::from_type(error.get_type(py), message)
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
    pub(crate) async fn run(&self, payload: Arc<Value>, ctx: CoreContext) -> Result<Value> {
        if self.func.is_async {
            run_async(self.func.clone(), self.env.clone(), payload, ctx).await
        } else {
            run_sync(self.func.clone(), self.env.clone(), payload, ctx).await
        }
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
}

async fn run_sync(
    func: Arc<HandlerFn>,
    env: Arc<HandlerEnv>,
    payload: Arc<Value>,
    ctx: CoreContext,
) -> Result<Value> {
    let thread = runtime().spawn_blocking(move || {
        Python::attach(|py| {
            if ctx.is_cancelled() {
                return Err(LaneError::Cancelled(
                    "cancelled before the handler started".into(),
                ));
            }
            let outcome = func.call(py, &payload, &ctx).and_then(|result| {
                if result.hasattr(pyo3::intern!(py, "__await__"))? {
                    let _ = result.call_method0("close");
                    return Err(PyTypeError::new_err(format!(
                        "handler '{}' is a plain function but returned an awaitable; \
                         declare it with `async def` so it runs on the event loop",
                        func.command_type
                    )));
                }
                func.result_to_json(&result)
            });
            outcome.map_err(|error| {
                let failure = handler_failure(py, &error);
                env.slots
                    .store(ctx.id(), ctx.attempt(), error.into_value(py));
                failure
            })
        })
    });
    match thread.await {
        Ok(outcome) => outcome,
        Err(error) => Err(LaneError::CommandError(format!(
            "the handler's thread failed: {error}"
        ))),
    }
}

async fn run_async(
    func: Arc<HandlerFn>,
    env: Arc<HandlerEnv>,
    payload: Arc<Value>,
    ctx: CoreContext,
) -> Result<Value> {
    let Some(bridge) = env.home() else {
        return Err(LaneError::Other(format!(
            "no event loop runs async handler '{}'; start the lane with lane.start()",
            func.command_type
        )));
    };
    let run = Arc::new(AsyncRun {
        func,
        env,
        payload,
        ctx,
        outcome: Mutex::new(None),
        replied: AtomicBool::new(false),
        waker: AtomicWaker::new(),
        cancel_sent: AtomicBool::new(false),
        place: Mutex::new(Place::Queued),
    });
    bridge.push(Work::Start(run.clone()));
    // Dropped by a timeout or at the end of the cancel grace period: stop the handler.
    let _guard = CancelOnDrop {
        run: run.clone(),
        bridge: bridge.clone(),
    };
    std::future::poll_fn(|cx| {
        run.waker.register(cx.waker());
        if let Some(outcome) = run.outcome.lock().take() {
            return std::task::Poll::Ready(outcome);
        }
        // A cancel request wakes the queue's runner, which polls this future: the
        // handler is cancelled on the loop and replies when it has stopped.
        if run.ctx.is_cancelled() {
            run.request_cancel(&bridge);
        }
        std::task::Poll::Pending
    })
    .await
}

struct CancelOnDrop {
    run: Arc<AsyncRun>,
    bridge: Arc<LoopBridge>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.run.replied.load(Ordering::Acquire) {
            self.run.request_cancel(&self.bridge);
        }
    }
}

/// Where a run is, as seen from the loop's thread.
enum Place {
    /// In the bridge's job queue.
    Queued,
    /// Its handler runs in this worker.
    Running(Py<Worker>),
    /// Finished, or cancelled before it started.
    Done,
}

/// One run of an `async def` handler, shared by the tokio side and the loop's thread.
pub(crate) struct AsyncRun {
    func: Arc<HandlerFn>,
    env: Arc<HandlerEnv>,
    payload: Arc<Value>,
    ctx: CoreContext,
    outcome: Mutex<Option<Result<Value>>>,
    replied: AtomicBool,
    waker: AtomicWaker,
    cancel_sent: AtomicBool,
    place: Mutex<Place>,
}

static ASYNCIO_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CURRENT_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A copy of the current `contextvars` context.
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    python_attr(py, &COPY_CONTEXT, "contextvars", "copy_context")?.call0()
}

fn asyncio_cancelled_error(py: Python<'_>) -> PyErr {
    match python_attr(py, &ASYNCIO_CANCELLED, "asyncio", "CancelledError")
        .and_then(|class| class.call0())
    {
        Ok(error) => PyErr::from_value(error),
        Err(error) => error,
    }
}

fn is_asyncio_cancel(py: Python<'_>, error: &PyErr) -> bool {
    python_attr(py, &ASYNCIO_CANCELLED, "asyncio", "CancelledError")
        .is_ok_and(|class| error.value(py).is_instance(class).unwrap_or(false))
}

/// A worker step runs at most this many handlers before it lets the loop's other
/// callbacks run.
const STEP_RUNS: usize = 1024;

thread_local! {
    /// The runtime tasks to wake for replies made on a loop's thread, woken together at
    /// the end of the step or drain that made them: the runtime wakes once per batch.
    static REPLIES: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Wakes the waiters of the replies made by [`AsyncRun::reply_later`].
pub(crate) fn send_replies() {
    let wakers = REPLIES.with(|replies| std::mem::take(&mut *replies.borrow_mut()));
    for waker in wakers {
        waker.wake();
    }
}

impl AsyncRun {
    fn set_outcome(&self, outcome: Result<Value>) -> bool {
        if self.replied.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.outcome.lock() = Some(outcome);
        true
    }

    fn reply(&self, outcome: Result<Value>) {
        if self.set_outcome(outcome) {
            self.waker.wake();
        }
    }

    /// [`AsyncRun::reply`] on the loop's thread: the waiter is woken by [`send_replies`].
    fn reply_later(&self, outcome: Result<Value>) {
        if self.set_outcome(outcome)
            && let Some(waker) = self.waker.take()
        {
            REPLIES.with(|replies| replies.borrow_mut().push(waker));
        }
    }

    fn request_cancel(self: &Arc<Self>, bridge: &Arc<LoopBridge>) {
        if !self.cancel_sent.swap(true, Ordering::AcqRel) {
            bridge.push(Work::Cancel(self.clone()));
        }
    }

    /// The loop is gone before the handler could start (or finish).
    pub(crate) fn abandon(&self) {
        *self.place.lock() = Place::Done;
        self.reply(Err(LaneError::Other(
            "the event loop that runs async handlers was closed".into(),
        )));
    }

    fn succeed(&self, py: Python<'_>, result: &Bound<'_, PyAny>) {
        match self.func.result_to_json(result) {
            Ok(value) => self.reply_later(Ok(value)),
            Err(error) => {
                let failure = LaneError::NonRetryable(error.to_string());
                self.env
                    .slots
                    .store(self.ctx.id(), self.ctx.attempt(), error.into_value(py));
                self.reply_later(Err(failure));
            }
        }
    }

    fn fail(&self, py: Python<'_>, error: PyErr) {
        let failure = handler_failure(py, &error);
        self.env
            .slots
            .store(self.ctx.id(), self.ctx.attempt(), error.into_value(py));
        self.reply_later(Err(failure));
    }

    fn cancelled(&self, reason: &str) {
        self.reply_later(Err(LaneError::Cancelled(reason.into())));
    }

    /// The command was cancelled (or its run dropped); on the loop's thread.
    pub(crate) fn cancel_on_loop(self: &Arc<Self>, py: Python<'_>) {
        let worker = {
            let mut place = self.place.lock();
            match &*place {
                Place::Queued => {
                    *place = Place::Done;
                    None
                }
                Place::Running(worker) => Some(worker.clone_ref(py)),
                Place::Done => return,
            }
        };
        match worker {
            None => self.cancelled("cancelled before the handler started"),
            Some(worker) => worker.get().cancel_run(py, self),
        }
    }
}

/// The loop-thread side of a bridge's `async def` handlers: runs waiting for a worker,
/// and the workers waiting for runs.
#[derive(Default)]
pub(crate) struct WorkerPool {
    runs: VecDeque<Arc<AsyncRun>>,
    idle: Vec<Py<Worker>>,
    /// Workers woken (or created) that have not taken their first step yet: they will
    /// take the queued runs, so nobody else needs waking.
    waking: usize,
}

impl WorkerPool {
    /// Queues a run for the workers (see [`kick`]).
    pub(crate) fn push(&mut self, run: Arc<AsyncRun>) {
        self.runs.push_back(run);
    }

    /// Forgets everything: the loop is gone.
    pub(crate) fn abandon(&mut self) {
        for run in self.runs.drain(..) {
            run.abandon();
        }
        self.idle.clear();
    }
}

/// Makes sure some worker will take the queued runs: wakes an idle one or starts one.
pub(crate) fn kick(py: Python<'_>, bridge: &Arc<LoopBridge>) {
    {
        let mut pool = bridge.workers();
        if pool.runs.is_empty() || pool.waking > 0 {
            return;
        }
        pool.waking += 1;
    }
    loop {
        let idle = bridge.workers().idle.pop();
        let woken = match idle {
            Some(worker) => match worker.get().wake(py) {
                Ok(false) => continue,
                other => other.map(|_| ()),
            },
            None => Worker::start(py, bridge),
        };
        if let Err(error) = woken {
            bridge.workers().waking -= 1;
            error.write_unraisable(py, None);
        }
        return;
    }
}

struct Current {
    run: Arc<AsyncRun>,
    coroutine: Py<PyAny>,
    context: Py<PyAny>,
    /// A cancel of this run was delivered to the worker's task: take it back afterwards.
    cancelling: bool,
    /// The task threw something into this run (a cancel, ours or not).
    thrown: bool,
}

#[derive(Default)]
struct WorkerState {
    current: Option<Current>,
    idle: Option<Py<PyAny>>,
    task: Option<Py<PyAny>>,
    woken: bool,
}

enum Resume {
    Send(Py<PyAny>),
    Throw(PyErr),
}

/// A coroutine, driven by one asyncio task, that runs `async def` handlers one after
/// another (see the module docs).
#[pyclass(frozen, module = "a3s_lane._native")]
pub(crate) struct Worker {
    bridge: Arc<LoopBridge>,
    state: Mutex<WorkerState>,
}

impl Worker {
    fn start(py: Python<'_>, bridge: &Arc<LoopBridge>) -> PyResult<()> {
        let worker = Py::new(
            py,
            Worker {
                bridge: bridge.clone(),
                state: Mutex::new(WorkerState {
                    woken: true,
                    ..WorkerState::default()
                }),
            },
        )?;
        let task = bridge.create_task(worker.bind(py).clone().into_any())?;
        // Weakly: the task owns the worker.
        worker.get().state.lock().task = Some(PyWeakrefReference::new(&task)?.into_any().unbind());
        Ok(())
    }

    /// Wakes an idle worker; false if it cannot be (its task is being cancelled).
    fn wake(&self, py: Python<'_>) -> PyResult<bool> {
        let idle = self.state.lock().idle.take();
        let Some(future) = idle else {
            return Ok(false);
        };
        let future = future.bind(py);
        if future
            .call_method0(pyo3::intern!(py, "done"))?
            .is_truthy()?
        {
            return Ok(false);
        }
        self.state.lock().woken = true;
        future.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
        Ok(true)
    }

    fn task<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let reference = self.state.lock().task.as_ref()?.clone_ref(py);
        reference
            .bind(py)
            .call0()
            .ok()
            .filter(|task| !task.is_none())
    }

    /// Cancels the task while it runs `run`'s handler.
    fn cancel_run(&self, py: Python<'_>, run: &Arc<AsyncRun>) {
        let deliver = {
            let mut state = self.state.lock();
            match state.current.as_mut() {
                Some(current) if Arc::ptr_eq(&current.run, run) && !current.cancelling => {
                    current.cancelling = true;
                    true
                }
                _ => false,
            }
        };
        if deliver && let Some(task) = self.task(py) {
            let _ = task.call_method0(pyo3::intern!(py, "cancel"));
        }
    }

    /// After a run that a cancel reached has ended: takes back the cancel this worker
    /// delivered (`ours`), and returns whether the task is still being cancelled by
    /// someone else (its loop shutting down, say; two cancels arrive as one
    /// `CancelledError`, and a handler may swallow one). Then the worker must end, as a
    /// task per handler would have.
    fn settle_cancels(py: Python<'_>, ours: bool) -> bool {
        let Ok(task) = python_attr(py, &CURRENT_TASK, "asyncio", "current_task")
            .and_then(|current| current.call0())
        else {
            return false;
        };
        if task.is_none() {
            return false;
        }
        let method = if ours {
            pyo3::intern!(py, "uncancel")
        } else {
            pyo3::intern!(py, "cancelling")
        };
        task.call_method0(method)
            .and_then(|left| left.extract::<u64>())
            .is_ok_and(|left| left > 0)
    }

    /// Starts the next queued run, or parks the worker on an idle future.
    fn next(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        loop {
            let run = this.bridge.workers().runs.pop_front();
            let Some(run) = run else {
                let future = this
                    .bridge
                    .event_loop(py)
                    .call_method0(pyo3::intern!(py, "create_future"))?;
                future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
                this.state.lock().idle = Some(future.clone().unbind());
                this.bridge.workers().idle.push(slf.clone().unbind());
                return Ok(Some(future.unbind()));
            };
            {
                let mut place = run.place.lock();
                if !matches!(*place, Place::Queued) {
                    continue;
                }
                *place = Place::Running(slf.clone().unbind());
            }
            let started = run
                .func
                .call(py, &run.payload, &run.ctx)
                .and_then(|coroutine| {
                    let context = copy_context(py)?;
                    Ok((coroutine, context))
                });
            match started {
                Ok((coroutine, context)) => {
                    this.state.lock().current = Some(Current {
                        cancelling: false,
                        thrown: false,
                        run,
                        coroutine: coroutine.unbind(),
                        context: context.unbind(),
                    });
                    return Ok(None);
                }
                Err(error) => {
                    *run.place.lock() = Place::Done;
                    run.fail(py, error);
                }
            }
        }
    }

    /// One step of the task: a safe point of its loop (see `LoopBridge::process`).
    fn step(slf: &Bound<'_, Self>, resume: Resume) -> PyResult<Py<PyAny>> {
        let bridge = &slf.get().bridge;
        let _safe_point = SafePoint::enter(bridge);
        let outcome = Self::run_step(slf, resume);
        // Whatever the handlers' replies woke (their runners, the results) runs now.
        send_replies();
        bridge.process(slf.py(), true);
        outcome
    }

    /// Resumes the current handler and moves on to the next run whenever one ends;
    /// returns what the task should wait for.
    fn run_step(slf: &Bound<'_, Self>, mut resume: Resume) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let mut finished = 0usize;
        {
            let mut state = this.state.lock();
            if std::mem::take(&mut state.woken) {
                drop(state);
                this.bridge.workers().waking -= 1;
            }
        }
        loop {
            let current = this.state.lock().current.take();
            let Some(current) = current else {
                if let Resume::Throw(error) = resume {
                    // Cancelled while idle (the loop is shutting down, usually): end, and
                    // leave what is queued to another worker.
                    this.bridge.workers().idle.retain(|w| !w.is(slf));
                    kick(py, &this.bridge);
                    return Err(error);
                }
                if this.bridge.workers().runs.is_empty() {
                    // The replies so far wake their runners, which finish their commands
                    // and start the next ones here: the queue keeps going in this step.
                    send_replies();
                    this.bridge.process(py, false);
                }
                if finished >= STEP_RUNS {
                    // Let the loop's other callbacks run (a bare yield).
                    return Ok(py.None());
                }
                match Self::next(slf)? {
                    Some(idle) => return Ok(idle),
                    None => {
                        resume = Resume::Send(py.None());
                        continue;
                    }
                }
            };
            let mut current = current;
            let coroutine = current.coroutine.bind(py);
            let context = current.context.bind(py);
            // `type(coroutine).send` is the unbound method: no bound method per step.
            let kind = coroutine.get_type();
            let outcome = match resume {
                Resume::Send(value) => context.call_method1(
                    pyo3::intern!(py, "run"),
                    (kind.getattr(pyo3::intern!(py, "send"))?, coroutine, value),
                ),
                Resume::Throw(error) => {
                    current.thrown = true;
                    context.call_method1(
                        pyo3::intern!(py, "run"),
                        (
                            kind.getattr(pyo3::intern!(py, "throw"))?,
                            coroutine,
                            error.into_value(py),
                        ),
                    )
                }
            };
            let yielded = match outcome {
                Ok(yielded) => yielded,
                Err(error) => {
                    let Current {
                        run,
                        cancelling,
                        thrown,
                        ..
                    } = current;
                    *run.place.lock() = Place::Done;
                    // After a cancel reached this run: is the task itself still being
                    // cancelled (say its loop is shutting down)? Then the worker ends.
                    let task_cancelled =
                        (cancelling || thrown) && Self::settle_cancels(py, cancelling);
                    let stop = if error.is_instance_of::<PyStopIteration>(py) {
                        let value = error.value(py).getattr(pyo3::intern!(py, "value"))?;
                        run.succeed(py, &value);
                        None
                    } else if is_asyncio_cancel(py, &error) {
                        if cancelling && !task_cancelled {
                            run.cancelled("the handler was cancelled");
                            None
                        } else {
                            run.cancelled("the handler's task was cancelled");
                            Some(error)
                        }
                    } else if error.is_instance_of::<PyKeyboardInterrupt>(py)
                        || error.is_instance_of::<PySystemExit>(py)
                    {
                        let reported = PyErr::from_value(error.value(py).clone().into_any());
                        run.fail(py, reported);
                        Some(error)
                    } else {
                        run.fail(py, error);
                        None
                    };
                    if let Some(error) = stop {
                        return Err(error);
                    }
                    if task_cancelled {
                        return Err(asyncio_cancelled_error(py));
                    }
                    finished += 1;
                    resume = Resume::Send(py.None());
                    continue;
                }
            };
            this.state.lock().current = Some(current);
            // The handler waits for something: whatever is queued goes to another worker.
            kick(py, &this.bridge);
            return Ok(yielded.unbind());
        }
    }
}

#[pymethods]
impl Worker {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(state) = self.state.try_lock() {
            if let Some(current) = &state.current {
                visit.call(&current.coroutine)?;
                visit.call(&current.context)?;
            }
            visit.call(state.idle.as_ref())?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (current, idle) = {
            let mut state = self.state.lock();
            (state.current.take(), state.idle.take())
        };
        if let Some(current) = current {
            *current.run.place.lock() = Place::Done;
            current.run.reply(Err(LaneError::Cancelled(
                "the handler's task was garbage collected before it finished".into(),
            )));
        }
        drop(idle);
    }

    fn send(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::step(slf, Resume::Send(value))
    }

    #[pyo3(signature = (kind, value = None, _traceback = None))]
    fn throw(
        slf: &Bound<'_, Self>,
        kind: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let error = if kind.is_instance_of::<PyBaseException>() {
            PyErr::from_value(kind.clone())
        } else {
            let instance = match value.filter(|v| !v.is_none()) {
                Some(value) if value.is_instance(kind)? => value.clone(),
                Some(value) => kind.call1((value,))?,
                None => kind.call0()?,
            };
            PyErr::from_value(instance)
        };
        Self::step(slf, Resume::Throw(error))
    }

    fn close(&self, py: Python<'_>) {
        let current = self.state.lock().current.take();
        if let Some(current) = current {
            let _ = current.coroutine.bind(py).call_method0("close");
            *current.run.place.lock() = Place::Done;
            current.run.reply(Err(LaneError::Cancelled(
                "the handler's task was closed".into(),
            )));
        }
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::step(slf, Resume::Send(slf.py().None()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(current) = self.state.get_mut().current.take() {
            *current.run.place.lock() = Place::Done;
            current.run.reply(Err(LaneError::Cancelled(
                "the handler's task was destroyed before it finished (was its event loop closed?)"
                    .into(),
            )));
        }
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
