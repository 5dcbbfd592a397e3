//! Priority boosting: a lane whose oldest pending command has waited long gets a more
//! urgent effective priority, so work near its deadline is not starved by busier,
//! higher-priority lanes.
//!
//! [`PriorityBoostConfig`] plugs into
//! [`LaneConfig::with_priority_boost`](crate::LaneConfig::with_priority_boost) (and,
//! on a Redis lane, timed by the Redis
//! clock). The scheduler evaluates it at dispatch time from how long the lane's head
//! command has waited (no timer per command); the result shows as
//! [`LaneStatus::effective_priority`](crate::LaneStatus::effective_priority).

use std::time::Duration;

use super::PriorityBoost;

/// Deadline-based boost steps for a lane.
///
/// The deadline counts from when a command was queued. A step `(time, boost)` applies
/// once at most `time` is left before the deadline; the largest applicable boost wins,
/// and a command past its deadline gets priority 0 (the most urgent).
///
/// ```
/// use a3s_lane::{LaneConfig, PriorityBoostConfig};
/// use std::time::Duration;
///
/// // At 75%/50%/25%/10% of the deadline remaining: boost by 1/2/3/4.
/// let config = LaneConfig::new(1, 10)
///     .with_priority_boost(PriorityBoostConfig::standard(Duration::from_secs(300)));
///
/// // Faster escalation: boost by 2/4/6/8 at 80%/60%/40%/20% remaining.
/// let config = LaneConfig::new(1, 10)
///     .with_priority_boost(PriorityBoostConfig::aggressive(Duration::from_secs(60)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub struct PriorityBoostConfig {
    deadline: Option<Duration>,
    /// `(time before the deadline, boost)`, in the order they were added.
    steps: Vec<(Duration, u8)>,
}

impl Default for PriorityBoostConfig {
    fn default() -> Self {
        Self::disabled()
    }
}

/// `fraction` of `d` as `numerator / denominator`, without overflow.
fn fraction(d: Duration, numerator: u32, denominator: u32) -> Duration {
    let nanos = d.as_nanos() * u128::from(numerator) / u128::from(denominator);
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

impl PriorityBoostConfig {
    /// A deadline with no intermediate steps: a command past it gets priority 0.
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            steps: Vec::new(),
        }
    }

    /// Boosts by 1, 2, 3 and 4 levels when 75%, 50%, 25% and 10% of the deadline remain;
    /// priority 0 past the deadline.
    pub fn standard(deadline: Duration) -> Self {
        Self::new(deadline)
            .with_boost(fraction(deadline, 3, 4), 1)
            .with_boost(fraction(deadline, 1, 2), 2)
            .with_boost(fraction(deadline, 1, 4), 3)
            .with_boost(fraction(deadline, 1, 10), 4)
    }

    /// Boosts by 2, 4, 6 and 8 levels when 80%, 60%, 40% and 20% of the deadline remain;
    /// priority 0 past the deadline.
    pub fn aggressive(deadline: Duration) -> Self {
        Self::new(deadline)
            .with_boost(fraction(deadline, 4, 5), 2)
            .with_boost(fraction(deadline, 3, 5), 4)
            .with_boost(fraction(deadline, 2, 5), 6)
            .with_boost(fraction(deadline, 1, 5), 8)
    }

    /// No boosting (the lane keeps its configured priority).
    pub fn disabled() -> Self {
        Self {
            deadline: None,
            steps: Vec::new(),
        }
    }

    /// Adds a step: once at most `time_before_deadline` is left, boost by `boost` levels.
    /// Needs a deadline (start from [`PriorityBoostConfig::new`], `standard` or
    /// `aggressive`); checked when the lane is added.
    pub fn with_boost(mut self, time_before_deadline: Duration, boost: u8) -> Self {
        self.steps.push((time_before_deadline, boost));
        self
    }

    /// The deadline, if boosting is enabled.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The steps, as `(time before the deadline, boost)`.
    pub fn steps(&self) -> &[(Duration, u8)] {
        &self.steps
    }

    /// Whether this config ever boosts.
    pub fn is_enabled(&self) -> bool {
        self.deadline.is_some()
    }

    /// Checks the values; the error says what is wrong and what to do instead.
    ///
    /// ```
    /// use a3s_lane::PriorityBoostConfig;
    /// use std::time::Duration;
    ///
    /// let steps_without_deadline = PriorityBoostConfig::disabled().with_boost(Duration::from_secs(1), 1);
    /// assert!(steps_without_deadline.validate().is_err());
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        self.check().map_err(crate::LaneError::ConfigError)
    }

    fn check(&self) -> Result<(), String> {
        let Some(deadline) = self.deadline else {
            if self.steps.is_empty() {
                return Ok(());
            }
            return Err(
                "with_boost needs a deadline, but this config is disabled(); start from \
                 PriorityBoostConfig::new(deadline), standard(deadline) or aggressive(deadline)"
                    .into(),
            );
        };
        if deadline.is_zero() {
            return Err(
                "the deadline must be longer than zero; use PriorityBoostConfig::disabled() \
                 for no boosting"
                    .into(),
            );
        }
        for &(time, boost) in &self.steps {
            if boost == 0 {
                return Err(format!(
                    "the step at {time:?} before the deadline boosts by 0 levels and would do \
                     nothing; remove it or use a boost of at least 1"
                ));
            }
            if time.is_zero() {
                return Err(
                    "the step at 0 before the deadline would boost only when the \
                     deadline has passed, when the lane already runs at priority 0; remove it \
                     or give it a time before the deadline"
                        .into(),
                );
            }
            if time > deadline {
                return Err(format!(
                    "the step at {time:?} before the deadline is longer than the deadline \
                     ({deadline:?}); use at most the deadline (which boosts from the moment a \
                     command is queued)"
                ));
            }
        }
        Ok(())
    }

    /// The boost for a head command that has waited `waited`.
    pub fn boost_for(&self, waited: Duration) -> u8 {
        let Some(deadline) = self.deadline else {
            return 0;
        };
        if waited >= deadline {
            return u8::MAX;
        }
        let remaining = deadline - waited;
        self.steps
            .iter()
            .filter(|(time, _)| remaining <= *time)
            .map(|&(_, boost)| boost)
            .max()
            .unwrap_or(0)
    }
}

impl PriorityBoost for PriorityBoostConfig {
    fn boost(&self, waited: Duration) -> u8 {
        self.boost_for(waited)
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }

    fn as_boost_config(&self) -> Option<&PriorityBoostConfig> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn standard_steps_at_75_50_25_10_percent_remaining() {
        let boost = PriorityBoostConfig::standard(S(100));
        let at = |secs: u64| boost.boost_for(S(secs));
        assert_eq!(
            [
                at(0),
                at(24),
                at(25),
                at(49),
                at(50),
                at(75),
                at(89),
                at(90),
                at(99)
            ],
            [0, 0, 1, 1, 2, 3, 3, 4, 4]
        );
        assert_eq!(at(100), u8::MAX, "past the deadline: priority 0");
    }

    #[test]
    fn aggressive_steps_at_80_60_40_20_percent_remaining() {
        let boost = PriorityBoostConfig::aggressive(S(100));
        let at = |secs: u64| boost.boost_for(S(secs));
        assert_eq!(
            [at(19), at(20), at(40), at(60), at(80), at(99)],
            [0, 2, 4, 6, 8, 8]
        );
        assert_eq!(at(100), u8::MAX);
    }

    #[test]
    fn disabled_never_boosts() {
        assert_eq!(PriorityBoostConfig::disabled().boost_for(S(1_000_000)), 0);
    }

    #[test]
    fn huge_deadlines_do_not_overflow() {
        let boost = PriorityBoostConfig::standard(Duration::MAX);
        assert_eq!(boost.boost_for(S(1)), 0);
        assert!(boost.validate().is_ok());
    }

    #[test]
    fn invalid_steps_are_rejected_with_a_reason() {
        for (config, needle) in [
            (
                PriorityBoostConfig::disabled().with_boost(S(1), 1),
                "needs a deadline",
            ),
            (PriorityBoostConfig::new(Duration::ZERO), "longer than zero"),
            (
                PriorityBoostConfig::new(S(10)).with_boost(S(5), 0),
                "0 levels",
            ),
            (
                PriorityBoostConfig::new(S(10)).with_boost(S(11), 1),
                "longer than the deadline",
            ),
            (
                PriorityBoostConfig::new(S(10)).with_boost(Duration::ZERO, 1),
                "the step at 0 before the deadline",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{config:?}: {error}");
        }
    }
}
