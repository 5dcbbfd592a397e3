//! `LaneConfig` (one lane, for `Lane` and `RedisQueue` alike) and `RetryPolicy`.
//!
//! Each holds the core value (`a3s_lane::LaneConfig`, `a3s_lane::RetryPolicy`) and checks
//! it with the core's own rules when it is made, so a bad value fails at the line that
//! wrote it, with the core's reason. What the engine a lane runs on cannot honour is
//! checked when the lane is declared.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    DEFAULT_LANES, GroupLimits as CoreGroupLimits, LaneConfig as CoreLaneConfig,
    LaneError as CoreError, PriorityBoostConfig, RateLimitConfig, Retention, RetryJitter,
    RetryPolicy as CoreRetryPolicy, WhenFull,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::args::{
    instance, mapping_items, number, optional, optional_seconds, seconds, seconds_or_timedelta,
    type_name, u8_arg, u32_arg, usize_arg,
};
use crate::budget::SharedBudget;
use crate::error::{IntoPyErr, config_error};
use crate::limits::{GroupLimits, PriorityBoost, RateLimit, python_names};

/// The name the core's checks give a `LaneConfig` that belongs to no lane yet; the
/// error then names the class instead of a lane.
const UNBOUND: &str = "LaneConfig";

/// Checks `config` by the core's rules before it belongs to a lane.
fn check(py: Python<'_>, config: &CoreLaneConfig) -> PyResult<()> {
    config.validate(UNBOUND).map_err(|error| match error {
        CoreError::ConfigError(message) => {
            // "lane 'LaneConfig': reason", or "lane 'LaneConfig' group 'x': reason".
            let prefix = format!("lane '{UNBOUND}'");
            let message = match message.strip_prefix(&prefix) {
                Some(reason) => format!("{UNBOUND}{reason}"),
                None => message,
            };
            let message = python_names(&message)
                // The core names its Rust values; a Python user gives keyword arguments.
                .replace("the when_full wait timeout", "full_wait_timeout")
                .replace(
                    "(WhenFull::Reject fails at once)",
                    "(when_full=\"reject\" fails at once)",
                )
                .replace(
                    "use Retention::none() to keep nothing",
                    "keep_last=0 keeps nothing",
                );
            config_error(py, message)
        }
        other => other.into_py_err(py),
    })
}

/// How one lane runs its commands, in process (`Lane`) or on Redis (`RedisQueue`).
///
/// Values left as None take the lane's defaults: the default lanes (`system`,
/// `control`, `query`, `session`, `skill`, `prompt`) have a priority and a
/// `max_concurrency`; other lanes need a `priority` and take `max_concurrency` from
/// `a3s_lane.DEFAULTS["lane"]`.
#[pyclass(frozen, eq, hash, module = "a3s_lane", name = "LaneConfig")]
#[derive(Clone)]
pub(crate) struct LaneConfig {
    priority: Option<u8>,
    /// None: the lane's own default (see [`LaneConfig::resolve`]).
    max_concurrency: Option<usize>,
    /// Everything else; its `max_concurrency` is set when the lane is known.
    config: CoreLaneConfig,
    /// The `SharedBudget` given as `budget=` (its core budget is in `config`), so that
    /// the property returns the very object.
    budget: Option<Arc<Py<SharedBudget>>>,
}

impl LaneConfig {
    /// The core configuration and priority for lane `lane`, with the lane's defaults
    /// filled in. The engine that declares the lane checks it.
    pub(crate) fn resolve(&self, py: Python<'_>, lane: &str) -> PyResult<(CoreLaneConfig, u8)> {
        let default = DEFAULT_LANES.iter().find(|(id, _, _)| *id == lane);
        let Some(priority) = self.priority.or(default.map(|&(_, priority, _)| priority)) else {
            return Err(config_error(
                py,
                format!(
                    "lane '{lane}' needs a priority: LaneConfig(priority=0..255), 0 runs first \
                     (only the default lanes system, control, query, session, skill and prompt have one)"
                ),
            ));
        };
        let mut config = self.config.clone();
        config.max_concurrency = self
            .max_concurrency
            .or(default.map(|&(_, _, max)| max))
            .unwrap_or(CoreLaneConfig::default().max_concurrency);
        Ok((config, priority))
    }

    fn retry_policy(&self) -> Option<&CoreRetryPolicy> {
        self.config
            .retry_strategy()
            .and_then(|strategy| strategy.as_retry_policy())
    }

    fn rate_limit_config(&self) -> Option<RateLimitConfig> {
        self.config
            .admission_policy()
            .and_then(|policy| policy.as_rate_limit())
            .copied()
    }

    fn priority_boost_config(&self) -> Option<&PriorityBoostConfig> {
        self.config
            .priority_boost()
            .and_then(|boost| boost.as_boost_config())
    }

    /// Every value, for equality and hashing.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        (Option<u8>, Option<usize>, usize),
        (Option<Duration>, Option<usize>, Duration),
        (Option<usize>, Option<Option<Duration>>),
        (usize, Duration),
        Option<RetryKey>,
        Option<RateLimitConfig>,
        Option<&PriorityBoostConfig>,
        Vec<(Option<&str>, Option<usize>, RateLimitConfig)>,
        Option<usize>,
    ) {
        let c = &self.config;
        let rules = c.group_rules();
        let groups = std::iter::once((None, &rules.default))
            .chain(rules.overrides.iter().map(|(g, l)| (Some(g.as_str()), l)))
            .map(|(group, limits)| (group, limits.max_concurrency, limits.rate_limit))
            .collect();
        (
            (self.priority, self.max_concurrency, c.min_concurrency),
            (c.timeout, c.pressure_threshold, c.cancel_grace),
            (c.max_waiting, wait_timeout(c.when_full)),
            (c.retention.keep_last(), c.retention.keep_for()),
            self.retry_policy().map(RetryKey::of),
            self.rate_limit_config(),
            self.priority_boost_config(),
            groups,
            // A budget is shared, so it is the same only as itself.
            c.budget().map(|budget| Arc::as_ptr(budget) as usize),
        )
    }
}

impl PartialEq for LaneConfig {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Hash for LaneConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// `WhenFull` as a hashable value: None for `Reject`, the wait's timeout for `Wait`.
fn wait_timeout(when_full: WhenFull) -> Option<Option<Duration>> {
    match when_full {
        WhenFull::Reject => None,
        WhenFull::Wait { timeout } => Some(timeout),
    }
}

fn when_full_name(when_full: WhenFull) -> &'static str {
    match when_full {
        WhenFull::Reject => "reject",
        WhenFull::Wait { .. } => "wait",
    }
}

/// `when_full=` and `full_wait_timeout=` as the core's `WhenFull`.
fn when_full_arg(
    py: Python<'_>,
    when_full: &str,
    full_wait_timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<WhenFull> {
    let timeout = optional_seconds(full_wait_timeout, "full_wait_timeout")?;
    match (when_full, timeout) {
        ("wait", timeout) => Ok(WhenFull::Wait { timeout }),
        ("reject", None) => Ok(WhenFull::Reject),
        ("reject", Some(_)) => Err(config_error(
            py,
            "full_wait_timeout applies only with when_full=\"wait\" (a lane that rejects \
             fails a submit at once); give when_full=\"wait\" or leave full_wait_timeout unset",
        )),
        (other, _) => Err(config_error(
            py,
            format!("when_full must be \"reject\" or \"wait\", got {other:?}"),
        )),
    }
}

/// A retry policy's values, hashable.
#[derive(PartialEq, Eq, Hash)]
struct RetryKey(u32, Duration, u64, Duration, u8);

impl RetryKey {
    fn of(policy: &CoreRetryPolicy) -> Self {
        Self(
            policy.max_retries(),
            policy.initial_delay(),
            policy.multiplier().to_bits(),
            policy.max_delay(),
            policy.jitter() as u8,
        )
    }
}

/// The lanes of a `lanes=` mapping, with each `LaneConfig` resolved for its lane.
pub(crate) fn resolve_lanes(
    py: Python<'_>,
    lanes: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, a3s_lane::LaneConfig, u8)>> {
    let mut out = Vec::new();
    for (id, config) in mapping_items(lanes, "lanes", "lane id to LaneConfig")? {
        let Ok(config) = config.cast::<LaneConfig>() else {
            return Err(PyTypeError::new_err(format!(
                "lane '{id}': expected a LaneConfig, got {}",
                type_name(&config)
            )));
        };
        let (config, priority) = config.get().resolve(py, &id)?;
        out.push((id, config, priority));
    }
    Ok(out)
}

#[pymethods]
impl LaneConfig {
    /// Creates a lane configuration, checked here by the core's rules.
    ///
    /// - `priority`: 0..255, lower runs first.
    /// - `min_concurrency`: slots reserved for the lane under a global budget.
    /// - `max_concurrency`: most commands of the lane running at once.
    /// - `timeout`: seconds a run may take before it fails with `CommandTimeoutError`.
    /// - `retry`: a `RetryPolicy` for failed (or timed-out) runs.
    /// - `pressure_threshold`: pending count at which `queue.lane.pressure` is emitted.
    /// - `cancel_grace`: seconds a cancelled running command gets to stop by itself.
    /// - `rate_limit`: a `RateLimit`: how fast the lane may start commands.
    /// - `priority_boost`: a `PriorityBoost`: how the lane's priority rises as its oldest
    ///   command nears a deadline.
    /// - `max_waiting`: at most this many commands wait in the lane (pending and
    ///   delayed); None for no bound.
    /// - `when_full`: what a submit to a full lane does: "reject" (the default) raises
    ///   `LaneFullError` at once; "wait" waits for room.
    /// - `full_wait_timeout`: with "wait", seconds a submit waits at most before it
    ///   raises `LaneFullError`; None waits as long as it takes.
    /// - `keep_last`: finished commands the lane keeps for `command(id)` and
    ///   `list_commands`, per final state (completed, failed, cancelled, expired): the
    ///   newest this many; 0 keeps none. Default `DEFAULTS["lane"]["keep_last"]`.
    /// - `keep_for`: seconds (or a `timedelta`) a finished command is kept at most.
    ///   Default `DEFAULTS["lane"]["keep_for_ms"]` (a day).
    /// - `group_max_concurrency`: at most this many commands of one group (`submit(...,
    ///   group=...)`) run at once; None: the lane's cap only.
    /// - `group_rate_limit`: a token bucket `RateLimit`: how fast one group's commands may
    ///   start; None: no limit.
    /// - `group_overrides`: a mapping of group key to `GroupLimits` (or a dict of its
    ///   keyword arguments): the limits of those groups, instead of
    ///   `group_max_concurrency` and `group_rate_limit`.
    /// - `budget`: a `SharedBudget` the lane draws one slot from per running command, on
    ///   top of its own caps; the same budget may be given to lanes of many `Lane`s,
    ///   which then share it (a `RedisQueue` refuses it).
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
        max_waiting = None,
        when_full = "reject",
        full_wait_timeout = None,
        keep_last = None,
        keep_for = None,
        group_max_concurrency = None,
        group_rate_limit = None,
        group_overrides = None,
        budget = None,
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
        max_waiting: Option<&Bound<'_, PyAny>>,
        when_full: &str,
        full_wait_timeout: Option<&Bound<'_, PyAny>>,
        keep_last: Option<&Bound<'_, PyAny>>,
        keep_for: Option<&Bound<'_, PyAny>>,
        group_max_concurrency: Option<&Bound<'_, PyAny>>,
        group_rate_limit: Option<&Bound<'_, PyAny>>,
        group_overrides: Option<&Bound<'_, PyAny>>,
        budget: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let priority = optional(priority, |p| u8_arg(p, "priority", " (0 runs first)"))?;
        let max_concurrency = optional(max_concurrency, |m| usize_arg(m, "max_concurrency"))?;
        let defaults = CoreLaneConfig::default();
        let min = optional(min_concurrency, |m| usize_arg(m, "min_concurrency"))?
            .unwrap_or(defaults.min_concurrency);
        // Until the lane is known, an unset cap is checked as the largest there is.
        let mut config = CoreLaneConfig::new(min, max_concurrency.unwrap_or(usize::MAX));
        if let Some(timeout) = optional_seconds(timeout, "timeout")? {
            config = config.with_timeout(timeout);
        }
        if let Some(retry) = optional(retry, |r| instance::<RetryPolicy>(r, "retry", ""))? {
            config = config.with_retry_policy(retry.policy);
        }
        if let Some(threshold) =
            optional(pressure_threshold, |t| usize_arg(t, "pressure_threshold"))?
        {
            config = config.with_pressure_threshold(threshold);
        }
        if let Some(grace) = optional_seconds(cancel_grace, "cancel_grace")? {
            config = config.with_cancel_grace(grace);
        }
        let rate_limit = optional(rate_limit, |l| {
            instance::<RateLimit>(l, "rate_limit", " (for example RateLimit.per_second(10))")
        })?;
        // Unlimited and disabled are what no policy does: nothing to attach.
        if let Some(limit) = rate_limit.filter(|l| !l.config.is_unlimited()) {
            config = config.with_rate_limit(limit.config);
        }
        let boost = optional(priority_boost, |b| {
            instance::<PriorityBoost>(
                b,
                "priority_boost",
                " (for example PriorityBoost.standard(300))",
            )
        })?;
        if let Some(boost) = boost.filter(|b| b.config.is_enabled()) {
            config = config.with_priority_boost(boost.config);
        }
        if let Some(max) = optional(max_waiting, |m| usize_arg(m, "max_waiting"))? {
            config = config.with_max_waiting(max);
        }
        config = config.with_when_full(when_full_arg(py, when_full, full_wait_timeout)?);
        let keep_last = optional(keep_last, |k| usize_arg(k, "keep_last"))?;
        let keep_for = optional(keep_for, |k| seconds_or_timedelta(k, "keep_for"))?;
        if keep_last.is_some() || keep_for.is_some() {
            let defaults = Retention::default();
            config = config.with_retention(Retention::new(
                keep_last.unwrap_or(defaults.keep_last()),
                keep_for.unwrap_or(defaults.keep_for()),
            ));
        }
        let group_default = GroupLimits::from_args(
            group_max_concurrency,
            group_rate_limit,
            "group_max_concurrency",
            "group_rate_limit",
        )?;
        if group_default != CoreGroupLimits::default() {
            config = config.with_group_limits(group_default);
        }
        if let Some(overrides) = group_overrides.filter(|o| !o.is_none()) {
            for (group, limits) in
                mapping_items(overrides, "group_overrides", "group key to GroupLimits")?
            {
                let limits =
                    GroupLimits::from_value(&limits, &format!("group_overrides[{group:?}]"))?;
                config = config.with_group_override(group, limits);
            }
        }
        let budget = match budget.filter(|b| !b.is_none()) {
            None => None,
            Some(budget) => match budget.cast::<SharedBudget>() {
                Ok(budget) => {
                    config = config.with_budget(budget.get().budget.clone());
                    Some(Arc::new(budget.clone().unbind()))
                }
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "budget must be a SharedBudget (for example SharedBudget(\"llm\", 16)), got {}",
                        type_name(budget)
                    )));
                }
            },
        };
        check(py, &config)?;
        Ok(Self {
            priority,
            max_concurrency,
            config,
            budget,
        })
    }

    /// How fast the lane may start commands, or None for no limit.
    #[getter]
    fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit_config().map(|config| RateLimit { config })
    }

    /// How the lane's priority rises as its oldest command waits, or None.
    #[getter]
    fn priority_boost(&self) -> Option<PriorityBoost> {
        self.priority_boost_config().map(|config| PriorityBoost {
            config: config.clone(),
        })
    }

    /// The `SharedBudget` the lane draws from, or None.
    #[getter]
    fn budget(&self, py: Python<'_>) -> Option<Py<SharedBudget>> {
        self.budget.as_ref().map(|budget| budget.clone_ref(py))
    }

    /// Priority (0 runs first), or None for the lane's default.
    #[getter]
    fn priority(&self) -> Option<u8> {
        self.priority
    }

    /// Slots reserved under a global budget.
    #[getter]
    fn min_concurrency(&self) -> usize {
        self.config.min_concurrency
    }

    /// Most commands running at once, or None for the lane's default.
    #[getter]
    fn max_concurrency(&self) -> Option<usize> {
        self.max_concurrency
    }

    /// Seconds a run may take, or None for no limit.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.config.timeout.map(|d| d.as_secs_f64())
    }

    /// The retry policy, or None (a failure is final).
    #[getter]
    fn retry(&self) -> Option<RetryPolicy> {
        self.retry_policy().map(|policy| RetryPolicy {
            policy: policy.clone(),
        })
    }

    /// Pending count that emits `queue.lane.pressure`, or None.
    #[getter]
    fn pressure_threshold(&self) -> Option<usize> {
        self.config.pressure_threshold
    }

    /// Seconds a cancelled running command gets to stop by itself.
    #[getter]
    fn cancel_grace(&self) -> f64 {
        self.config.cancel_grace.as_secs_f64()
    }

    /// Most commands waiting in the lane (pending and delayed), or None for no bound.
    #[getter]
    fn max_waiting(&self) -> Option<usize> {
        self.config.max_waiting
    }

    /// What a submit to a full lane does: "reject" or "wait".
    #[getter]
    fn when_full(&self) -> &'static str {
        when_full_name(self.config.when_full)
    }

    /// With "wait", seconds a submit waits for room at most, or None (no limit, or
    /// "reject").
    #[getter]
    fn full_wait_timeout(&self) -> Option<f64> {
        match self.config.when_full {
            WhenFull::Wait {
                timeout: Some(timeout),
            } => Some(timeout.as_secs_f64()),
            _ => None,
        }
    }

    /// At most this many commands of one group run at once, or None (the lane's cap
    /// only); groups in `group_overrides` have their own.
    #[getter]
    fn group_max_concurrency(&self) -> Option<usize> {
        self.config.group_rules().default.max_concurrency
    }

    /// How fast one group's commands may start, or None for no limit; groups in
    /// `group_overrides` have their own.
    #[getter]
    fn group_rate_limit(&self) -> Option<RateLimit> {
        GroupLimits::rate_limit_of(&self.config.group_rules().default)
    }

    /// The groups with limits of their own, by group key (a new dict each time).
    #[getter]
    fn group_overrides(&self) -> BTreeMap<String, GroupLimits> {
        self.config
            .group_rules()
            .overrides
            .iter()
            .map(|(group, &limits)| (group.clone(), GroupLimits { limits }))
            .collect()
    }

    /// Finished commands kept per final state (0: none).
    #[getter]
    fn keep_last(&self) -> usize {
        self.config.retention.keep_last()
    }

    /// Seconds a finished command is kept at most.
    #[getter]
    fn keep_for(&self) -> f64 {
        self.config.retention.keep_for().as_secs_f64()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let defaults = CoreLaneConfig::default();
        let c = &self.config;
        let mut parts = Vec::new();
        if let Some(p) = self.priority {
            parts.push(format!("priority={p}"));
        }
        if c.min_concurrency != defaults.min_concurrency {
            parts.push(format!("min_concurrency={}", c.min_concurrency));
        }
        if let Some(m) = self.max_concurrency {
            parts.push(format!("max_concurrency={m}"));
        }
        if let Some(t) = c.timeout {
            parts.push(format!("timeout={}", t.as_secs_f64()));
        }
        if let Some(r) = self.retry_policy() {
            parts.push(format!("retry={}", retry_repr(r)));
        }
        if let Some(t) = c.pressure_threshold {
            parts.push(format!("pressure_threshold={t}"));
        }
        if c.cancel_grace != defaults.cancel_grace {
            parts.push(format!("cancel_grace={}", c.cancel_grace.as_secs_f64()));
        }
        if let Some(limit) = self.rate_limit() {
            parts.push(format!("rate_limit={}", limit.__repr__()));
        }
        if let Some(boost) = self.priority_boost() {
            parts.push(format!("priority_boost={}", boost.__repr__()));
        }
        if let Some(max) = c.max_waiting {
            parts.push(format!("max_waiting={max}"));
        }
        if let WhenFull::Wait { timeout } = c.when_full {
            parts.push("when_full='wait'".to_owned());
            if let Some(timeout) = timeout {
                parts.push(format!("full_wait_timeout={}", timeout.as_secs_f64()));
            }
        }
        if c.retention.keep_last() != defaults.retention.keep_last() {
            parts.push(format!("keep_last={}", c.retention.keep_last()));
        }
        if c.retention.keep_for() != defaults.retention.keep_for() {
            parts.push(format!("keep_for={}", c.retention.keep_for().as_secs_f64()));
        }
        if let Some(max) = self.group_max_concurrency() {
            parts.push(format!("group_max_concurrency={max}"));
        }
        if let Some(limit) = self.group_rate_limit() {
            parts.push(format!("group_rate_limit={}", limit.__repr__()));
        }
        let overrides = self.group_overrides();
        if !overrides.is_empty() {
            let entries: Vec<String> = overrides
                .iter()
                .map(|(group, limits)| {
                    let key = PyString::new(py, group)
                        .repr()
                        .map_or_else(|_| format!("{group:?}"), |r| r.to_string());
                    format!("{key}: {}", limits.__repr__())
                })
                .collect();
            parts.push(format!("group_overrides={{{}}}", entries.join(", ")));
        }
        if let Some(budget) = &self.budget {
            parts.push(format!("budget={}", budget.get().__repr__(py)));
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
    /// A custom policy, checked by the core's rules; unset values are those of
    /// `a3s_lane.DEFAULTS["retry_policy"]`. `jitter` is "none", "full" (0..delay) or
    /// "equal" (delay/2..delay).
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
        if let Some(retries) = optional(max_retries, |r| u32_arg(r, "max_retries"))? {
            builder = builder.max_retries(retries);
        }
        if let Some(delay) = optional_seconds(initial_delay, "initial_delay")? {
            builder = builder.initial_delay(delay);
        }
        if let Some(multiplier) = optional(multiplier, |m| number(m, "multiplier", "a number"))? {
            builder = builder.multiplier(multiplier);
        }
        if let Some(delay) = optional_seconds(max_delay, "max_delay")? {
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
    fn exponential(max_retries: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            policy: CoreRetryPolicy::exponential(u32_arg(max_retries, "max_retries")?),
        })
    }

    /// Up to `max_retries` retries, each after `delay` seconds.
    #[staticmethod]
    fn fixed(max_retries: &Bound<'_, PyAny>, delay: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            policy: CoreRetryPolicy::fixed(
                u32_arg(max_retries, "max_retries")?,
                seconds(delay, "delay")?,
            ),
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
    fn delay_for(&self, failures: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let failures = u32_arg(failures, "failures")?;
        Ok(self.policy.base_delay(failures).map(|d| d.as_secs_f64()))
    }

    fn __repr__(&self) -> String {
        retry_repr(&self.policy)
    }
}
