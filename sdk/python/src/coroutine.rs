//! `async def` handlers on the queue's event loop.
//!
//! An `async def` runs inside a [`Worker`]: a coroutine written in Rust that an asyncio
//! task drives, and that itself drives handler coroutines one after another, each in its
//! own `contextvars.Context`. A handler that finishes without suspending costs no task,
//! no loop callback and no thread switch; one that suspends keeps its worker, and the
//! rest of the queue goes to another worker (idle, or a new task).
//! `asyncio.current_task()` inside a handler is its worker's task, so `asyncio.timeout()`
//! and friends work; cancelling the command cancels that task, and the worker takes the
//! `CancelledError` back (`Task.uncancel()`) once the handler has ended. The command's
//! runner only pushes a start request into the loop's inbox and waits for the reply; a
//! worker's step is a safe point where the replies it made wake their runners, which
//! finish their commands and start the next ones, so a busy queue runs many commands in
//! one step.
//!
//! What a run does with the handler itself — call it, turn its return value or exception
//! into the command's outcome — is the [`CoroutineHandler`] the caller gives
//! ([`run_on_loop`]); this module only drives coroutines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use a3s_lane::{CommandContext as CoreContext, LaneError, Result};
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, MutexGuard};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyBaseException, PyKeyboardInterrupt, PyStopIteration, PySystemExit};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyWeakrefReference;
use serde_json::Value;

use crate::event_loop::{
    LoopBridge, LoopExtension, LoopWork, SafePoint, wake_deferred, wake_later,
};
use crate::runtime::{copy_context, python_attr};

/// What a run needs from its handler; the handler module implements it.
pub(crate) trait CoroutineHandler: Send + Sync + 'static {
    /// Calls the handler for one attempt; returns the coroutine to drive.
    fn call<'py>(
        &self,
        py: Python<'py>,
        payload: &Value,
        ctx: &CoreContext,
    ) -> PyResult<Bound<'py, PyAny>>;

    /// The attempt's outcome from what the coroutine returned.
    fn succeeded(
        &self,
        py: Python<'_>,
        ctx: &CoreContext,
        value: &Bound<'_, PyAny>,
    ) -> Result<Value>;

    /// The attempt's failure from what the coroutine raised.
    fn failed(&self, py: Python<'_>, ctx: &CoreContext, error: PyErr) -> LaneError;
}

/// Runs one attempt of `handler` on `bridge`'s loop and waits for its outcome. Dropping
/// the future (a timeout, the end of a cancel grace period) stops the handler.
pub(crate) async fn run_on_loop(
    bridge: Arc<LoopBridge>,
    handler: Arc<dyn CoroutineHandler>,
    payload: Arc<Value>,
    ctx: CoreContext,
) -> Result<Value> {
    let run = Arc::new(AsyncRun {
        handler,
        payload,
        ctx,
        outcome: Mutex::new(None),
        replied: AtomicBool::new(false),
        waker: AtomicWaker::new(),
        cancel_sent: AtomicBool::new(false),
        place: Mutex::new(Place::Queued),
    });
    bridge.push(run.clone());
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
    handler: Arc<dyn CoroutineHandler>,
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

    /// [`AsyncRun::reply`] on the loop's thread: the waiter is woken at the end of the
    /// batch ([`wake_deferred`]).
    fn reply_later(&self, outcome: Result<Value>) {
        if self.set_outcome(outcome)
            && let Some(waker) = self.waker.take()
        {
            wake_later(waker);
        }
    }

    fn request_cancel(self: &Arc<Self>, bridge: &Arc<LoopBridge>) {
        if !self.cancel_sent.swap(true, Ordering::AcqRel) {
            bridge.push(Arc::new(CancelRun(self.clone())));
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
        self.reply_later(self.handler.succeeded(py, &self.ctx, result));
    }

    fn fail(&self, py: Python<'_>, error: PyErr) {
        self.reply_later(Err(self.handler.failed(py, &self.ctx, error)));
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

impl LoopWork for AsyncRun {
    /// Queues the run for the loop's workers (see [`kick`]).
    fn run(self: Arc<Self>, _py: Python<'_>, bridge: &Arc<LoopBridge>) {
        pool(bridge).runs.push_back(self);
    }

    fn abandon(self: Arc<Self>) {
        AsyncRun::abandon(&self);
    }
}

/// A cancel request for a run, on its way to the loop's thread.
struct CancelRun(Arc<AsyncRun>);

impl LoopWork for CancelRun {
    fn run(self: Arc<Self>, py: Python<'_>, _bridge: &Arc<LoopBridge>) {
        self.0.cancel_on_loop(py);
    }

    fn abandon(self: Arc<Self>) {}
}

/// The loop-thread side of a loop's `async def` handlers, kept with its bridge: runs
/// waiting for a worker, and the workers waiting for runs.
#[derive(Default)]
pub(crate) struct WorkerPool(Mutex<Pool>);

#[derive(Default)]
struct Pool {
    runs: VecDeque<Arc<AsyncRun>>,
    idle: Vec<Py<Worker>>,
    /// Workers woken (or created) that have not taken their first step yet: they will
    /// take the queued runs, so nobody else needs waking.
    waking: usize,
}

/// The worker pool of `bridge`'s loop.
fn pool(bridge: &LoopBridge) -> MutexGuard<'_, Pool> {
    bridge.extension::<WorkerPool>().0.lock()
}

impl LoopExtension for WorkerPool {
    fn after_batch(&self, py: Python<'_>, bridge: &Arc<LoopBridge>) {
        kick(py, bridge);
    }

    /// Forgets everything: the loop is gone.
    fn close(&self) {
        let pool = std::mem::take(&mut *self.0.lock());
        for run in pool.runs {
            run.abandon();
        }
    }
}

/// Makes sure some worker will take the queued runs: wakes an idle one or starts one.
fn kick(py: Python<'_>, bridge: &Arc<LoopBridge>) {
    {
        let mut pool = self::pool(bridge);
        if pool.runs.is_empty() || pool.waking > 0 {
            return;
        }
        pool.waking += 1;
    }
    loop {
        let idle = pool(bridge).idle.pop();
        let woken = match idle {
            Some(worker) => match worker.get().wake(py) {
                Ok(false) => continue,
                other => other.map(|_| ()),
            },
            None => Worker::start(py, bridge),
        };
        if let Err(error) = woken {
            pool(bridge).waking -= 1;
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
            let run = pool(&this.bridge).runs.pop_front();
            let Some(run) = run else {
                let future = this
                    .bridge
                    .event_loop(py)
                    .call_method0(pyo3::intern!(py, "create_future"))?;
                future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
                this.state.lock().idle = Some(future.clone().unbind());
                pool(&this.bridge).idle.push(slf.clone().unbind());
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
                .handler
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
        wake_deferred();
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
                pool(&this.bridge).waking -= 1;
            }
        }
        loop {
            let current = this.state.lock().current.take();
            let Some(current) = current else {
                if let Resume::Throw(error) = resume {
                    // Cancelled while idle (the loop is shutting down, usually): end, and
                    // leave what is queued to another worker.
                    pool(&this.bridge).idle.retain(|w| !w.is(slf));
                    kick(py, &this.bridge);
                    return Err(error);
                }
                if pool(&this.bridge).runs.is_empty() {
                    // The replies so far wake their runners, which finish their commands
                    // and start the next ones here: the queue keeps going in this step.
                    wake_deferred();
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
