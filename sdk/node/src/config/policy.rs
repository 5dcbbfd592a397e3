//! The `rateLimit` and `priorityBoost` lane options, turned into the core's
//! [`RateLimitConfig`] and [`PriorityBoostConfig`]. Each names exactly one shape; the
//! values are checked by the core when the lane is declared.

use a3s_lane::{PriorityBoostConfig, RateLimitConfig};
use napi_derive::napi;

use crate::convert::{At, FromJs, Given, Js, Read, options_object};
use crate::error::JsFailure;

const RATE_LIMIT_SHAPES: &str = "{ perSecond: n }, { perMinute: n }, { perHour: n }, \
     { tokenBucket: { rate, periodMs, burst } } or { slidingWindow: { limit, windowMs } }";

/// How fast a lane may start commands: exactly one of `{ perSecond: n }`,
/// `{ perMinute: n }`, `{ perHour: n }`, `{ tokenBucket: { rate, periodMs, burst } }` or
/// `{ slidingWindow: { limit, windowMs } }`. A lane held back by its limit shows
/// `throttled: true` in its stats and starts again when a permit is due (no polling).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct RateLimitOptions {
    /// At most `n` starts per second (a token bucket of `n` permits, so `n` may start at
    /// once after a quiet spell).
    #[napi(ts_type = "number")]
    pub per_second: Option<Js<f64>>,
    /// At most `n` starts per minute (a token bucket of `n` permits).
    #[napi(ts_type = "number")]
    pub per_minute: Option<Js<f64>>,
    /// At most `n` starts per hour (a token bucket of `n` permits).
    #[napi(ts_type = "number")]
    pub per_hour: Option<Js<f64>>,
    /// A token bucket of your own.
    #[napi(ts_type = "TokenBucketOptions")]
    pub token_bucket: Option<Js<TokenBucketOptions>>,
    /// At most `limit` starts within any window of `windowMs`.
    #[napi(ts_type = "SlidingWindowOptions")]
    pub sliding_window: Option<Js<SlidingWindowOptions>>,
}

options_object!(
    RateLimitOptions,
    "an object naming one limit: { perSecond: n }, { perMinute: n }, { perHour: n }, \
     { tokenBucket: { rate, periodMs, burst } } or { slidingWindow: { limit, windowMs } }",
    [
        "perSecond",
        "perMinute",
        "perHour",
        "tokenBucket",
        "slidingWindow"
    ]
);

/// A token bucket: permits come back continuously, `rate` per `periodMs` (one every
/// `periodMs / rate`), and at most `burst` are held.
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone)]
pub struct TokenBucketOptions {
    /// Permits added per `periodMs` (at least 1).
    #[napi(ts_type = "number")]
    pub rate: Js<f64>,
    /// The period `rate` refers to, in milliseconds (more than 0).
    #[napi(ts_type = "number")]
    pub period_ms: Js<f64>,
    /// How many commands may start at once after a quiet spell (at least 1; default
    /// `rate`). 1 spaces starts evenly.
    #[napi(ts_type = "number")]
    pub burst: Option<Js<f64>>,
}

options_object!(
    TokenBucketOptions,
    "an object like { rate: 10, periodMs: 1000, burst: 10 }",
    ["rate", "periodMs", "burst"],
    required: [
        ("rate", "at least 1"),
        ("periodMs", "milliseconds, more than 0"),
    ]
);

/// At most `limit` starts within any window of `windowMs` (memory grows with `limit`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone)]
pub struct SlidingWindowOptions {
    /// Starts allowed per window (at least 1).
    #[napi(ts_type = "number")]
    pub limit: Js<f64>,
    /// The window's length in milliseconds (more than 0).
    #[napi(ts_type = "number")]
    pub window_ms: Js<f64>,
}

options_object!(
    SlidingWindowOptions,
    "an object like { limit: 10, windowMs: 1000 }",
    ["limit", "windowMs"],
    required: [
        ("limit", "at least 1"),
        ("windowMs", "milliseconds, more than 0"),
    ]
);

const BOOST_SHAPES: &str = "{ standard: deadlineMs }, { aggressive: deadlineMs } or \
     { deadlineMs, steps: [{ beforeDeadlineMs, boost }] }";

/// How a lane's priority rises as its oldest pending command waits: exactly one of
/// `{ standard: deadlineMs }` (boost by 1, 2, 3 and 4 levels when 75%, 50%, 25% and 10%
/// of the deadline remain), `{ aggressive: deadlineMs }` (by 2, 4, 6 and 8 when 80%, 60%,
/// 40% and 20% remain) or `{ deadlineMs, steps }` (your own steps). Past the deadline the
/// lane runs at priority 0. Deadlines count from when the command was queued. The boost is
/// computed when the scheduler picks a lane (no timer per command) and shows as
/// `effectivePriority` in the lane's stats.
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct PriorityBoostOptions {
    /// The deadline of the standard steps, in milliseconds.
    #[napi(ts_type = "number")]
    pub standard: Option<Js<f64>>,
    /// The deadline of the aggressive steps, in milliseconds.
    #[napi(ts_type = "number")]
    pub aggressive: Option<Js<f64>>,
    /// The deadline of your own `steps`, in milliseconds.
    #[napi(ts_type = "number")]
    pub deadline_ms: Option<Js<f64>>,
    /// With `deadlineMs`: the boost steps; the largest boost whose step applies wins.
    /// None: only the deadline.
    #[napi(ts_type = "Array<BoostStep>")]
    pub steps: Option<Js<BoostSteps>>,
}

options_object!(
    PriorityBoostOptions,
    "an object, one of { standard: deadlineMs }, { aggressive: deadlineMs } or \
     { deadlineMs, steps: [{ beforeDeadlineMs, boost }] }",
    ["standard", "aggressive", "deadlineMs", "steps"]
);

/// One step of a priority boost: once at most `beforeDeadlineMs` is left before the
/// deadline, the lane's priority number is lowered by `boost` (not below 0).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone)]
pub struct BoostStep {
    /// Time left before the deadline, in milliseconds (more than 0, at most the deadline;
    /// the deadline itself boosts from the moment a command is queued).
    #[napi(ts_type = "number")]
    pub before_deadline_ms: Js<f64>,
    /// Levels to boost by, 1 to 255.
    #[napi(ts_type = "number")]
    pub boost: Js<f64>,
}

options_object!(
    BoostStep,
    "an object like { beforeDeadlineMs: 1000, boost: 2 }",
    ["beforeDeadlineMs", "boost"],
    required: [
        ("beforeDeadlineMs", "milliseconds before the deadline"),
        ("boost", "levels, 1 to 255"),
    ]
);

/// The `steps` of a priority boost.
#[derive(Debug, Clone, Default)]
pub struct BoostSteps(pub Vec<BoostStep>);

impl FromJs for BoostSteps {
    const EXPECTED: &'static str = "an array like [{ beforeDeadlineMs: 1000, boost: 2 }]";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_array()? {
            return value.unexpected();
        }
        Ok(value.array()?.map(Self))
    }
}

/// The one option of `given` (name, whether given) that is set, or what is wrong.
fn exactly_one<'k>(
    at: &At<'_>,
    given: &[(&'k str, bool)],
    none: impl FnOnce() -> String,
    two: impl FnOnce(&str, &str) -> String,
) -> Result<&'k str, JsFailure> {
    let mut set = given.iter().filter(|(_, set)| *set).map(|(key, _)| *key);
    match (set.next(), set.next()) {
        (Some(key), None) => Ok(key),
        (None, _) => Err(at.type_error(none())),
        (Some(first), Some(second)) => Err(at.type_error(two(first, second))),
    }
}

impl RateLimitOptions {
    /// The limit; the core checks its values when the lane is declared.
    pub fn into_config(self, at: &At<'_>) -> Result<RateLimitConfig, JsFailure> {
        let path = at.path();
        exactly_one(
            at,
            &[
                ("perSecond", self.per_second.is_some()),
                ("perMinute", self.per_minute.is_some()),
                ("perHour", self.per_hour.is_some()),
                ("tokenBucket", self.token_bucket.is_some()),
                ("slidingWindow", self.sliding_window.is_some()),
            ],
            || {
                // `rateLimit`, or a group's `groupRateLimit` / `rateLimit`.
                let option = path.rsplit('.').next().unwrap_or("rateLimit");
                format!(
                    "{path} must name one limit: {RATE_LIMIT_SHAPES} (leave {option} out for \
                     no limit)"
                )
            },
            |first, second| {
                format!("{path} names both '{first}' and '{second}'; give exactly one limit")
            },
        )?;
        let limit = if let Some(n) = at.field("perSecond", self.per_second, At::u32)? {
            RateLimitConfig::per_second(n)
        } else if let Some(n) = at.field("perMinute", self.per_minute, At::u32)? {
            RateLimitConfig::per_minute(n)
        } else if let Some(n) = at.field("perHour", self.per_hour, At::u32)? {
            RateLimitConfig::per_hour(n)
        } else if let Some(bucket) = at.field("tokenBucket", self.token_bucket, |at, bucket| {
            let rate = at.take("rate", bucket.rate, At::u32)?;
            let period = at.take("periodMs", bucket.period_ms, At::millis)?;
            let burst = at.field("burst", bucket.burst, At::u32)?.unwrap_or(rate);
            Ok(RateLimitConfig::token_bucket(rate, period, burst))
        })? {
            bucket
        } else {
            at.field("slidingWindow", self.sliding_window, |at, window| {
                let limit = at.take("limit", window.limit, At::u32)?;
                let length = at.take("windowMs", window.window_ms, At::millis)?;
                Ok(RateLimitConfig::sliding_window(limit, length))
            })?
            .unwrap_or(RateLimitConfig::Unlimited)
        };
        Ok(limit)
    }
}

impl PriorityBoostOptions {
    /// The boost; the core checks its values when the lane is declared.
    pub fn into_config(self, at: &At<'_>) -> Result<PriorityBoostConfig, JsFailure> {
        let path = at.path();
        let shape = exactly_one(
            at,
            &[
                ("standard", self.standard.is_some()),
                ("aggressive", self.aggressive.is_some()),
                ("deadlineMs", self.deadline_ms.is_some()),
            ],
            || {
                format!(
                    "{path} must be one of {BOOST_SHAPES} (leave priorityBoost out for no boosting)"
                )
            },
            |first, second| {
                format!("{path} names both '{first}' and '{second}'; give one of {BOOST_SHAPES}")
            },
        )?;
        if shape != "deadlineMs" && self.steps.is_some() {
            return Err(at.type_error(format!(
                "{path}.steps goes with deadlineMs, not with '{shape}' (which has its own \
                 steps); use {{ deadlineMs, steps }} for your own steps"
            )));
        }
        if let Some(deadline) = at.field("standard", self.standard, At::millis)? {
            return Ok(PriorityBoostConfig::standard(deadline));
        }
        if let Some(deadline) = at.field("aggressive", self.aggressive, At::millis)? {
            return Ok(PriorityBoostConfig::aggressive(deadline));
        }
        let deadline = at
            .field("deadlineMs", self.deadline_ms, At::millis)?
            .unwrap_or_default();
        let mut config = PriorityBoostConfig::new(deadline);
        let steps = at.field("steps", self.steps, |_, steps| Ok(steps.0))?;
        for (index, step) in steps.into_iter().flatten().enumerate() {
            let at = At::option(format!("{path}.steps[{index}]"));
            let before = at.take("beforeDeadlineMs", step.before_deadline_ms, At::millis)?;
            config = config.with_boost(before, at.take("boost", step.boost, At::u8)?);
        }
        Ok(config)
    }
}
