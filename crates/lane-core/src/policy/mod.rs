//! Per-lane policies: the traits the scheduler asks, and the built-in policies beside them.
//!
//! The engines own the mechanisms (delayed re-queueing, throttled lanes woken by the timer,
//! effective priority at dispatch); a policy only decides. Built in, and understood by
//! every engine: [`RetryPolicy`] ([`RetryStrategy`]), [`RateLimitConfig`]
//! ([`AdmissionPolicy`]) and [`PriorityBoostConfig`] ([`PriorityBoost`]). A custom
//! implementation of a trait works in process; an engine that keeps lanes elsewhere (Redis)
//! needs the built-in policy and refuses a custom one with a `ConfigError`. A lane without
//! a policy pays nothing for it.

mod boost;
mod rate_limit;
mod retry;

pub use boost::PriorityBoostConfig;
pub use rate_limit::RateLimitConfig;
pub use retry::{RetryJitter, RetryPolicy, RetryPolicyBuilder};

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::LaneError;

/// Decides whether a failed command runs again, and after how long.
///
/// ```
/// use a3s_lane::{LaneError, RetryStrategy};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct TwiceQuickly;
///
/// impl RetryStrategy for TwiceQuickly {
///     fn retry_delay(&self, failures: u32, _error: &LaneError) -> Option<Duration> {
///         (failures <= 2).then_some(Duration::from_millis(10))
///     }
/// }
/// ```
pub trait RetryStrategy: Send + Sync + Debug + 'static {
    /// `failures` counts the failed attempts so far (1 after the first failure).
    /// Return the delay before the next attempt, or `None` to give up. The queue never
    /// asks about errors that are not [`LaneError::is_retryable`].
    fn retry_delay(&self, failures: u32, error: &LaneError) -> Option<Duration>;

    /// The built-in policy this is, if it is one: an engine that runs commands in other
    /// processes (Redis) sends it there. A custom strategy returns `None` (the default)
    /// and works in process only.
    fn as_retry_policy(&self) -> Option<&RetryPolicy> {
        None
    }
}

fn _retry_is_dyn_compatible(_: Box<dyn RetryStrategy>) {}

/// Per-lane admission control (rate limiting): builds one [`Admission`] per lane.
///
/// ```
/// use a3s_lane::{Admission, AdmissionPolicy};
/// use tokio::time::Instant;
///
/// #[derive(Debug)]
/// struct Closed;
///
/// #[derive(Debug)]
/// struct NeverNow;
/// impl Admission for NeverNow {
///     fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
///         Err(now + std::time::Duration::from_secs(3600))
///     }
/// }
///
/// impl AdmissionPolicy for Closed {
///     fn admission(&self) -> Option<Box<dyn Admission>> {
///         Some(Box::new(NeverNow))
///     }
/// }
/// ```
pub trait AdmissionPolicy: Send + Sync + Debug + 'static {
    /// The lane's admission state, or `None` when the policy admits everything.
    fn admission(&self) -> Option<Box<dyn Admission>>;

    /// Checks the policy's values when its lane is added; `Err` says what is wrong and
    /// what to do, and becomes a [`LaneError::ConfigError`] naming the lane.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The built-in rate limit this is, if it is one: an engine that keeps lanes in
    /// Redis enforces it there. A custom policy returns `None` (the default) and works in
    /// process only.
    fn as_rate_limit(&self) -> Option<&RateLimitConfig> {
        None
    }
}

/// One lane's admission state, asked by the scheduler right before it starts a command.
pub trait Admission: Send + Debug {
    /// Takes a permit for a command that starts now, or says when to ask again.
    /// Called only when a command will really start if it returns `Ok`.
    fn try_acquire(&mut self, now: Instant) -> Result<(), Instant>;
}

fn _admission_is_dyn_compatible(_: Box<dyn Admission>, _: Box<dyn AdmissionPolicy>) {}

/// Raises the priority of a lane whose oldest pending command has waited long.
///
/// ```
/// use a3s_lane::PriorityBoost;
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct OneLevelAfterASecond;
///
/// impl PriorityBoost for OneLevelAfterASecond {
///     fn boost(&self, waited: Duration) -> u8 {
///         u8::from(waited >= Duration::from_secs(1))
///     }
/// }
/// ```
pub trait PriorityBoost: Send + Sync + Debug + 'static {
    /// How many levels to subtract from the lane's priority when its head command has
    /// waited `waited`. Evaluated at dispatch time; no timer per command.
    fn boost(&self, waited: Duration) -> u8;

    /// Checks the boost's values when its lane is added; `Err` says what is wrong and
    /// what to do, and becomes a [`LaneError::ConfigError`] naming the lane.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The built-in boost this is, if it is one: an engine that keeps lanes in Redis
    /// applies it there. A custom boost returns `None` (the default) and works in process
    /// only.
    fn as_boost_config(&self) -> Option<&PriorityBoostConfig> {
        None
    }
}

fn _boost_is_dyn_compatible(_: Box<dyn PriorityBoost>) {}
