//! The exception hierarchy and the one place where queue errors become Python exceptions.
//!
//! Every exception the queue raises derives from `LaneError`; those that have an obvious
//! built-in meaning also derive from it (`ConfigError` is a `ValueError`,
//! `CommandTimeoutError` a `TimeoutError`, the not-found errors are `LookupError`s), so
//! `except ValueError:` keeps working for code that does not know this library. They
//! are made at import time with two bases, which `create_exception!` cannot express.

use a3s_lane::LaneError as CoreError;
use pyo3::exceptions::{PyException, PyLookupError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

/// The exception classes, created once when the module is imported.
pub(crate) struct Exceptions {
    pub(crate) lane_error: Py<PyType>,
    pub(crate) lane_not_found: Py<PyType>,
    pub(crate) handler_not_found: Py<PyType>,
    pub(crate) config: Py<PyType>,
    pub(crate) command_timeout: Py<PyType>,
    pub(crate) cancelled: Py<PyType>,
    pub(crate) shutdown: Py<PyType>,
    pub(crate) storage: Py<PyType>,
    pub(crate) command: Py<PyType>,
    pub(crate) non_retryable: Py<PyType>,
    pub(crate) not_json: Py<PyType>,
    pub(crate) expired: Py<PyType>,
    pub(crate) lane_full: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<Exceptions> = PyOnceLock::new();

/// The exception classes (the module is imported before any of them is raised).
pub(crate) fn exceptions(py: Python<'_>) -> &Exceptions {
    EXCEPTIONS
        .get(py)
        .expect("a3s_lane._native registers its exceptions when it is imported")
}

fn make(
    py: Python<'_>,
    name: &str,
    bases: &[Bound<'_, PyType>],
    doc: &str,
) -> PyResult<Py<PyType>> {
    make_with_code(py, name, bases, doc, None)
}

/// [`make`], with a class attribute `code` (the same code as the Node SDK's error).
fn make_with_code(
    py: Python<'_>,
    name: &str,
    bases: &[Bound<'_, PyType>],
    doc: &str,
    code: Option<&str>,
) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "a3s_lane")?;
    namespace.set_item("__doc__", doc)?;
    if let Some(code) = code {
        namespace.set_item("code", code)?;
    }
    let bases = PyTuple::new(py, bases)?;
    let class = py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?;
    Ok(class.unbind())
}

/// Creates the classes and adds them to the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let lane_error = make(
        py,
        "LaneError",
        &[py.get_type::<PyException>()],
        "Base class of every error raised by a3s_lane.",
    )?;
    let base = lane_error.bind(py).clone();
    let exceptions = Exceptions {
        lane_not_found: make(
            py,
            "LaneNotFoundError",
            &[base.clone(), py.get_type::<PyLookupError>()],
            "The lane id is not one of the queue's lanes; the message lists them.",
        )?,
        handler_not_found: make(
            py,
            "HandlerNotFoundError",
            &[base.clone(), py.get_type::<PyLookupError>()],
            "No handler is registered for the command type; register one with @lane.handler(type).",
        )?,
        config: make(
            py,
            "ConfigError",
            &[base.clone(), py.get_type::<PyValueError>()],
            "An invalid configuration value or argument; the message says which and why.",
        )?,
        command_timeout: make(
            py,
            "CommandTimeoutError",
            &[base.clone(), py.get_type::<PyTimeoutError>()],
            "The command ran longer than its lane's timeout (on its last attempt).",
        )?,
        cancelled: make(
            py,
            "CancelledError",
            std::slice::from_ref(&base),
            "The command was cancelled (by cancel(), cancel_lane(), shutdown_now() or a cancelled await).\n\n\
             Not to be confused with asyncio.CancelledError, which is what a cancelled *task* raises.",
        )?,
        shutdown: make(
            py,
            "ShutdownError",
            std::slice::from_ref(&base),
            "The queue is shutting down and accepts no new commands.",
        )?,
        storage: make(
            py,
            "StorageError",
            std::slice::from_ref(&base),
            "The durable store failed (could not be opened, is locked by another process, is full).",
        )?,
        command: make(
            py,
            "CommandError",
            std::slice::from_ref(&base),
            "A command failed and its handler's own exception is not available (for example a\n\
             command that failed in another process); the message carries the handler's error.",
        )?,
        non_retryable: make(
            py,
            "NonRetryableError",
            &[py.get_type::<PyException>()],
            "Raise it (or a subclass) from a handler to fail the command without retrying it.\n\n\
             The caller receives this very exception.",
        )?,
        not_json: make(
            py,
            "NotJsonError",
            &[
                base.clone(),
                py.get_type::<pyo3::exceptions::PyTypeError>(),
                py.get_type::<PyValueError>(),
            ],
            "A payload or result holds a value JSON cannot hold (NaN, infinity, a set, bytes,\n\
             a non-str dict key, an int beyond 64 bits, another object). `code` is\n\
             \"NOT_JSON\"; `path` says where, e.g. `payload.items[3].x`.",
        )?,
        expired: make_with_code(
            py,
            "ExpiredError",
            std::slice::from_ref(&base),
            "The command was not started by its start-by deadline (`start_by=` or\n\
             `start_within=` of the submit); it never ran. `code` is \"EXPIRED\".",
            Some(EXPIRED),
        )?,
        lane_full: make_with_code(
            py,
            "LaneFullError",
            std::slice::from_ref(&base),
            "The lane already holds `limit` waiting commands (pending and delayed), its\n\
             `max_waiting`, and is configured to reject (or waited for room longer than its\n\
             `full_wait_timeout`). `code` is \"LANE_FULL\"; `lane` and `limit` say which\n\
             lane and its bound.",
            Some(LANE_FULL),
        )?,
        lane_error,
    };
    for (name, class) in [
        ("LaneError", &exceptions.lane_error),
        ("LaneNotFoundError", &exceptions.lane_not_found),
        ("HandlerNotFoundError", &exceptions.handler_not_found),
        ("ConfigError", &exceptions.config),
        ("CommandTimeoutError", &exceptions.command_timeout),
        ("CancelledError", &exceptions.cancelled),
        ("ShutdownError", &exceptions.shutdown),
        ("StorageError", &exceptions.storage),
        ("CommandError", &exceptions.command),
        ("NonRetryableError", &exceptions.non_retryable),
        ("NotJsonError", &exceptions.not_json),
        ("ExpiredError", &exceptions.expired),
        ("LaneFullError", &exceptions.lane_full),
    ] {
        module.add(name, class.bind(py))?;
    }
    let _ = EXCEPTIONS.set(py, exceptions);
    Ok(())
}

/// Turns queue errors into Python exceptions: the binding's single error mapping.
pub(crate) trait IntoPyErr {
    /// The Python exception for this error.
    fn into_py_err(self, py: Python<'_>) -> PyErr;
}

impl IntoPyErr for CoreError {
    fn into_py_err(self, py: Python<'_>) -> PyErr {
        let classes = exceptions(py);
        let class = match &self {
            CoreError::LaneFull { lane, limit } => {
                let Ok(limit) = limit.into_pyobject(py);
                let attributes = [
                    ("lane", PyString::new(py, lane).into_any()),
                    ("limit", limit.into_any()),
                ];
                // The core names its Rust option; a Python user sets `when_full="wait"`.
                let message = self
                    .to_string()
                    .replace("(WhenFull::Wait)", "(LaneConfig(when_full=\"wait\"))");
                return with_attributes(py, &classes.lane_full, message, &attributes);
            }
            CoreError::Expired(_) => &classes.expired,
            CoreError::LaneNotFound { .. } => &classes.lane_not_found,
            CoreError::HandlerNotFound { .. } => &classes.handler_not_found,
            // A value the queue refused at the call (a start time in the past, a delay
            // and a start time together): a bad argument, as a bad option is.
            CoreError::ConfigError(_) | CoreError::InvalidInput(_) => &classes.config,
            CoreError::Timeout(_) => &classes.command_timeout,
            CoreError::Cancelled(_) => &classes.cancelled,
            CoreError::ShutdownInProgress => &classes.shutdown,
            CoreError::Storage(_) => &classes.storage,
            CoreError::CommandError(_) | CoreError::NonRetryable(_) => &classes.command,
            _ => &classes.lane_error,
        };
        PyErr::from_type(class.bind(py).clone(), self.to_string())
    }
}

/// An instance of `class` with `message` and the attributes `attributes`.
fn with_attributes<'py>(
    py: Python<'py>,
    class: &Py<PyType>,
    message: String,
    attributes: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    let made = class.bind(py).call1((message,)).and_then(|error| {
        for (name, value) in attributes {
            error.setattr(*name, value)?;
        }
        Ok(error)
    });
    match made {
        Ok(error) => PyErr::from_value(error),
        Err(failed) => failed,
    }
}

/// The code of every `ExpiredError` (the same in the Node SDK).
pub(crate) const EXPIRED: &str = "EXPIRED";

/// The code of every `LaneFullError` (the same in the Node SDK).
pub(crate) const LANE_FULL: &str = "LANE_FULL";

/// A `ConfigError` (a `ValueError`) with `message`.
pub(crate) fn config_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    PyErr::from_type(exceptions(py).config.bind(py).clone(), message.into())
}

/// The code of every `NotJsonError` (the same in the Node SDK).
pub(crate) const NOT_JSON: &str = "NOT_JSON";

/// A `NotJsonError` for the value at `path` (`payload.items[3]`), with `message`.
pub(crate) fn not_json(py: Python<'_>, path: &str, message: String) -> PyErr {
    let class = exceptions(py).not_json.bind(py);
    match class.call1((message,)) {
        Ok(error) => {
            let set = error
                .setattr("code", NOT_JSON)
                .and_then(|()| error.setattr("path", path));
            match set {
                Ok(()) => PyErr::from_value(error),
                Err(failed) => failed,
            }
        }
        Err(failed) => failed,
    }
}

/// A plain `LaneError` with `message`.
pub(crate) fn lane_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    PyErr::from_type(exceptions(py).lane_error.bind(py).clone(), message.into())
}

/// How a handler's exception is reported to the queue (for retries, events, dead
/// letters); the caller gets the exception object itself.
pub(crate) fn handler_failure(py: Python<'_>, error: &PyErr) -> CoreError {
    let value = error.value(py);
    let name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let text = value.str().map(|s| s.to_string()).unwrap_or_default();
    let message = if text.is_empty() {
        name
    } else {
        format!("{name}: {text}")
    };
    if error.is_instance(py, exceptions(py).non_retryable.bind(py)) {
        CoreError::NonRetryable(message)
    } else {
        CoreError::CommandError(message)
    }
}
