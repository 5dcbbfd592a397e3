//! Rust futures that Python awaitables wait for, polled on the awaiting loop's thread.
//!
//! A [`LoopTask`] runs a [`LoopBody`] on an event loop: woken from any thread through the
//! loop's inbox, polled with the GIL held on the loop's thread, where it settles its
//! Python side (an `asyncio.Future`, a `CommandFuture`). [`awaitable`] is the common case:
//! an `asyncio.Future` resolved with a future's converted output.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::event_loop::{LoopBridge, LoopWork};
use crate::runtime::runtime;

/// A Rust future that a Python awaitable waits for, polled on the loop's thread.
pub(crate) trait LoopBody: Send + 'static {
    /// Polls with the GIL held, on the loop's thread; resolves its Python side when done.
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()>;
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
}

impl<B: LoopBody> LoopWork for LoopTask<B> {
    fn run(self: Arc<Self>, py: Python<'_>, _bridge: &Arc<LoopBridge>) {
        self.poll(py);
    }

    fn abandon(self: Arc<Self>) {
        drop(self.body.lock().take());
    }
}

impl<B: LoopBody> Wake for LoopTask<B> {
    fn wake(self: Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let bridge = self.bridge.clone();
            bridge.push(self);
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
