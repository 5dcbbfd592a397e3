//! Arguments from Python to Rust types: the binding's only checks.
//!
//! Each function turns one kind of Python value into the Rust type the core takes and
//! refuses what cannot be one: another type is a `TypeError`; an int that does not fit
//! the Rust type, or seconds that are NaN, infinite, negative or too large for a
//! `Duration`, is a `ConfigError` (a `ValueError`) naming the argument and the value.
//! Whether a value that fits is allowed (a cap of 0, a zero timeout, a rate limit of 0)
//! is the core's rule, and its error says so; nothing here duplicates one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use a3s_lane::SubmitOptions;
use pyo3::PyClass;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use crate::error::{IntoPyErr, config_error};
use crate::runtime::python_attr;

/// The name of a value's type, for errors.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `convert(value)`, with `None` (absent, or Python's None) meaning none.
pub(crate) fn optional<'py, T>(
    value: Option<&Bound<'py, PyAny>>,
    convert: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    match value {
        Some(value) if !value.is_none() => convert(value).map(Some),
        _ => Ok(None),
    }
}

/// An unsigned int no larger than `max`; `hint` (may be empty) follows the allowed
/// range in the error. Bools, floats and other types are a `TypeError`.
fn unsigned(value: &Bound<'_, PyAny>, name: &str, max: u64, hint: &str) -> PyResult<u64> {
    if value.cast::<PyBool>().is_ok() || value.cast::<PyInt>().is_err() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, got {}",
            type_name(value)
        )));
    }
    if let Ok(number) = value.extract::<u64>()
        && number <= max
    {
        return Ok(number);
    }
    let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
    let negative = value.lt(0).unwrap_or(false);
    // Narrow types say their range; for the wide ones, "at most 18446744073709551615"
    // says less than "must not be negative" to someone who passed -1.
    let range = if negative && max > u64::from(u8::MAX) {
        "an int >= 0".to_owned()
    } else {
        format!("an int from 0 to {max}")
    };
    Err(config_error(
        value.py(),
        format!("{name} must be {range}{hint}, got {shown}"),
    ))
}

/// A `u8` argument.
pub(crate) fn u8_arg(value: &Bound<'_, PyAny>, name: &str, hint: &str) -> PyResult<u8> {
    unsigned(value, name, u8::MAX.into(), hint).map(|n| n as u8)
}

/// A `u32` argument.
pub(crate) fn u32_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u32> {
    unsigned(value, name, u32::MAX.into(), "").map(|n| n as u32)
}

/// A command id (an int >= 0).
pub(crate) fn command_id_arg(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    unsigned(
        value,
        "command_id",
        u64::MAX,
        " (an id returned by a submit)",
    )
}

/// A `usize` argument.
pub(crate) fn usize_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    unsigned(value, name, usize::MAX as u64, "").map(|n| n as usize)
}

/// A number (int or float) as an `f64`; bools and other types are a `TypeError`.
pub(crate) fn number(value: &Bound<'_, PyAny>, name: &str, what: &str) -> PyResult<f64> {
    if value.cast::<PyBool>().is_ok()
        || (value.cast::<PyInt>().is_err() && value.cast::<PyFloat>().is_err())
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be {what} (int or float), got {}",
            type_name(value)
        )));
    }
    value.extract().map_err(|_| {
        let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
        config_error(value.py(), format!("{name} is out of range: {shown}"))
    })
}

/// A duration in seconds (int or float): finite, not negative, and within a `Duration`.
pub(crate) fn seconds(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Duration> {
    let secs = number(value, name, "a number of seconds")?;
    let shown = || value.repr().map(|r| r.to_string()).unwrap_or_default();
    if !secs.is_finite() || secs < 0.0 {
        return Err(config_error(
            value.py(),
            format!(
                "{name} must be a finite number of seconds >= 0, got {}",
                shown()
            ),
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        config_error(
            value.py(),
            format!("{name} is too large: {} seconds", shown()),
        )
    })
}

/// [`seconds`], with `None` meaning none.
pub(crate) fn optional_seconds(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<Duration>> {
    optional(value, |value| seconds(value, name))
}

/// A timeout of a blocking wait as the instant it ends; None waits without limit, as
/// does a timeout beyond what the clock can count to.
pub(crate) fn optional_deadline(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<Instant>> {
    Ok(optional_seconds(value, name)?.and_then(|d| Instant::now().checked_add(d)))
}

/// An instance of the class `T`, cloned out; another type is a `TypeError` saying what
/// `name` takes (`example` shows one, or is empty).
pub(crate) fn instance<T: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync + Clone>(
    value: &Bound<'_, PyAny>,
    name: &str,
    example: &str,
) -> PyResult<T> {
    match value.cast::<T>() {
        Ok(instance) => Ok(instance.get().clone()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be a {}{example}, got {}",
            T::NAME,
            type_name(value)
        ))),
    }
}

/// `(key, value)` pairs of a mapping argument, with a `TypeError` naming it otherwise.
pub(crate) fn mapping_items<'py>(
    value: &Bound<'py, PyAny>,
    name: &str,
    of: &str,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let items = value
        .call_method0("items")
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a mapping of {of}")))?;
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
        let Ok(key) = key.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "{name}: keys must be str, got {}",
                type_name(&key)
            )));
        };
        out.push((key.to_str()?.to_owned(), value));
    }
    Ok(out)
}

static TIMEDELTA: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DATETIME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A span of time as seconds (int or float, as [`seconds`] takes them) or a
/// `datetime.timedelta`: not negative, and within a `Duration`.
pub(crate) fn seconds_or_timedelta(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Duration> {
    let py = value.py();
    let timedelta = python_attr(py, &TIMEDELTA, "datetime", "timedelta")?;
    if !value.is_instance(timedelta)? {
        if value.cast::<PyBool>().is_ok()
            || (value.cast::<PyInt>().is_err() && value.cast::<PyFloat>().is_err())
        {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a number of seconds (int or float) or a datetime.timedelta, \
                 got {}",
                type_name(value)
            )));
        }
        return seconds(value, name);
    }
    // Exactly, from its parts: days (may be negative), seconds and microseconds (not).
    let days: i64 = value.getattr("days")?.extract()?;
    let secs: u64 = value.getattr("seconds")?.extract()?;
    let micros: u32 = value.getattr("microseconds")?.extract()?;
    if days < 0 {
        return Err(config_error(
            py,
            format!(
                "{name} must be a timedelta >= 0, got {}",
                value.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        ));
    }
    // At most 999,999,999 days: within a u64 of seconds.
    Ok(Duration::new(days as u64 * 86_400 + secs, micros * 1_000))
}

/// A wall-clock time: a timezone-aware `datetime.datetime` (a naive one is refused: its
/// meaning depends on the machine's time zone).
pub(crate) fn aware_datetime(value: &Bound<'_, PyAny>, name: &str) -> PyResult<SystemTime> {
    let py = value.py();
    let datetime = python_attr(py, &DATETIME, "datetime", "datetime")?;
    if !value.is_instance(datetime)? {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a timezone-aware datetime.datetime, got {}",
            type_name(value)
        )));
    }
    if value.call_method0("utcoffset")?.is_none() {
        return Err(config_error(
            py,
            format!(
                "{name} is a naive datetime (no tzinfo), whose meaning depends on this \
                 machine's time zone; give a timezone-aware one, such as \
                 datetime.now(timezone.utc) + timedelta(seconds=30), got {}",
                value.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        ));
    }
    // The span from the epoch, exactly (a timedelta of days, seconds, microseconds).
    let utc = python_attr(py, &UTC, "datetime", "timezone")?.getattr("utc")?;
    let epoch = datetime.call1((1970, 1, 1, 0, 0, 0, 0, utc))?;
    let since = value.call_method1("__sub__", (epoch,))?;
    let days: i64 = since.getattr("days")?.extract()?;
    let secs: i64 = since.getattr("seconds")?.extract()?;
    let micros: u32 = since.getattr("microseconds")?.extract()?;
    let total_secs = days * 86_400 + secs;
    let time = if total_secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(total_secs as u64, micros * 1_000))
    } else {
        // Before 1970: the whole seconds back, then the microseconds forward.
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(total_secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_micros(micros.into())))
    };
    time.ok_or_else(|| config_error(py, format!("{name} is out of range")))
}

/// An idempotency key: a `str`, which the core's rule (not empty, at most
/// `MAX_KEY_BYTES` of UTF-8) accepts. Checked here, at the call, on every engine and
/// submit path alike, with the core's own error (a `ConfigError`).
pub(crate) fn idempotency_key(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = value.py();
    let Ok(text) = value.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "key must be a str, got {}",
            type_name(value)
        )));
    };
    let key = text
        .to_str()
        .map_err(|_| config_error(py, "key must be valid UTF-8 (it holds a lone surrogate)"))?
        .to_owned();
    // The core's check, applied to the key alone (timing options are resolved at the
    // submit, against the clock then).
    SubmitOptions::new()
        .with_key(key.as_str())
        .resolve(SystemTime::now())
        .map_err(|error| error.into_py_err(py))?;
    Ok(key)
}

/// A group key (`group=` of a submit, the `group` of `pause_group` and friends): a `str`,
/// which the core's rule (not empty, at most `MAX_GROUP_BYTES` of UTF-8, no control
/// characters) accepts. Checked here, at the call, with the core's own error (a
/// `ConfigError`).
pub(crate) fn group_key(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = value.py();
    let Ok(text) = value.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "group must be a str, got {}",
            type_name(value)
        )));
    };
    let group = text
        .to_str()
        .map_err(|_| config_error(py, "group must be valid UTF-8 (it holds a lone surrogate)"))?
        .to_owned();
    a3s_lane::check_group(&group).map_err(|error| error.into_py_err(py))?;
    Ok(group)
}

/// The keyword arguments every submit takes: when the command may start (`delay` or
/// `run_at`), by when it must have started (`start_by` or `start_within`), its
/// idempotency `key` and its `group` inside the lane. Their types and ranges are checked
/// here (and the key and group against the core's rules); how the timing options combine (both of a pair, a time in the past, a
/// deadline before the start) is the core's rule, checked when it resolves them at the
/// submit.
pub(crate) fn submit_options(
    delay: Option<&Bound<'_, PyAny>>,
    run_at: Option<&Bound<'_, PyAny>>,
    start_by: Option<&Bound<'_, PyAny>>,
    start_within: Option<&Bound<'_, PyAny>>,
    key: Option<&Bound<'_, PyAny>>,
    group: Option<&Bound<'_, PyAny>>,
) -> PyResult<SubmitOptions> {
    let mut options = SubmitOptions::new();
    if let Some(key) = optional(key, idempotency_key)? {
        options = options.with_key(key);
    }
    if let Some(group) = optional(group, group_key)? {
        options = options.with_group(group);
    }
    if let Some(delay) = optional(delay, |d| seconds_or_timedelta(d, "delay"))? {
        options = options.with_delay(delay);
    }
    if let Some(at) = optional(run_at, |t| aware_datetime(t, "run_at"))? {
        options = options.with_run_at(at);
    }
    if let Some(at) = optional(start_by, |t| aware_datetime(t, "start_by"))? {
        options = options.with_start_by(at);
    }
    if let Some(within) = optional(start_within, |w| seconds_or_timedelta(w, "start_within"))? {
        options = options.with_start_within(within);
    }
    Ok(options)
}
