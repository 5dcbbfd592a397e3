//! The one rule a replayable command's JSON payload follows on every engine, checked
//! where the payload is accepted: at most [`MAX_PAYLOAD_DEPTH`] levels of nesting and at
//! most [`MAX_PAYLOAD_BYTES`] of serialized JSON.
//!
//! A payload is stored (SQLite, Redis) and read back later, possibly by another process
//! or language; JSON readers stop at some depth (serde_json at 128), so a deeper payload
//! accepted now would be unreadable at the next start. Refusing it at submit keeps every
//! acknowledged command recoverable.

use std::io;

use serde_json::Value;

use crate::error::{LaneError, Result};

/// The deepest nesting of arrays and objects a payload may have: `1` is `[1]` or
/// `{"a": 1}`, a scalar is `0`. Below serde_json's reading limit of 128, with room to
/// wrap a payload in an envelope.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

/// The largest payload, as compact serialized JSON: 16 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Checks `value` against [`MAX_PAYLOAD_DEPTH`] and [`MAX_PAYLOAD_BYTES`]; the error
/// ([`LaneError::InvalidInput`]) names the limit crossed and what to do.
///
/// The walk is iterative (a value nested 10,000 levels deep does not overflow the stack)
/// and the size count stops as soon as the limit is passed.
///
/// ```
/// use a3s_lane::{MAX_PAYLOAD_DEPTH, check_payload};
/// use serde_json::{Value, json};
///
/// assert!(check_payload(&json!({"user": 7, "tags": ["a", "b"]})).is_ok());
/// let mut deep = json!(1);
/// for _ in 0..=MAX_PAYLOAD_DEPTH {
///     deep = Value::Array(vec![deep]);
/// }
/// let error = check_payload(&deep).unwrap_err().to_string();
/// assert!(error.contains("MAX_PAYLOAD_DEPTH"), "{error}");
/// ```
pub fn check_payload(value: &Value) -> Result<()> {
    // Within both limits (a number is not: with `arbitrary_precision` it is text).
    if matches!(value, Value::Null | Value::Bool(_)) {
        return Ok(());
    }
    let depth = depth_beyond(value, MAX_PAYLOAD_DEPTH);
    if depth > MAX_PAYLOAD_DEPTH {
        return Err(LaneError::InvalidInput(format!(
            "the payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep (arrays and objects \
             inside each other), past MAX_PAYLOAD_DEPTH; a stored payload must be readable \
             again, so flatten it or store the deep part elsewhere and pass a reference"
        )));
    }
    // Depth is bounded now, so serializing (which recurses) is safe.
    let mut counter = ByteCounter { bytes: 0 };
    if serde_json::to_writer(&mut counter, value).is_err() || counter.bytes > MAX_PAYLOAD_BYTES {
        return Err(LaneError::InvalidInput(format!(
            "the payload is larger than MAX_PAYLOAD_BYTES ({MAX_PAYLOAD_BYTES} bytes of JSON); \
             store large data elsewhere (a file, an object store) and pass a reference"
        )));
    }
    Ok(())
}

/// The nesting depth of `value`, or any number above `limit` once the walk passes it.
fn depth_beyond(value: &Value, limit: usize) -> usize {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return 0;
    }
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let depth = depth + 1;
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, depth))),
            Value::Object(fields) => stack.extend(fields.values().map(|child| (child, depth))),
            _ => continue,
        }
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
    }
    deepest
}

/// Counts serialized bytes, failing once past the limit so a huge value stops early.
struct ByteCounter {
    bytes: usize,
}

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len());
        if self.bytes > MAX_PAYLOAD_BYTES {
            return Err(io::Error::other("payload too large"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Takes a value apart without recursion: dropping a refused, very deep payload the
/// ordinary way recurses once per level and could overflow the stack.
pub(crate) fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => stack.extend(fields.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut value = json!("leaf");
        for level in 0..depth {
            value = if level % 2 == 0 {
                Value::Array(vec![value])
            } else {
                // Not json!: it would serialize the inner value again, recursively.
                Value::Object(serde_json::Map::from_iter([("k".to_owned(), value)]))
            };
        }
        value
    }

    #[test]
    fn depth_is_counted_in_levels_of_arrays_and_objects() {
        assert_eq!(depth_beyond(&json!(1), 100), 0);
        assert_eq!(depth_beyond(&json!([]), 100), 1);
        assert_eq!(depth_beyond(&json!({"a": [1, {"b": 2}]}), 100), 3);
        let value = nested(MAX_PAYLOAD_DEPTH);
        assert_eq!(depth_beyond(&value, MAX_PAYLOAD_DEPTH), MAX_PAYLOAD_DEPTH);
        assert!(check_payload(&value).is_ok());
        let error = check_payload(&nested(MAX_PAYLOAD_DEPTH + 1)).unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)));
        assert!(error.to_string().contains("MAX_PAYLOAD_DEPTH"), "{error}");
    }

    #[test]
    fn a_very_deep_value_is_refused_and_taken_apart_without_recursion() {
        // Run on a small stack: recursion per level would overflow it.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let value = nested(100_000);
                assert!(check_payload(&value).is_err());
                dismantle(value);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn size_is_counted_as_compact_json() {
        // A string of n bytes serializes to n + 2 (its quotes).
        let fits = Value::String("x".repeat(MAX_PAYLOAD_BYTES - 2));
        assert!(check_payload(&fits).is_ok());
        let over = Value::String("x".repeat(MAX_PAYLOAD_BYTES - 1));
        let error = check_payload(&over).unwrap_err().to_string();
        assert!(error.contains("MAX_PAYLOAD_BYTES"), "{error}");
    }
}
