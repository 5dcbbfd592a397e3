//! Rate limiting: how fast a lane may *start* commands.
//!
//! [`RateLimitConfig`] plugs into [`LaneConfig::with_rate_limit`](crate::LaneConfig::with_rate_limit).
//! The scheduler asks the lane's limiter for a permit only when a command will really
//! start, so a pass that starts nothing costs no token. When the limiter is empty it
//! names the instant the next permit is due, and the queue's single timer task wakes the
//! lane exactly then: there is no polling. The same configuration, declared on
//! a Redis lane (`RedisQueueConfig::with_lane`), limits a lane across every worker of a Redis queue.
//!
//! Two algorithms:
//! - **token bucket** ([`RateLimitConfig::per_second`] and friends,
//!   [`RateLimitConfig::token_bucket`]): a full bucket admits a burst at once, then permits
//!   come back continuously (one every `period / rate`), fractions included;
//! - **sliding window** ([`RateLimitConfig::sliding_window`]): at most `limit` starts in
//!   any window of the given length; it keeps the start instants of the last `limit`
//!   starts (memory grows with `limit`).

mod sliding_window;
mod token_bucket;

use std::time::Duration;

use super::{Admission, AdmissionPolicy};
use crate::config::MAX_DURATION;

use sliding_window::SlidingWindow;
use token_bucket::TokenBucket;

/// How fast a lane may start commands.
///
/// ```
/// use a3s_lane::{LaneConfig, RateLimitConfig};
///
/// // 100 commands per second; a full bucket lets 100 start at once.
/// let config = LaneConfig::new(1, 10).with_rate_limit(RateLimitConfig::per_second(100));
/// // 1000 commands per minute.
/// let config = LaneConfig::new(1, 10).with_rate_limit(RateLimitConfig::per_minute(1000));
/// # let _ = config;
/// ```
///
/// Invalid values (a zero rate, burst or period, a period or window longer than
/// [`MAX_DURATION`](crate::MAX_DURATION)) are reported when the lane is added
/// (`QueueManagerBuilder::build` fails with [`LaneError::ConfigError`](crate::LaneError::ConfigError)),
/// or earlier with [`RateLimitConfig::validate`]; they are never clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RateLimitConfig {
    /// No limit: the lane starts commands as fast as its concurrency allows.
    #[default]
    Unlimited,
    /// A token bucket holding `burst` permits, refilled at `rate` permits per `period`.
    TokenBucket {
        /// Permits added per `period` (continuously, one every `period / rate`).
        rate: u32,
        /// The period `rate` refers to.
        period: Duration,
        /// The bucket's size: how many commands may start at once after a quiet spell.
        burst: u32,
    },
    /// At most `limit` starts within any window of length `window`.
    SlidingWindow {
        /// Starts allowed per window.
        limit: u32,
        /// The window's length.
        window: Duration,
    },
}

impl RateLimitConfig {
    /// At most `n` commands per second (token bucket, burst `n`).
    pub fn per_second(n: u32) -> Self {
        Self::token_bucket(n, Duration::from_secs(1), n)
    }

    /// At most `n` commands per minute (token bucket, burst `n`).
    pub fn per_minute(n: u32) -> Self {
        Self::token_bucket(n, Duration::from_secs(60), n)
    }

    /// At most `n` commands per hour (token bucket, burst `n`).
    pub fn per_hour(n: u32) -> Self {
        Self::token_bucket(n, Duration::from_secs(3600), n)
    }

    /// No rate limit.
    pub fn unlimited() -> Self {
        Self::Unlimited
    }

    /// A token bucket: `rate` permits per `period`, at most `burst` at once.
    pub fn token_bucket(rate: u32, period: Duration, burst: u32) -> Self {
        Self::TokenBucket {
            rate,
            period,
            burst,
        }
    }

    /// At most `limit` starts within any window of length `window`.
    pub fn sliding_window(limit: u32, window: Duration) -> Self {
        Self::SlidingWindow { limit, window }
    }

    /// Whether this is [`RateLimitConfig::Unlimited`].
    pub fn is_unlimited(&self) -> bool {
        matches!(self, Self::Unlimited)
    }

    /// Checks the values; the error says what is wrong and what to do instead.
    ///
    /// ```
    /// use a3s_lane::RateLimitConfig;
    ///
    /// assert!(RateLimitConfig::per_second(10).validate().is_ok());
    /// let error = RateLimitConfig::per_second(0).validate().unwrap_err();
    /// assert!(error.to_string().contains("unlimited()"));
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        self.check().map_err(crate::LaneError::ConfigError)
    }

    fn check(&self) -> Result<(), String> {
        match *self {
            Self::Unlimited => Ok(()),
            Self::TokenBucket {
                rate,
                period,
                burst,
            } => {
                if rate == 0 {
                    return Err(format!(
                        "a rate of 0 commands per {period:?} would never start a command; use \
                         RateLimitConfig::unlimited() for no limit, or pause the lane to stop it"
                    ));
                }
                if period.is_zero() {
                    return Err(
                        "the token bucket's period must be longer than zero (for example 1s)"
                            .into(),
                    );
                }
                if period > MAX_DURATION {
                    return Err(format!(
                        "the token bucket's period {period:?} is longer than 100 years; use a \
                         shorter one, or RateLimitConfig::unlimited() for no limit"
                    ));
                }
                if burst == 0 {
                    return Err(
                        "a burst of 0 would never hold a permit; use at least 1 (1 spaces \
                         commands evenly, no burst)"
                            .into(),
                    );
                }
                Ok(())
            }
            Self::SlidingWindow { limit, window } => {
                if limit == 0 {
                    return Err(format!(
                        "a limit of 0 commands per {window:?} would never start a command; use \
                         RateLimitConfig::unlimited() for no limit, or pause the lane to stop it"
                    ));
                }
                if window.is_zero() {
                    return Err(
                        "the sliding window must be longer than zero (for example 1s)".into(),
                    );
                }
                if window > MAX_DURATION {
                    return Err(format!(
                        "the sliding window {window:?} is longer than 100 years; use a shorter \
                         one, or RateLimitConfig::unlimited() for no limit"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl AdmissionPolicy for RateLimitConfig {
    fn admission(&self) -> Option<Box<dyn Admission>> {
        // An invalid configuration never gets here: the lane is validated when added.
        if self.check().is_err() {
            return Some(Box::new(NeverAdmit));
        }
        match *self {
            Self::Unlimited => None,
            Self::TokenBucket {
                rate,
                period,
                burst,
            } => Some(Box::new(TokenBucket::new(rate, period, burst))),
            Self::SlidingWindow { limit, window } => {
                Some(Box::new(SlidingWindow::new(limit, window)))
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }

    fn as_rate_limit(&self) -> Option<&RateLimitConfig> {
        Some(self)
    }
}

/// A retry instant for a limiter whose next permit is past what the clock can hold: as
/// far ahead as the clock allows, up to [`MAX_DURATION`].
fn far_after(now: tokio::time::Instant) -> tokio::time::Instant {
    let mut ahead = MAX_DURATION;
    loop {
        if let Some(at) = now.checked_add(ahead) {
            return at;
        }
        ahead /= 2;
    }
}

/// The state of a configuration that failed validation, should one be used anyway.
#[derive(Debug)]
struct NeverAdmit;

impl Admission for NeverAdmit {
    fn try_acquire(&mut self, now: tokio::time::Instant) -> Result<(), tokio::time::Instant> {
        Err(far_after(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_are_rejected_with_a_reason() {
        for (config, needle) in [
            (RateLimitConfig::per_second(0), "unlimited()"),
            (RateLimitConfig::per_minute(0), "unlimited()"),
            (RateLimitConfig::per_hour(0), "unlimited()"),
            (
                RateLimitConfig::token_bucket(1, Duration::ZERO, 1),
                "period",
            ),
            (
                RateLimitConfig::token_bucket(1, Duration::from_secs(1), 0),
                "burst",
            ),
            (
                RateLimitConfig::sliding_window(0, Duration::from_secs(1)),
                "unlimited()",
            ),
            (RateLimitConfig::sliding_window(3, Duration::ZERO), "window"),
            (
                RateLimitConfig::token_bucket(1, Duration::MAX, 1),
                "longer than 100 years",
            ),
            (
                RateLimitConfig::sliding_window(1, Duration::MAX),
                "longer than 100 years",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{config:?}: {error}");
        }
        assert!(RateLimitConfig::unlimited().validate().is_ok());
        assert!(RateLimitConfig::unlimited().admission().is_none());
    }
}
