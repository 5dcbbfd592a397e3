//! [`RetryPolicy`]: how often, and after how long, a failed command runs again.
//!
//! The queue owns the mechanism (a retried command waits on the queue's one timer task,
//! then goes back to the FRONT of its lane, ahead of newer work, and keeps its id); the
//! policy only answers "again after how long, or give up?" through
//! [`RetryStrategy`]. A command opts out for one error by returning
//! [`LaneError::NonRetryable`] (`LaneError::non_retryable("bad input")`); cancellations and
//! configuration errors are never retried either (see [`LaneError::is_retryable`]).

use std::time::Duration;

use super::RetryStrategy;
use crate::error::{LaneError, Result};

/// Randomisation applied to each retry delay, so that many commands failing together do
/// not all retry at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryJitter {
    /// The delay is exactly the policy's delay.
    #[default]
    None,
    /// A uniformly random delay between zero and the policy's delay ("full jitter").
    Full,
    /// Half the policy's delay plus a uniformly random part up to the other half
    /// ("equal jitter": never less than half the delay).
    Equal,
}

impl RetryJitter {
    /// The jitter's name, as the SDKs and the defaults table write it: `none`, `full`,
    /// `equal`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
            Self::Equal => "equal",
        }
    }
}

impl std::fmt::Display for RetryJitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RetryJitter {
    type Err = LaneError;

    /// Parses `none`, `full` or `equal`.
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            "equal" => Ok(Self::Equal),
            other => Err(LaneError::ConfigError(format!(
                "retry jitter '{other}' is not one of none, full, equal"
            ))),
        }
    }
}

impl RetryJitter {
    fn apply(self, delay: Duration) -> Duration {
        match self {
            Self::None => delay,
            Self::Full => delay.mul_f64(fastrand::f64()),
            Self::Equal => {
                let half = delay / 2;
                half + (delay - half).mul_f64(fastrand::f64())
            }
        }
    }
}

/// How many times a failed command is retried and how long it waits before each retry.
///
/// After the `n`-th failure (`n` = 1 after the first run fails) the command runs again
/// after `min(initial_delay * multiplier^(n-1), max_delay)`, randomised by the
/// [`RetryJitter`], as long as `n <= max_retries`; then it fails for good (and becomes a
/// dead letter when the queue keeps them).
///
/// ```
/// use a3s_lane::{EventEmitter, LaneConfig, QueueManagerBuilder, RetryJitter, RetryPolicy};
/// use std::time::Duration;
///
/// # async fn demo() -> a3s_lane::Result<()> {
/// // 100 ms, 200 ms, 400 ms (x2 each time, never more than 30 s).
/// let exponential = RetryPolicy::exponential(3);
/// assert_eq!(exponential.base_delay(3), Some(Duration::from_millis(400)));
/// assert_eq!(exponential.base_delay(4), None);
///
/// // Custom values are checked: a bad one is an error, never silently adjusted.
/// let custom = RetryPolicy::builder()
///     .max_retries(5)
///     .initial_delay(Duration::from_millis(50))
///     .multiplier(3.0)
///     .max_delay(Duration::from_secs(2))
///     .jitter(RetryJitter::Equal)
///     .build()?;
/// assert!(RetryPolicy::builder().multiplier(0.5).build().is_err());
///
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_lane("api", LaneConfig::new(1, 4).with_retry_policy(custom), 0)
///     .with_lane("webhooks", LaneConfig::new(1, 4).with_retry_policy(exponential), 1)
///     .build()
///     .await?;
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    max_retries: u32,
    initial_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: RetryJitter,
}

impl Default for RetryPolicy {
    /// No retries ([`RetryPolicy::none`]).
    fn default() -> Self {
        Self::none()
    }
}

impl RetryPolicy {
    /// The first delay of [`RetryPolicy::exponential`].
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(100);
    /// The growth factor of [`RetryPolicy::exponential`].
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// The longest delay of [`RetryPolicy::exponential`].
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);

    /// Up to `max_retries` retries after 100 ms, 200 ms, 400 ms, … capped at 30 s.
    pub fn exponential(max_retries: u32) -> Self {
        Self {
            max_retries,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            multiplier: Self::DEFAULT_MULTIPLIER,
            max_delay: Self::DEFAULT_MAX_DELAY,
            jitter: RetryJitter::None,
        }
    }

    /// Up to `max_retries` retries, each after `delay` (zero retries at once, still at the
    /// front of the lane).
    pub fn fixed(max_retries: u32, delay: Duration) -> Self {
        Self {
            max_retries,
            initial_delay: delay,
            multiplier: 1.0,
            max_delay: delay,
            jitter: RetryJitter::None,
        }
    }

    /// Never retries: the first failure is final.
    pub fn none() -> Self {
        Self::fixed(0, Duration::ZERO)
    }

    /// A builder for custom values, checked by [`RetryPolicyBuilder::build`]. It starts
    /// from the values of [`RetryPolicy::exponential`]`(3)`.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: Self::exponential(3),
        }
    }

    /// The same policy with its delays randomised by `jitter`.
    pub fn with_jitter(mut self, jitter: RetryJitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// How many retries are allowed after the first run.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The delay before the first retry (before jitter).
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// The factor between one delay and the next.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The longest delay (before jitter).
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The jitter applied to each delay.
    pub fn jitter(&self) -> RetryJitter {
        self.jitter
    }

    /// The delay after the `failures`-th failure before jitter, or `None` when the
    /// command has used up its retries (`failures` > [`RetryPolicy::max_retries`]) or
    /// `failures` is 0.
    pub fn base_delay(&self, failures: u32) -> Option<Duration> {
        if failures == 0 || failures > self.max_retries {
            return None;
        }
        if self.multiplier == 1.0 || self.initial_delay.is_zero() {
            return Some(self.initial_delay.min(self.max_delay));
        }
        // In floating point: `initial * multiplier^(n-1)` overflows a Duration long before
        // n reaches u32::MAX; anything beyond the cap is the cap.
        let exponent = i32::try_from(failures - 1).unwrap_or(i32::MAX);
        let seconds = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        let delay = Duration::try_from_secs_f64(seconds).unwrap_or(self.max_delay);
        Some(delay.min(self.max_delay))
    }

    /// The delay after the `failures`-th failure with jitter applied, or `None` when no
    /// retry is left; what the queue uses.
    pub fn delay_for(&self, failures: u32) -> Option<Duration> {
        self.base_delay(failures).map(|d| self.jitter.apply(d))
    }
}

impl RetryStrategy for RetryPolicy {
    fn retry_delay(&self, failures: u32, _error: &LaneError) -> Option<Duration> {
        self.delay_for(failures)
    }

    fn as_retry_policy(&self) -> Option<&RetryPolicy> {
        Some(self)
    }
}

/// Custom [`RetryPolicy`] values; [`RetryPolicyBuilder::build`] checks them and says what
/// is wrong instead of adjusting them.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// How many retries after the first run (0: none).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.policy.max_retries = max_retries;
        self
    }

    /// The delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.policy.initial_delay = delay;
        self
    }

    /// The factor between one delay and the next: 1.0 for a fixed delay, greater for
    /// exponential growth.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// The longest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.policy.max_delay = delay;
        self
    }

    /// The jitter applied to each delay.
    pub fn jitter(mut self, jitter: RetryJitter) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// Checks the values: the multiplier is a finite number of at least 1.0, and
    /// `max_delay` is not shorter than `initial_delay`. Fails with
    /// [`LaneError::ConfigError`] naming the value.
    pub fn build(self) -> Result<RetryPolicy> {
        let p = self.policy;
        if !p.multiplier.is_finite() || p.multiplier < 1.0 {
            return Err(LaneError::ConfigError(format!(
                "retry policy: multiplier must be a finite number of at least 1.0 (got {}); \
                 use 1.0 for a fixed delay",
                p.multiplier
            )));
        }
        if p.max_delay > crate::config::MAX_DURATION {
            return Err(LaneError::ConfigError(format!(
                "retry policy: max_delay ({:?}) is longer than 100 years; use a shorter one",
                p.max_delay
            )));
        }
        if p.max_delay < p.initial_delay {
            return Err(LaneError::ConfigError(format!(
                "retry policy: max_delay ({:?}) is shorter than initial_delay ({:?}); \
                 raise max_delay or lower initial_delay",
                p.max_delay, p.initial_delay
            )));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            0u32..20,
            0u64..5_000,
            1.0f64..4.0,
            0u64..60_000,
            prop_oneof![
                Just(RetryJitter::None),
                Just(RetryJitter::Full),
                Just(RetryJitter::Equal)
            ],
        )
            .prop_map(|(retries, initial, multiplier, extra, jitter)| {
                RetryPolicy::builder()
                    .max_retries(retries)
                    .initial_delay(Duration::from_millis(initial))
                    .multiplier(multiplier)
                    .max_delay(Duration::from_millis(initial + extra))
                    .jitter(jitter)
                    .build()
                    .expect("generated values are valid")
            })
    }

    proptest! {
        #[test]
        fn exactly_max_retries_are_granted(policy in any_policy()) {
            let granted = (1..=policy.max_retries() + 5)
                .take_while(|&n| policy.delay_for(n).is_some())
                .count();
            prop_assert_eq!(granted as u32, policy.max_retries());
            prop_assert_eq!(policy.delay_for(0), None);
        }

        #[test]
        fn base_delays_grow_by_the_multiplier_up_to_the_cap(policy in any_policy()) {
            for n in 1..=policy.max_retries() {
                let expected = policy.initial_delay().as_secs_f64()
                    * policy.multiplier().powi(n as i32 - 1);
                let expected = expected.min(policy.max_delay().as_secs_f64());
                let got = policy.base_delay(n).unwrap().as_secs_f64();
                prop_assert!((got - expected).abs() <= 1e-6 + expected * 1e-9,
                    "failure {}: expected {}s, got {}s", n, expected, got);
                if n > 1 {
                    prop_assert!(policy.base_delay(n) >= policy.base_delay(n - 1));
                }
            }
        }

        #[test]
        fn jitter_stays_within_its_bounds(policy in any_policy()) {
            for n in 1..=policy.max_retries() {
                let base = policy.base_delay(n).unwrap();
                let delay = policy.delay_for(n).unwrap();
                let low = match policy.jitter() {
                    RetryJitter::None => base,
                    RetryJitter::Full => Duration::ZERO,
                    RetryJitter::Equal => base / 2,
                };
                prop_assert!(delay >= low && delay <= base,
                    "failure {}: {:?} outside [{:?}, {:?}]", n, delay, low, base);
            }
        }

        #[test]
        fn fixed_waits_the_same_every_time(retries in 0u32..50, ms in 0u64..100_000) {
            let policy = RetryPolicy::fixed(retries, Duration::from_millis(ms));
            for n in 1..=retries {
                prop_assert_eq!(policy.delay_for(n), Some(Duration::from_millis(ms)));
            }
            prop_assert_eq!(policy.delay_for(retries + 1), None);
        }

        #[test]
        fn invalid_multipliers_are_refused(m in prop_oneof![-10.0f64..0.999, Just(f64::NAN), Just(f64::INFINITY)]) {
            let error = RetryPolicy::builder().multiplier(m).build().unwrap_err();
            prop_assert!(error.to_string().contains("multiplier"));
        }
    }

    #[test]
    fn exponential_follows_the_0_3_api_schedule() {
        let policy = RetryPolicy::exponential(12);
        let ms: Vec<u128> = (1..=12)
            .map(|n| policy.delay_for(n).unwrap().as_millis())
            .collect();
        assert_eq!(
            ms,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(policy.delay_for(13), None);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let policy = RetryPolicy::exponential(u32::MAX);
        assert_eq!(
            policy.delay_for(u32::MAX),
            Some(RetryPolicy::DEFAULT_MAX_DELAY)
        );
    }

    #[test]
    fn none_never_retries() {
        assert_eq!(RetryPolicy::none().delay_for(1), None);
        assert_eq!(RetryPolicy::default(), RetryPolicy::none());
    }

    #[test]
    fn max_delay_shorter_than_initial_is_refused() {
        let error = RetryPolicy::builder()
            .initial_delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("max_delay"), "{error}");
    }
}
