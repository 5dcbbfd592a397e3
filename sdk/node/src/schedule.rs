//! Recurring schedules for JavaScript: what `putSchedule(options)` takes (an interval
//! schedule, `everyMs`, or a cron one, `cron` and `timeZone`) read into the core's
//! [`Schedule`], and [`ScheduleInfo`], what `putSchedule` and `schedules()` report of
//! one. The rules (which instants a schedule has, names, bounds, cron syntax, time
//! zones) are the core's (`a3s_lane::Schedule::validate`); here only the JavaScript
//! types and ranges are checked, nothing rounded or clamped.
//!
//! `ScheduleOptions` is typed by hand in `index.d.ts.header` (a union: exactly one of
//! `everyMs` and `cron`), so the reader below is not a `#[napi(object)]`.

use a3s_lane::{Every, LaneError, Missed, Schedule, ScheduleInfo as CoreInfo, check_schedule_name};
use napi::bindgen_prelude::{Either, FromNapiValue, Null};
use napi::sys;
use napi_derive::napi;
use serde_json::Value;

use crate::convert::{At, Given, Js, MAX_SAFE_INTEGER, options_object};
use crate::error::JsFailure;

/// The names of `ScheduleOptions.missed`, as the core's [`Missed`].
const MISSED: [(&str, Missed); 2] = [("skip", Missed::Skip), ("runOnce", Missed::RunOnce)];

/// The argument of `putSchedule`, as JavaScript gave it (each field read, not checked).
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    name: Js<String>,
    lane: Js<String>,
    command_type: Js<String>,
    /// The payload, converted by `runtime.js` (the JSON rule) before the rest is read.
    payload: Given,
    every_ms: Option<Js<f64>>,
    cron: Option<Js<String>>,
    time_zone: Option<Js<String>>,
    missed: Option<Js<String>>,
    jitter_ms: Option<Js<f64>>,
}

options_object!(
    ScheduleOptions,
    "an object like { name, lane, commandType, payload, everyMs } or { name, lane, commandType, payload, cron, timeZone }",
    [
        "name",
        "lane",
        "commandType",
        "payload",
        "everyMs",
        "cron",
        "timeZone",
        "missed",
        "jitterMs"
    ],
    required: [
        ("name", "the schedule's name, unique per queue"),
        ("lane", "the lane its commands go to"),
        ("commandType", "the handler type of its commands")
    ]
);

impl FromNapiValue for ScheduleOptions {
    unsafe fn from_napi_value(env: sys::napi_env, raw: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: the handles napi-rs passed for the current call.
        let given = unsafe { Given::from_raw(env, raw) };
        Ok(Self {
            name: given.get("name")?.to()?,
            lane: given.get("lane")?.to()?,
            command_type: given.get("commandType")?.to()?,
            payload: given.get("payload")?,
            every_ms: given.get("everyMs")?.to()?,
            cron: given.get("cron")?.to()?,
            time_zone: given.get("timeZone")?.to()?,
            missed: given.get("missed")?.to()?,
            jitter_ms: given.get("jitterMs")?.to()?,
        })
    }
}

impl ScheduleOptions {
    /// The payload as given (`None` when absent), for the JSON check of `runtime.js`.
    pub(crate) fn payload<'env>(
        &self,
    ) -> napi::Result<Option<napi::bindgen_prelude::Unknown<'env>>> {
        if self.payload.kind()? == napi::ValueType::Undefined {
            return Ok(None);
        }
        self.payload.to().map(Some)
    }

    /// The core's schedule (with `payload`, already JSON), checked by its rules: exactly
    /// one of `everyMs` and `cron`; whole milliseconds; `missed` one of its names.
    pub(crate) fn into_schedule(self, payload: Value) -> Result<Schedule, JsFailure> {
        let at = At::argument("options");
        let name = at.key("name").name(self.name)?;
        check_schedule_name(&name).map_err(|error| invalid(&at.key("name"), &error))?;
        let lane = at.key("lane").name(self.lane)?;
        let command_type = at.key("commandType").name(self.command_type)?;
        let whole = |at: &At<'static>, n: f64| at.whole(n, MAX_SAFE_INTEGER);
        let every_ms = at.field("everyMs", self.every_ms, whole)?;
        let cron = at.field("cron", self.cron, |_, cron| Ok(cron))?;
        let time_zone = at.field("timeZone", self.time_zone, |_, zone| Ok(zone))?;
        let jitter_ms = at.field("jitterMs", self.jitter_ms, whole)?;
        let missed = at.field("missed", self.missed, |at, missed| {
            MISSED
                .iter()
                .find(|(known, _)| *known == missed)
                .map(|(_, policy)| *policy)
                .ok_or_else(|| {
                    at.range_error(format!(
                        "{} must be 'skip' or 'runOnce', got {missed:?}",
                        at.path()
                    ))
                })
        })?;
        let schedule = match (every_ms, cron) {
            (Some(_), Some(_)) => {
                return Err(at.type_error(
                    "options: give everyMs (an interval) or cron (an expression), not both",
                ));
            }
            (None, None) => {
                return Err(at.type_error(
                    "options.everyMs or options.cron is required (an interval in milliseconds, \
                     or a cron expression)",
                ));
            }
            (Some(every_ms), None) => {
                if time_zone.is_some() {
                    return Err(at.key("timeZone").type_error(
                        "options.timeZone is for a cron schedule; an interval (everyMs) fires at \
                         its multiples since the Unix epoch, in every time zone alike",
                    ));
                }
                Schedule::every(
                    name,
                    lane,
                    command_type,
                    payload,
                    std::time::Duration::from_millis(every_ms),
                )
            }
            (None, Some(cron)) => Schedule::cron(
                name,
                lane,
                command_type,
                payload,
                cron,
                time_zone.unwrap_or_else(|| "UTC".into()),
            ),
        };
        let mut schedule = schedule.with_missed(missed.unwrap_or_default());
        schedule.jitter_ms = jitter_ms.unwrap_or(0);
        schedule.validate().map_err(|error| invalid(&at, &error))?;
        Ok(schedule)
    }
}

/// A schedule name argument (`removeSchedule(name)`, ...), checked by the core's rule.
pub(crate) fn schedule_name(name: Js<String>) -> Result<String, JsFailure> {
    let at = At::argument("name");
    let name = at.name(name)?;
    check_schedule_name(&name).map_err(|error| invalid(&at, &error))?;
    Ok(name)
}

/// The core's refusal of a value at `at` (its `InvalidInput`): a `RangeError` with code
/// `INVALID_ARGUMENT` naming the value.
fn invalid(at: &At<'_>, error: &LaneError) -> JsFailure {
    match error {
        LaneError::InvalidInput(reason) | LaneError::ConfigError(reason) => {
            at.range_error(format!("{}: {reason}", at.path()))
        }
        error => error.clone().into(),
    }
}

/// What a queue reports of a recurring schedule (`putSchedule`, `schedules()`): the
/// schedule as put, and where it stands.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct ScheduleInfo {
    /// Its name, unique per queue.
    pub name: String,
    /// The lane its commands go to.
    pub lane: String,
    /// Their handler type.
    pub command_type: String,
    /// Their payload.
    #[napi(ts_type = "unknown")]
    pub payload: Value,
    /// Its interval in milliseconds (it fires at every multiple of it since the Unix
    /// epoch); `null` for a cron schedule.
    pub every_ms: Either<f64, Null>,
    /// Its cron expression; `null` for an interval schedule.
    pub cron: Either<String, Null>,
    /// The IANA time zone its cron expression is read in (`'UTC'` unless given); `null`
    /// for an interval schedule.
    pub time_zone: Either<String, Null>,
    /// What it does about instants it missed: `'skip'` or `'runOnce'`.
    #[napi(ts_type = "ScheduleMissed")]
    pub missed: String,
    /// Each instant's command is delayed by a part of this many milliseconds (0: none).
    pub jitter_ms: f64,
    /// Paused (`pauseSchedule`): it fires nothing until resumed.
    pub paused: bool,
    /// Its next instant, in milliseconds since the Unix epoch; `null` when it has none.
    pub next_fire_at: Either<f64, Null>,
    /// The last instant it fired, in milliseconds since the Unix epoch; `null` before
    /// the first.
    pub last_fired_at: Either<f64, Null>,
    /// The id of the command that instant submitted (`command(id)` reads it); `null`
    /// before the first.
    pub last_command_id: Either<f64, Null>,
    /// How many instants it fired since it was first put.
    pub fired: f64,
    /// How many times it skipped instants since it was first put (missed while the
    /// queue was down or the schedule paused, or refused by its lane).
    pub skipped: f64,
}

fn number_or_null(n: Option<u64>) -> Either<f64, Null> {
    n.map_or(Either::B(Null), |n| Either::A(n as f64))
}

impl From<CoreInfo> for ScheduleInfo {
    fn from(info: CoreInfo) -> Self {
        let schedule = info.schedule;
        let (every_ms, cron, time_zone) = match schedule.every {
            Every::Interval { every_ms } => (Either::A(every_ms as f64), None, None),
            Every::Cron {
                expression,
                time_zone,
            } => (Either::B(Null), Some(expression), Some(time_zone)),
        };
        let or_null = |text: Option<String>| text.map_or(Either::B(Null), Either::A);
        let missed = match schedule.missed {
            Missed::Skip => "skip",
            Missed::RunOnce => "runOnce",
        };
        Self {
            name: schedule.name,
            lane: schedule.lane,
            command_type: schedule.command_type,
            payload: schedule.payload,
            every_ms,
            cron: or_null(cron),
            time_zone: or_null(time_zone),
            missed: missed.to_owned(),
            jitter_ms: schedule.jitter_ms as f64,
            paused: info.paused,
            next_fire_at: number_or_null(info.next_fire_at_ms),
            last_fired_at: number_or_null(info.last_fired_at_ms),
            last_command_id: number_or_null(info.last_command_id),
            fired: info.fired as f64,
            skipped: info.skipped as f64,
        }
    }
}
