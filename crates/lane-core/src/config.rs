//! Per-lane configuration and the six default lanes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::SharedBudget;
use crate::error::{LaneError, Result};
use crate::group::{GroupLimits, GroupRules};
use crate::policy::{AdmissionPolicy, PriorityBoost, RetryStrategy};
use crate::retention::Retention;

/// The default grace period between a cancel request and dropping the running future.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(1);

/// The longest timed pause ([`QueueManager::pause_lane_for`](crate::QueueManager::pause_lane_for)
/// and the Redis engine's): a year. Longer is a pause until resumed (`pause_lane`).
pub const MAX_TIMED_PAUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks the duration of a timed pause, the same rule on every engine: longer than zero
/// and at most [`MAX_TIMED_PAUSE`].
pub fn validate_timed_pause(duration: Duration) -> Result<()> {
    if duration.is_zero() {
        return Err(LaneError::ConfigError(
            "a timed pause must be longer than zero; resume_lane ends a pause".into(),
        ));
    }
    if duration > MAX_TIMED_PAUSE {
        return Err(LaneError::ConfigError(format!(
            "a timed pause of {duration:?} is longer than a year; pause_lane pauses until \
             resume_lane"
        )));
    }
    Ok(())
}

/// The longest duration a lane or retry policy takes (a timeout, a cancel grace, a retry
/// delay): 100 years. Longer is "never" in practice, and would overflow the clock; leave
/// a timeout unset for no timeout.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The largest event capacity an [`EventEmitter`](crate::EventEmitter) takes: 2^24 events.
pub const MAX_EVENT_CAPACITY: usize = 1 << 24;

/// The six default lanes: `(id, priority, max_concurrency)`, each with `min_concurrency` 1.
pub const DEFAULT_LANES: [(&str, u8, usize); 6] = [
    ("system", 0, 5),
    ("control", 1, 3),
    ("query", 2, 10),
    ("session", 3, 5),
    ("skill", 4, 3),
    ("prompt", 5, 2),
];

/// What a submit does when its lane holds `max_waiting` commands already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Fail at once with [`LaneError::LaneFull`] (the default).
    #[default]
    Reject,
    /// Wait until the lane has room; after `timeout` (if any) fail with
    /// [`LaneError::LaneFull`].
    Wait {
        /// How long a submit waits at most; `None`: as long as it takes.
        timeout: Option<Duration>,
    },
}

/// How one lane runs its commands. Build with [`LaneConfig::new`] and the `with_*` methods.
#[derive(Clone)]
#[must_use]
pub struct LaneConfig {
    /// Slots reserved for this lane under a global budget
    /// ([`QueueManagerBuilder::with_max_concurrency`](crate::QueueManagerBuilder::with_max_concurrency)).
    pub min_concurrency: usize,
    /// At most this many of the lane's commands run at once.
    pub max_concurrency: usize,
    /// A run that takes longer fails with [`LaneError::Timeout`].
    pub timeout: Option<Duration>,
    /// Emit `queue.lane.pressure` when this many commands are pending, `queue.lane.idle`
    /// when the lane empties again.
    pub pressure_threshold: Option<usize>,
    /// After a cancel request a running command has this long to stop by itself before
    /// its future is dropped.
    pub cancel_grace: Duration,
    /// At most this many commands wait in the lane (pending and delayed); `None`: no
    /// bound. What a submit to a full lane does is [`when_full`](Self::when_full).
    pub max_waiting: Option<usize>,
    /// What a submit does when the lane holds `max_waiting` commands.
    pub when_full: WhenFull,
    /// How many finished commands the lane keeps for lookup and listing, and how long.
    pub retention: Retention,
    retry: Option<Arc<dyn RetryStrategy>>,
    rate_limit: Option<Arc<dyn AdmissionPolicy>>,
    priority_boost: Option<Arc<dyn PriorityBoost>>,
    groups: Arc<GroupRules>,
    budget: Option<Arc<SharedBudget>>,
}

impl fmt::Debug for LaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneConfig")
            .field("min_concurrency", &self.min_concurrency)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("pressure_threshold", &self.pressure_threshold)
            .field("cancel_grace", &self.cancel_grace)
            .field("max_waiting", &self.max_waiting)
            .field("when_full", &self.when_full)
            .field("retention", &self.retention)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("priority_boost", &self.priority_boost)
            .field("groups", &self.groups)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Default for LaneConfig {
    fn default() -> Self {
        Self::new(1, 1)
    }
}

impl LaneConfig {
    /// A lane that runs at most `max` commands at once and has `min` slots reserved
    /// under a global budget. Checked when the queue is built (`min <= max`, `max >= 1`).
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min_concurrency: min,
            max_concurrency: max,
            timeout: None,
            pressure_threshold: None,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            max_waiting: None,
            when_full: WhenFull::Reject,
            retention: Retention::default(),
            retry: None,
            rate_limit: None,
            priority_boost: None,
            groups: Arc::default(),
            budget: None,
        }
    }

    /// Fails a run that takes longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Retries failed commands as `policy` decides (for example `RetryPolicy::exponential(3)`).
    pub fn with_retry_policy(mut self, policy: impl RetryStrategy) -> Self {
        self.retry = Some(Arc::new(policy));
        self
    }

    /// Limits how fast the lane starts commands (for example `RateLimitConfig::per_second(100)`).
    pub fn with_rate_limit(mut self, limit: impl AdmissionPolicy) -> Self {
        self.rate_limit = Some(Arc::new(limit));
        self
    }

    /// Raises the lane's priority as its oldest command waits (for example
    /// `PriorityBoostConfig::standard(deadline)`).
    pub fn with_priority_boost(mut self, boost: impl PriorityBoost) -> Self {
        self.priority_boost = Some(Arc::new(boost));
        self
    }

    /// Emits `queue.lane.pressure` when `pending` reaches `threshold` (first crossing), and
    /// `queue.lane.idle` when the lane empties afterwards.
    pub fn with_pressure_threshold(mut self, threshold: usize) -> Self {
        self.pressure_threshold = Some(threshold);
        self
    }

    /// Sets how long a cancelled running command may take to stop by itself.
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Bounds the lane: at most `max_waiting` commands wait in it (pending and delayed).
    /// A submit to a full lane fails with [`LaneError::LaneFull`], or waits for room with
    /// [`with_when_full`](Self::with_when_full)`(WhenFull::Wait { .. })`.
    pub fn with_max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = Some(max_waiting);
        self
    }

    /// What a submit does when the lane is full (see [`with_max_waiting`](Self::with_max_waiting)).
    pub fn with_when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// How many finished commands the lane keeps, and how long (the last 1000 of each
    /// final state for a day by default; [`Retention::none`] keeps nothing).
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The limits of every group of the lane without an override (see
    /// [`crate::group`]): a concurrency cap and a rate limit per group.
    pub fn with_group_limits(mut self, limits: GroupLimits) -> Self {
        Arc::make_mut(&mut self.groups).default = limits;
        self
    }

    /// The limits of group `group`, replacing the default for it.
    pub fn with_group_override(mut self, group: impl Into<String>, limits: GroupLimits) -> Self {
        Arc::make_mut(&mut self.groups)
            .overrides
            .insert(group.into(), limits);
        self
    }

    /// The lane draws from `budget` (shared with lanes of other queues) on top of its own
    /// caps: one slot per running command (see [`crate::budget`]).
    pub fn with_budget(mut self, budget: Arc<SharedBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The shared budget the lane draws from, if any.
    pub fn budget(&self) -> Option<&Arc<SharedBudget>> {
        self.budget.as_ref()
    }

    /// The lane's group limits: the default and the overrides.
    pub fn group_rules(&self) -> &Arc<GroupRules> {
        &self.groups
    }

    /// The retry strategy, if any.
    pub fn retry_strategy(&self) -> Option<&Arc<dyn RetryStrategy>> {
        self.retry.as_ref()
    }

    /// The admission (rate limit) policy, if any.
    pub fn admission_policy(&self) -> Option<&Arc<dyn AdmissionPolicy>> {
        self.rate_limit.as_ref()
    }

    /// The priority boost, if any.
    pub fn priority_boost(&self) -> Option<&Arc<dyn PriorityBoost>> {
        self.priority_boost.as_ref()
    }

    /// Checks the values, naming the lane in the error.
    pub fn validate(&self, lane: &str) -> Result<()> {
        if self.max_concurrency == 0 {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_concurrency must be at least 1"
            )));
        }
        if self.min_concurrency > self.max_concurrency {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': min_concurrency ({}) is greater than max_concurrency ({})",
                self.min_concurrency, self.max_concurrency
            )));
        }
        let too_long = |option: &str, d: Duration| {
            LaneError::ConfigError(format!(
                "lane '{lane}': {option} {d:?} is longer than 100 years; {}",
                if option == "timeout" {
                    "leave it unset for no timeout"
                } else {
                    "use a shorter one"
                }
            ))
        };
        if let Some(timeout) = self.timeout.filter(|t| *t > MAX_DURATION) {
            return Err(too_long("timeout", timeout));
        }
        if self.cancel_grace > MAX_DURATION {
            return Err(too_long("cancel_grace", self.cancel_grace));
        }
        if let Some(policy) = self.retry.as_ref().and_then(|r| r.as_retry_policy())
            && policy.max_delay() > MAX_DURATION
        {
            return Err(too_long("retry max_delay", policy.max_delay()));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': timeout must be greater than zero (leave it unset for no timeout)"
            )));
        }
        if self.pressure_threshold == Some(0) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': pressure_threshold must be at least 1"
            )));
        }
        if self.max_waiting == Some(0) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_waiting must be at least 1 (leave it unset for no bound)"
            )));
        }
        if let WhenFull::Wait {
            timeout: Some(timeout),
        } = self.when_full
        {
            if timeout > MAX_DURATION {
                return Err(too_long("when_full wait timeout", timeout));
            }
            if timeout.is_zero() {
                return Err(LaneError::ConfigError(format!(
                    "lane '{lane}': the when_full wait timeout must be greater than zero \
                     (WhenFull::Reject fails at once)"
                )));
            }
        }
        self.retention.validate(lane)?;
        self.groups.validate(lane)?;
        if let Some(Err(reason)) = self.rate_limit.as_ref().map(|policy| policy.validate()) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': rate limit: {reason}"
            )));
        }
        if let Some(Err(reason)) = self.priority_boost.as_ref().map(|boost| boost.validate()) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': priority boost: {reason}"
            )));
        }
        Ok(())
    }
}
