//! Where the queue runs, and how its work reaches Python without blocking on the GIL.
//!
//! Each lane may have a home event loop: the asyncio loop running when `start()` was
//! called (or a private loop on a daemon thread). Everything that must happen on that
//! loop — starting an `async def` handler, cancelling it, settling an awaited result,
//! polling a command runner — is pushed into the loop's [`LoopBridge`] inbox, which the
//! loop works through in batches. From another thread the loop is woken through a socket
//! it watches with `loop.add_reader`: a one-byte write when the inbox stops being empty,
//! never the GIL (waking it with `call_soon_threadsafe`, as generic Rust-to-asyncio
//! bridges do, takes the GIL on the waking thread for every item; measured at 2,300
//! awaits per second against 100,000 for plain asyncio, it is only the fallback for loops
//! without `add_reader`).
//!
//! The queue's command runners ([`RunnerTask`], installed with the core's `Spawner`
//! hook) are polled where they are woken: on the home loop's thread when woken there
//! (an `async def` handler replied), on the tokio runtime otherwise (a plain handler's
//! thread finished, a timer fired). So an `async def` command goes from submit to result
//! on the loop's thread alone — no thread switch, no system call — while plain handlers,
//! timers and storage run on the runtime, whose threads never wait for the GIL.
//!
//! Rust futures that a Python awaitable waits for are [`LoopTask`]s, polled on the loop's
//! thread and woken through the same inbox. Blocking calls ([`block_on`]) poll on the
//! caller's thread, release the GIL while they wait, and on the main thread wake every
//! 50 ms to let Python raise `KeyboardInterrupt`: a parked thread does not see signals
//! otherwise.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyboardInterrupt, PyNotImplementedError, PySystemExit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::Runtime;

use a3s_lane::{CommandRunner, Spawner};

use crate::handler::{AsyncRun, HandlerEnv, WorkerPool, kick, send_replies};

/// How long a blocking call on the main thread waits before checking for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The runtime every queue of this process runs on (with I/O, for Redis connections).
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_time()
            .enable_io()
            .thread_name("a3s-lane")
            .build()
            .expect("a3s_lane could not start its tokio runtime")
    })
}

/// A Python callable imported once.
pub(crate) fn python_attr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, module, name)
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The event loop running in this thread, if any.
pub(crate) fn running_loop<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let running = python_attr(py, &GET_RUNNING_LOOP, "asyncio", "_get_running_loop")?.call0()?;
    Ok((!running.is_none()).then_some(running))
}

/// One unit of work for an event loop's thread.
pub(crate) enum Work {
    /// Start an `async def` handler as a task.
    Start(Arc<AsyncRun>),
    /// Cancel a handler's task.
    Cancel(Arc<AsyncRun>),
    /// Poll a Rust future some Python awaitable waits for.
    Poll(Arc<dyn Pollable>),
    /// Poll one of the queue's command runners.
    Run(Arc<RunnerTask>),
}

impl Work {
    fn run(self, py: Python<'_>, bridge: &Arc<LoopBridge>) {
        match self {
            Work::Start(run) => bridge.workers().push(run),
            Work::Cancel(run) => run.cancel_on_loop(py),
            Work::Poll(task) => task.poll(py),
            Work::Run(runner) => runner.run(),
        }
    }

    /// The loop is gone: tell whoever waits instead of leaving them hanging.
    fn abandon(self) {
        match self {
            Work::Start(run) => run.abandon(),
            Work::Cancel(_) => {}
            Work::Poll(task) => task.abandon(),
            Work::Run(runner) => runner.run_on_runtime(),
        }
    }
}

enum Signal {
    /// A socket pair; the loop reads one end with `add_reader`.
    #[cfg(unix)]
    Socket {
        tx: std::os::unix::net::UnixStream,
        rx: std::os::unix::net::UnixStream,
    },
    /// `loop.call_soon_threadsafe(drain)`, which needs the GIL.
    Threadsafe,
}

struct Inbox {
    work: Vec<Work>,
    spare: Vec<Work>,
    closed: bool,
}

/// An asyncio event loop as the queue sees it: an inbox the loop drains in batches.
pub(crate) struct LoopBridge {
    event_loop: Py<PyAny>,
    create_task: Py<PyAny>,
    call_soon: Py<PyAny>,
    inbox: Mutex<Inbox>,
    closed: AtomicBool,
    signal: Signal,
    /// A wake-up is scheduled on the runtime (see [`LoopBridge::push`]).
    wake_scheduled: AtomicBool,
    /// The thread that runs the loop, once known.
    thread: OnceLock<std::thread::ThreadId>,
    /// Loop-thread state of the `async def` handlers run here.
    workers: Mutex<WorkerPool>,
    /// Done-callbacks of settled futures, waiting for their [`CallbackRun`].
    callbacks: Mutex<Vec<ReadyCallback>>,
}

/// A done-callback of a settled future: `callback(future)`, in `context`.
pub(crate) struct ReadyCallback {
    pub(crate) callback: Py<PyAny>,
    pub(crate) future: Py<PyAny>,
    pub(crate) context: Py<PyAny>,
}

/// The loop callback that runs the done-callbacks queued since it was scheduled.
///
/// One `loop.call_soon` per batch instead of one per future: `call_soon` is Python code
/// that builds a `Handle` (~6,000 instructions, a sixth of a command's whole cost in
/// `benches/submit_async.py`). Each callback still runs in its own context, in the order
/// the futures settled, and an exception from one goes to the loop's exception handler as
/// it would from a `Handle`.
#[pyclass(frozen)]
struct CallbackRun {
    bridge: Arc<LoopBridge>,
}

#[pymethods]
impl CallbackRun {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let batch = std::mem::take(&mut *self.bridge.callbacks.lock());
        let mut batch = batch.into_iter();
        while let Some(ready) = batch.next() {
            let ran = ready
                .context
                .bind(py)
                .call_method1(pyo3::intern!(py, "run"), (&ready.callback, &ready.future));
            let Err(error) = ran else { continue };
            if error.is_instance_of::<PyKeyboardInterrupt>(py)
                || error.is_instance_of::<PySystemExit>(py)
            {
                // As from a Handle: these propagate; the rest still run, later.
                self.bridge.requeue_callbacks(py, batch.collect());
                return Err(error);
            }
            self.bridge.report_callback_error(py, &ready, error);
        }
        Ok(())
    }
}

impl std::fmt::Debug for LoopBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopBridge")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Called by the event loop when the bridge's socket is readable.
#[pyclass(frozen)]
struct LoopDrain {
    bridge: Arc<LoopBridge>,
    /// The registered reader: when the loop closes it drops this object, which closes
    /// the bridge (a closed loop never reads its inbox again).
    owner: bool,
}

#[pymethods]
impl LoopDrain {
    fn __call__(&self, py: Python<'_>) {
        self.bridge.drain(py);
    }
}

impl Drop for LoopDrain {
    fn drop(&mut self) {
        if self.owner {
            self.bridge.close();
        }
    }
}

static BRIDGES: Mutex<Vec<Arc<LoopBridge>>> = Mutex::new(Vec::new());

thread_local! {
    static LAST_BRIDGE: RefCell<Option<Arc<LoopBridge>>> = const { RefCell::new(None) };
}

impl LoopBridge {
    /// The bridge of `event_loop`, attached on first use.
    pub(crate) fn of(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        let cached = LAST_BRIDGE.with(|last| {
            last.borrow()
                .as_ref()
                .filter(|b| b.is(event_loop) && !b.is_closed())
                .cloned()
        });
        if let Some(bridge) = cached {
            return Ok(bridge);
        }
        // Never hold BRIDGES across a call into Python: Python may switch threads.
        let found = {
            let mut all = BRIDGES.lock();
            all.retain(|b| !b.is_closed());
            all.iter().find(|b| b.is(event_loop)).cloned()
        };
        let bridge = match found {
            Some(bridge) => bridge,
            None => {
                let bridge = Self::attach(py, event_loop)?;
                BRIDGES.lock().push(bridge.clone());
                bridge
            }
        };
        LAST_BRIDGE.with(|last| *last.borrow_mut() = Some(bridge.clone()));
        Ok(bridge)
    }

    /// The bridge of the event loop running in this thread.
    ///
    /// `asyncio._get_running_loop()` makes a `getpid()` system call each time (to notice
    /// a fork); a submit from a coroutine would pay one per command. The loop this
    /// thread ran last is checked first, by its `_thread_id` (set by every asyncio loop
    /// while it runs, and only then).
    pub(crate) fn of_running_loop(py: Python<'_>, what: &str) -> PyResult<Arc<Self>> {
        let cached = LAST_BRIDGE.with(|last| last.borrow().clone());
        if let Some(bridge) = cached
            && !bridge.is_closed()
            && bridge.runs_in_this_thread(py)
        {
            return Ok(bridge);
        }
        match running_loop(py)? {
            Some(event_loop) => {
                let bridge = Self::of(py, &event_loop)?;
                let _ = bridge.thread.set(std::thread::current().id());
                Ok(bridge)
            }
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "{what} must be called from a running asyncio event loop (inside `async def`)"
            ))),
        }
    }

    fn new(event_loop: &Bound<'_, PyAny>, signal: Signal) -> PyResult<Self> {
        Ok(Self {
            event_loop: event_loop.clone().unbind(),
            create_task: event_loop.getattr("create_task")?.unbind(),
            call_soon: event_loop.getattr("call_soon")?.unbind(),
            inbox: Mutex::new(Inbox {
                work: Vec::new(),
                spare: Vec::new(),
                closed: false,
            }),
            closed: AtomicBool::new(false),
            signal,
            wake_scheduled: AtomicBool::new(false),
            thread: OnceLock::new(),
            workers: Mutex::new(WorkerPool::default()),
            callbacks: Mutex::new(Vec::new()),
        })
    }

    fn attach(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        #[cfg(unix)]
        {
            let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
            rx.set_nonblocking(true)?;
            tx.set_nonblocking(true)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
            let bridge = Arc::new(Self::new(event_loop, Signal::Socket { tx, rx })?);
            let drain = Py::new(
                py,
                LoopDrain {
                    bridge: bridge.clone(),
                    owner: true,
                },
            )?;
            match event_loop.call_method1("add_reader", (fd, drain)) {
                Ok(_) => return Ok(bridge),
                // Loops without add_reader (Windows' proactor loop) get the slow path.
                Err(error) if error.is_instance_of::<PyNotImplementedError>(py) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Arc::new(Self::new(event_loop, Signal::Threadsafe)?))
    }

    fn is(&self, event_loop: &Bound<'_, PyAny>) -> bool {
        self.event_loop.as_ptr() == event_loop.as_ptr()
    }

    /// Whether the loop is running, in this thread (`loop._thread_id`); false when
    /// that cannot be told.
    fn runs_in_this_thread(&self, py: Python<'_>) -> bool {
        let Ok(thread) = self
            .event_loop
            .bind(py)
            .getattr(pyo3::intern!(py, "_thread_id"))
        else {
            return false;
        };
        if thread.is_none() {
            return false;
        }
        python_attr(py, &GET_IDENT, "threading", "get_ident")
            .and_then(|get_ident| get_ident.call0())
            .and_then(|current| thread.eq(current))
            .unwrap_or(false)
    }

    /// Whether this thread runs the loop.
    pub(crate) fn is_loop_thread(&self) -> bool {
        self.thread
            .get()
            .is_some_and(|thread| *thread == std::thread::current().id())
    }

    /// Whether the loop was closed (nothing pushed now will ever run).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The `async def` runs waiting for a worker, and the idle workers.
    pub(crate) fn workers(&self) -> parking_lot::MutexGuard<'_, WorkerPool> {
        self.workers.lock()
    }

    /// The event loop.
    pub(crate) fn event_loop<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.event_loop.bind(py)
    }

    /// `loop.create_task` (respecting the loop's task factory).
    pub(crate) fn create_task<'py>(
        &self,
        coroutine: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.create_task.bind(coroutine.py()).call1((coroutine,))
    }

    /// Schedules `callback(future)` on the loop, in `context` (a done-callback of a
    /// settled future; see [`CallbackRun`]). Call with the GIL held, on the loop's
    /// thread, as asyncio's own futures require.
    pub(crate) fn schedule_callback(
        self: &Arc<Self>,
        py: Python<'_>,
        ready: ReadyCallback,
    ) -> PyResult<()> {
        let first = {
            let mut callbacks = self.callbacks.lock();
            callbacks.push(ready);
            callbacks.len() == 1
        };
        if first {
            self.schedule_callback_run(py)?;
        }
        Ok(())
    }

    fn schedule_callback_run(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        let run = Py::new(
            py,
            CallbackRun {
                bridge: self.clone(),
            },
        )?;
        if let Err(error) = self.call_soon.bind(py).call1((run,)) {
            // The loop is closed: these callbacks will never run.
            drop(std::mem::take(&mut *self.callbacks.lock()));
            return Err(error);
        }
        Ok(())
    }

    /// Puts back callbacks a [`CallbackRun`] did not get to, ahead of newer ones.
    fn requeue_callbacks(self: &Arc<Self>, py: Python<'_>, rest: Vec<ReadyCallback>) {
        if rest.is_empty() {
            return;
        }
        let schedule = {
            let mut callbacks = self.callbacks.lock();
            let newer = std::mem::replace(&mut *callbacks, rest);
            let was_empty = newer.is_empty();
            callbacks.extend(newer);
            was_empty
        };
        if schedule && let Err(error) = self.schedule_callback_run(py) {
            error.write_unraisable(py, None);
        }
    }

    /// `loop.call_exception_handler(...)` for a callback that raised, as a `Handle` does.
    fn report_callback_error(&self, py: Python<'_>, ready: &ReadyCallback, error: PyErr) {
        let reported = (|| -> PyResult<()> {
            let details = pyo3::types::PyDict::new(py);
            let callback = ready.callback.bind(py).repr()?;
            details.set_item("message", format!("Exception in callback {callback}"))?;
            details.set_item("exception", error.value(py))?;
            details.set_item("future", ready.future.bind(py))?;
            self.event_loop
                .bind(py)
                .call_method1(pyo3::intern!(py, "call_exception_handler"), (details,))?;
            Ok(())
        })();
        if let Err(failed) = reported {
            failed.write_unraisable(py, Some(ready.future.bind(py)));
        }
    }

    /// Queues work for the loop's thread; callable from any thread, without the GIL.
    ///
    /// The loop is woken when the inbox stops being empty. On a runtime thread the wake
    /// waits until the runtime has run every task that is ready now (they are likely to
    /// push more): one wake-up per batch instead of a ping-pong per item.
    pub(crate) fn push(self: &Arc<Self>, work: Work) {
        let first = {
            let mut inbox = self.inbox.lock();
            if inbox.closed {
                drop(inbox);
                work.abandon();
                return;
            }
            inbox.work.push(work);
            inbox.work.len() == 1
        };
        if !first {
            return;
        }
        // The loop's own thread at a safe point works through the inbox before it leaves.
        if SAFE_POINT.with(Cell::get) == Arc::as_ptr(self) as usize {
            return;
        }
        if self.is_loop_thread() {
            self.wake();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                if !self.wake_scheduled.swap(true, Ordering::AcqRel) {
                    let bridge = self.clone();
                    handle.spawn(async move {
                        tokio::task::yield_now().await;
                        bridge.wake_scheduled.store(false, Ordering::Release);
                        bridge.wake();
                    });
                }
            }
            Err(_) => self.wake(),
        }
    }

    fn wake(self: &Arc<Self>) {
        match &self.signal {
            #[cfg(unix)]
            Signal::Socket { tx, .. } => {
                // A full socket buffer means the loop has a wake-up pending already.
                let _ = std::io::Write::write(&mut &*tx, &[1]);
            }
            Signal::Threadsafe => Python::attach(|py| {
                let drain = LoopDrain {
                    bridge: self.clone(),
                    owner: false,
                };
                let scheduled = Py::new(py, drain).and_then(|drain| {
                    self.event_loop
                        .bind(py)
                        .call_method1("call_soon_threadsafe", (drain,))
                });
                if scheduled.is_err() {
                    // The loop is closed.
                    self.close();
                }
            }),
        }
    }

    /// Runs everything queued so far; on the loop's thread.
    fn drain(self: &Arc<Self>, py: Python<'_>) {
        #[cfg(unix)]
        if let Signal::Socket { rx, .. } = &self.signal {
            let mut buffer = [0u8; 512];
            while matches!(std::io::Read::read(&mut &*rx, &mut buffer), Ok(n) if n > 0) {}
        }
        let _ = self.thread.set(std::thread::current().id());
        let _safe_point = SafePoint::enter(self);
        self.process(py, true);
    }

    /// At a safe point on the loop's thread: runs the queued work, and what that work
    /// queues in turn (a handler's reply wakes its runner, which finishes the command and
    /// starts the next one), for a bounded number of rounds; wakes the loop for the rest.
    pub(crate) fn process(self: &Arc<Self>, py: Python<'_>, kick_workers: bool) {
        let _context = runtime().enter();
        for _ in 0..PROCESS_ROUNDS {
            let mut batch = {
                let mut inbox = self.inbox.lock();
                if inbox.work.is_empty() {
                    break;
                }
                let spare = std::mem::take(&mut inbox.spare);
                std::mem::replace(&mut inbox.work, spare)
            };
            for work in batch.drain(..) {
                work.run(py, self);
            }
            if kick_workers {
                kick(py, self);
            }
            send_replies();
            // Keep the allocation for the next batch.
            let mut inbox = self.inbox.lock();
            if inbox.spare.capacity() < batch.capacity() {
                inbox.spare = batch;
            }
        }
        if !self.inbox.lock().work.is_empty() {
            self.wake();
        }
    }

    /// Marks the loop gone and fails everything still queued for it.
    fn close(&self) {
        let work = {
            let mut inbox = self.inbox.lock();
            inbox.closed = true;
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut inbox.work)
        };
        for item in work {
            item.abandon();
        }
        let mut pool = std::mem::take(&mut *self.workers.lock());
        pool.abandon();
    }
}

/// Rounds of [`LoopBridge::process`] before the loop gets a turn.
const PROCESS_ROUNDS: usize = 64;

thread_local! {
    /// The bridge (as an address) whose loop thread is at a safe point: inside its drain
    /// or one of its workers' steps, which work through the inbox before they leave.
    static SAFE_POINT: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as at a safe point of a bridge until dropped (nests).
pub(crate) struct SafePoint(usize);

impl SafePoint {
    pub(crate) fn enter(bridge: &Arc<LoopBridge>) -> Self {
        Self(SAFE_POINT.with(|point| point.replace(Arc::as_ptr(bridge) as usize)))
    }
}

impl Drop for SafePoint {
    fn drop(&mut self) {
        SAFE_POINT.with(|point| point.set(self.0));
    }
}

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// One of the queue's command runners, polled where it was woken: on the home loop's
/// thread when woken there (an `async def` handler replied), on the runtime otherwise
/// (a plain handler's thread finished, a timer fired). A command whose handler runs on
/// the loop thus goes from dispatch to result without a thread switch.
pub(crate) struct RunnerTask {
    runner: Mutex<Option<CommandRunner>>,
    state: AtomicU8,
    env: Arc<HandlerEnv>,
}

impl RunnerTask {
    fn schedule(self: Arc<Self>) {
        match self.env.home() {
            Some(bridge) if bridge.is_loop_thread() && !bridge.is_closed() => {
                bridge.push(Work::Run(self));
            }
            _ => self.run_on_runtime(),
        }
    }

    /// Polls the runner on the runtime (state: scheduled).
    fn run_on_runtime(self: Arc<Self>) {
        runtime().spawn(async move { self.run() });
    }

    /// Polls the runner until it waits (state: scheduled); re-polls if woken meanwhile.
    fn run(self: &Arc<Self>) {
        self.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let done = {
                let mut runner = self.runner.lock();
                let done = runner
                    .as_mut()
                    .is_none_or(|runner| runner.as_mut().poll(&mut cx).is_ready());
                if done {
                    *runner = None;
                }
                done
            };
            if done {
                self.state.store(DONE, Ordering::Release);
                return;
            }
            match self
                .state
                .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(_) => self.state.store(RUNNING, Ordering::Release),
            }
        }
    }
}

impl Wake for RunnerTask {
    fn wake(self: Arc<Self>) {
        loop {
            match self.state.load(Ordering::Acquire) {
                IDLE => {
                    if self
                        .state
                        .compare_exchange(IDLE, SCHEDULED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.schedule();
                        return;
                    }
                }
                RUNNING => {
                    if self
                        .state
                        .compare_exchange(RUNNING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// The queue's [`Spawner`]: runners start where they were dispatched (see [`RunnerTask`]).
pub(crate) struct LoopSpawner {
    env: Arc<HandlerEnv>,
}

impl std::fmt::Debug for LoopSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopSpawner").finish_non_exhaustive()
    }
}

impl LoopSpawner {
    pub(crate) fn new(env: Arc<HandlerEnv>) -> Self {
        Self { env }
    }
}

impl Spawner for LoopSpawner {
    fn spawn(&self, runner: CommandRunner) {
        let task = Arc::new(RunnerTask {
            runner: Mutex::new(Some(runner)),
            state: AtomicU8::new(SCHEDULED),
            env: self.env.clone(),
        });
        task.schedule();
    }
}

/// A Rust future that a Python awaitable waits for, polled on the loop's thread.
pub(crate) trait LoopBody: Send + 'static {
    /// Polls with the GIL held, on the loop's thread; resolves its Python side when done.
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A [`LoopTask`] as the inbox holds it.
pub(crate) trait Pollable: Send + Sync {
    fn poll(self: Arc<Self>, py: Python<'_>);
    fn abandon(&self);
}

/// Runs a [`LoopBody`] on a loop: woken from any thread, polled on the loop's thread.
pub(crate) struct LoopTask<B> {
    bridge: Arc<LoopBridge>,
    scheduled: AtomicBool,
    body: Mutex<Option<B>>,
}

impl<B: LoopBody> LoopTask<B> {
    /// Starts `body` on `bridge`'s loop, polling it once now (the caller is on that loop).
    pub(crate) fn spawn(py: Python<'_>, bridge: Arc<LoopBridge>, body: B) {
        let task = Arc::new(Self {
            bridge,
            scheduled: AtomicBool::new(false),
            body: Mutex::new(Some(body)),
        });
        let _context = runtime().enter();
        task.poll(py);
    }
}

impl<B: LoopBody> Pollable for LoopTask<B> {
    fn poll(self: Arc<Self>, py: Python<'_>) {
        self.scheduled.store(false, Ordering::Release);
        let mut body = self.body.lock();
        if let Some(inner) = body.as_mut() {
            let waker = Waker::from(self.clone());
            if inner.poll(py, &mut Context::from_waker(&waker)).is_ready() {
                *body = None;
            }
        }
    }

    fn abandon(&self) {
        drop(self.body.lock().take());
    }
}

impl<B: LoopBody> Wake for LoopTask<B> {
    fn wake(self: Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let bridge = self.bridge.clone();
            bridge.push(Work::Poll(self));
        }
    }
}

/// A body that drives `future` and resolves a plain `asyncio.Future` with its output.
struct AsyncioBody<F, C> {
    future: Pin<Box<F>>,
    target: Py<PyAny>,
    convert: Option<C>,
}

impl<F, T, C> LoopBody for AsyncioBody<F, C>
where
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()> {
        let target = self.target.bind(py);
        // A cancelled awaitable must not consume what it was waiting for.
        if target
            .call_method0(pyo3::intern!(py, "done"))
            .and_then(|done| done.is_truthy())
            .unwrap_or(true)
        {
            return Poll::Ready(());
        }
        let output = std::task::ready!(self.future.as_mut().poll(cx));
        let convert = self.convert.take().expect("polled after completion");
        let outcome = match convert(py, output) {
            Ok(value) => target.call_method1(pyo3::intern!(py, "set_result"), (value,)),
            Err(error) => {
                target.call_method1(pyo3::intern!(py, "set_exception"), (error.into_value(py),))
            }
        };
        if let Err(error) = outcome {
            error.write_unraisable(py, Some(target));
        }
        Poll::Ready(())
    }
}

/// An `asyncio.Future` on the running loop that resolves to `convert(future.await)`.
pub(crate) fn awaitable<'py, F, T, C>(
    py: Python<'py>,
    what: &str,
    future: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let bridge = LoopBridge::of_running_loop(py, what)?;
    let target = bridge
        .event_loop(py)
        .call_method0(pyo3::intern!(py, "create_future"))?;
    let body = AsyncioBody {
        future: Box::pin(future),
        target: target.clone().unbind(),
        convert: Some(convert),
    };
    LoopTask::spawn(py, bridge, body);
    Ok(target)
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

static MAIN_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_IDENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    let main = python_attr(py, &MAIN_THREAD, "threading", "main_thread")?
        .call0()?
        .getattr("ident")?;
    let current = python_attr(py, &GET_IDENT, "threading", "get_ident")?.call0()?;
    main.eq(current)
}

/// Polls `future` on this thread until it completes or `deadline` passes (`Ok(None)`).
///
/// Each poll holds the GIL (so a result is turned into Python objects, and a command's
/// acceptance is recorded, before any other Python code runs); the waits in between
/// release it. On the main thread a pending signal handler's exception
/// (`KeyboardInterrupt`) is returned within 50 ms; the future is then left unfinished
/// for the caller to dispose of.
pub(crate) fn block_on_until<F: Future + ?Sized>(
    py: Python<'_>,
    mut future: Pin<&mut F>,
    deadline: Option<Instant>,
) -> PyResult<Option<F::Output>> {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut main_thread = None;
    loop {
        {
            let _context = runtime().enter();
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(Some(output));
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(None);
        }
        let main = match main_thread {
            Some(main) => main,
            None => *main_thread.insert(on_main_thread(py)?),
        };
        let limit = match (deadline, main) {
            (Some(deadline), true) => Some((deadline - now).min(SIGNAL_CHECK)),
            (Some(deadline), false) => Some(deadline - now),
            (None, true) => Some(SIGNAL_CHECK),
            (None, false) => None,
        };
        py.detach(|| match limit {
            Some(limit) => std::thread::park_timeout(limit),
            None => std::thread::park(),
        });
        py.check_signals()?;
    }
}

/// [`block_on_until`] without a deadline.
pub(crate) fn block_on<F: Future + ?Sized>(
    py: Python<'_>,
    future: Pin<&mut F>,
) -> PyResult<F::Output> {
    block_on_until(py, future, None).map(|output| output.expect("no deadline was given"))
}

static NEW_LOOP_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A loop of our own on a daemon thread, for a queue started outside any event loop:
/// its `async def` handlers run there. Returns the loop and its bridge.
pub(crate) fn private_loop(py: Python<'_>) -> PyResult<(Py<PyAny>, Arc<LoopBridge>)> {
    let support = python_attr(py, &NEW_LOOP_THREAD, "a3s_lane._support", "LoopThread")?;
    let thread = support.call0()?;
    let event_loop = thread.getattr("loop")?;
    let bridge = LoopBridge::of(py, &event_loop)?;
    thread.call_method0("start")?;
    Ok((thread.unbind(), bridge))
}
