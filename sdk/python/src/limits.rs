//! `RateLimit` and `PriorityBoost`: per-lane policies of the scheduler, given to
//! `LaneConfig(rate_limit=..., priority_boost=...)` (and `RedisLane(rate_limit=...)`).
//!
//! Both are immutable values wrapping the facade's `RateLimitConfig` and
//! `PriorityBoostConfig`; every value is checked when the object is made, so a bad one
//! fails at the line that wrote it rather than when a queue is built.

use std::time::Duration;

use a3s_lane::{PriorityBoostConfig, RateLimitConfig};
use pyo3::prelude::*;

use crate::config::{int_in_range, seconds};
use crate::error::{IntoPyErr, config_error};

/// The hint for a count of commands that a rate limit allows.
const COUNT_HINT: &str = "an int from 1 to 4294967295 (RateLimit.unlimited() means no limit; \
                          pause the lane to stop it)";

fn count(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> PyResult<u32> {
    Ok(int_in_range(py, value, name, 1, u32::MAX.into(), COUNT_HINT)? as u32)
}

fn checked(py: Python<'_>, config: RateLimitConfig) -> PyResult<RateLimit> {
    // The values were checked above; this only guards against a check added in Rust.
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
        checked(py, RateLimitConfig::per_second(count(py, n, "n")?))
    }

    /// At most `n` commands per minute (a token bucket holding `n`).
    #[staticmethod]
    fn per_minute(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Self> {
        checked(py, RateLimitConfig::per_minute(count(py, n, "n")?))
    }

    /// At most `n` commands per hour (a token bucket holding `n`).
    #[staticmethod]
    fn per_hour(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Self> {
        checked(py, RateLimitConfig::per_hour(count(py, n, "n")?))
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
        let rate = count(py, rate, "rate")?;
        let period = seconds(py, period_seconds, "period_seconds", false)?;
        let burst = count(py, burst, "burst")?;
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
        let limit = count(py, limit, "limit")?;
        let window = seconds(py, window_seconds, "window_seconds", false)?;
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

fn deadline(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    seconds(py, value, "deadline", false)
}

#[pymethods]
impl PriorityBoost {
    /// A deadline of `deadline` seconds, without intermediate steps.
    #[new]
    fn new(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            config: PriorityBoostConfig::new(self::deadline(py, deadline)?),
        })
    }

    /// Boosts by 1, 2, 3 and 4 levels when 75%, 50%, 25% and 10% of the deadline remain.
    #[staticmethod]
    fn standard(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            config: PriorityBoostConfig::standard(self::deadline(py, deadline)?),
        })
    }

    /// Boosts by 2, 4, 6 and 8 levels when 80%, 60%, 40% and 20% of the deadline remain.
    #[staticmethod]
    fn aggressive(py: Python<'_>, deadline: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            config: PriorityBoostConfig::aggressive(self::deadline(py, deadline)?),
        })
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
        let Some(deadline) = self.config.deadline() else {
            return Err(config_error(
                py,
                "with_boost needs a deadline, but this PriorityBoost is disabled(); start from \
                 PriorityBoost(deadline), PriorityBoost.standard(deadline) or \
                 PriorityBoost.aggressive(deadline)",
            ));
        };
        let time = seconds(py, time_before_deadline, "time_before_deadline", true)?;
        let boost = int_in_range(
            py,
            boost,
            "boost",
            1,
            255,
            "an int from 1 to 255 (levels of priority to gain)",
        )? as u8;
        if time > deadline {
            return Err(config_error(
                py,
                format!(
                    "time_before_deadline ({} s) is longer than the deadline ({} s); use at most \
                     the deadline (which boosts from the moment a command is queued)",
                    time.as_secs_f64(),
                    deadline.as_secs_f64()
                ),
            ));
        }
        let config = self.config.clone().with_boost(time, boost);
        config.validate().map_err(|e| e.into_py_err(py))?;
        Ok(Self { config })
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
    fn boost_for(&self, py: Python<'_>, waited: &Bound<'_, PyAny>) -> PyResult<u8> {
        Ok(self.config.boost_for(seconds(py, waited, "waited", true)?))
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
