//! `RateLimit`, `PriorityBoost` and `GroupLimits`: per-lane policies of the scheduler,
//! given to `LaneConfig(rate_limit=..., priority_boost=..., group_overrides=...)`.
//!
//! All are immutable values wrapping the facade's `RateLimitConfig`,
//! `PriorityBoostConfig` and `GroupLimits`, checked by the core's rules when the object
//! is made, so a bad one fails at the line that wrote it rather than when a queue is
//! built.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use a3s_lane::{GroupLimits as CoreGroupLimits, PriorityBoostConfig, RateLimitConfig};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{
    instance, mapping_items, optional, seconds, type_name, u8_arg, u32_arg, usize_arg,
};
use crate::error::{IntoPyErr, config_error};

/// `config`, checked by the core's rules.
fn checked(py: Python<'_>, config: RateLimitConfig) -> PyResult<RateLimit> {
    config.validate().map_err(|e| e.into_py_err(py))?;
    Ok(RateLimit { config })
}

/// How fast a lane may start commands.
///
/// A token bucket (`per_second`, `per_minute`, `per_hour`, `token_bucket`) lets a full
/// bucket of commands start at once, then one more every `period / rate`; a sliding
/// window (`sliding_window`) allows at most `limit` starts in any window of the given
/// length. A lane held back by its limit shows `throttled=True` in `stats()` and is
/// woken exactly when the next start is allowed (no polling).
#[pyclass(frozen, eq, hash, module = "a3s_lane", name = "RateLimit")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RateLimit {
    pub(crate) config: RateLimitConfig,
}

#[pymethods]
impl RateLimit {
    /// At most `n` commands per second (a token bucket holding `n`).
    #[staticmethod]
    fn per_second(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Self> {
        checked(py, RateLimitConfig::per_second(u32_arg(n, "n")?))
    }

    /// At most `n` commands per minute (a token bucket holding `n`).
    #[staticmethod]
    fn per_minute(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Self> {
        checked(py, RateLimitConfig::per_minute(u32_arg(n, "n")?))
    }

    /// At most `n` commands per hour (a token bucket holding `n`).
    #[staticmethod]
    fn per_hour(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Self> {
        checked(py, RateLimitConfig::per_hour(u32_arg(n, "n")?))
    }

    /// A token bucket: `rate` starts per `period_seconds`, refilled continuously, and at
    /// most `burst` at once after a quiet spell (`burst=1` spaces commands evenly).
    #[staticmethod]
    fn token_bucket(
        py: Python<'_>,
        rate: &Bound<'_, PyAny>,
        period_seconds: &Bound<'_, PyAny>,
        burst: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let rate = u32_arg(rate, "rate")?;
        let period = seconds(period_seconds, "period_seconds")?;
        let burst = u32_arg(burst, "burst")?;
        checked(py, RateLimitConfig::token_bucket(rate, period, burst))
    }

    /// At most `limit` starts within any window of `window_seconds` (memory grows with
    /// `limit`).
    #[staticmethod]
    fn sliding_window(
        py: Python<'_>,
        limit: &Bound<'_, PyAny>,
        window_seconds: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let limit = u32_arg(limit, "limit")?;
        let window = seconds(window_seconds, "window_seconds")?;
        checked(py, RateLimitConfig::sliding_window(limit, window))
    }

    /// No limit: the lane starts commands as fast as its concurrency allows.
    #[staticmethod]
    fn unlimited() -> Self {
        Self {
            config: RateLimitConfig::Unlimited,
        }
    }

    /// "token_bucket", "sliding_window" or "unlimited".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.config {
            RateLimitConfig::Unlimited => "unlimited",
            RateLimitConfig::TokenBucket { .. } => "token_bucket",
            RateLimitConfig::SlidingWindow { .. } => "sliding_window",
        }
    }

    /// Starts allowed per `period` (token bucket) or per `window` (sliding window); None
    /// when unlimited.
    #[getter]
    fn rate(&self) -> Option<u32> {
        match self.config {
            RateLimitConfig::Unlimited => None,
            RateLimitConfig::TokenBucket { rate, .. } => Some(rate),
            RateLimitConfig::SlidingWindow { limit, .. } => Some(limit),
        }
    }

    /// Seconds that `rate` refers to: the bucket's period or the window's length; None
    /// when unlimited.
    #[getter]
    fn period(&self) -> Option<f64> {
        match self.config {
            RateLimitConfig::Unlimited => None,
            RateLimitConfig::TokenBucket { period, .. } => Some(period.as_secs_f64()),
            RateLimitConfig::SlidingWindow { window, .. } => Some(window.as_secs_f64()),
        }
    }

    /// The bucket's size (how many may start at once); None unless a token bucket.
    #[getter]
    fn burst(&self) -> Option<u32> {
        match self.config {
            RateLimitConfig::TokenBucket { burst, .. } => Some(burst),
            _ => None,
        }
    }

    pub(crate) fn __repr__(&self) -> String {
        match self.config {
            RateLimitConfig::Unlimited => "RateLimit.unlimited()".into(),
            RateLimitConfig::TokenBucket {
                rate,
                period,
                burst,
            } => format!(
                "RateLimit.token_bucket(rate={rate}, period_seconds={:?}, burst={burst})",
                period.as_secs_f64()
            ),
            RateLimitConfig::SlidingWindow { limit, window } => format!(
                "RateLimit.sliding_window(limit={limit}, window_seconds={:?})",
                window.as_secs_f64()
            ),
        }
    }
}

/// Raises a waiting lane's priority as the deadline of its oldest pending command nears.
///
/// The deadline counts from when that command was queued. A step `(time_before_deadline,
/// boost)` applies once at most that much time is left: the lane's effective priority
/// is its priority minus the largest applicable boost (never below 0), and 0 once the
/// deadline has passed. `LaneStatus.effective_priority` shows it; the scheduler compares
/// lanes by it.
///
/// `PriorityBoost(deadline)` has no steps (priority 0 past the deadline);
/// `.with_boost(...)` returns a copy with one more step.
#[pyclass(frozen, eq, hash, module = "a3s_lane", name = "PriorityBoost")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PriorityBoost {
    pub(crate) config: PriorityBoostConfig,
}

/// `config`, checked by the core's rules.
fn boost(py: Python<'_>, config: PriorityBoostConfig) -> PyResult<PriorityBoost> {
    config.validate().map_err(|e| e.into_py_err(py))?;
    Ok(PriorityBoost { config })
}

fn deadline(value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    seconds(value, "deadline")
}

#[pymethods]
impl PriorityBoost {
    /// A deadline of `deadline` seconds, without intermediate steps.
    #[new]
    fn new(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        boost(py, PriorityBoostConfig::new(self::deadline(deadline)?))
    }

    /// Boosts by 1, 2, 3 and 4 levels when 75%, 50%, 25% and 10% of the deadline remain.
    #[staticmethod]
    fn standard(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        boost(py, PriorityBoostConfig::standard(self::deadline(deadline)?))
    }

    /// Boosts by 2, 4, 6 and 8 levels when 80%, 60%, 40% and 20% of the deadline remain.
    #[staticmethod]
    fn aggressive(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        boost(
            py,
            PriorityBoostConfig::aggressive(self::deadline(deadline)?),
        )
    }

    /// No boosting: the lane keeps its configured priority.
    #[staticmethod]
    fn disabled() -> Self {
        Self {
            config: PriorityBoostConfig::disabled(),
        }
    }

    /// A copy with one more step: once at most `time_before_deadline` seconds are left,
    /// boost by `boost` levels (1..255). A step at the deadline itself boosts from the
    /// moment a command is queued.
    fn with_boost(
        &self,
        py: Python<'_>,
        time_before_deadline: &Bound<'_, PyAny>,
        boost: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let time = seconds(time_before_deadline, "time_before_deadline")?;
        let levels = u8_arg(boost, "boost", " (levels of priority to gain)")?;
        self::boost(py, self.config.clone().with_boost(time, levels))
    }

    /// The deadline in seconds, or None when disabled.
    #[getter]
    fn deadline(&self) -> Option<f64> {
        self.config.deadline().map(|d| d.as_secs_f64())
    }

    /// The steps as `(time_before_deadline, boost)` pairs, in the order they were added.
    #[getter]
    fn steps(&self) -> Vec<(f64, u8)> {
        self.config
            .steps()
            .iter()
            .map(|&(time, boost)| (time.as_secs_f64(), boost))
            .collect()
    }

    /// Whether this ever boosts.
    #[getter]
    fn enabled(&self) -> bool {
        self.config.is_enabled()
    }

    /// The boost for a lane whose oldest command has waited `waited` seconds: 0..255,
    /// where 255 means "past the deadline" (effective priority 0).
    fn boost_for(&self, waited: &Bound<'_, PyAny>) -> PyResult<u8> {
        Ok(self.config.boost_for(seconds(waited, "waited")?))
    }

    pub(crate) fn __repr__(&self) -> String {
        match self.config.deadline() {
            None => "PriorityBoost.disabled()".into(),
            Some(deadline) => {
                let mut text = format!("PriorityBoost({:?})", deadline.as_secs_f64());
                for &(time, boost) in self.config.steps() {
                    text.push_str(&format!(".with_boost({:?}, {boost})", time.as_secs_f64()));
                }
                text
            }
        }
    }
}

/// The core's message about group limits, in the Python names of its values.
pub(crate) fn python_names(message: &str) -> String {
    message.replace(
        "(RateLimitConfig::per_second, per_minute, per_hour or token_bucket)",
        "(RateLimit.per_second, per_minute, per_hour or token_bucket)",
    )
}

/// The limits of one group of a lane: how many of its commands run at once, how fast
/// they start.
///
/// `LaneConfig(group_max_concurrency=..., group_rate_limit=...)` gives every group of a
/// lane the same limits; `LaneConfig(group_overrides={"vip": GroupLimits(...)})` gives
/// some groups their own instead. `max_concurrency` is at least 1 (use `pause_group` to
/// hold a group); `rate_limit` is a token bucket (`RateLimit.per_second`, `per_minute`,
/// `per_hour` or `token_bucket`): a sliding window is refused for groups. Where a
/// `GroupLimits` is taken, a dict of its keyword arguments is taken too.
#[pyclass(frozen, eq, hash, module = "a3s_lane", name = "GroupLimits")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupLimits {
    pub(crate) limits: CoreGroupLimits,
}

impl Hash for GroupLimits {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.limits.max_concurrency, self.limits.rate_limit).hash(state);
    }
}

impl GroupLimits {
    /// `max_concurrency=` and `rate_limit=` as the core's limits, unchecked.
    pub(crate) fn from_args(
        max_concurrency: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
        max_name: &str,
        rate_name: &str,
    ) -> PyResult<CoreGroupLimits> {
        let mut limits = CoreGroupLimits::new();
        if let Some(max) = optional(max_concurrency, |m| usize_arg(m, max_name))? {
            limits = limits.with_max_concurrency(max);
        }
        let rate_limit = optional(rate_limit, |l| {
            instance::<RateLimit>(l, rate_name, " (for example RateLimit.per_second(10))")
        })?;
        if let Some(limit) = rate_limit {
            limits = limits.with_rate_limit(limit.config);
        }
        Ok(limits)
    }

    /// A group's limits given as a `GroupLimits` or as a dict of its keyword arguments
    /// (`{"max_concurrency": 2, "rate_limit": RateLimit.per_second(5)}`), unchecked;
    /// `name` says where it was given.
    pub(crate) fn from_value(value: &Bound<'_, PyAny>, name: &str) -> PyResult<CoreGroupLimits> {
        if let Ok(limits) = value.cast::<GroupLimits>() {
            return Ok(limits.get().limits);
        }
        let Ok(dict) = value.cast::<PyDict>() else {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a GroupLimits or a dict with max_concurrency and rate_limit \
                 (for example GroupLimits(max_concurrency=2)), got {}",
                type_name(value)
            )));
        };
        let (mut max_concurrency, mut rate_limit) = (None, None);
        for (key, item) in mapping_items(dict.as_any(), name, "max_concurrency and rate_limit")? {
            match key.as_str() {
                "max_concurrency" => max_concurrency = Some(item),
                "rate_limit" => rate_limit = Some(item),
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "{name}: unexpected key {other:?}; a group's limits are \
                         max_concurrency and rate_limit"
                    )));
                }
            }
        }
        Self::from_args(
            max_concurrency.as_ref(),
            rate_limit.as_ref(),
            &format!("{name}[\"max_concurrency\"]"),
            &format!("{name}[\"rate_limit\"]"),
        )
    }

    /// The rate limit, or None for no limit.
    pub(crate) fn rate_limit_of(limits: &CoreGroupLimits) -> Option<RateLimit> {
        (!limits.rate_limit.is_unlimited()).then_some(RateLimit {
            config: limits.rate_limit,
        })
    }
}

#[pymethods]
impl GroupLimits {
    /// The limits of a group, checked here by the core's rules: `max_concurrency` (at
    /// least 1; None: the lane's cap only) and `rate_limit` (a token bucket `RateLimit`;
    /// None: no limit).
    #[new]
    #[pyo3(signature = (*, max_concurrency = None, rate_limit = None))]
    fn new(
        py: Python<'_>,
        max_concurrency: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let limits = Self::from_args(max_concurrency, rate_limit, "max_concurrency", "rate_limit")?;
        limits
            .validate("GroupLimits")
            .map_err(|error| match error {
                a3s_lane::LaneError::ConfigError(message) => {
                    config_error(py, python_names(&message))
                }
                other => other.into_py_err(py),
            })?;
        Ok(Self { limits })
    }

    /// At most this many of the group's commands run at once, or None (the lane's cap
    /// only).
    #[getter]
    fn max_concurrency(&self) -> Option<usize> {
        self.limits.max_concurrency
    }

    /// How fast the group's commands may start, or None for no limit.
    #[getter]
    fn rate_limit(&self) -> Option<RateLimit> {
        Self::rate_limit_of(&self.limits)
    }

    pub(crate) fn __repr__(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.limits.max_concurrency {
            parts.push(format!("max_concurrency={max}"));
        }
        if let Some(limit) = self.rate_limit() {
            parts.push(format!("rate_limit={}", limit.__repr__()));
        }
        format!("GroupLimits({})", parts.join(", "))
    }
}
