//! What a submit returns: [`CommandFuture`] (an asyncio future of the command's result)
//! and [`CommandHandle`] (a thread-friendly handle that can also be awaited).
//!
//! `CommandFuture` implements asyncio's future protocol itself rather than wrapping an
//! `asyncio.Future`: cancelling it (directly, through `Task.cancel()`, `wait_for`,
//! `timeout()` or `gather`) cancels the command at once — unless the future is a
//! duplicate submit's (its idempotency key belonged to a live command): then only that
//! waiter is detached and the command goes on for its other submitters. It carries the
//! command id, without an extra done-callback per command.
//!
//! Both serve in-process lanes and Redis queues alike; a [`CancelTarget`] says where a
//! cancel request goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use a3s_lane::{CommandHandle as CoreHandle, CommandId, CommandQueue, LaneError};
use parking_lot::Mutex;
use pyo3::PyTraverseError;
use pyo3::exceptions::PyBaseException;
use pyo3::exceptions::{PyStopIteration, PyTimeoutError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use serde_json::Value;

use crate::args::optional_deadline;
use crate::convert::to_py;
use crate::error::IntoPyErr;
use crate::event_loop::{LoopBridge, ReadyCallback};
use crate::handler::{HandlerEnv, SharedException};
use crate::loop_task::{LoopBody, LoopTask};
use crate::runtime::{block_on, block_on_until, copy_context, python_attr};

/// Where the cancel request of a command goes.
#[derive(Clone)]
pub(crate) enum CancelTarget {
    /// An in-process queue, held weakly: a handle does not keep a dropped lane alive.
    Local(Weak<CommandQueue>),
    /// A queue in Redis: a cancel is a round trip.
    Remote(a3s_lane::RedisQueue),
}

impl From<Weak<CommandQueue>> for CancelTarget {
    fn from(queue: Weak<CommandQueue>) -> Self {
        Self::Local(queue)
    }
}

impl CancelTarget {
    /// Asks for command `id` to be cancelled without waiting (a Redis request is sent
    /// from the runtime).
    fn request(&self, id: CommandId) {
        match self {
            Self::Local(queue) => {
                if let Some(queue) = queue.upgrade() {
                    queue.cancel(id);
                }
            }
            Self::Remote(queue) => {
                let queue = queue.clone();
                crate::runtime::runtime().spawn(async move {
                    if let Err(error) = queue.cancel(id).await {
                        log_cancel_failure(id, &error);
                    }
                });
            }
        }
    }

    /// Cancels command `id` and says whether it was still pending or running (for Redis,
    /// after the round trip, releasing the GIL).
    fn cancel(&self, py: Python<'_>, id: CommandId) -> PyResult<bool> {
        match self {
            Self::Local(queue) => Ok(queue.upgrade().is_some_and(|queue| queue.cancel(id))),
            Self::Remote(queue) => {
                let mut cancel = std::pin::pin!(queue.cancel(id));
                let outcome = block_on(py, cancel.as_mut())?.map_err(|e| e.into_py_err(py))?;
                Ok(matches!(
                    outcome,
                    a3s_lane::CancelOutcome::Cancelled | a3s_lane::CancelOutcome::Signalled
                ))
            }
        }
    }
}

/// A cancel request nobody waits for failed (Redis unreachable): the command keeps
/// running, which its waiter sees when it finishes; the failure goes to the `a3s_lane`
/// logger.
fn log_cancel_failure(id: CommandId, error: &LaneError) {
    let message = format!("could not send the cancel request of command {id} to Redis: {error}");
    crate::exit::attach_if_alive(|py| {
        let logged = py
            .import("logging")
            .and_then(|logging| logging.call_method1("getLogger", ("a3s_lane",)))
            .and_then(|logger| logger.call_method1("warning", (message,)));
        if let Err(error) = logged {
            error.write_unraisable(py, None);
        }
    });
}

/// The boxed future of a command's acceptance by the queue.
pub(crate) type Accepting =
    Pin<Box<dyn Future<Output = a3s_lane::Result<CoreHandle>> + Send + 'static>>;

/// How a command ended, as the queue reported it, plus the handler's own exception.
pub(crate) struct Finished {
    pub(crate) result: a3s_lane::Result<Value>,
    pub(crate) exception: Option<SharedException>,
}

impl Finished {
    /// The Python result, or the exception to raise: the handler's own for a failed
    /// handler, the matching `LaneError` otherwise.
    pub(crate) fn to_python(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.result {
            Ok(value) => Ok(to_py(py, value)?.unbind()),
            Err(error) => Err(error_to_python(py, error, self.exception.as_deref())),
        }
    }
}

fn error_to_python(
    py: Python<'_>,
    error: &LaneError,
    exception: Option<&Py<PyBaseException>>,
) -> PyErr {
    match (error, exception) {
        (LaneError::CommandError(_) | LaneError::NonRetryable(_), Some(exception)) => {
            PyErr::from_value(exception.bind(py).clone().into_any())
        }
        (_, exception) => {
            let raised = error.clone().into_py_err(py);
            // A cancelled or timed-out command whose handler raised on the way out.
            if let Some(exception) = exception {
                raised.set_cause(
                    py,
                    Some(PyErr::from_value(exception.bind(py).clone().into_any())),
                );
            }
            raised
        }
    }
}

enum Outcome {
    Pending,
    Value(Py<PyAny>),
    Error(Py<PyBaseException>),
    Cancelled(Option<Py<PyAny>>),
}

/// A done-callback and the context to run it in.
type Callback = (Py<PyAny>, Py<PyAny>);

/// Done-callbacks in registration order; the first (usually the only one: the awaiting
/// task, or `gather`) is kept inline, sparing an allocation per command.
#[derive(Default)]
struct Callbacks {
    first: Option<Callback>,
    rest: Vec<Callback>,
}

impl Callbacks {
    fn push(&mut self, callback: Callback) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(callback);
        } else {
            self.rest.push(callback);
        }
    }

    fn take(&mut self) -> impl Iterator<Item = Callback> + use<> {
        let first = self.first.take();
        first.into_iter().chain(std::mem::take(&mut self.rest))
    }

    fn iter(&self) -> impl Iterator<Item = &Callback> {
        self.first.iter().chain(self.rest.iter())
    }
}

struct FutureState {
    outcome: Outcome,
    callbacks: Callbacks,
    id: Option<CommandId>,
    duplicate: bool,
    cancel_when_accepted: bool,
    blocking: bool,
}

static CANCELLED_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static INVALID_STATE_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn asyncio_cancelled(py: Python<'_>, message: Option<&Py<PyAny>>) -> PyErr {
    match python_attr(py, &CANCELLED_ERROR, "asyncio", "CancelledError") {
        Ok(class) => {
            let created = match message {
                Some(message) => class.call1((message.bind(py),)),
                None => class.call0(),
            };
            match created {
                Ok(exception) => PyErr::from_value(exception),
                Err(error) => error,
            }
        }
        Err(error) => error,
    }
}

fn invalid_state(py: Python<'_>, message: &str) -> PyErr {
    match python_attr(py, &INVALID_STATE_ERROR, "asyncio", "InvalidStateError")
        .and_then(|class| class.call1((message,)))
    {
        Ok(exception) => PyErr::from_value(exception),
        Err(error) => error,
    }
}

/// An asyncio future of a command's result, bound to the event loop that created it.
///
/// Await it for the result (or the handler's exception); `cancel()` cancels the command,
/// and so does cancelling the task that awaits it — except for a duplicate
/// (`is_duplicate`): cancelling its future only detaches this waiter, the command goes on
/// for its other submitters (cancel it for all with `cancel(id)` on the queue). `id` is
/// the command id, known once the queue accepted the command (at once, unless the lane
/// is durable).
#[pyclass(frozen, module = "a3s_lane", name = "CommandFuture")]
pub(crate) struct CommandFuture {
    bridge: Arc<LoopBridge>,
    queue: CancelTarget,
    state: Mutex<FutureState>,
}

impl CommandFuture {
    pub(crate) fn new(
        py: Python<'_>,
        bridge: Arc<LoopBridge>,
        queue: impl Into<CancelTarget>,
        id: Option<CommandId>,
    ) -> PyResult<Py<Self>> {
        Py::new(
            py,
            Self {
                bridge,
                queue: queue.into(),
                state: Mutex::new(FutureState {
                    outcome: Outcome::Pending,
                    callbacks: Callbacks::default(),
                    id,
                    duplicate: false,
                    cancel_when_accepted: false,
                    blocking: false,
                }),
            },
        )
    }

    /// The queue accepted the command under `id` (`duplicate`: an earlier command's,
    /// whose idempotency key this submit carried). A future cancelled before cancels the
    /// command now, unless it is a duplicate's: that one was only detached.
    pub(crate) fn accepted(&self, id: CommandId, duplicate: bool) {
        let cancel = {
            let mut state = self.state.lock();
            state.id = Some(id);
            state.duplicate = duplicate;
            state.cancel_when_accepted && !duplicate
        };
        if cancel {
            self.queue.request(id);
        }
    }

    /// Marks a future made with its id as a duplicate submit's.
    pub(crate) fn set_duplicate(&self, duplicate: bool) {
        self.state.lock().duplicate = duplicate;
    }

    /// Settles the future (if still pending) and schedules its callbacks.
    fn settle(slf: &Bound<'_, Self>, outcome: Outcome) -> bool {
        let py = slf.py();
        let this = slf.get();
        let callbacks = {
            let mut state = this.state.lock();
            if !matches!(state.outcome, Outcome::Pending) {
                return false;
            }
            state.outcome = outcome;
            state.callbacks.take()
        };
        for (callback, context) in callbacks {
            let ready = ReadyCallback {
                callback,
                future: slf.clone().into_any().unbind(),
                context,
            };
            if let Err(error) = this.bridge.schedule_callback(py, ready) {
                error.write_unraisable(py, Some(slf.as_any()));
            }
        }
        true
    }

    /// Whether it is settled (finished or cancelled).
    pub(crate) fn is_done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Pending)
    }

    /// Settles the future with `error` (the queue refused the command).
    pub(crate) fn refuse(slf: &Bound<'_, Self>, error: PyErr) {
        let exception = error.into_value(slf.py());
        Self::settle(slf, Outcome::Error(exception));
    }

    /// Settles the future with a command's result.
    pub(crate) fn finish(slf: &Bound<'_, Self>, finished: &Finished) {
        let py = slf.py();
        let outcome = match finished.to_python(py) {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Error(error.into_value(py)),
        };
        Self::settle(slf, outcome);
    }

    /// The error it failed with already (a command the queue refused at once).
    pub(crate) fn refused(&self, py: Python<'_>) -> Option<PyErr> {
        match &self.state.lock().outcome {
            Outcome::Error(exception) => {
                Some(PyErr::from_value(exception.bind(py).clone().into_any()))
            }
            _ => None,
        }
    }

    fn raise_outcome(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.state.lock().outcome {
            Outcome::Pending => Err(invalid_state(py, "Result is not set.")),
            Outcome::Value(value) => Ok(value.clone_ref(py)),
            Outcome::Error(exception) => {
                Err(PyErr::from_value(exception.bind(py).clone().into_any()))
            }
            Outcome::Cancelled(message) => Err(asyncio_cancelled(py, message.as_ref())),
        }
    }
}

#[pymethods]
impl CommandFuture {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(state) = self.state.try_lock() {
            match &state.outcome {
                Outcome::Value(value) => visit.call(value)?,
                Outcome::Error(error) => visit.call(error)?,
                Outcome::Cancelled(message) => visit.call(message.as_ref())?,
                Outcome::Pending => {}
            }
            for (callback, context) in state.callbacks.iter() {
                visit.call(callback)?;
                visit.call(context)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (callbacks, outcome) = {
            let mut state = self.state.lock();
            let outcome = std::mem::replace(&mut state.outcome, Outcome::Cancelled(None));
            (state.callbacks.take().collect::<Vec<_>>(), outcome)
        };
        drop((callbacks, outcome));
    }

    /// The command id, or `None` until a durable lane has stored the command.
    #[getter]
    fn id(&self) -> Option<CommandId> {
        self.state.lock().id
    }

    /// True when the submit queued nothing: its idempotency `key` belonged to a command
    /// still delayed, pending or running, and this future is that command's (same `id`,
    /// and its result; cancelling this future only detaches it). False until the queue
    /// accepted the command (`id` is None until then).
    #[getter]
    fn is_duplicate(&self) -> bool {
        self.state.lock().duplicate
    }

    /// Part of asyncio's future protocol.
    #[getter(_asyncio_future_blocking)]
    fn get_asyncio_future_blocking(&self) -> bool {
        self.state.lock().blocking
    }

    #[setter(_asyncio_future_blocking)]
    fn set_asyncio_future_blocking(&self, value: bool) {
        self.state.lock().blocking = value;
    }

    /// The event loop this future belongs to.
    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.bridge.event_loop(py).clone().unbind()
    }

    /// Whether the command finished (or the future was cancelled).
    fn done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Pending)
    }

    /// Whether the future was cancelled.
    fn cancelled(&self) -> bool {
        matches!(self.state.lock().outcome, Outcome::Cancelled(_))
    }

    /// The command's result; raises its exception, `asyncio.CancelledError` if the future
    /// was cancelled, `asyncio.InvalidStateError` if it has not finished.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.raise_outcome(py)
    }

    /// The command's exception, or `None` if it succeeded (asyncio semantics).
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.state.lock().outcome {
            Outcome::Pending => Err(invalid_state(py, "Exception is not set.")),
            Outcome::Value(_) => Ok(None),
            Outcome::Error(exception) => Ok(Some(exception.clone_ref(py).into_any())),
            Outcome::Cancelled(message) => Err(asyncio_cancelled(py, message.as_ref())),
        }
    }

    /// Calls `fn(future)` on the loop once the future is done.
    #[pyo3(signature = (r#fn, /, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        r#fn: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let callback = r#fn;
        // As asyncio's futures do: a callback runs in the context current when it was added.
        let context = match context {
            Some(context) => context,
            None => copy_context(slf.py())?.unbind(),
        };
        let this = slf.get();
        {
            let mut state = this.state.lock();
            if matches!(state.outcome, Outcome::Pending) {
                state.callbacks.push((callback, context));
                return Ok(());
            }
        }
        let ready = ReadyCallback {
            callback,
            future: slf.clone().into_any().unbind(),
            context,
        };
        this.bridge.schedule_callback(slf.py(), ready)
    }

    /// Removes every registration of `fn`; returns how many.
    #[pyo3(signature = (r#fn, /))]
    fn remove_done_callback(&self, py: Python<'_>, r#fn: &Bound<'_, PyAny>) -> PyResult<usize> {
        let callback = r#fn;
        let callbacks: Vec<Callback> = self.state.lock().callbacks.take().collect();
        let mut kept = Vec::with_capacity(callbacks.len());
        let mut removed = 0;
        for (registered, context) in callbacks {
            // Compared with ==, as asyncio does; a failing comparison keeps the callback.
            if registered.bind(py).eq(callback).unwrap_or(false) {
                removed += 1;
            } else {
                kept.push((registered, context));
            }
        }
        let mut state = self.state.lock();
        let added: Vec<Callback> = state.callbacks.take().collect();
        for callback in kept.into_iter().chain(added) {
            state.callbacks.push(callback);
        }
        Ok(removed)
    }

    /// Cancels the future and the command (a pending command is removed from its lane,
    /// a running one is cancelled). A duplicate submit's future (`is_duplicate`) is only
    /// detached: the command goes on for its other submitters. Returns False if the
    /// future was already done.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> bool {
        let this = slf.get();
        let id = {
            let mut state = this.state.lock();
            if !matches!(state.outcome, Outcome::Pending) {
                return false;
            }
            if state.id.is_none() {
                // Whether it is a duplicate is known once accepted.
                state.cancel_when_accepted = true;
            }
            state.id.filter(|_| !state.duplicate)
        };
        if let Some(id) = id {
            this.queue.request(id);
        }
        Self::settle(slf, Outcome::Cancelled(msg))
    }

    /// Refused: the queue settles a command's future (cancel it with `cancel()`).
    #[pyo3(signature = (result, /))]
    fn set_result(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = result;
        Err(invalid_state(
            py,
            "a command's future is settled by the queue; cancel it with cancel()",
        ))
    }

    /// Refused: the queue settles a command's future (cancel it with `cancel()`).
    #[pyo3(signature = (exception, /))]
    fn set_exception(&self, py: Python<'_>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = exception;
        Err(invalid_state(
            py,
            "a command's future is settled by the queue; cancel it with cancel()",
        ))
    }

    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// `CommandHandle[int]` in annotations (the result type, for type checkers).
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::runtime::generic_alias(cls, item)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The coroutine protocol (with `throw` and `close`), so that
    /// `asyncio.create_task(lane.submit_async(...))` and `TaskGroup.create_task` accept
    /// it: it steps as `await future` does.
    #[pyo3(signature = (value, /))]
    fn send(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if !value.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a CommandFuture is sent None only (it is stepped by an asyncio task)",
            ));
        }
        Self::__next__(slf)
    }

    /// Raises `typ` (an exception or its class, with `val`) into the awaiting code;
    /// the command is cancelled first, as when the awaiting task is cancelled.
    #[pyo3(signature = (typ, val = None, tb = None, /))]
    fn throw(
        slf: &Bound<'_, Self>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = Self::cancel(slf, None);
        let exception = if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            typ.clone()
        } else {
            match val.filter(|v| !v.is_none()) {
                Some(val) if val.is_instance(typ)? => val.clone(),
                Some(val) => typ.call1((val,))?,
                None => typ.call0()?,
            }
        };
        if let Some(tb) = tb.filter(|tb| !tb.is_none()) {
            exception.setattr("__traceback__", tb)?;
        }
        Err(PyErr::from_value(exception))
    }

    /// Nothing to release: the command goes on (cancel it with `cancel()`).
    fn close(&self) {}

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut state = this.state.lock();
            if matches!(state.outcome, Outcome::Pending) {
                state.blocking = true;
                return Ok(slf.clone().into_any().unbind());
            }
        }
        let value = this.raise_outcome(py)?;
        Err(PyStopIteration::new_err((value,)))
    }

    fn __repr__(&self) -> String {
        let state = self.state.lock();
        let status = match state.outcome {
            Outcome::Pending => "pending",
            Outcome::Value(_) => "finished",
            Outcome::Error(_) => "failed",
            Outcome::Cancelled(_) => "cancelled",
        };
        match state.id {
            Some(id) => format!("<CommandFuture id={id} {status}>"),
            None => format!("<CommandFuture {status}>"),
        }
    }
}

enum Stage {
    Accepting(Accepting),
    Waiting(CoreHandle),
    Done,
}

/// Drives one `submit_async`: acceptance, then the result, on the loop's thread.
pub(crate) struct SubmitBody {
    stage: Stage,
    future: Py<CommandFuture>,
    env: Arc<HandlerEnv>,
    registered: Option<CommandId>,
}

impl SubmitBody {
    /// Starts waiting for `accepting` on `bridge`'s loop (the current thread's); returns
    /// the future the caller awaits.
    pub(crate) fn spawn(
        py: Python<'_>,
        bridge: Arc<LoopBridge>,
        queue: Weak<CommandQueue>,
        env: Arc<HandlerEnv>,
        accepting: Accepting,
    ) -> PyResult<Py<CommandFuture>> {
        let future = CommandFuture::new(py, bridge.clone(), queue, None)?;
        let body = Self {
            stage: Stage::Accepting(accepting),
            future: future.clone_ref(py),
            env,
            registered: None,
        };
        LoopTask::spawn(py, bridge, body);
        Ok(future)
    }

    /// Starts waiting for the result of a command the queue accepted already (call in
    /// the GIL hold that accepted it).
    pub(crate) fn spawn_accepted(
        py: Python<'_>,
        bridge: Arc<LoopBridge>,
        queue: Weak<CommandQueue>,
        env: Arc<HandlerEnv>,
        handle: CoreHandle,
    ) -> PyResult<Py<CommandFuture>> {
        let id = handle.id();
        env.slots.awaited_handle(&handle);
        let future = CommandFuture::new(py, bridge.clone(), queue, Some(id))?;
        future.get().set_duplicate(handle.is_duplicate());
        let body = Self {
            stage: Stage::Waiting(handle),
            future: future.clone_ref(py),
            env,
            registered: Some(id),
        };
        LoopTask::spawn(py, bridge, body);
        Ok(future)
    }
}

impl LoopBody for SubmitBody {
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.stage {
                Stage::Accepting(accepting) => match std::task::ready!(accepting.as_mut().poll(cx))
                {
                    Ok(handle) => {
                        let id = handle.id();
                        // In this GIL hold: before any handler can raise.
                        self.env.slots.awaited_handle(&handle);
                        self.registered = Some(id);
                        self.future.get().accepted(id, handle.is_duplicate());
                        self.stage = Stage::Waiting(handle);
                    }
                    Err(error) => {
                        self.stage = Stage::Done;
                        let exception = error.into_py_err(py).into_value(py);
                        CommandFuture::settle(self.future.bind(py), Outcome::Error(exception));
                        return Poll::Ready(());
                    }
                },
                Stage::Waiting(handle) => {
                    let result = std::task::ready!(Pin::new(handle).poll(cx));
                    self.stage = Stage::Done;
                    let exception = self
                        .registered
                        .take()
                        .and_then(|id| self.env.slots.take(id));
                    CommandFuture::finish(self.future.bind(py), &Finished { result, exception });
                    return Poll::Ready(());
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

impl Drop for SubmitBody {
    fn drop(&mut self) {
        // Dropped unfinished (its loop closed): collect the handler's exception once
        // the command has ended, or nobody will.
        if let Some(id) = self.registered.take() {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Waiting(handle) => forget_when_done(handle, self.env.clone()),
                _ => drop(self.env.slots.take(id)),
            }
        }
    }
}

/// Drops the error slot of a command nobody waits for any more, once it has ended.
pub(crate) fn forget_when_done(handle: CoreHandle, env: Arc<HandlerEnv>) {
    let id = handle.id();
    crate::runtime::runtime().spawn(async move {
        let _ = handle.await;
        drop(env.slots.take(id));
    });
}

struct CellState {
    finished: Option<Arc<Finished>>,
    wakers: Vec<Waker>,
}

/// A command's final outcome, shared by every waiter of a [`CommandHandle`].
pub(crate) struct OutcomeCell {
    state: Mutex<CellState>,
}

impl OutcomeCell {
    /// Waits for command `id`'s `result` on the runtime and keeps its outcome (with its
    /// handler's own exception, in process) for every waiter.
    fn watch(
        id: CommandId,
        result: impl Future<Output = a3s_lane::Result<Value>> + Send + 'static,
        env: Option<Arc<HandlerEnv>>,
    ) -> Arc<Self> {
        Self::spawn(async move {
            let result = result.await;
            let exception = env.and_then(|env| env.slots.take(id));
            Finished { result, exception }
        })
    }

    /// Runs `outcome` on the runtime and keeps what it returns for every waiter.
    fn spawn(outcome: impl Future<Output = Finished> + Send + 'static) -> Arc<Self> {
        let cell = Arc::new(Self {
            state: Mutex::new(CellState {
                finished: None,
                wakers: Vec::new(),
            }),
        });
        let watcher = cell.clone();
        crate::runtime::runtime().spawn(async move {
            watcher.set(outcome.await);
        });
        cell
    }

    fn set(&self, finished: Finished) {
        let wakers = {
            let mut state = self.state.lock();
            state.finished = Some(Arc::new(finished));
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn get(&self) -> Option<Arc<Finished>> {
        self.state.lock().finished.clone()
    }

    fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<Arc<Finished>> {
        let mut state = self.state.lock();
        match &state.finished {
            Some(finished) => Poll::Ready(finished.clone()),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

struct CellBody {
    cell: Arc<OutcomeCell>,
    future: Py<CommandFuture>,
}

impl LoopBody for CellBody {
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()> {
        let future = self.future.bind(py);
        if future.get().done() {
            return Poll::Ready(());
        }
        let finished = std::task::ready!(self.cell.poll_finished(cx));
        CommandFuture::finish(future, &finished);
        Poll::Ready(())
    }
}

/// A submitted command: its id, a way to cancel it, and its result, from threads
/// (`result()`) or coroutines (`await handle`). Returned by `Lane.submit_nowait` and
/// `redrive` (of either engine), and by `RedisQueue.submit` for a command that a
/// `RedisWorker` runs, in this process or another.
#[pyclass(frozen, module = "a3s_lane", name = "CommandHandle")]
pub(crate) struct CommandHandle {
    id: CommandId,
    duplicate: bool,
    queue: CancelTarget,
    cell: Arc<OutcomeCell>,
}

impl CommandHandle {
    pub(crate) fn new(handle: CoreHandle, queue: Weak<CommandQueue>, env: Arc<HandlerEnv>) -> Self {
        let duplicate = handle.is_duplicate();
        Self::watching(handle.id(), handle, CancelTarget::Local(queue), Some(env))
            .marked_duplicate(duplicate)
    }

    /// The same handle, marked as a duplicate submit's when `duplicate` (the submit's
    /// idempotency key belonged to this live command).
    pub(crate) fn marked_duplicate(mut self, duplicate: bool) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// The handle of command `id`, whose `result` resolves when it finishes; with `env`
    /// (in process, the command registered with its slots), a failed handler's own
    /// exception is raised. Without (a command submitted to a Redis queue), a handler's
    /// exception does not travel between processes: a failure is a `CommandError`
    /// carrying its type and message.
    pub(crate) fn watching(
        id: CommandId,
        result: impl Future<Output = a3s_lane::Result<Value>> + Send + 'static,
        queue: CancelTarget,
        env: Option<Arc<HandlerEnv>>,
    ) -> Self {
        Self {
            id,
            duplicate: false,
            queue,
            cell: OutcomeCell::watch(id, result, env),
        }
    }
}

#[pymethods]
impl CommandHandle {
    /// The command id.
    #[getter]
    fn id(&self) -> CommandId {
        self.id
    }

    /// True when the submit queued nothing: its idempotency `key` belonged to a command
    /// still delayed, pending or running, and this is that command's handle (same `id`;
    /// `result()` gives its result; `cancel()` cancels it for every submitter).
    #[getter]
    fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Cancels the command: a pending one is removed from its lane, a running one is
    /// cancelled (an `async def` handler's task is cancelled; a plain `def` handler sees
    /// `ctx.is_cancelled()`). Returns False if it already finished. For a Redis queue
    /// this is a round trip, and a running command's worker is told wherever it runs.
    fn cancel(&self, py: Python<'_>) -> PyResult<bool> {
        self.queue.cancel(py, self.id)
    }

    /// Whether the command finished (its result is available).
    fn done(&self) -> bool {
        self.cell.get().is_some()
    }

    /// Waits for the command's result (releasing the GIL) and returns it, or raises the
    /// handler's exception or the `LaneError` that ended the command. With `timeout`
    /// (seconds), raises the built-in `TimeoutError` if it has not finished by then; the
    /// command keeps running.
    #[pyo3(signature = (timeout = None))]
    fn result(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let deadline = optional_deadline(timeout, "timeout")?;
        // A finished command's result is at hand: no wait, so no reason to refuse.
        if let Some(finished) = self.cell.get() {
            return finished.to_python(py);
        }
        if let CancelTarget::Local(queue) = &self.queue
            && queue.upgrade().is_some_and(|queue| !queue.is_started())
        {
            return Err(crate::error::lane_error(
                py,
                format!(
                    "command {} cannot finish: its lane is not started (call lane.start() first)",
                    self.id
                ),
            ));
        }
        if crate::runtime::running_loop(py)?.is_some() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "result() blocks, and this thread runs an event loop (async handlers may need it); \
                 use `await handle` instead",
            ));
        }
        let cell = self.cell.clone();
        let mut wait = std::future::poll_fn(move |cx| cell.poll_finished(cx));
        match block_on_until(py, Pin::new(&mut wait), deadline)? {
            Some(finished) => finished.to_python(py),
            None => Err(PyTimeoutError::new_err(format!(
                "command {} did not finish within the timeout; it is still running (cancel it with handle.cancel())",
                self.id
            ))),
        }
    }

    /// `CommandHandle[int]` in annotations (the result type, for type checkers).
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::runtime::generic_alias(cls, item)
    }

    fn __await__(&self, py: Python<'_>) -> PyResult<Py<CommandFuture>> {
        let bridge = LoopBridge::of_running_loop(py, "await CommandHandle")?;
        let future = CommandFuture::new(py, bridge.clone(), self.queue.clone(), Some(self.id))?;
        future.get().set_duplicate(self.duplicate);
        let body = CellBody {
            cell: self.cell.clone(),
            future: future.clone_ref(py),
        };
        LoopTask::spawn(py, bridge, body);
        Ok(future)
    }

    fn __repr__(&self) -> String {
        let status = if self.cell.get().is_some() {
            "finished"
        } else {
            "running"
        };
        format!("<CommandHandle id={} {status}>", self.id)
    }
}
