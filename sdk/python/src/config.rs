//! `LaneConfig` and `RetryPolicy`, and the checks every numeric argument goes through.
//!
//! Arguments are checked where they enter: a priority of 300, a negative concurrency or
//! a NaN timeout is a `ConfigError` (a `ValueError`) that says what was given and what
//! is allowed, never a wrapped or clamped value.

use std::time::Duration;

use a3s_lane::{LaneConfig as CoreLaneConfig, RetryJitter, RetryPolicy as CoreRetryPolicy};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::error::{IntoPyErr, config_error};
use crate::limits::{PriorityBoost, RateLimit};

/// An integer argument in `[min, max]`; bools, floats and other types are refused.
pub(crate) fn int_in_range(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    name: &str,
    min: i128,
    max: i128,
    hint: &str,
) -> PyResult<i128> {
    if value.cast::<PyBool>().is_ok() || value.cast::<PyInt>().is_err() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, got {}",
            type_name(value)
        )));
    }
    let out_of_range = || {
        let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
        config_error(py, format!("{name} must be {hint}, got {shown}"))
    };
    let number: i128 = match value.extract::<i64>() {
        Ok(number) => number.into(),
        Err(_) => match value.extract::<u64>() {
            Ok(number) => number.into(),
            Err(_) => return Err(out_of_range()),
        },
    };
    if number < min || number > max {
        return Err(out_of_range());
    }
    Ok(number)
}

pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A duration in seconds (int or float, finite, > 0, or >= 0 with `zero_ok`).
pub(crate) fn seconds(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    name: &str,
    zero_ok: bool,
) -> PyResult<Duration> {
    if value.cast::<PyBool>().is_ok()
        || (value.cast::<PyInt>().is_err() && value.cast::<PyFloat>().is_err())
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number of seconds (int or float), got {}",
            type_name(value)
        )));
    }
    let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
    let secs: f64 = value
        .extract()
        .map_err(|_| config_error(py, format!("{name} is out of range: {shown}")))?;
    let allowed = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
    if !secs.is_finite() || !allowed {
        let bound = if zero_ok { ">= 0" } else { "> 0" };
        return Err(config_error(
            py,
            format!("{name} must be a finite number of seconds {bound}, got {shown}"),
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| config_error(py, format!("{name} is too large: {shown} seconds")))
}

/// [`seconds`], with `None` meaning none.
pub(crate) fn optional_seconds(
    py: Python<'_>,
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
    zero_ok: bool,
) -> PyResult<Option<Duration>> {
    match value {
        Some(value) if !value.is_none() => seconds(py, value, name, zero_ok).map(Some),
        _ => Ok(None),
    }
}

/// How one lane runs its commands.
///
/// Values left as None take the lane's defaults: the default lanes (`system`,
/// `control`, `query`, `session`, `skill`, `prompt`) have a priority and a
/// `max_concurrency`; other lanes need a `priority` and run one command at a time unless
/// `max_concurrency` says otherwise. `min_concurrency` defaults to 1.
#[pyclass(frozen, module = "a3s_lane", name = "LaneConfig")]
#[derive(Clone)]
pub(crate) struct LaneConfig {
    priority: Option<u8>,
    min_concurrency: Option<usize>,
    max_concurrency: Option<usize>,
    timeout: Option<Duration>,
    retry: Option<CoreRetryPolicy>,
    pressure_threshold: Option<usize>,
    cancel_grace: Duration,
    rate_limit: Option<RateLimit>,
    priority_boost: Option<PriorityBoost>,
}

impl LaneConfig {
    /// The core configuration and priority for lane `lane`.
    pub(crate) fn resolve(&self, py: Python<'_>, lane: &str) -> PyResult<(CoreLaneConfig, u8)> {
        let default = a3s_lane::DEFAULT_LANES
            .iter()
            .find(|(id, _, _)| *id == lane)
            .copied();
        let priority = match (self.priority, default) {
            (Some(priority), _) => priority,
            (None, Some((_, priority, _))) => priority,
            (None, None) => {
                return Err(config_error(
                    py,
                    format!(
                        "lane '{lane}' needs a priority: LaneConfig(priority=0..255), 0 runs first \
                         (only the default lanes system, control, query, session, skill and prompt have one)"
                    ),
                ));
            }
        };
        let max = self
            .max_concurrency
            .or(default.map(|(_, _, max)| max))
            .unwrap_or(1);
        let min = self.min_concurrency.unwrap_or(1);
        if min > max {
            return Err(config_error(
                py,
                format!(
                    "lane '{lane}': min_concurrency ({min}) is greater than max_concurrency ({max})"
                ),
            ));
        }
        let mut config = CoreLaneConfig::new(min, max).with_cancel_grace(self.cancel_grace);
        if let Some(timeout) = self.timeout {
            config = config.with_timeout(timeout);
        }
        if let Some(retry) = &self.retry {
            config = config.with_retry_policy(retry.clone());
        }
        if let Some(threshold) = self.pressure_threshold {
            config = config.with_pressure_threshold(threshold);
        }
        // Unlimited and disabled are what no policy does: nothing to attach.
        if let Some(limit) = self.rate_limit.filter(|l| !l.config.is_unlimited()) {
            config = config.with_rate_limit(limit.config);
        }
        if let Some(boost) = self
            .priority_boost
            .as_ref()
            .filter(|b| b.config.is_enabled())
        {
            config = config.with_priority_boost(boost.config.clone());
        }
        config.validate(lane).map_err(|e| e.into_py_err(py))?;
        Ok((config, priority))
    }
}

/// A `rate_limit=` argument: a `RateLimit` or None.
pub(crate) fn optional_rate_limit(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<RateLimit>> {
    match value.filter(|v| !v.is_none()) {
        Some(limit) => Ok(Some(*limit.cast::<RateLimit>().map_err(|_| {
            PyTypeError::new_err(format!(
                "rate_limit must be a RateLimit (for example RateLimit.per_second(10)), got {}",
                type_name(limit)
            ))
        })?.get())),
        None => Ok(None),
    }
}

pub(crate) fn optional_int(
    py: Python<'_>,
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
    min: i128,
    max: i128,
    hint: &str,
) -> PyResult<Option<i128>> {
    match value {
        Some(value) if !value.is_none() => int_in_range(py, value, name, min, max, hint).map(Some),
        _ => Ok(None),
    }
}

#[pymethods]
impl LaneConfig {
    /// Creates a lane configuration; every value is checked here.
    ///
    /// - `priority`: 0..255, lower runs first.
    /// - `min_concurrency`: slots reserved for the lane under a global budget (>= 0).
    /// - `max_concurrency`: most commands of the lane running at once (>= 1).
    /// - `timeout`: seconds a run may take before it fails with `CommandTimeoutError`.
    /// - `retry`: a `RetryPolicy` for failed (or timed-out) runs.
    /// - `pressure_threshold`: pending count at which `queue.lane.pressure` is emitted.
    /// - `cancel_grace`: seconds a cancelled running command gets to stop by itself.
    /// - `rate_limit`: a `RateLimit`: how fast the lane may start commands.
    /// - `priority_boost`: a `PriorityBoost`: how the lane's priority rises as its oldest
    ///   command nears a deadline.
    #[new]
    #[pyo3(signature = (
        *,
        priority = None,
        min_concurrency = None,
        max_concurrency = None,
        timeout = None,
        retry = None,
        pressure_threshold = None,
        cancel_grace = None,
        rate_limit = None,
        priority_boost = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        priority: Option<&Bound<'_, PyAny>>,
        min_concurrency: Option<&Bound<'_, PyAny>>,
        max_concurrency: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        retry: Option<&Bound<'_, PyAny>>,
        pressure_threshold: Option<&Bound<'_, PyAny>>,
        cancel_grace: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
        priority_boost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const USIZE: i128 = usize::MAX as i128;
        let priority = optional_int(
            py,
            priority,
            "priority",
            0,
            255,
            "an int from 0 to 255 (0 runs first)",
        )?;
        let min = optional_int(
            py,
            min_concurrency,
            "min_concurrency",
            0,
            USIZE,
            "an int >= 0",
        )?;
        let max = optional_int(
            py,
            max_concurrency,
            "max_concurrency",
            1,
            USIZE,
            "an int >= 1",
        )?;
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(config_error(
                py,
                format!("min_concurrency ({min}) is greater than max_concurrency ({max})"),
            ));
        }
        let retry = match retry {
            Some(retry) if !retry.is_none() => Some(
                retry
                    .cast::<RetryPolicy>()
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "retry must be a RetryPolicy, got {}",
                            type_name(retry)
                        ))
                    })?
                    .get()
                    .policy
                    .clone(),
            ),
            _ => None,
        };
        Ok(Self {
            priority: priority.map(|p| p as u8),
            min_concurrency: min.map(|m| m as usize),
            max_concurrency: max.map(|m| m as usize),
            timeout: optional_seconds(py, timeout, "timeout", false)?,
            retry,
            pressure_threshold: optional_int(
                py,
                pressure_threshold,
                "pressure_threshold",
                1,
                USIZE,
                "an int >= 1",
            )?
            .map(|t| t as usize),
            cancel_grace: optional_seconds(py, cancel_grace, "cancel_grace", true)?
                .unwrap_or(a3s_lane::DEFAULT_CANCEL_GRACE),
            rate_limit: optional_rate_limit(rate_limit)?,
            priority_boost: match priority_boost.filter(|b| !b.is_none()) {
                Some(boost) => Some(
                    boost
                        .cast::<PriorityBoost>()
                        .map_err(|_| {
                            PyTypeError::new_err(format!(
                                "priority_boost must be a PriorityBoost (for example \
                                 PriorityBoost.standard(300)), got {}",
                                type_name(boost)
                            ))
                        })?
                        .get()
                        .clone(),
                ),
                None => None,
            },
        })
    }

    /// How fast the lane may start commands, or None for no limit.
    #[getter]
    fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }

    /// How the lane's priority rises as its oldest command waits, or None.
    #[getter]
    fn priority_boost(&self) -> Option<PriorityBoost> {
        self.priority_boost.clone()
    }

    /// Priority (0 runs first), or None for the lane's default.
    #[getter]
    fn priority(&self) -> Option<u8> {
        self.priority
    }

    /// Slots reserved under a global budget, or None for the default (1).
    #[getter]
    fn min_concurrency(&self) -> Option<usize> {
        self.min_concurrency
    }

    /// Most commands running at once, or None for the lane's default.
    #[getter]
    fn max_concurrency(&self) -> Option<usize> {
        self.max_concurrency
    }

    /// Seconds a run may take, or None for no limit.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.map(|d| d.as_secs_f64())
    }

    /// The retry policy, or None (a failure is final).
    #[getter]
    fn retry(&self) -> Option<RetryPolicy> {
        self.retry.clone().map(|policy| RetryPolicy { policy })
    }

    /// Pending count that emits `queue.lane.pressure`, or None.
    #[getter]
    fn pressure_threshold(&self) -> Option<usize> {
        self.pressure_threshold
    }

    /// Seconds a cancelled running command gets to stop by itself.
    #[getter]
    fn cancel_grace(&self) -> f64 {
        self.cancel_grace.as_secs_f64()
    }

    fn __repr__(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.priority {
            parts.push(format!("priority={p}"));
        }
        if let Some(m) = self.min_concurrency {
            parts.push(format!("min_concurrency={m}"));
        }
        if let Some(m) = self.max_concurrency {
            parts.push(format!("max_concurrency={m}"));
        }
        if let Some(t) = self.timeout {
            parts.push(format!("timeout={}", t.as_secs_f64()));
        }
        if let Some(r) = &self.retry {
            parts.push(format!("retry={}", retry_repr(r)));
        }
        if let Some(t) = self.pressure_threshold {
            parts.push(format!("pressure_threshold={t}"));
        }
        if self.cancel_grace != a3s_lane::DEFAULT_CANCEL_GRACE {
            parts.push(format!("cancel_grace={}", self.cancel_grace.as_secs_f64()));
        }
        if let Some(limit) = &self.rate_limit {
            parts.push(format!("rate_limit={}", limit.__repr__()));
        }
        if let Some(boost) = &self.priority_boost {
            parts.push(format!("priority_boost={}", boost.__repr__()));
        }
        format!("LaneConfig({})", parts.join(", "))
    }
}

fn jitter_name(jitter: RetryJitter) -> &'static str {
    match jitter {
        RetryJitter::None => "none",
        RetryJitter::Full => "full",
        RetryJitter::Equal => "equal",
    }
}

fn retry_repr(policy: &CoreRetryPolicy) -> String {
    format!(
        "RetryPolicy(max_retries={}, initial_delay={}, multiplier={}, max_delay={}, jitter={:?})",
        policy.max_retries(),
        policy.initial_delay().as_secs_f64(),
        policy.multiplier(),
        policy.max_delay().as_secs_f64(),
        jitter_name(policy.jitter())
    )
}

/// How often, and after how long, a failed command runs again.
///
/// After the n-th failure the command waits `min(initial_delay * multiplier**(n-1),
/// max_delay)` seconds (randomised by `jitter`), as long as n <= `max_retries`; then it
/// fails for good. Raising `NonRetryableError` from a handler skips the retries.
#[pyclass(frozen, module = "a3s_lane", name = "RetryPolicy")]
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) policy: CoreRetryPolicy,
}

#[pymethods]
impl RetryPolicy {
    /// A checked custom policy. `jitter` is "none", "full" (0..delay) or "equal"
    /// (delay/2..delay).
    #[new]
    #[pyo3(signature = (
        max_retries = None,
        *,
        initial_delay = None,
        multiplier = None,
        max_delay = None,
        jitter = "none",
    ))]
    fn new(
        py: Python<'_>,
        max_retries: Option<&Bound<'_, PyAny>>,
        initial_delay: Option<&Bound<'_, PyAny>>,
        multiplier: Option<&Bound<'_, PyAny>>,
        max_delay: Option<&Bound<'_, PyAny>>,
        jitter: &str,
    ) -> PyResult<Self> {
        let mut builder = CoreRetryPolicy::builder();
        if let Some(retries) = optional_int(
            py,
            max_retries,
            "max_retries",
            0,
            u32::MAX.into(),
            "an int >= 0",
        )? {
            builder = builder.max_retries(retries as u32);
        }
        if let Some(delay) = optional_seconds(py, initial_delay, "initial_delay", true)? {
            builder = builder.initial_delay(delay);
        }
        if let Some(multiplier) = multiplier.filter(|m| !m.is_none()) {
            if multiplier.cast::<PyBool>().is_ok()
                || (multiplier.cast::<PyInt>().is_err() && multiplier.cast::<PyFloat>().is_err())
            {
                return Err(PyTypeError::new_err(format!(
                    "multiplier must be a number, got {}",
                    type_name(multiplier)
                )));
            }
            builder = builder.multiplier(multiplier.extract()?);
        }
        if let Some(delay) = optional_seconds(py, max_delay, "max_delay", true)? {
            builder = builder.max_delay(delay);
        }
        let jitter = match jitter {
            "none" => RetryJitter::None,
            "full" => RetryJitter::Full,
            "equal" => RetryJitter::Equal,
            other => {
                return Err(config_error(
                    py,
                    format!("jitter must be \"none\", \"full\" or \"equal\", got {other:?}"),
                ));
            }
        };
        let policy = builder
            .jitter(jitter)
            .build()
            .map_err(|e| e.into_py_err(py))?;
        Ok(Self { policy })
    }

    /// Up to `max_retries` retries after 0.1 s, 0.2 s, 0.4 s, ... capped at 30 s.
    #[staticmethod]
    fn exponential(py: Python<'_>, max_retries: &Bound<'_, PyAny>) -> PyResult<Self> {
        let retries = int_in_range(
            py,
            max_retries,
            "max_retries",
            0,
            u32::MAX.into(),
            "an int >= 0",
        )?;
        Ok(Self {
            policy: CoreRetryPolicy::exponential(retries as u32),
        })
    }

    /// Up to `max_retries` retries, each after `delay` seconds.
    #[staticmethod]
    fn fixed(
        py: Python<'_>,
        max_retries: &Bound<'_, PyAny>,
        delay: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let retries = int_in_range(
            py,
            max_retries,
            "max_retries",
            0,
            u32::MAX.into(),
            "an int >= 0",
        )?;
        let delay = seconds(py, delay, "delay", true)?;
        Ok(Self {
            policy: CoreRetryPolicy::fixed(retries as u32, delay),
        })
    }

    /// No retries: the first failure is final.
    #[staticmethod]
    fn none() -> Self {
        Self {
            policy: CoreRetryPolicy::none(),
        }
    }

    /// Retries allowed after the first run.
    #[getter]
    fn max_retries(&self) -> u32 {
        self.policy.max_retries()
    }

    /// Seconds before the first retry (before jitter).
    #[getter]
    fn initial_delay(&self) -> f64 {
        self.policy.initial_delay().as_secs_f64()
    }

    /// Factor between one delay and the next.
    #[getter]
    fn multiplier(&self) -> f64 {
        self.policy.multiplier()
    }

    /// Longest delay in seconds (before jitter).
    #[getter]
    fn max_delay(&self) -> f64 {
        self.policy.max_delay().as_secs_f64()
    }

    /// "none", "full" or "equal".
    #[getter]
    fn jitter(&self) -> &'static str {
        jitter_name(self.policy.jitter())
    }

    /// Seconds to wait after the `failures`-th failure before jitter, or None when no
    /// retry is left.
    fn delay_for(&self, py: Python<'_>, failures: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let failures = int_in_range(py, failures, "failures", 0, u32::MAX.into(), "an int >= 0")?;
        Ok(self
            .policy
            .base_delay(failures as u32)
            .map(|d| d.as_secs_f64()))
    }

    fn __repr__(&self) -> String {
        retry_repr(&self.policy)
    }
}
