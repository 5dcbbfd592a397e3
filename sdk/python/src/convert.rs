//! JSON values between Python and the queue.
//!
//! Payloads and results cross the queue as JSON (`serde_json::Value`) because that is
//! what can be stored, recovered after a crash and sent to another process. The
//! conversion is strict: a value JSON cannot hold (a set, NaN, an integer beyond 64 bits,
//! a dict with non-string keys) is an error naming where it is, never a lossy copy.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Deeper structures are refused (and cycles are caught by this limit).
const MAX_DEPTH: usize = 128;

/// A conversion failure and where it happened, for example `.items[3]`.
struct JsonError {
    path: Vec<String>,
    kind: JsonErrorKind,
}

enum JsonErrorKind {
    Type(String),
    Value(String),
}

impl JsonError {
    fn type_error(message: String) -> Self {
        Self {
            path: Vec::new(),
            kind: JsonErrorKind::Type(message),
        }
    }

    fn value_error(message: String) -> Self {
        Self {
            path: Vec::new(),
            kind: JsonErrorKind::Value(message),
        }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    fn into_py_err(self, py: Python<'_>, what: &str) -> PyErr {
        let path: String = std::iter::once(what)
            .chain(self.path.iter().rev().map(String::as_str))
            .collect();
        let message = match self.kind {
            JsonErrorKind::Type(message) | JsonErrorKind::Value(message) => message,
        };
        crate::error::not_json(py, &path, format!("{path} is not JSON: {message}"))
    }
}

/// Converts a Python value to JSON; `what` names it in errors (`payload`, `result`).
pub(crate) fn to_json(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    convert(value, 0).map_err(|error| error.into_py_err(value.py(), what))
}

fn convert(value: &Bound<'_, PyAny>, depth: usize) -> Result<Value, JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::value_error(format!(
            "it nests deeper than {MAX_DEPTH} levels (is there a cycle?)"
        )));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    // Exact types first: they are what payloads are made of.
    if let Ok(text) = value.cast_exact::<PyString>() {
        return text
            .to_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|e| JsonError::value_error(e.to_string()));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(JsonError::type_error(format!(
                    "it has a key of type '{}'; JSON object keys are strings",
                    type_name(&key)
                )));
            };
            let key = key
                .to_str()
                .map_err(|e| JsonError::value_error(e.to_string()))?;
            let item = convert(&item, depth + 1).map_err(|e| e.at(python_key(key)))?;
            map.insert(key.to_owned(), item);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(boolean) = value.cast::<PyBool>() {
        return Ok(Value::Bool(boolean.is_true()));
    }
    if value.cast::<PyInt>().is_ok() {
        if let Ok(int) = value.extract::<i64>() {
            return Ok(Value::from(int));
        }
        if let Ok(int) = value.extract::<u64>() {
            return Ok(Value::from(int));
        }
        return Err(JsonError::value_error(format!(
            "the integer {} does not fit in 64 bits",
            value.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        let float = float.value();
        return Number::from_f64(float).map(Value::Number).ok_or_else(|| {
            let shown = if float.is_nan() {
                "nan"
            } else if float > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            JsonError::value_error(format!("the float {shown} (JSON has no NaN or infinity)"))
        });
    }
    if let Ok(list) = value.cast::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            items.push(convert(&item, depth + 1).map_err(|e| e.at(format!("[{index}]")))?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        let mut items = Vec::with_capacity(tuple.len());
        for (index, item) in tuple.iter().enumerate() {
            items.push(convert(&item, depth + 1).map_err(|e| e.at(format!("[{index}]")))?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|e| JsonError::value_error(e.to_string()));
    }
    Err(JsonError::type_error(format!(
        "a value of type '{}' (use dict, list, tuple, str, int, float, bool or None)",
        type_name(value)
    )))
}

/// `.key` for an identifier, else `["key"]` (JSON-quoted): the path format both SDKs use.
fn python_key(key: &str) -> String {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Converts JSON to Python (dicts keep the key order).
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A submit's `payload` argument as JSON (absent: `null`).
pub(crate) fn payload_to_json(payload: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    match payload {
        Some(payload) => to_json(payload, "payload"),
        None => Ok(Value::Null),
    }
}
