//! Arguments from Python to Rust types: the binding's only checks.
//!
//! Each function turns one kind of Python value into the Rust type the core takes and
//! refuses what cannot be one: another type is a `TypeError`; an int that does not fit
//! the Rust type, or seconds that are NaN, infinite, negative or too large for a
//! `Duration`, is a `ConfigError` (a `ValueError`) naming the argument and the value.
//! Whether a value that fits is allowed (a cap of 0, a zero timeout, a rate limit of 0)
//! is the core's rule, and its error says so; nothing here duplicates one.

use std::time::{Duration, Instant};

use pyo3::PyClass;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use crate::error::config_error;

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
