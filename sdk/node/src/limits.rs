//! The `rateLimit` and `priorityBoost` lane options: checked field by field and turned
//! into the Rust crate's [`RateLimitConfig`] and [`PriorityBoostConfig`]. The same
//! `rateLimit` shapes serve `Lane` lanes and `RedisQueue` lanes.
//!
//! The `#[napi(object)]` structs and type aliases below only describe the accepted shapes
//! in `index.d.ts`; the parsers read the same field names from the inspected value.

use a3s_lane::{PriorityBoostConfig, RateLimitConfig};
use napi::bindgen_prelude::{Either3, Either5};
use napi_derive::napi;

use crate::config::{Fields, Input, integer, millis};
use crate::error::JsFailure;

/// `{ perSecond: n }`: at most `n` starts per second (a token bucket of `n` permits, so
/// `n` may start at once after a quiet spell).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct PerSecondLimit {
    /// Permits per second (at least 1).
    pub per_second: u32,
}

/// `{ perMinute: n }`: at most `n` starts per minute (a token bucket of `n` permits).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct PerMinuteLimit {
    /// Permits per minute (at least 1).
    pub per_minute: u32,
}

/// `{ perHour: n }`: at most `n` starts per hour (a token bucket of `n` permits).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct PerHourLimit {
    /// Permits per hour (at least 1).
    pub per_hour: u32,
}

/// `{ tokenBucket: { rate, periodMs, burst } }`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct TokenBucketLimit {
    /// The bucket.
    pub token_bucket: TokenBucketOptions,
}

/// A token bucket: permits come back continuously, `rate` per `periodMs` (one every
/// `periodMs / rate`), and at most `burst` are held.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct TokenBucketOptions {
    /// Permits added per `periodMs` (at least 1).
    pub rate: u32,
    /// The period `rate` refers to, in milliseconds (more than 0).
    pub period_ms: f64,
    /// How many commands may start at once after a quiet spell (at least 1; default
    /// `rate`). 1 spaces starts evenly.
    pub burst: Option<u32>,
}

/// `{ slidingWindow: { limit, windowMs } }`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SlidingWindowLimit {
    /// The window.
    pub sliding_window: SlidingWindowOptions,
}

/// At most `limit` starts within any window of `windowMs` (memory grows with `limit`).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct SlidingWindowOptions {
    /// Starts allowed per window (at least 1).
    pub limit: u32,
    /// The window's length in milliseconds (more than 0).
    pub window_ms: f64,
}

/// How fast a lane may start commands: exactly one of the shapes. A lane held back by
/// its limit shows `throttled: true` in its stats and starts again when a permit is due
/// (no polling).
#[napi]
pub type RateLimitOptions =
    Either5<PerSecondLimit, PerMinuteLimit, PerHourLimit, TokenBucketLimit, SlidingWindowLimit>;

/// `{ standard: deadlineMs }`: boost by 1, 2, 3 and 4 levels when 75%, 50%, 25% and 10% of
/// the deadline remain; priority 0 past the deadline.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct StandardBoost {
    /// The deadline in milliseconds, counted from when the command was queued.
    pub standard: f64,
}

/// `{ aggressive: deadlineMs }`: boost by 2, 4, 6 and 8 levels when 80%, 60%, 40% and 20%
/// of the deadline remain; priority 0 past the deadline.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct AggressiveBoost {
    /// The deadline in milliseconds, counted from when the command was queued.
    pub aggressive: f64,
}

/// `{ deadlineMs, steps }`: your own steps; priority 0 past the deadline.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct DeadlineBoost {
    /// The deadline in milliseconds, counted from when the command was queued.
    pub deadline_ms: f64,
    /// Boost steps; the largest boost whose step applies wins. None: only the deadline.
    pub steps: Option<Vec<BoostStep>>,
}

/// One step of a priority boost: once at most `beforeDeadlineMs` is left before the
/// deadline, the lane's priority number is lowered by `boost` (not below 0).
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct BoostStep {
    /// Time left before the deadline, in milliseconds (more than 0, at most the deadline;
    /// the deadline itself boosts from the moment a command is queued).
    pub before_deadline_ms: f64,
    /// Levels to boost by, 1 to 255.
    pub boost: u32,
}

/// How a lane's priority rises as its oldest pending command waits: exactly one of the
/// shapes. The boost is computed when the scheduler picks a lane (no timer per command)
/// and shows as `effectivePriority` in the lane's stats.
#[napi]
pub type PriorityBoostOptions = Either3<StandardBoost, AggressiveBoost, DeadlineBoost>;

const RATE_LIMIT_KEYS: [&str; 5] = [
    "perSecond",
    "perMinute",
    "perHour",
    "tokenBucket",
    "slidingWindow",
];
const RATE_LIMIT_SHAPES: &str = "{ perSecond: n }, { perMinute: n }, { perHour: n }, \
     { tokenBucket: { rate, periodMs, burst } } or { slidingWindow: { limit, windowMs } }";

/// Parses a `rateLimit` option.
pub fn parse_rate_limit(path: &str, input: &Input) -> Result<RateLimitConfig, JsFailure> {
    let mut fields = Fields::new(
        path,
        input,
        &format!("an object naming one limit: {RATE_LIMIT_SHAPES}"),
        &RATE_LIMIT_KEYS,
    )?;
    let given: Vec<(&str, String, &Input)> = RATE_LIMIT_KEYS
        .iter()
        .filter_map(|key| fields.take(key).map(|(path, value)| (*key, path, value)))
        .collect();
    let (key, path, value) = match given.as_slice() {
        [one] => one,
        [] => {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!(
                    "{path} must name one limit: {RATE_LIMIT_SHAPES} (leave rateLimit out for no limit)"
                ),
            ));
        }
        [(first, ..), (second, ..), ..] => {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!("{path} names both '{first}' and '{second}'; give exactly one limit"),
            ));
        }
    };
    Ok(match *key {
        "perSecond" => RateLimitConfig::per_second(rate(path, value)?),
        "perMinute" => RateLimitConfig::per_minute(rate(path, value)?),
        "perHour" => RateLimitConfig::per_hour(rate(path, value)?),
        "tokenBucket" => {
            let mut bucket = Fields::new(
                path.as_str(),
                value,
                "an object like { rate: 10, periodMs: 1000, burst: 10 }",
                &["rate", "periodMs", "burst"],
            )?;
            let (rate_path, rate_value) = required(&mut bucket, path, "rate", "at least 1")?;
            let rate = rate(&rate_path, rate_value)?;
            let (period_path, period) =
                required(&mut bucket, path, "periodMs", "milliseconds, more than 0")?;
            let period = millis(&period_path, period, true)?;
            let burst = match bucket.take("burst") {
                Some((burst_path, burst)) => {
                    integer(&burst_path, burst, 1, u32::MAX.into())? as u32
                }
                None => rate,
            };
            RateLimitConfig::token_bucket(rate, period, burst)
        }
        _ => {
            let mut window = Fields::new(
                path.as_str(),
                value,
                "an object like { limit: 10, windowMs: 1000 }",
                &["limit", "windowMs"],
            )?;
            let (limit_path, limit) = required(&mut window, path, "limit", "at least 1")?;
            let limit = rate(&limit_path, limit)?;
            let (window_path, length) =
                required(&mut window, path, "windowMs", "milliseconds, more than 0")?;
            RateLimitConfig::sliding_window(limit, millis(&window_path, length, true)?)
        }
    })
}

/// A required field of `fields` (whose path is `path`), described by `what` if missing.
fn required<'a>(
    fields: &mut Fields<'a>,
    path: &str,
    key: &str,
    what: &str,
) -> Result<(String, &'a Input), JsFailure> {
    fields.take(key).ok_or_else(|| {
        JsFailure::type_error("CONFIG", format!("{path}.{key} is required ({what})"))
    })
}

/// A number of permits: a whole number from 1 up; 0 is refused with what to do instead.
fn rate(path: &str, input: &Input) -> Result<u32, JsFailure> {
    if matches!(input, Input::Number(n) if *n == 0.0) {
        return Err(JsFailure::range_error(
            "CONFIG",
            format!(
                "{path} is 0, which would never start a command; leave rateLimit out for no \
                 limit, or use pauseLane() to stop the lane"
            ),
        ));
    }
    Ok(integer(path, input, 1, u32::MAX.into())? as u32)
}

/// Parses a `priorityBoost` option.
pub fn parse_priority_boost(path: &str, input: &Input) -> Result<PriorityBoostConfig, JsFailure> {
    const SHAPES: &str = "{ standard: deadlineMs }, { aggressive: deadlineMs } or \
         { deadlineMs, steps: [{ beforeDeadlineMs, boost }] }";
    let mut fields = Fields::new(
        path,
        input,
        &format!("an object, one of {SHAPES}"),
        &["standard", "aggressive", "deadlineMs", "steps"],
    )?;
    let standard = fields.take("standard");
    let aggressive = fields.take("aggressive");
    let deadline = fields.take("deadlineMs");
    let steps = fields.take("steps");
    let chosen: Vec<&str> = [
        standard.as_ref().map(|_| "standard"),
        aggressive.as_ref().map(|_| "aggressive"),
        deadline.as_ref().map(|_| "deadlineMs"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [first, second, ..] = chosen.as_slice() {
        return Err(JsFailure::type_error(
            "CONFIG",
            format!("{path} names both '{first}' and '{second}'; give one of {SHAPES}"),
        ));
    }
    let config = match (standard, aggressive, deadline) {
        (Some((path, value)), None, None) => {
            no_steps(&steps, "standard")?;
            PriorityBoostConfig::standard(millis(&path, value, true)?)
        }
        (None, Some((path, value)), None) => {
            no_steps(&steps, "aggressive")?;
            PriorityBoostConfig::aggressive(millis(&path, value, true)?)
        }
        (None, None, Some((deadline_path, value))) => {
            let deadline = millis(&deadline_path, value, true)?;
            let mut config = PriorityBoostConfig::new(deadline);
            if let Some((steps_path, steps)) = steps {
                let Input::Array(items) = steps else {
                    return Err(JsFailure::type_error(
                        "CONFIG",
                        format!(
                            "{steps_path} must be an array like [{{ beforeDeadlineMs: 1000, boost: 2 }}], got {}",
                            steps.describe()
                        ),
                    ));
                };
                for (index, item) in items.iter().enumerate() {
                    let step_path = format!("{steps_path}[{index}]");
                    let mut step = Fields::new(
                        step_path.as_str(),
                        item,
                        "an object like { beforeDeadlineMs: 1000, boost: 2 }",
                        &["beforeDeadlineMs", "boost"],
                    )?;
                    let (before_path, before) = required(
                        &mut step,
                        &step_path,
                        "beforeDeadlineMs",
                        "milliseconds before the deadline",
                    )?;
                    let before = millis(&before_path, before, true)?;
                    if before > deadline {
                        return Err(JsFailure::range_error(
                            "CONFIG",
                            format!(
                                "{before_path} ({before:?}) is longer than the deadline \
                                 ({deadline:?}); use at most the deadline, which boosts from \
                                 the moment a command is queued"
                            ),
                        ));
                    }
                    let (boost_path, boost) =
                        required(&mut step, &step_path, "boost", "levels, 1 to 255")?;
                    let boost = integer(&boost_path, boost, 1, 255)? as u8;
                    config = config.with_boost(before, boost);
                }
            }
            config
        }
        _ => {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!("{path} must be one of {SHAPES} (leave priorityBoost out for no boosting)"),
            ));
        }
    };
    // The checks above cover every rule; this keeps the Rust crate's word final.
    config
        .validate()
        .map_err(|error| JsFailure::range_error("CONFIG", format!("{path}: {error}")))?;
    Ok(config)
}

fn no_steps(steps: &Option<(String, &Input)>, shape: &str) -> Result<(), JsFailure> {
    match steps {
        Some((path, _)) => Err(JsFailure::type_error(
            "CONFIG",
            format!(
                "{path} goes with deadlineMs, not with '{shape}' (which has its own steps); \
                 use {{ deadlineMs, steps }} for your own steps"
            ),
        )),
        None => Ok(()),
    }
}
