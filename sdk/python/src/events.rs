//! Lifecycle events: a subscription readable as a blocking iterator (`for event in
//! stream`) and as an async iterator (`async for event in stream`).
//!
//! A subscription sees every event from the moment `Lane.events()` returns. One that
//! falls more than the lane's `event_buffer` behind receives a `queue.events.lagged`
//! event with the number it missed; it never slows the queue. The iteration ends after
//! `queue.shutdown.complete`, when nothing else can happen, or after `close()`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use a3s_lane::{EventStream as CoreEventStream, LaneEvent, event_keys};
use futures_core::Stream;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyTimeoutError};
use pyo3::prelude::*;

use crate::args::optional_deadline;
use crate::convert::to_py;
use crate::error::config_error;
use crate::loop_task::awaitable;
use crate::runtime::{block_on, block_on_until};

/// Every key the queue emits (the core's list).
pub(crate) const EVENT_KEYS: [&str; event_keys::ALL.len()] = event_keys::ALL;

/// Checks a `keys=` argument against [`EVENT_KEYS`].
fn check_keys(py: Python<'_>, keys: Vec<String>) -> PyResult<HashSet<String>> {
    let mut checked = HashSet::with_capacity(keys.len());
    for key in keys {
        if !EVENT_KEYS.contains(&key.as_str()) {
            return Err(config_error(
                py,
                format!(
                    "unknown event key '{key}'; the queue emits: {}",
                    EVENT_KEYS.join(", ")
                ),
            ));
        }
        checked.insert(key);
    }
    Ok(checked)
}

/// The keys of an `events(keys=...)` argument, checked; None (all) when it is None.
pub(crate) fn wanted_keys(
    py: Python<'_>,
    keys: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<HashSet<String>>> {
    let Some(keys) = keys.filter(|k| !k.is_none()) else {
        return Ok(None);
    };
    // One key on its own is a subscription to that key (not to its characters).
    if let Ok(key) = keys.cast::<pyo3::types::PyString>() {
        return check_keys(py, vec![key.to_str()?.to_owned()]).map(Some);
    }
    let keys = keys
        .try_iter()?
        .map(|key| key.and_then(|key| key.extract::<String>()))
        .collect::<PyResult<Vec<String>>>()?;
    check_keys(py, keys).map(Some)
}

/// One lifecycle event.
#[pyclass(frozen, module = "a3s_lane", name = "Event")]
pub(crate) struct Event {
    key: String,
    timestamp: u64,
    payload: Py<PyAny>,
}

impl Event {
    fn new(py: Python<'_>, event: LaneEvent) -> PyResult<Self> {
        Ok(Self {
            payload: to_py(py, &event.payload)?.unbind(),
            key: event.key,
            timestamp: event.timestamp,
        })
    }
}

#[pymethods]
impl Event {
    /// `Event[CommandCompletedPayload]` in annotations (the payload type, for type checkers).
    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::runtime::generic_alias(cls, item)
    }

    /// What happened: one of `EVENT_KEYS`, such as "queue.command.completed".
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// When, in milliseconds since the Unix epoch.
    #[getter]
    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The details (a dict); the fields each key carries are in the README.
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyAny> {
        self.payload.clone_ref(py)
    }

    /// The payload's `lane_id`, if it has one.
    #[getter]
    fn lane_id(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.field(py, "lane_id")
    }

    /// The payload's `command_id`, if it has one.
    #[getter]
    fn command_id(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.field(py, "command_id")
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let payload = self
            .payload
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        format!("Event({:?}, {payload})", self.key)
    }
}

impl Event {
    fn field<T: for<'a, 'py> FromPyObject<'a, 'py>>(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<Option<T>> {
        let payload = self.payload.bind(py);
        match payload.get_item(name) {
            Ok(value) if !value.is_none() => Ok(value.extract().ok()),
            _ => Ok(None),
        }
    }
}

struct StreamState {
    stream: Option<CoreEventStream>,
    /// The keys the subscriber asked for (None: all); `queue.shutdown.complete` always
    /// reaches the stream, to end it.
    wanted: Option<HashSet<String>>,
}

impl StreamState {
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<LaneEvent>> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(stream).poll_next(cx)) {
                Some(event) => {
                    let last = event.key == event_keys::SHUTDOWN_COMPLETE;
                    if last {
                        self.stream = None;
                    }
                    let wanted = self
                        .wanted
                        .as_ref()
                        .is_none_or(|keys| keys.contains(&event.key))
                        || event.key == event_keys::EVENTS_LAGGED;
                    if wanted {
                        return Poll::Ready(Some(event));
                    }
                    if last {
                        return Poll::Ready(None);
                    }
                }
                None => {
                    self.stream = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// A subscription to a lane's events: iterate it (`for` or `async for`), or read one
/// with `get(timeout)`. Use it as a context manager, or call `close()`, to unsubscribe.
#[pyclass(frozen, module = "a3s_lane", name = "EventStream")]
pub(crate) struct EventStream {
    state: Arc<Mutex<StreamState>>,
    anext: Mutex<Option<Py<PyAny>>>,
}

impl EventStream {
    pub(crate) fn new(stream: CoreEventStream, wanted: Option<HashSet<String>>) -> Self {
        Self {
            state: Arc::new(Mutex::new(StreamState {
                stream: Some(stream),
                wanted,
            })),
            anext: Mutex::new(None),
        }
    }

    fn check_not_awaited(&self, py: Python<'_>) -> PyResult<()> {
        let running = self.anext.lock().as_ref().map(|f| f.clone_ref(py));
        if let Some(future) = running
            && !future.bind(py).call_method0("done")?.is_truthy()?
        {
            return Err(PyRuntimeError::new_err(
                "another read of this event stream is in progress (one reader at a time; \
                 subscribe again with lane.events() for another reader)",
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl EventStream {
    /// `EventStream[CommandCompletedPayload]` in annotations (the payload type, for type checkers).
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

    /// Waits for the next event (releasing the GIL); Ctrl-C interrupts the wait.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        self.check_not_awaited(py)?;
        let state = self.state.clone();
        let mut next = std::future::poll_fn(move |cx| state.lock().poll_event(cx));
        match block_on(py, Pin::new(&mut next))? {
            Some(event) => Event::new(py, event).map(Some),
            None => Ok(None),
        }
    }

    /// The next event, waiting at most `timeout` seconds (None: no limit). Returns None
    /// when the stream has ended; raises `TimeoutError` when the time is up.
    #[pyo3(signature = (timeout = None))]
    fn get(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Event>> {
        self.check_not_awaited(py)?;
        let deadline = optional_deadline(timeout, "timeout")?;
        let state = self.state.clone();
        let mut next = std::future::poll_fn(move |cx| state.lock().poll_event(cx));
        match block_on_until(py, Pin::new(&mut next), deadline)? {
            Some(Some(event)) => Event::new(py, event).map(Some),
            Some(None) => Ok(None),
            None => Err(PyTimeoutError::new_err(
                "no event arrived within the timeout",
            )),
        }
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_not_awaited(py)?;
        let state = self.state.clone();
        let next = std::future::poll_fn(move |cx| state.lock().poll_event(cx));
        let future = awaitable(
            py,
            "async for over an EventStream",
            next,
            |py, event| match event {
                Some(event) => Ok(Py::new(py, Event::new(py, event)?)?.into_any()),
                None => Err(PyStopAsyncIteration::new_err(())),
            },
        )?;
        *self.anext.lock() = Some(future.clone().unbind());
        Ok(future)
    }

    /// Unsubscribes; iteration ends.
    fn close(&self) {
        let stream = self.state.lock().stream.take();
        drop(stream);
    }

    /// Whether the stream has ended (closed, or after `queue.shutdown.complete`).
    #[getter]
    fn closed(&self) -> bool {
        self.state.lock().stream.is_none()
    }

    /// How many events this subscriber missed by falling behind.
    #[getter]
    fn missed(&self) -> u64 {
        self.state
            .lock()
            .stream
            .as_ref()
            .map_or(0, CoreEventStream::missed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }
}
