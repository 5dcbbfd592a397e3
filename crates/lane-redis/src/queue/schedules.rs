//! Recurring schedules on Redis: putting, listing, pausing, resuming and removing them,
//! from any client (a queue without workers too). Each change is one script
//! (`schedule_put.lua`, `schedule_control.lua`); the workers fire the instants
//! (`worker/schedules.rs`). The rules (validation, instants, what is due) are the core's
//! ([`Schedule`]), so a schedule behaves as in process.

use std::time::{SystemTime, UNIX_EPOCH};

use lane_core::{LaneError, Result, Schedule, ScheduleInfo, check_schedule_name};
use redis::Value;

use super::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, array, redis_error, string};

/// How many times a put or resume tries again when the schedule moved meanwhile (it was
/// replaced, or a worker fired an instant after the caller read its clock).
const RESUME_ATTEMPTS: usize = 8;

/// Where a schedule stands, as the scripts keep it (see the prelude):
/// `paused|next|last fired|last command|fired|skipped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleState {
    pub(crate) paused: bool,
    pub(crate) next_fire_at_ms: Option<u64>,
    pub(crate) last_fired_at_ms: Option<u64>,
    pub(crate) last_command_id: Option<u64>,
    pub(crate) fired: u64,
    pub(crate) skipped: u64,
}

impl ScheduleState {
    pub(crate) fn parse(raw: &str) -> Result<Self> {
        let fields: Vec<&str> = raw.split('|').collect();
        let [paused, next, last, last_id, fired, skipped] = fields.as_slice() else {
            return Err(wire::protocol("schedule state"));
        };
        let optional = |text: &str| -> Result<Option<u64>> {
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| wire::protocol("schedule state"))
        };
        Ok(Self {
            paused: *paused == "1",
            next_fire_at_ms: optional(next)?,
            last_fired_at_ms: optional(last)?,
            last_command_id: optional(last_id)?,
            fired: optional(fired)?.unwrap_or(0),
            skipped: optional(skipped)?.unwrap_or(0),
        })
    }

    fn into_info(self, schedule: Schedule) -> ScheduleInfo {
        ScheduleInfo {
            schedule,
            paused: self.paused,
            next_fire_at_ms: self.next_fire_at_ms,
            last_fired_at_ms: self.last_fired_at_ms,
            last_command_id: self.last_command_id,
            fired: self.fired,
            skipped: self.skipped,
        }
    }
}

/// A stored schedule's JSON, read back.
pub(crate) fn parse_schedule(json: &str) -> Result<Schedule> {
    serde_json::from_str(json).map_err(|error| {
        LaneError::Storage(format!(
            "redis: a stored schedule does not parse ({error}); are all processes on the same \
             a3s-lane version?"
        ))
    })
}

fn unknown_schedule(name: &str) -> LaneError {
    LaneError::InvalidInput(format!(
        "no schedule named '{name}'; put_schedule creates it"
    ))
}

fn ms_arg(ms: Option<u64>) -> String {
    ms.map(|ms| ms.to_string()).unwrap_or_default()
}

impl RedisQueue {
    /// Now on the Redis server's clock (the offset measured at connect), in ms since the
    /// Unix epoch: where a schedule's next instant is counted from.
    fn redis_now_ms(&self) -> u64 {
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        u64::try_from(local.saturating_add(self.inner.clock_offset_ms)).unwrap_or(0)
    }

    /// Creates or replaces the recurring schedule of `schedule.name`: from now on a
    /// [`RedisWorker`](crate::RedisWorker) submits its command at each instant, once
    /// however many workers run. A replaced schedule keeps its counts, its last instant
    /// and whether it is paused; its next instant is the first after now (or, if the
    /// schedule it replaces has an instant due now that no worker fired yet, and that is
    /// an instant of the new one too, that instant: a put never drops it). Refused when
    /// the schedule is invalid ([`Schedule::validate`]), its command type blank, its
    /// payload breaks the payload rule, or its lane is not declared in Redis
    /// ([`LaneError::LaneNotFound`]).
    pub async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        schedule.validate()?;
        let command_type = &schedule.command_type;
        if command_type.trim().is_empty() || command_type.contains('\n') {
            return Err(LaneError::InvalidInput(format!(
                "schedule '{}': command type {command_type:?} must not be blank or hold a \
                 newline; give the name its handler is registered under",
                schedule.name
            )));
        }
        lane_core::check_payload(&schedule.payload)?;
        let json = serde_json::to_string(&schedule)?;
        let mut after = self.redis_now_ms();
        for _ in 0..RESUME_ATTEMPTS {
            let next = schedule.next_after(after)?;
            let keep = self.instant_to_keep(&schedule, next).await?;
            let reply: Vec<String> = SCRIPTS
                .schedule_put
                .key(&self.inner.prefix)
                .arg(&schedule.name)
                .arg(&json)
                .arg(&schedule.lane)
                .arg(ms_arg(next))
                .arg(ms_arg(keep))
                .run(&mut self.conn())
                .await
                .map_err(|e| redis_error(&e))?;
            match reply.as_slice() {
                [ok, state] if ok == "ok" => {
                    return Ok(ScheduleState::parse(state)?.into_info(schedule));
                }
                [unknown] if unknown == "unknown_lane" => {
                    return Err(self.lane_not_found(&schedule.lane).await);
                }
                // A worker fired an instant after our clock reading: start after it.
                [stale, last] if stale == "stale" => {
                    after = last
                        .parse::<u64>()
                        .map_err(|_| wire::protocol("schedule_put"))?
                        .max(after);
                }
                _ => return Err(wire::protocol("schedule_put")),
            }
        }
        Err(LaneError::QueueError(format!(
            "schedule '{}' kept firing ahead of this put; put it again",
            schedule.name
        )))
    }

    /// The next instant of the schedule a put replaces, when it is to stay: not after the
    /// new next instant `next`, an instant of the new schedule too, and not older than
    /// the missed grace (the workers fire it, or skip it as missed, at once). Without
    /// this, a put at the moment an instant is due (every producer putting its schedules
    /// at start) could move the schedule past it before a worker fired it.
    async fn instant_to_keep(&self, schedule: &Schedule, next: Option<u64>) -> Result<Option<u64>> {
        let read: Vec<String> = SCRIPTS
            .schedule_control
            .key(&self.inner.prefix)
            .arg("get")
            .arg(&schedule.name)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let [_, state] = read.as_slice() else {
            return Ok(None);
        };
        let Some(old) = ScheduleState::parse(state)?.next_fire_at_ms else {
            return Ok(None);
        };
        let grace = lane_core::MISSED_GRACE.as_millis() as u64;
        let keep = next.is_none_or(|next| old < next)
            && old.saturating_add(grace) >= self.redis_now_ms()
            && schedule.next_after(old.saturating_sub(1))? == Some(old);
        Ok(keep.then_some(old))
    }

    /// Removes a schedule; false when there was none of that name.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        check_schedule_name(name)?;
        let removed: i64 = SCRIPTS
            .schedule_control
            .key(&self.inner.prefix)
            .arg("remove")
            .arg(name)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(removed > 0)
    }

    /// Every schedule with its next instant and counts, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let reply: Value = SCRIPTS
            .schedule_control
            .key(&self.inner.prefix)
            .arg("list")
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let mut parts = array(reply)?.into_iter();
        let (Some(defs), Some(states)) = (parts.next(), parts.next()) else {
            return Err(wire::protocol("schedule list"));
        };
        let states = array(states)?;
        let mut by_name = std::collections::HashMap::new();
        for pair in states.chunks(2) {
            let [name, state] = pair else {
                return Err(wire::protocol("schedule list"));
            };
            by_name.insert(string(name)?, string(state)?);
        }
        let mut out = Vec::new();
        for pair in array(defs)?.chunks(2) {
            let [name, def] = pair else {
                return Err(wire::protocol("schedule list"));
            };
            // A schedule removed between the two reads of one script cannot happen; one
            // without a state is not listed.
            let Some(state) = by_name.get(&string(name)?) else {
                continue;
            };
            out.push(ScheduleState::parse(state)?.into_info(parse_schedule(&string(def)?)?));
        }
        out.sort_by(|a, b| a.schedule.name.cmp(&b.schedule.name));
        Ok(out)
    }

    /// Pauses a schedule: no worker fires it until resumed. An unknown name is
    /// [`LaneError::InvalidInput`].
    pub async fn pause_schedule(&self, name: &str) -> Result<()> {
        check_schedule_name(name)?;
        let outcome: String = SCRIPTS
            .schedule_control
            .key(&self.inner.prefix)
            .arg("pause")
            .arg(name)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(unknown_schedule(name)),
        }
    }

    /// Resumes a paused schedule: its next instant is the first after now; the instants
    /// in between count as skipped (event `queue.schedule.skipped`, reason `paused`).
    pub async fn resume_schedule(&self, name: &str) -> Result<()> {
        check_schedule_name(name)?;
        let mut floor = 0;
        for _ in 0..RESUME_ATTEMPTS {
            let read: Vec<String> = SCRIPTS
                .schedule_control
                .key(&self.inner.prefix)
                .arg("get")
                .arg(name)
                .run(&mut self.conn())
                .await
                .map_err(|e| redis_error(&e))?;
            let [def, state] = read.as_slice() else {
                return Err(unknown_schedule(name));
            };
            let schedule = parse_schedule(def)?;
            // Never at or before the last instant fired (our clock may lag Redis's).
            if let Some(last) = ScheduleState::parse(state)?.last_fired_at_ms {
                floor = floor.max(last);
            }
            // Instants need the schedule's rules (cron, time zones): computed here, then
            // applied only if the schedule is still the one read.
            let now = self.redis_now_ms();
            let next = schedule.next_after(now.max(floor))?;
            let latest = schedule.latest_at(now)?;
            let outcome: String = SCRIPTS
                .schedule_control
                .key(&self.inner.prefix)
                .arg("resume")
                .arg(name)
                .arg(def)
                .arg(now)
                .arg(ms_arg(next))
                .arg(ms_arg(latest))
                .run(&mut self.conn())
                .await
                .map_err(|e| redis_error(&e))?;
            match outcome.as_str() {
                "ok" => return Ok(()),
                "unknown" => return Err(unknown_schedule(name)),
                _ => continue, // replaced meanwhile: read it again
            }
        }
        Err(LaneError::QueueError(format!(
            "schedule '{name}' kept changing while it was resumed; resume it again"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_with_absent_fields() {
        let state = ScheduleState::parse("1|1700000000000||||3").unwrap();
        assert_eq!(
            state,
            ScheduleState {
                paused: true,
                next_fire_at_ms: Some(1_700_000_000_000),
                last_fired_at_ms: None,
                last_command_id: None,
                fired: 0,
                skipped: 3,
            }
        );
        assert!(ScheduleState::parse("0|x||||").is_err());
        assert!(ScheduleState::parse("0|1").is_err());
    }
}
