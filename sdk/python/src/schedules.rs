//! Recurring schedules between Python and the core: the arguments of `put_schedule` as a
//! core `Schedule`, and a core `ScheduleInfo` as the `ScheduleInfo` dataclass of
//! `a3s_lane._client`.
//!
//! Only the Python shapes are checked here (exactly one of `every=` and `cron=`, the
//! types, seconds or a `timedelta`, `missed` by name); whether the schedule is valid (an
//! interval of at least 1 ms, a cron expression that parses, a known time zone, a jitter
//! below the interval) is the core's rule, and its error (a `ConfigError`) says so.

use std::time::Duration;

use a3s_lane::{Every, Missed, Schedule, ScheduleInfo};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::args::{optional, seconds_or_timedelta, type_name};
use crate::convert::{payload_to_json, to_py};
use crate::error::config_error;
use crate::runtime::python_attr;

/// A `str` argument, or a `TypeError` naming it.
fn text(value: &Bound<'_, PyAny>, name: &str, example: &str) -> PyResult<String> {
    match value.cast::<PyString>() {
        Ok(text) => Ok(text.to_str()?.to_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be a str{example}, got {}",
            type_name(value)
        ))),
    }
}

/// A span the engines count in whole milliseconds: seconds or a `timedelta`, rounded to
/// the nearest millisecond. A span above 0 that rounds to 0 is refused (it is not what
/// was asked for), naming the value.
fn millis(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Duration> {
    let span = seconds_or_timedelta(value, name)?;
    let ms = span.as_nanos().saturating_add(500_000) / 1_000_000;
    if ms == 0 && !span.is_zero() {
        return Err(config_error(
            value.py(),
            format!(
                "{name} must be at least 1 ms (0.001 seconds): schedules count time in whole \
                 milliseconds, got {}",
                value.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        ));
    }
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// `missed=`: "skip" or "run_once".
fn missed_arg(value: &Bound<'_, PyAny>) -> PyResult<Missed> {
    let name = text(value, "missed", " (\"skip\" or \"run_once\")")?;
    match name.as_str() {
        "skip" => Ok(Missed::Skip),
        "run_once" => Ok(Missed::RunOnce),
        _ => Err(config_error(
            value.py(),
            format!("missed must be \"skip\" or \"run_once\", got {name:?}"),
        )),
    }
}

fn missed_name(missed: Missed) -> &'static str {
    match missed {
        Missed::Skip => "skip",
        Missed::RunOnce => "run_once",
    }
}

/// The arguments of `put_schedule` as a core `Schedule` (not yet validated: the engine
/// validates it when it is put).
#[allow(clippy::too_many_arguments)]
pub(crate) fn schedule_arg(
    py: Python<'_>,
    name: &str,
    lane: &str,
    command_type: &str,
    payload: Option<&Bound<'_, PyAny>>,
    every: Option<&Bound<'_, PyAny>>,
    cron: Option<&Bound<'_, PyAny>>,
    time_zone: Option<&Bound<'_, PyAny>>,
    missed: Option<&Bound<'_, PyAny>>,
    jitter: Option<&Bound<'_, PyAny>>,
) -> PyResult<Schedule> {
    let every = optional(every, |e| millis(e, "every"))?;
    let cron = optional(cron, |c| {
        text(c, "cron", " (a cron expression such as \"0 3 * * *\")")
    })?;
    let time_zone = optional(time_zone, |z| {
        text(z, "time_zone", " (an IANA name such as \"Europe/Berlin\")")
    })?;
    let payload = payload_to_json(payload)?;
    let schedule = match (every, cron) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(config_error(
                py,
                format!(
                    "schedule '{name}': give exactly one of every= (an interval: seconds or a \
                     timedelta) and cron= (a cron expression such as \"0 3 * * *\")"
                ),
            ));
        }
        (Some(interval), None) => {
            if let Some(zone) = time_zone {
                return Err(config_error(
                    py,
                    format!(
                        "schedule '{name}': time_zone={zone:?} applies to cron= only; an \
                         interval (every=) fires at its multiples since the Unix epoch, the \
                         same instants in every zone"
                    ),
                ));
            }
            Schedule::every(name, lane, command_type, payload, interval)
        }
        (None, Some(expression)) => Schedule::cron(
            name,
            lane,
            command_type,
            payload,
            expression,
            time_zone.unwrap_or_else(|| "UTC".to_owned()),
        ),
    };
    let mut schedule = schedule;
    if let Some(missed) = optional(missed, missed_arg)? {
        schedule = schedule.with_missed(missed);
    }
    if let Some(jitter) = optional(jitter, |j| millis(j, "jitter"))? {
        schedule = schedule.with_jitter(jitter);
    }
    Ok(schedule)
}

static MAKE_SCHEDULE_INFO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A `ScheduleInfo` of `a3s_lane._client`, made by its `_schedule_info` from the core's
/// values (durations and times in ms; the Python side turns them into `timedelta`s and
/// datetimes).
pub(crate) fn schedule_info_to_py(
    py: Python<'_>,
    info: ScheduleInfo,
) -> PyResult<Bound<'_, PyAny>> {
    let schedule = info.schedule;
    let (every_ms, cron, time_zone) = match schedule.every {
        Every::Interval { every_ms } => (Some(every_ms), None, None),
        Every::Cron {
            expression,
            time_zone,
        } => (None, Some(expression), Some(time_zone)),
    };
    let payload = to_py(py, &schedule.payload)?;
    python_attr(
        py,
        &MAKE_SCHEDULE_INFO,
        "a3s_lane._client",
        "_schedule_info",
    )?
    .call1((
        (schedule.name, schedule.lane, schedule.command_type, payload),
        (
            every_ms,
            cron,
            time_zone,
            missed_name(schedule.missed),
            schedule.jitter_ms,
        ),
        (
            info.paused,
            info.next_fire_at_ms,
            info.last_fired_at_ms,
            info.last_command_id,
            info.fired,
            info.skipped,
        ),
    ))
}
