//! Lane and queue options: what JavaScript passes to `new Lane(lanes, options)`, checked
//! field by field, turned into the core's [`LaneConfig`]s and builder settings.
//!
//! Every value is checked at the boundary: a wrong type is a `TypeError`, a value out of
//! range a `RangeError`, an unknown key a `TypeError` naming the known ones; nothing is
//! clamped, rounded or ignored. The `#[napi(object)]` structs below describe the accepted
//! shapes in the generated `index.d.ts`; the parser reads the same field names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use a3s_lane::{DEFAULT_LANES, LaneConfig, LocalSyncMode, QueueMetrics, RetryJitter, RetryPolicy};
use napi_derive::napi;
use serde_json::Value;

use crate::error::JsFailure;
use crate::limits::{parse_priority_boost, parse_rate_limit};

/// Options of one lane (`new Lane({ query: { priority: 2, maxConcurrency: 10 } })`).
///
/// For the six default lanes (`system` 0/5, `control` 1/3, `query` 2/10, `session` 3/5,
/// `skill` 4/3, `prompt` 5/2 as priority/maxConcurrency) `priority` and `maxConcurrency`
/// default to those values; other lanes must give both.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct LaneOptions {
    /// 0 (most urgent) to 255; lower numbers run first.
    pub priority: Option<u32>,
    /// Slots reserved for this lane under a global `maxConcurrency` (default 1).
    pub min_concurrency: Option<u32>,
    /// At most this many of the lane's commands run at once (at least 1).
    pub max_concurrency: Option<u32>,
    /// A run that takes longer fails with code `TIMEOUT` (and its `ctx.signal` aborts).
    pub timeout_ms: Option<f64>,
    /// How failed commands are retried; no retries when absent.
    pub retry: Option<RetryOptions>,
    /// Emit `queue.lane.pressure` when this many commands are pending, and
    /// `queue.lane.idle` when the lane empties again.
    pub pressure_threshold: Option<u32>,
    /// After a cancel, a running handler has this long to settle by itself (its
    /// `ctx.signal` is aborted at once) before it is abandoned. Default 1000.
    pub cancel_grace_ms: Option<f64>,
    /// How fast the lane may start commands: `{ perSecond: n }`, `{ perMinute: n }`,
    /// `{ perHour: n }` (a token bucket holding `n` permits),
    /// `{ tokenBucket: { rate, periodMs, burst } }` or
    /// `{ slidingWindow: { limit, windowMs } }`. No limit when absent.
    #[napi(ts_type = "RateLimitOptions")]
    pub rate_limit: Option<Value>,
    /// Raises the lane's priority as its oldest pending command waits:
    /// `{ standard: deadlineMs }`, `{ aggressive: deadlineMs }` or
    /// `{ deadlineMs, steps: [{ beforeDeadlineMs, boost }] }`. The boosted priority
    /// shows in `stats().lanes[id].effectivePriority`.
    #[napi(ts_type = "PriorityBoostOptions")]
    pub priority_boost: Option<Value>,
}

/// A lane's retry policy: after the n-th failure the command runs again after
/// `min(initialDelayMs * multiplier^(n-1), maxDelayMs)`, at the front of its lane,
/// as long as n <= `maxRetries`. A handler error with `retryable: false` is never retried.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RetryOptions {
    /// How many retries after the first run.
    pub max_retries: u32,
    /// The delay before the first retry (default 100).
    pub initial_delay_ms: Option<f64>,
    /// The factor between one delay and the next, at least 1 (default 2; 1 for a fixed delay).
    pub multiplier: Option<f64>,
    /// The longest delay (default 30000).
    pub max_delay_ms: Option<f64>,
    /// `'none'` (default), `'full'` (random between 0 and the delay) or `'equal'` (half
    /// the delay plus a random part up to the other half).
    #[napi(ts_type = "'none' | 'full' | 'equal'")]
    pub jitter: Option<String>,
}

/// Options of the whole queue (`new Lane(lanes, options)`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// A global budget: at most this many commands run at once over all lanes; each
    /// lane's `minConcurrency` slots are reserved for it, the rest is shared by priority.
    /// `null` or absent: no global budget.
    #[napi(ts_type = "number | null")]
    pub max_concurrency: Option<u32>,
    /// How many events a slow listener or iterator may fall behind before it misses
    /// some (it is told how many by a `queue.events.lagged` event). Default 1024.
    pub event_capacity: Option<u32>,
    /// Keep up to this many dead letters (commands that failed for good), oldest
    /// evicted first. Dead letters are not kept when absent.
    pub dead_letter_capacity: Option<u32>,
    /// Durable storage: commands are written to disk before `submit` accepts them and
    /// recovered by `start()` after a crash or restart.
    pub storage: Option<StorageOptions>,
    /// Record metrics (counters, gauges, latency histograms per lane), read with
    /// `lane.metrics()` and `lane.metricsPrometheus()`. Off by default.
    pub metrics: Option<bool>,
}

/// Durable storage in a directory (an SQLite database, `lane.db`, in WAL mode).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// The directory; it is created if its parent exists.
    pub path: String,
    /// `'full'` (default: fsync at every commit, survives power loss) or `'normal'`
    /// (survives a process crash, faster on slow disks).
    #[napi(ts_type = "'full' | 'normal'")]
    pub sync: Option<String>,
}

/// A value passed from JavaScript, tagged by `runtime.js`'s `inspect` so that every
/// type can be told apart (NaN, functions and class instances included).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `undefined`
    Undefined,
    /// `null`
    Null,
    /// A boolean.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// `NaN`, `Infinity` or `-Infinity`.
    NonFinite(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Input>),
    /// A plain object, keys in order.
    Object(Vec<(String, Input)>),
    /// Anything else, described ("a function", "an instance of Date").
    Other(String),
}

impl Input {
    /// Decodes the JSON text made by `runtime.js`'s `inspect`.
    pub fn from_inspected(json: &str) -> Result<Self, JsFailure> {
        let value: Value = serde_json::from_str(json).map_err(|error| {
            JsFailure::error("QUEUE", format!("internal: bad inspected value: {error}"))
        })?;
        Ok(Self::decode(&value))
    }

    fn decode(value: &Value) -> Self {
        let tag = value.get(0).and_then(Value::as_str).unwrap_or("x");
        let body = value.get(1);
        match (tag, body) {
            ("u", _) => Self::Undefined,
            ("z", _) => Self::Null,
            ("b", Some(Value::Bool(b))) => Self::Bool(*b),
            ("n", Some(Value::Number(n))) => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
            ("n", Some(Value::String(s))) => Self::NonFinite(s.clone()),
            ("s", Some(Value::String(s))) => Self::String(s.clone()),
            ("a", Some(Value::Array(items))) => {
                Self::Array(items.iter().map(Self::decode).collect())
            }
            ("o", Some(Value::Array(entries))) => Self::Object(
                entries
                    .iter()
                    .filter_map(|entry| {
                        let key = entry.get(0)?.as_str()?.to_owned();
                        Some((key, Self::decode(entry.get(1)?)))
                    })
                    .collect(),
            ),
            (_, Some(Value::String(description))) => Self::Other(description.clone()),
            _ => Self::Other("an unsupported value".into()),
        }
    }

    /// Whether the value is `undefined`.
    pub fn is_undefined(&self) -> bool {
        matches!(self, Self::Undefined)
    }

    /// How the value is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Undefined => "undefined".into(),
            Self::Null => "null".into(),
            Self::Bool(b) => format!("{b}"),
            Self::Number(n) => format!("{n}"),
            Self::NonFinite(s) => s.clone(),
            Self::String(s) => format!("the string {s:?}"),
            Self::Array(_) => "an array".into(),
            Self::Object(_) => "an object".into(),
            Self::Other(description) => description.clone(),
        }
    }
}

/// The fields of one options object, read by name; leftovers are unknown keys.
pub(crate) struct Fields<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Input)>,
}

impl<'a> Fields<'a> {
    /// The fields of `input`, which must be an object whose keys are all in `known`
    /// (an unknown key is most often a typo, so it is reported before anything else).
    pub(crate) fn new(
        path: impl Into<String>,
        input: &'a Input,
        what: &str,
        known: &[&str],
    ) -> Result<Self, JsFailure> {
        let path = path.into();
        let Input::Object(entries) = input else {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!("{path} must be {what}, got {}", input.describe()),
            ));
        };
        if let Some((key, _)) = entries
            .iter()
            .find(|(key, value)| !value.is_undefined() && !known.contains(&key.as_str()))
        {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!(
                    "{path}: unknown option '{key}'; known options: {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Self {
            path,
            entries: entries.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        })
    }

    /// Takes a field; `undefined` counts as absent.
    pub(crate) fn take(&mut self, key: &str) -> Option<(String, &'a Input)> {
        let index = self.entries.iter().position(|(k, _)| *k == key)?;
        let (_, value) = self.entries.remove(index);
        (!value.is_undefined()).then(|| (format!("{}.{key}", self.path), value))
    }
}

pub(crate) fn number(path: &str, input: &Input) -> Result<f64, JsFailure> {
    match input {
        Input::Number(n) => Ok(*n),
        Input::NonFinite(s) => Err(JsFailure::range_error(
            "CONFIG",
            format!("{path} must be a finite number, got {s}"),
        )),
        other => Err(JsFailure::type_error(
            "CONFIG",
            format!("{path} must be a number, got {}", other.describe()),
        )),
    }
}

/// An integer in `min..=max`; fractions and values out of range are errors, never rounded.
pub(crate) fn integer(path: &str, input: &Input, min: u64, max: u64) -> Result<u64, JsFailure> {
    let n = number(path, input)?;
    if n.fract() != 0.0 {
        return Err(JsFailure::range_error(
            "CONFIG",
            format!("{path} must be a whole number, got {n}"),
        ));
    }
    if n < min as f64 || n > max as f64 {
        return Err(JsFailure::range_error(
            "CONFIG",
            format!("{path} must be between {min} and {max}, got {n}"),
        ));
    }
    Ok(n as u64)
}

/// Milliseconds as a duration; `positive` rejects zero.
pub(crate) fn millis(path: &str, input: &Input, positive: bool) -> Result<Duration, JsFailure> {
    let n = number(path, input)?;
    if n < 0.0 || (positive && n == 0.0) {
        let expected = if positive {
            "greater than 0"
        } else {
            "0 or more"
        };
        return Err(JsFailure::range_error(
            "CONFIG",
            format!("{path} must be {expected} milliseconds, got {n}"),
        ));
    }
    Duration::try_from_secs_f64(n / 1000.0).map_err(|_| {
        JsFailure::range_error("CONFIG", format!("{path} is too large: {n} milliseconds"))
    })
}

pub(crate) fn string<'a>(path: &str, input: &'a Input) -> Result<&'a str, JsFailure> {
    match input {
        Input::String(s) => Ok(s),
        other => Err(JsFailure::type_error(
            "CONFIG",
            format!("{path} must be a string, got {}", other.describe()),
        )),
    }
}

pub(crate) fn choice<'a>(
    path: &str,
    input: &Input,
    choices: &[&'a str],
) -> Result<&'a str, JsFailure> {
    let value = string(path, input)?;
    choices
        .iter()
        .copied()
        .find(|c| *c == value)
        .ok_or_else(|| {
            JsFailure::range_error(
                "CONFIG",
                format!(
                    "{path} must be one of '{}', got {value:?}",
                    choices.join("', '")
                ),
            )
        })
}

/// One lane, ready for `QueueManagerBuilder::with_lane`.
#[derive(Debug, Clone)]
pub struct LaneSetup {
    /// The lane id.
    pub id: String,
    /// Its configuration.
    pub config: LaneConfig,
    /// Its priority.
    pub priority: u8,
}

/// Durable storage settings.
#[derive(Debug, Clone)]
pub struct StorageSetup {
    /// The directory.
    pub path: PathBuf,
    /// When SQLite syncs.
    pub sync: LocalSyncMode,
}

/// Everything `new Lane(lanes, options)` asked for, checked.
#[derive(Debug, Clone)]
pub struct QueueSetup {
    /// The lanes, in the order given.
    pub lanes: Vec<LaneSetup>,
    /// The global budget.
    pub max_concurrency: Option<usize>,
    /// The event buffer of each subscriber.
    pub event_capacity: usize,
    /// How many dead letters to keep.
    pub dead_letter_capacity: Option<usize>,
    /// Durable storage.
    pub storage: Option<StorageSetup>,
    /// Each lane's timeout, to name it when a handler's `ctx.signal` is aborted.
    pub timeouts: HashMap<String, Duration>,
    /// The queue's metrics, with `{ metrics: true }`.
    pub metrics: Option<QueueMetrics>,
}

/// The default number of events a subscriber may fall behind.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

const LANE_KEYS: [&str; 9] = [
    "priority",
    "minConcurrency",
    "maxConcurrency",
    "timeoutMs",
    "retry",
    "pressureThreshold",
    "cancelGraceMs",
    "rateLimit",
    "priorityBoost",
];

const RETRY_KEYS: [&str; 5] = [
    "maxRetries",
    "initialDelayMs",
    "multiplier",
    "maxDelayMs",
    "jitter",
];

const QUEUE_KEYS: [&str; 5] = [
    "maxConcurrency",
    "eventCapacity",
    "deadLetterCapacity",
    "storage",
    "metrics",
];

const STORAGE_KEYS: [&str; 2] = ["path", "sync"];

/// Parses `new Lane(lanes, options)`.
pub fn parse_queue(lanes: &Input, options: &Input) -> Result<QueueSetup, JsFailure> {
    let lanes = match lanes {
        Input::Undefined | Input::Null => DEFAULT_LANES
            .iter()
            .map(|(id, priority, max)| LaneSetup {
                id: (*id).to_owned(),
                config: LaneConfig::new(1, *max),
                priority: *priority,
            })
            .collect(),
        Input::Object(entries) => {
            if entries.is_empty() {
                return Err(JsFailure::range_error(
                    "CONFIG",
                    "lanes must name at least one lane, like { query: { priority: 2, maxConcurrency: 10 } } \
                     (or leave it out for the six default lanes)",
                ));
            }
            entries
                .iter()
                .map(|(id, options)| parse_lane(id, options))
                .collect::<Result<Vec<_>, _>>()?
        }
        other => {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!(
                    "lanes must be an object mapping lane ids to lane options, got {}",
                    other.describe()
                ),
            ));
        }
    };
    let mut setup = QueueSetup {
        timeouts: lanes
            .iter()
            .filter_map(|lane| Some((lane.id.clone(), lane.config.timeout?)))
            .collect(),
        lanes,
        max_concurrency: None,
        event_capacity: DEFAULT_EVENT_CAPACITY,
        dead_letter_capacity: None,
        storage: None,
        metrics: None,
    };
    if matches!(options, Input::Undefined | Input::Null) {
        return Ok(setup);
    }
    let mut fields = Fields::new(
        "options",
        options,
        "an object of queue options",
        &QUEUE_KEYS,
    )?;
    if let Some((path, value)) = fields.take("maxConcurrency")
        && !matches!(value, Input::Null)
    {
        setup.max_concurrency = Some(integer(&path, value, 1, u32::MAX.into())? as usize);
    }
    if let Some((path, value)) = fields.take("eventCapacity") {
        setup.event_capacity = integer(&path, value, 1, 1 << 24)? as usize;
    }
    if let Some((path, value)) = fields.take("deadLetterCapacity") {
        setup.dead_letter_capacity = Some(integer(&path, value, 1, u32::MAX.into())? as usize);
    }
    if let Some((path, value)) = fields.take("storage") {
        setup.storage = Some(parse_storage(&path, value)?);
    }
    if let Some((path, value)) = fields.take("metrics") {
        match value {
            Input::Bool(true) => setup.metrics = Some(QueueMetrics::local()),
            Input::Bool(false) => {}
            other => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!("{path} must be true or false, got {}", other.describe()),
                ));
            }
        }
    }
    Ok(setup)
}

fn parse_lane(id: &str, input: &Input) -> Result<LaneSetup, JsFailure> {
    let path = format!("lanes.{id}");
    if id.is_empty() {
        return Err(JsFailure::range_error(
            "CONFIG",
            "lane ids must not be empty",
        ));
    }
    let mut fields = Fields::new(path.clone(), input, "an object of lane options", &LANE_KEYS)?;
    let default = DEFAULT_LANES.iter().find(|(name, _, _)| *name == id);
    let priority = match fields.take("priority") {
        Some((path, value)) => integer(&path, value, 0, 255)? as u8,
        None => match default {
            Some((_, priority, _)) => *priority,
            None => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!("{path}.priority is required (0 is the most urgent, 255 the least)"),
                ));
            }
        },
    };
    let max = match fields.take("maxConcurrency") {
        Some((path, value)) => integer(&path, value, 1, u32::MAX.into())? as usize,
        None => match default {
            Some((_, _, max)) => *max,
            None => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!("{path}.maxConcurrency is required (at least 1)"),
                ));
            }
        },
    };
    let min = match fields.take("minConcurrency") {
        Some((path, value)) => integer(&path, value, 0, u32::MAX.into())? as usize,
        None => 1.min(max),
    };
    let mut config = LaneConfig::new(min, max);
    if let Some((path, value)) = fields.take("timeoutMs") {
        config = config.with_timeout(millis(&path, value, true)?);
    }
    if let Some((path, value)) = fields.take("cancelGraceMs") {
        config = config.with_cancel_grace(millis(&path, value, false)?);
    }
    if let Some((path, value)) = fields.take("pressureThreshold") {
        config =
            config.with_pressure_threshold(integer(&path, value, 1, u32::MAX.into())? as usize);
    }
    if let Some((path, value)) = fields.take("retry") {
        config = config.with_retry_policy(parse_retry(&path, value)?);
    }
    if let Some((path, value)) = fields.take("rateLimit") {
        config = config.with_rate_limit(parse_rate_limit(&path, value)?);
    }
    if let Some((path, value)) = fields.take("priorityBoost") {
        config = config.with_priority_boost(parse_priority_boost(&path, value)?);
    }
    config
        .validate(id)
        .map_err(|error| JsFailure::range_error("CONFIG", error.to_string()))?;
    Ok(LaneSetup {
        id: id.to_owned(),
        config,
        priority,
    })
}

pub(crate) fn parse_retry(path: &str, input: &Input) -> Result<RetryPolicy, JsFailure> {
    let mut fields = Fields::new(path, input, "an object like { maxRetries: 3 }", &RETRY_KEYS)?;
    let Some((retries_path, retries)) = fields.take("maxRetries") else {
        return Err(JsFailure::type_error(
            "CONFIG",
            format!("{path}.maxRetries is required (0 for no retries)"),
        ));
    };
    let mut builder =
        RetryPolicy::builder()
            .max_retries(integer(&retries_path, retries, 0, u32::MAX.into())? as u32);
    if let Some((path, value)) = fields.take("initialDelayMs") {
        builder = builder.initial_delay(millis(&path, value, false)?);
    }
    if let Some((path, value)) = fields.take("multiplier") {
        let multiplier = number(&path, value)?;
        if multiplier < 1.0 {
            return Err(JsFailure::range_error(
                "CONFIG",
                format!("{path} must be at least 1 (1 for a fixed delay), got {multiplier}"),
            ));
        }
        builder = builder.multiplier(multiplier);
    }
    if let Some((path, value)) = fields.take("maxDelayMs") {
        builder = builder.max_delay(millis(&path, value, false)?);
    }
    if let Some((path, value)) = fields.take("jitter") {
        builder = builder.jitter(match choice(&path, value, &["none", "full", "equal"])? {
            "full" => RetryJitter::Full,
            "equal" => RetryJitter::Equal,
            _ => RetryJitter::None,
        });
    }
    builder
        .build()
        .map_err(|error| JsFailure::range_error("CONFIG", format!("{path}: {error}")))
}

fn parse_storage(path: &str, input: &Input) -> Result<StorageSetup, JsFailure> {
    let mut fields = Fields::new(
        path,
        input,
        "an object like { path: './queue-data' }",
        &STORAGE_KEYS,
    )?;
    let Some((dir_path, dir)) = fields.take("path") else {
        return Err(JsFailure::type_error(
            "CONFIG",
            format!("{path}.path is required: the directory of the durable store"),
        ));
    };
    let dir = string(&dir_path, dir)?;
    if dir.is_empty() {
        return Err(JsFailure::range_error(
            "CONFIG",
            format!("{dir_path} must not be empty"),
        ));
    }
    let sync = match fields.take("sync") {
        Some((path, value)) => match choice(&path, value, &["full", "normal"])? {
            "normal" => LocalSyncMode::Normal,
            _ => LocalSyncMode::Full,
        },
        None => LocalSyncMode::Full,
    };
    Ok(StorageSetup {
        path: PathBuf::from(dir),
        sync,
    })
}

/// A lane id, command type or event key argument: a non-empty string.
pub fn name_argument(what: &str, input: &Input) -> Result<String, JsFailure> {
    match input {
        Input::String(s) if !s.is_empty() => Ok(s.clone()),
        Input::String(_) => Err(JsFailure::range_error(
            "INVALID_ARGUMENT",
            format!("{what} must not be empty"),
        )),
        other => Err(JsFailure::type_error(
            "INVALID_ARGUMENT",
            format!("{what} must be a string, got {}", other.describe()),
        )),
    }
}
