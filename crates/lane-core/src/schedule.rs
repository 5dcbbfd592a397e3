//! Recurring schedules: a named [`Schedule`] submits a replayable command (type, payload,
//! lane) at each instant of a fixed interval or of a cron expression in a time zone.
//!
//! The rules here are every engine's: which instants a schedule has
//! ([`Schedule::next_after`]), what is due when an engine looks ([`Schedule::due`]: fire
//! the latest instant, skip the missed ones, as the schedule's [`Missed`] policy says),
//! and the per-instant jitter. An engine fires an instant by moving the schedule's next
//! instant forward atomically with the command's enqueue — a compare-and-set on the
//! instant — so each instant fires once however many processes look.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::CommandId;
use crate::config::MAX_DURATION;
use crate::error::{LaneError, Result};

/// The longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 200;

/// How late an instant may be fired: an instant found more than this after its time is
/// missed (the process was down, or the schedule paused), and the schedule's [`Missed`]
/// policy decides.
pub const MISSED_GRACE: Duration = Duration::from_secs(10);

/// The most jitter a schedule takes: an hour.
pub const MAX_JITTER: Duration = Duration::from_secs(3600);

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// At every multiple of the interval since the Unix epoch (every 5 minutes fires at
    /// :00, :05, …, in every process alike).
    Interval {
        /// The interval, in ms.
        every_ms: u64,
    },
    /// At each instant of a cron expression (5 fields, or 6 with seconds first; `L`,
    /// `#`, `W` and `@daily`-style nicknames allowed) in an IANA time zone such as
    /// `Europe/Berlin`. A local time skipped by a daylight-saving change fires right
    /// after the change; one that occurs twice fires once.
    Cron {
        /// The cron expression.
        expression: String,
        /// The IANA time zone it is read in (`UTC` for none).
        time_zone: String,
    },
}

/// What a schedule does about instants it missed (the process was down, or it was
/// paused): see [`MISSED_GRACE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Skip them (reported as skipped); the next instant fires as usual. The default.
    #[default]
    Skip,
    /// Fire the latest of them once, right away; the rest are skipped.
    RunOnce,
}

/// A named recurring submit of a replayable command. Build with [`Schedule::every`] or
/// [`Schedule::cron`]; checked by [`Schedule::validate`] when it is put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its name, unique per queue (putting a schedule of the same name replaces it).
    pub name: String,
    /// The lane its commands go to.
    pub lane: String,
    /// Their handler type.
    pub command_type: String,
    /// Their payload.
    pub payload: Value,
    /// When it fires.
    pub every: Every,
    /// What it does about missed instants.
    pub missed: Missed,
    /// Each instant's command is delayed by a pseudo-random part of this (the same for
    /// an instant in every process), so many schedules of one instant spread out.
    pub jitter_ms: u64,
}

impl Schedule {
    /// Fires every `interval`, at its multiples since the Unix epoch.
    pub fn every(
        name: impl Into<String>,
        lane: impl Into<String>,
        command_type: impl Into<String>,
        payload: Value,
        interval: Duration,
    ) -> Self {
        Self::new(
            name,
            lane,
            command_type,
            payload,
            Every::Interval {
                every_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            },
        )
    }

    /// Fires at each instant of the cron `expression` in `time_zone` (IANA, such as
    /// `Europe/Berlin`, or `UTC`).
    pub fn cron(
        name: impl Into<String>,
        lane: impl Into<String>,
        command_type: impl Into<String>,
        payload: Value,
        expression: impl Into<String>,
        time_zone: impl Into<String>,
    ) -> Self {
        Self::new(
            name,
            lane,
            command_type,
            payload,
            Every::Cron {
                expression: expression.into(),
                time_zone: time_zone.into(),
            },
        )
    }

    fn new(
        name: impl Into<String>,
        lane: impl Into<String>,
        command_type: impl Into<String>,
        payload: Value,
        every: Every,
    ) -> Self {
        Self {
            name: name.into(),
            lane: lane.into(),
            command_type: command_type.into(),
            payload,
            every,
            missed: Missed::Skip,
            jitter_ms: 0,
        }
    }

    /// What to do about missed instants (default [`Missed::Skip`]).
    pub fn with_missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// Delays each instant's command by a pseudo-random part of `jitter` (at most
    /// [`MAX_JITTER`], and less than the interval).
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Checks the schedule: a name (1 to [`MAX_SCHEDULE_NAME_BYTES`] bytes, no control
    /// characters), an interval from 1 ms to 100 years, a cron expression that parses and
    /// has an instant, a known time zone, a jitter within bounds. The lane and the
    /// command type are checked by the engine.
    pub fn validate(&self) -> Result<()> {
        check_schedule_name(&self.name)?;
        match &self.every {
            Every::Interval { every_ms } => {
                if *every_ms == 0 {
                    return Err(invalid(format!(
                        "schedule '{}': an interval of 0 never advances; give at least 1 ms",
                        self.name
                    )));
                }
                if Duration::from_millis(*every_ms) > MAX_DURATION {
                    return Err(invalid(format!(
                        "schedule '{}': an interval of {every_ms} ms is longer than 100 years",
                        self.name
                    )));
                }
                if self.jitter_ms >= *every_ms && self.jitter_ms > 0 {
                    return Err(invalid(format!(
                        "schedule '{}': a jitter of {} ms is not less than its interval \
                         ({every_ms} ms); give a smaller jitter",
                        self.name, self.jitter_ms
                    )));
                }
            }
            Every::Cron { .. } => {
                let cron = self.parsed_cron()?;
                if cron.next_after(0)?.is_none() {
                    return Err(invalid(format!(
                        "schedule '{}': the cron expression never fires",
                        self.name
                    )));
                }
            }
        }
        if Duration::from_millis(self.jitter_ms) > MAX_JITTER {
            return Err(invalid(format!(
                "schedule '{}': a jitter of {} ms is more than an hour",
                self.name, self.jitter_ms
            )));
        }
        Ok(())
    }

    fn parsed_cron(&self) -> Result<ParsedCron> {
        match &self.every {
            Every::Cron {
                expression,
                time_zone,
            } => ParsedCron::parse(&self.name, expression, time_zone),
            Every::Interval { .. } => Err(invalid("not a cron schedule".into())),
        }
    }

    /// Its first instant strictly after `after_ms` (ms since the Unix epoch), or `None`
    /// when there is none (a cron expression past its last year).
    pub fn next_after(&self, after_ms: u64) -> Result<Option<u64>> {
        match &self.every {
            Every::Interval { every_ms } => Ok((after_ms / every_ms)
                .checked_add(1)
                .and_then(|n| n.checked_mul(*every_ms))),
            Every::Cron { .. } => self.parsed_cron()?.next_after(after_ms),
        }
    }

    /// Its latest instant at or before `at_ms`, if any.
    pub fn latest_at(&self, at_ms: u64) -> Result<Option<u64>> {
        match &self.every {
            Every::Interval { every_ms } => Ok(Some(at_ms / every_ms * every_ms)),
            Every::Cron { .. } => self.parsed_cron()?.latest_at(at_ms),
        }
    }

    /// What is due at `now_ms` for a schedule whose next unfired instant is `next_ms`.
    pub fn due(&self, next_ms: u64, now_ms: u64) -> Result<Due> {
        if now_ms < next_ms {
            return Ok(Due {
                fire: None,
                skipped: None,
                next: Some(next_ms),
            });
        }
        let latest = self.latest_at(now_ms)?.unwrap_or(next_ms).max(next_ms);
        let next = self.next_after(now_ms)?;
        let in_time = now_ms.saturating_sub(latest) <= MISSED_GRACE.as_millis() as u64;
        let fire = (in_time || self.missed == Missed::RunOnce).then_some(latest);
        // Instants from `next_ms` up to the latest (or through it, when it is not fired).
        let skipped = match fire {
            Some(latest) if latest > next_ms => Some((next_ms, latest - 1)),
            Some(_) => None,
            None => Some((next_ms, latest)),
        };
        Ok(Due {
            fire,
            skipped,
            next,
        })
    }

    /// The delay of instant `instant_ms`'s command: a part of the jitter picked by a hash
    /// of the name and the instant, the same in every process.
    pub fn jitter_for(&self, instant_ms: u64) -> Duration {
        if self.jitter_ms == 0 {
            return Duration::ZERO;
        }
        // FNV-1a: stable across processes and versions (std's hashers are not).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.name.bytes().chain(instant_ms.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Duration::from_millis(hash % self.jitter_ms)
    }
}

/// What [`Schedule::due`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The instant to fire now, if any.
    pub fire: Option<u64>,
    /// Instants missed and not fired: the first and the last (inclusive).
    pub skipped: Option<(u64, u64)>,
    /// The next instant after this check; `None` when the schedule has no more.
    pub next: Option<u64>,
}

/// A schedule as an engine keeps it: the schedule and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The schedule.
    pub schedule: Schedule,
    /// Paused: it fires nothing until resumed (instants in between are skipped).
    pub paused: bool,
    /// Its next instant (ms since the Unix epoch); `None` when it has no more.
    pub next_fire_at_ms: Option<u64>,
    /// The last instant it fired.
    pub last_fired_at_ms: Option<u64>,
    /// The command that instant submitted.
    pub last_command_id: Option<CommandId>,
    /// Instants fired since it was put.
    pub fired: u64,
    /// Instants skipped since it was put (missed, paused, or refused by a full lane).
    pub skipped: u64,
}

impl ScheduleInfo {
    /// A schedule put at `now_ms`: its next instant after now, nothing fired.
    pub fn new(schedule: Schedule, now_ms: u64) -> Result<Self> {
        schedule.validate()?;
        let next_fire_at_ms = schedule.next_after(now_ms)?;
        Ok(Self {
            schedule,
            paused: false,
            next_fire_at_ms,
            last_fired_at_ms: None,
            last_command_id: None,
            fired: 0,
            skipped: 0,
        })
    }

    /// The schedule resumed at `now_ms`: its next instant is the first after now.
    pub fn resumed(&mut self, now_ms: u64) -> Result<()> {
        self.paused = false;
        self.next_fire_at_ms = self.schedule.next_after(now_ms)?;
        Ok(())
    }
}

/// The rule for schedule names on every engine.
pub fn check_schedule_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_BYTES {
        return Err(invalid(format!(
            "a schedule name must be 1 to {MAX_SCHEDULE_NAME_BYTES} bytes, got {} bytes",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "schedule name {name:?} holds a control character; use printable characters"
        )));
    }
    Ok(())
}

fn invalid(message: String) -> LaneError {
    LaneError::InvalidInput(message)
}

/// A cron expression read in its time zone.
struct ParsedCron {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl fmt::Debug for ParsedCron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedCron")
            .field("cron", &self.cron.as_str())
            .field("zone", &self.zone)
            .finish()
    }
}

impl ParsedCron {
    fn parse(name: &str, expression: &str, time_zone: &str) -> Result<Self> {
        let cron = croner::Cron::from_str(expression).map_err(|error| {
            invalid(format!(
                "schedule '{name}': cron expression {expression:?} does not parse: {error}; \
                 write 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                 seconds first"
            ))
        })?;
        let zone = chrono_tz::Tz::from_str(time_zone).map_err(|_| {
            invalid(format!(
                "schedule '{name}': unknown time zone {time_zone:?}; give an IANA name such as \
                 'Europe/Berlin' or 'UTC'"
            ))
        })?;
        Ok(Self { cron, zone })
    }

    fn at(&self, ms: u64) -> Result<DateTime<chrono_tz::Tz>> {
        let ms = i64::try_from(ms).map_err(|_| invalid(format!("time {ms} ms is out of range")))?;
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.zone))
            .ok_or_else(|| invalid(format!("time {ms} ms is out of range")))
    }

    fn next_after(&self, after_ms: u64) -> Result<Option<u64>> {
        let after = self.at(after_ms)?;
        Ok(self
            .cron
            .find_next_occurrence(&after, false)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok()))
    }

    fn latest_at(&self, at_ms: u64) -> Result<Option<u64>> {
        let at = self.at(at_ms)?;
        Ok(self
            .cron
            .find_previous_occurrence(&at, true)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn daily(at: &str, zone: &str) -> Schedule {
        Schedule::cron("report", "jobs", "report", json!(null), at, zone)
    }

    #[test]
    fn intervals_fire_at_their_multiples_since_the_epoch() {
        let s = Schedule::every("tick", "jobs", "t", json!(null), Duration::from_secs(300));
        assert_eq!(
            s.next_after(ms("2026-12-05T10:01:00Z")).unwrap(),
            Some(ms("2026-12-05T10:05:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-12-05T10:05:00Z")).unwrap(),
            Some(ms("2026-12-05T10:10:00Z"))
        );
        assert_eq!(
            s.latest_at(ms("2026-12-05T10:05:00Z")).unwrap(),
            Some(ms("2026-12-05T10:05:00Z"))
        );
    }

    #[test]
    fn cron_reads_local_time_in_its_zone() {
        let s = daily("0 9 * * *", "Europe/Berlin");
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(
            s.next_after(ms("2026-12-05T10:00:00Z")).unwrap(),
            Some(ms("2026-12-06T08:00:00Z"))
        );
    }

    #[test]
    fn a_local_time_skipped_by_spring_forward_fires_right_after_the_change() {
        // Europe/Berlin, 2026-03-29: 02:00 jumps to 03:00 (UTC 01:00).
        let s = daily("30 2 * * *", "Europe/Berlin");
        let next = s.next_after(ms("2026-03-28T12:00:00Z")).unwrap().unwrap();
        assert_eq!(
            next,
            ms("2026-03-29T01:00:00Z"),
            "03:00 local, the first instant after the gap"
        );
        // The day after, 02:30 exists again (CEST, UTC+2).
        assert_eq!(
            s.next_after(next).unwrap(),
            Some(ms("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn a_local_time_that_occurs_twice_in_the_fall_fires_once() {
        // Europe/Berlin, 2026-10-25: 03:00 goes back to 02:00; 02:30 happens twice.
        let s = daily("30 2 * * *", "Europe/Berlin");
        let first = s.next_after(ms("2026-10-24T12:00:00Z")).unwrap().unwrap();
        assert_eq!(first, ms("2026-10-25T00:30:00Z"), "the first 02:30 (CEST)");
        let second = s.next_after(first).unwrap().unwrap();
        assert_eq!(
            second,
            ms("2026-10-26T01:30:00Z"),
            "the next day, not the repeated 02:30"
        );
    }

    #[test]
    fn an_hourly_schedule_keeps_real_hours_across_both_changes() {
        let s = daily("0 * * * *", "America/New_York");
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST; each real hour fires once.
        let mut at = ms("2026-11-01T04:30:00Z");
        let mut seen = Vec::new();
        for _ in 0..4 {
            at = s.next_after(at).unwrap().unwrap();
            seen.push(at);
        }
        let hour = 3_600_000;
        assert!(
            seen.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= hour),
            "{seen:?}"
        );
    }

    #[test]
    fn due_fires_the_latest_instant_and_reports_the_missed_ones() {
        let s = Schedule::every("tick", "jobs", "t", json!(null), Duration::from_secs(60));
        let next = ms("2026-12-05T10:00:00Z");
        // Just in time.
        let due = s.due(next, next + 5).unwrap();
        assert_eq!((due.fire, due.skipped), (Some(next), None));
        assert_eq!(due.next, Some(next + 60_000));
        // Not yet.
        assert_eq!(s.due(next, next - 1).unwrap().fire, None);
        // Down for an hour: skip everything, by default.
        let later = next + 3_600_000 + 30_000;
        let due = s.due(next, later).unwrap();
        assert_eq!(due.fire, None);
        assert_eq!(due.skipped, Some((next, next + 3_600_000)));
        // RunOnce fires the latest once.
        let due = s
            .clone()
            .with_missed(Missed::RunOnce)
            .due(next, later)
            .unwrap();
        assert_eq!(due.fire, Some(next + 3_600_000));
        assert_eq!(due.skipped, Some((next, next + 3_600_000 - 1)));
        assert_eq!(due.next, Some(next + 3_660_000));
    }

    #[test]
    fn jitter_is_the_same_for_an_instant_and_below_the_bound() {
        let s = Schedule::every("tick", "jobs", "t", json!(null), Duration::from_secs(60))
            .with_jitter(Duration::from_secs(10));
        let a = s.jitter_for(1_000_000);
        assert_eq!(a, s.jitter_for(1_000_000));
        assert!(a < Duration::from_secs(10));
        let spread: std::collections::HashSet<_> =
            (0..50).map(|i| s.jitter_for(i * 60_000)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_value() {
        let bad = [
            (daily("61 * * * *", "UTC"), "does not parse"),
            (daily("0 9 * * *", "Mars/Olympus"), "unknown time zone"),
            (
                Schedule::every("", "jobs", "t", json!(null), Duration::from_secs(1)),
                "1 to 200 bytes",
            ),
            (
                Schedule::every("x", "jobs", "t", json!(null), Duration::ZERO),
                "interval of 0",
            ),
            (
                Schedule::every("x", "jobs", "t", json!(null), Duration::from_secs(10))
                    .with_jitter(Duration::from_secs(10)),
                "not less than its interval",
            ),
            (
                daily("0 9 * * *", "UTC").with_jitter(Duration::from_secs(7200)),
                "more than an hour",
            ),
            (
                Schedule::every("a\nb", "jobs", "t", json!(null), Duration::from_secs(1)),
                "control character",
            ),
        ];
        for (schedule, says) in bad {
            let error = schedule.validate().unwrap_err();
            assert!(matches!(error, LaneError::InvalidInput(_)), "{error}");
            assert!(
                error.to_string().contains(says),
                "{error} should say {says}"
            );
        }
        assert!(
            Schedule::every("x", "jobs", "t", json!(null), Duration::from_secs(u64::MAX))
                .validate()
                .is_err()
        );
    }
}
