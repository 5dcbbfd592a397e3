//! How work reaches an asyncio event loop without blocking on the GIL.
//!
//! Each lane may have a home event loop ([`LoopHome`]): the asyncio loop running when
//! `start()` was called (or a private loop on a daemon thread). Everything that must
//! happen on that loop — starting an `async def` handler, cancelling it, settling an
//! awaited result, polling a command runner — is a [`LoopWork`] pushed into the loop's
//! [`LoopBridge`] inbox, which the loop works through in batches. From another thread the
//! loop is woken through a socket it watches with `loop.add_reader`: a one-byte write when
//! the inbox stops being empty, never the GIL (waking it with `call_soon_threadsafe`, as
//! generic Rust-to-asyncio bridges do, takes the GIL on the waking thread for every item;
//! measured at 2,300 awaits per second against 100,000 for plain asyncio, it is only the
//! fallback for loops without `add_reader`).
//!
//! The bridge knows the work it runs only as [`LoopWork`]: the command runners
//! (`spawner`), the awaitables (`loop_task`) and the `async def` handlers (`coroutine`,
//! which keeps its per-loop state with the bridge as a [`LoopExtension`]) build on it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;

use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::{PyKeyboardInterrupt, PyNotImplementedError, PySystemExit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::runtime::{python_attr, running_loop, runtime};

/// Work for an event loop's thread.
pub(crate) trait LoopWork: Send + Sync {
    /// Runs on the loop's thread, with the GIL held.
    fn run(self: Arc<Self>, py: Python<'_>, bridge: &Arc<LoopBridge>);

    /// The loop is gone: tell whoever waits instead of leaving them hanging.
    fn abandon(self: Arc<Self>);
}

/// State another module keeps per loop, with the bridge: the `async def` handlers' workers.
pub(crate) trait LoopExtension: Any + Send + Sync {
    /// After a batch of work, outside a worker's own step.
    fn after_batch(&self, py: Python<'_>, bridge: &Arc<LoopBridge>);

    /// The loop was closed: nothing queued will run.
    fn close(&self);
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
    work: Vec<Arc<dyn LoopWork>>,
    spare: Vec<Arc<dyn LoopWork>>,
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
    /// Loop-thread state another module keeps here (see [`LoopBridge::extension`]).
    extension: OnceLock<Box<dyn LoopExtension>>,
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
            extension: OnceLock::new(),
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

    /// Fails what is queued for the loop, and what will be, if the loop itself was
    /// closed (`asyncio.run` returned); true if so.
    pub(crate) fn close_if_loop_closed(&self, py: Python<'_>) -> bool {
        if self.is_closed() {
            return true;
        }
        let closed = self
            .event_loop
            .bind(py)
            .call_method0("is_closed")
            .and_then(|closed| closed.is_truthy())
            .unwrap_or(false);
        if closed {
            self.close();
        }
        closed
    }

    /// The loop's `E`, made on first use; a bridge keeps one extension, of one type.
    pub(crate) fn extension<E: LoopExtension + Default>(&self) -> &E {
        let extension: &dyn Any = &**self.extension.get_or_init(|| Box::new(E::default()));
        extension
            .downcast_ref::<E>()
            .expect("a bridge keeps one extension, of one type")
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
    pub(crate) fn push(self: &Arc<Self>, work: Arc<dyn LoopWork>) {
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
            Signal::Threadsafe => {
                let scheduled = crate::exit::attach_if_alive(|py| {
                    let drain = LoopDrain {
                        bridge: self.clone(),
                        owner: false,
                    };
                    Py::new(py, drain).and_then(|drain| {
                        self.event_loop
                            .bind(py)
                            .call_method1("call_soon_threadsafe", (drain,))
                            .map(drop)
                    })
                });
                if !matches!(scheduled, Some(Ok(()))) {
                    // The loop is closed, or the interpreter is exiting.
                    self.close();
                }
            }
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
    /// `after_batch` calls the extension's [`LoopExtension::after_batch`] after each
    /// round (false inside a worker's own step, which takes the queued runs itself).
    pub(crate) fn process(self: &Arc<Self>, py: Python<'_>, after_batch: bool) {
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
            if after_batch && let Some(extension) = self.extension.get() {
                extension.after_batch(py, self);
            }
            wake_deferred();
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
        if let Some(extension) = self.extension.get() {
            extension.close();
        }
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

static GET_IDENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    /// Wakers of work finished on a loop's thread, woken together at the end of the step
    /// or drain that finished it: the runtime wakes once per batch.
    static DEFERRED_WAKES: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Wakes `waker` at the end of this thread's batch of loop work ([`wake_deferred`]).
pub(crate) fn wake_later(waker: Waker) {
    DEFERRED_WAKES.with(|wakes| wakes.borrow_mut().push(waker));
}

/// Wakes what [`wake_later`] deferred.
pub(crate) fn wake_deferred() {
    let wakers = DEFERRED_WAKES.with(|wakes| std::mem::take(&mut *wakes.borrow_mut()));
    for waker in wakers {
        waker.wake();
    }
}

/// The event loop a queue's `async def` handlers run on, once it has one.
#[derive(Default)]
pub(crate) struct LoopHome(RwLock<Option<Arc<LoopBridge>>>);

impl LoopHome {
    /// The loop, if set.
    pub(crate) fn get(&self) -> Option<Arc<LoopBridge>> {
        self.0.read().clone()
    }

    /// Gives the queue a loop unless it has one: the loop running in this thread, or else
    /// a private loop on a daemon thread, whose `LoopThread` goes to `thread` for its
    /// owner to stop (see [`stop_loop_thread`]).
    pub(crate) fn ensure(&self, py: Python<'_>, thread: &mut Option<Py<PyAny>>) -> PyResult<()> {
        if self.get().is_some() {
            return Ok(());
        }
        let bridge = match running_loop(py)? {
            Some(event_loop) => LoopBridge::of(py, &event_loop)?,
            None => {
                let (loop_thread, bridge) = private_loop(py)?;
                *thread = Some(loop_thread);
                bridge
            }
        };
        *self.0.write() = Some(bridge);
        Ok(())
    }
}

/// Stops a private loop made by [`LoopHome::ensure`] (its owner is dropped).
pub(crate) fn stop_loop_thread(thread: Py<PyAny>) {
    Python::attach(|py| {
        if let Err(error) = thread.bind(py).call_method0("stop") {
            error.write_unraisable(py, None);
        }
    });
}

static NEW_LOOP_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A loop of our own on a daemon thread, for a queue started outside any event loop:
/// its `async def` handlers run there. Returns the loop and its bridge.
fn private_loop(py: Python<'_>) -> PyResult<(Py<PyAny>, Arc<LoopBridge>)> {
    let support = python_attr(py, &NEW_LOOP_THREAD, "a3s_lane._support", "LoopThread")?;
    let thread = support.call0()?;
    let event_loop = thread.getattr("loop")?;
    let bridge = LoopBridge::of(py, &event_loop)?;
    thread.call_method0("start")?;
    Ok((thread.unbind(), bridge))
}
