//! Lifecycle events for JavaScript: `on(key, listener)` and `events()` of a `Lane` or a
//! `RedisQueue`, and `EVENT_KEYS`.
//!
//! While someone listens, the queue holds one subscription to the queue's events and the
//! JavaScript thread reads it (see `runtime.rs`): whenever events are waiting, and before
//! any promise is settled, so a command's events reach the listeners before its promise
//! settles. A JavaScript thread that cannot keep up leaves the events in the queue's
//! bounded buffer (`eventCapacity`), and the listeners are told how many they missed by
//! one `queue.events.lagged` event, as Rust subscribers are. Nobody listening costs
//! nothing: the queue builds no event without a subscriber.
//!
//! Payload fields are renamed to camelCase (`lane_id` becomes `laneId`).

use a3s_lane::{LaneEvent as CoreEvent, event_keys};
use napi::bindgen_prelude::ToNapiValue;
use napi::sys;
use napi_derive::napi;
use serde_json::{Map, Value};

use crate::convert::{FromJs, Given, Read};
use crate::error::JsFailure;

// `LaneEvent<K>` and `LaneEvents` are written in `index.d.ts.header` (typed per key).

/// Every event key a queue emits (`Lane.on`, `events(keys)`), in the order of the
/// lifecycle: the core's `event_keys`, the same 20 in Rust, Python and Node. Frozen.
#[napi]
pub const EVENT_KEYS: EventKeyList = EventKeyList;

/// The value of [`EVENT_KEYS`]: [`KEYS`] as a frozen array.
#[derive(Debug, Clone, Copy)]
pub struct EventKeyList;

impl ToNapiValue for EventKeyList {
    unsafe fn to_napi_value(env: sys::napi_env, _: Self) -> napi::Result<sys::napi_value> {
        let raw = unsafe { Vec::<&str>::to_napi_value(env, KEYS.to_vec()) }?;
        napi::check_status!(unsafe { sys::napi_object_freeze(env, raw) })?;
        Ok(raw)
    }
}

/// Every event key the queue emits (the core's list).
pub const KEYS: [&str; event_keys::ALL.len()] = event_keys::ALL;

/// Checks an event key given to `on`, `off` or `events` (`'*'` means every key).
pub fn check_key(key: &str, allow_wildcard: bool) -> Result<(), String> {
    if KEYS.contains(&key) || (allow_wildcard && key == "*") {
        return Ok(());
    }
    let wildcard = if allow_wildcard { "'*' or " } else { "" };
    Err(format!(
        "unknown event key '{key}'; use {wildcard}one of: {}",
        KEYS.join(", ")
    ))
}

/// The `keys` argument of `events(keys)`: one event key or an array of them.
#[derive(Debug, Clone)]
pub struct EventKeys(Vec<String>);

impl FromJs for EventKeys {
    const EXPECTED: &'static str = "a string or an array of strings";

    fn from_js(value: Given) -> Read<Self> {
        if value.kind()? == napi::ValueType::String {
            return Ok(Ok(Self(vec![value.to()?])));
        }
        if !value.is_array()? {
            return value.unexpected();
        }
        let mut keys = Vec::new();
        for item in value.items()? {
            if item.kind()? != napi::ValueType::String {
                return item.wrong("strings");
            }
            keys.push(item.to()?);
        }
        Ok(Ok(Self(keys)))
    }
}

impl EventKeys {
    /// The keys, each one the queue emits (`'*'` is not a key here).
    pub fn checked(self) -> Result<Vec<String>, JsFailure> {
        for key in &self.0 {
            check_key(key, false)
                .map_err(|message| JsFailure::range_error("INVALID_ARGUMENT", message))?;
        }
        Ok(self.0)
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The JavaScript shape of an event.
pub fn to_js_shape(event: CoreEvent) -> Value {
    let payload = match event.payload {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (camel_case(&key), value))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    };
    serde_json::json!({ "key": event.key, "timestamp": event.timestamp, "payload": payload })
}
