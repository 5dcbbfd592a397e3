//! How a command is submitted — when it may start, by when it must, and the idempotency
//! key that makes a second submit of the same work return the first: [`SubmitOptions`],
//! checked by one rule on every engine ([`SubmitOptions::resolve`]).
//!
//! Times cross processes and restarts as milliseconds since the Unix epoch (the store and
//! Redis keep those); within a process they become `tokio::time::Instant`s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::MAX_DURATION;
use crate::error::{LaneError, Result};

/// How far in the past a `run_at` or `start_by` may lie and still be taken (as "now"):
/// one second, for clocks that differ a little between a caller and the queue.
pub const PAST_TOLERANCE: Duration = Duration::from_secs(1);

/// The longest idempotency key ([`SubmitOptions::with_key`]), in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;

/// How one command is submitted: not before a delay or a wall-clock time, and (optionally)
/// started by a deadline or not at all. The default submits a command that may start now
/// and has no deadline.
///
/// ```
/// use std::time::Duration;
/// use a3s_lane::SubmitOptions;
///
/// let options = SubmitOptions::new()
///     .with_delay(Duration::from_secs(30))
///     .with_start_within(Duration::from_secs(90));
/// assert_eq!(options.delay(), Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SubmitOptions {
    delay: Option<Duration>,
    run_at: Option<SystemTime>,
    start_by: Option<SystemTime>,
    start_within: Option<Duration>,
    key: Option<String>,
    group: Option<String>,
}

impl SubmitOptions {
    /// A command that may start now and has no start-by deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The command waits `delay` (shown as delayed), then takes its place at the back of
    /// its lane. Not together with [`with_run_at`](Self::with_run_at).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The command waits until the wall-clock time `at`, then takes its place at the
    /// back of its lane. Not together with [`with_delay`](Self::with_delay).
    pub fn with_run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// If the command has not started by the wall-clock time `at`, it never runs: it
    /// ends with [`LaneError::Expired`]. Separate from the lane's run timeout. Not
    /// together with [`with_start_within`](Self::with_start_within).
    pub fn with_start_by(mut self, at: SystemTime) -> Self {
        self.start_by = Some(at);
        self
    }

    /// A start-by deadline `within` after the submit (see
    /// [`with_start_by`](Self::with_start_by)).
    pub fn with_start_within(mut self, within: Duration) -> Self {
        self.start_within = Some(within);
        self
    }

    /// An idempotency key: while a command submitted with the same key to the same queue
    /// is delayed, pending or running (waiting for a retry included), this submit queues
    /// nothing and returns that command instead (its id; awaiting gives its result;
    /// [`SubmittedCommand::is_duplicate`](crate::SubmittedCommand::is_duplicate) says so).
    /// Once it finished, the key is free again. Keys are per queue, across lanes; a
    /// durable command keeps its key across a restart. At most [`MAX_KEY_BYTES`], not
    /// empty.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The command's group inside its lane (a tenant, a session): groups take turns, and
    /// each may have a concurrency cap and a rate limit (see [`crate::group`]). At most
    /// [`MAX_GROUP_BYTES`](crate::MAX_GROUP_BYTES), not empty.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The group, if one was given.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The idempotency key, if one was given.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The delay, if one was given.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The start time, if one was given.
    pub fn run_at(&self) -> Option<SystemTime> {
        self.run_at
    }

    /// The start-by deadline, if one was given as a time.
    pub fn start_by(&self) -> Option<SystemTime> {
        self.start_by
    }

    /// The start-by deadline, if one was given relative to the submit.
    pub fn start_within(&self) -> Option<Duration> {
        self.start_within
    }

    /// [`resolve`](Self::resolve) against the clock, read only when the options name a
    /// time (the common submit names none).
    pub(crate) fn resolve_now(&self) -> Result<Timing> {
        let timed = self.delay.is_some()
            || self.run_at.is_some()
            || self.start_by.is_some()
            || self.start_within.is_some();
        self.resolve(if timed {
            SystemTime::now()
        } else {
            SystemTime::UNIX_EPOCH
        })
    }

    /// Checks the options against the clock reading `now` and resolves them. Errors
    /// ([`LaneError::InvalidInput`]) name the value and what is allowed: a delay and a
    /// start time together, either longer than 100 years ahead, a start time or deadline
    /// more than [`PAST_TOLERANCE`] in the past, or a deadline before the start.
    pub fn resolve(&self, now: SystemTime) -> Result<Timing> {
        if let Some(key) = &self.key {
            check_key(key)?;
        }
        if let Some(group) = &self.group {
            crate::group::check_group(group)?;
        }
        let delay = match (self.delay, self.run_at) {
            (Some(_), Some(_)) => {
                return Err(invalid("give a delay or a run_at, not both".to_owned()));
            }
            (Some(delay), None) => {
                if delay > MAX_DURATION {
                    return Err(invalid(format!(
                        "delay {delay:?} is longer than 100 years; use a shorter one"
                    )));
                }
                Some(delay)
            }
            (None, Some(at)) => Some(ahead("run_at", at, now)?),
            (None, None) => None,
        };
        let start_within = match (self.start_by, self.start_within) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give a start_by or a start_within, not both".to_owned(),
                ));
            }
            (Some(at), None) => Some(ahead("start_by", at, now)?),
            (None, Some(within)) => {
                if within > MAX_DURATION {
                    return Err(invalid(format!(
                        "start_within {within:?} is longer than 100 years; leave it unset for no \
                         deadline"
                    )));
                }
                Some(within)
            }
            (None, None) => None,
        };
        if let (Some(delay), Some(within)) = (delay, start_within)
            && within <= delay
            && !(within.is_zero() && delay.is_zero())
        {
            return Err(invalid(format!(
                "the start-by deadline ({within:?} from now) is not after the time the command \
                 may start ({delay:?} from now), so it could never run; give a later deadline or \
                 a shorter delay"
            )));
        }
        let now_ms = unix_ms(now);
        let at_ms = |d: Duration| now_ms.saturating_add(d.as_millis() as u64);
        Ok(Timing {
            delay: delay.unwrap_or_default(),
            start_within,
            not_before_ms: delay.filter(|d| !d.is_zero()).map(at_ms),
            start_by_ms: start_within.map(at_ms),
        })
    }
}

/// [`SubmitOptions`] once checked: durations from the submit, and the same instants as
/// milliseconds since the Unix epoch (what stores and Redis keep).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// How long the command waits before it is pending (zero: pending now).
    pub delay: Duration,
    /// How long it has to start, if it has a deadline.
    pub start_within: Option<Duration>,
    /// When it may start, if it was delayed.
    pub not_before_ms: Option<u64>,
    /// When it must have started by, if it has a deadline.
    pub start_by_ms: Option<u64>,
}

impl Timing {
    /// The timing of a command read back from a store at `now`: a start time that passed
    /// while nobody ran the queue is now; a deadline that passed is zero (it expires).
    pub fn from_stored(
        not_before_ms: Option<u64>,
        start_by_ms: Option<u64>,
        now: SystemTime,
    ) -> Self {
        let now_ms = unix_ms(now);
        let until = |at: u64| Duration::from_millis(at.saturating_sub(now_ms));
        Self {
            delay: not_before_ms.map(until).unwrap_or_default(),
            start_within: start_by_ms.map(until),
            not_before_ms,
            start_by_ms,
        }
    }

    /// Whether the command has neither a delay nor a deadline.
    pub fn is_plain(&self) -> bool {
        self.delay.is_zero() && self.start_within.is_none()
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How far `at` lies ahead of `now`: zero within the tolerance, an error further back or
/// more than 100 years ahead.
fn ahead(name: &str, at: SystemTime, now: SystemTime) -> Result<Duration> {
    match at.duration_since(now) {
        Ok(ahead) if ahead > MAX_DURATION => Err(invalid(format!(
            "{name} is {ahead:?} ahead, more than 100 years; use an earlier time"
        ))),
        Ok(ahead) => Ok(ahead),
        Err(past) if past.duration() <= PAST_TOLERANCE => Ok(Duration::ZERO),
        Err(past) => Err(invalid(format!(
            "{name} lies {:?} in the past (at most {PAST_TOLERANCE:?} is taken as now); give a \
             time in the future",
            past.duration()
        ))),
    }
}

/// The rule for idempotency keys: not empty, at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(
            "the idempotency key is empty; give a non-empty key, or none for a command that \
             may be submitted twice"
                .to_owned(),
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "the idempotency key is {} bytes long, more than {MAX_KEY_BYTES}; use a shorter \
             key (a hash of a long one)",
            key.len()
        )));
    }
    Ok(())
}

fn invalid(message: String) -> LaneError {
    LaneError::InvalidInput(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn plain_options_resolve_to_now_without_a_deadline() {
        let timing = SubmitOptions::new().resolve(at(1_000)).unwrap();
        assert!(timing.is_plain());
        assert_eq!(timing.not_before_ms, None);
    }

    #[test]
    fn a_delay_and_a_deadline_resolve_to_epoch_milliseconds() {
        let timing = SubmitOptions::new()
            .with_delay(Duration::from_secs(5))
            .with_start_within(Duration::from_secs(10))
            .resolve(at(1_000))
            .unwrap();
        assert_eq!(timing.not_before_ms, Some(1_005_000));
        assert_eq!(timing.start_by_ms, Some(1_010_000));
    }

    #[test]
    fn bad_times_are_refused_with_what_is_allowed() {
        let now = at(1_000);
        let cases = [
            (
                SubmitOptions::new()
                    .with_delay(Duration::from_secs(1))
                    .with_run_at(now),
                "not both",
            ),
            (SubmitOptions::new().with_run_at(at(990)), "in the past"),
            (SubmitOptions::new().with_start_by(at(990)), "in the past"),
            (
                SubmitOptions::new().with_delay(Duration::MAX),
                "longer than 100 years",
            ),
            (
                SubmitOptions::new().with_run_at(now + MAX_DURATION + Duration::from_secs(1)),
                "more than 100 years",
            ),
            (
                SubmitOptions::new()
                    .with_delay(Duration::from_secs(10))
                    .with_start_within(Duration::from_secs(5)),
                "could never run",
            ),
        ];
        for (options, expected) in cases {
            let error = options.resolve(now).unwrap_err();
            assert!(
                matches!(&error, LaneError::InvalidInput(m) if m.contains(expected)),
                "{options:?}: {error}"
            );
        }
    }

    #[test]
    fn a_time_just_past_is_now() {
        let timing = SubmitOptions::new()
            .with_run_at(at(1_000) - Duration::from_millis(500))
            .resolve(at(1_000))
            .unwrap();
        assert_eq!(timing.delay, Duration::ZERO);
        assert_eq!(timing.not_before_ms, None);
    }

    #[test]
    fn stored_times_that_passed_while_down_are_now() {
        let timing = Timing::from_stored(Some(5_000), Some(4_000), at(6));
        assert_eq!(timing.delay, Duration::ZERO);
        assert_eq!(timing.start_within, Some(Duration::ZERO));
    }
}
