//! Where the queue runs, and how a blocking call waits for it.
//!
//! Every queue of the process runs on one tokio runtime ([`runtime`]). A blocking call
//! ([`block_on`]) polls its future on the caller's thread, releases the GIL while it
//! waits, and on the main thread wakes every 50 ms to let Python raise
//! `KeyboardInterrupt`: a parked thread does not see signals otherwise. How work reaches
//! an asyncio event loop is `event_loop`'s business; this module is the layer under it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::Runtime;

use crate::error::{IntoPyErr, lane_error};

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

static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A copy of the current `contextvars` context.
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    python_attr(py, &COPY_CONTEXT, "contextvars", "copy_context")?.call0()
}

/// Refuses a blocking `call` on a thread that runs an event loop, naming the awaitable
/// to use `instead`.
pub(crate) fn refuse_in_running_loop(py: Python<'_>, call: &str, instead: &str) -> PyResult<()> {
    if running_loop(py)?.is_some() {
        return Err(PyRuntimeError::new_err(format!(
            "{call} blocks, and this thread runs an event loop (async handlers may need it); \
             use {instead} instead"
        )));
    }
    Ok(())
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

/// A task of the runtime failed to return (it panicked or was aborted).
pub(crate) fn join_error(py: Python<'_>, error: tokio::task::JoinError) -> PyErr {
    lane_error(py, format!("the call did not finish: {error}"))
}

/// Runs `future` on the runtime and waits for it here, releasing the GIL; Ctrl-C
/// abandons it (raising `KeyboardInterrupt`).
pub(crate) fn on_runtime<T: Send + 'static>(
    py: Python<'_>,
    future: impl Future<Output = a3s_lane::Result<T>> + Send + 'static,
) -> PyResult<T> {
    let mut task = runtime().spawn(future);
    match block_on(py, Pin::new(&mut task)) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(error.into_py_err(py)),
        Ok(Err(error)) => Err(join_error(py, error)),
        Err(interrupted) => {
            task.abort();
            Err(interrupted)
        }
    }
}

static GENERIC_ALIAS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `cls[item]` as a `types.GenericAlias`, for classes that are generic to type checkers.
pub(crate) fn generic_alias<'py>(
    cls: &Bound<'py, pyo3::types::PyType>,
    item: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    python_attr(cls.py(), &GENERIC_ALIAS, "types", "GenericAlias")?.call1((cls, item))
}
