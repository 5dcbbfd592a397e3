//! Firing recurring schedules: every worker has a schedule task that sleeps until the
//! earliest next instant it knows of, then reads what is due (`schedule_due.lua`, with
//! the Redis clock), computes each schedule's [`Schedule::due`] here (cron and time
//! zones are Rust's) and fires it with `schedule_fire.lua`, a compare-and-set on the
//! instant: of several workers waking for one instant, one fires it and the others find
//! it moved on. No leader, no polling: the task hears of an earlier instant (a schedule
//! put or resumed) from the driver, whose every round trip carries the earliest next
//! instant (a put or resume wakes the idle workers, or one busy one, for that).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lane_core::{LaneError, Result};
use tokio::sync::{Notify, oneshot};

use super::Shared;
use crate::connection::Conn;
use crate::queue::{ScheduleState, parse_schedule};
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, array, opt_string, redis_error, string};

/// Rounds of one look (each fires what is due, then reads again) before the task yields.
const MAX_ROUNDS: usize = 16;

/// How long the task waits before looking again at a due schedule it could not fire (a
/// schedule it cannot read, written by another version).
const STUCK_WAIT: Duration = Duration::from_secs(1);

/// How the driver tells the schedule task of an instant earlier than it sleeps until.
#[derive(Debug)]
pub(super) struct ScheduleWake {
    notify: Notify,
    /// The instant (ms, Redis clock) the task sleeps until; `u64::MAX` while it looks
    /// (any instant is news then) or when it knows of none.
    target_ms: AtomicU64,
}

impl Default for ScheduleWake {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            target_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl ScheduleWake {
    /// A round trip said the earliest next instant is `next_ms`.
    pub(super) fn heard(&self, next_ms: u64) {
        if next_ms < self.target_ms.load(Ordering::Acquire) {
            // Stores a permit if the task is not waiting yet: never lost.
            self.notify.notify_one();
        }
    }
}

/// What one look found.
#[derive(Debug, Default)]
pub(super) struct Looked {
    /// Redis's clock at the last read (ms).
    pub(super) now_ms: u64,
    /// The earliest next instant after the look (ms), if any schedule has one.
    pub(super) earliest: Option<u64>,
    /// A due schedule could not be fired (unreadable): look again only after a while.
    pub(super) stuck: bool,
    /// Instants this worker fired or skipped, and compare-and-sets it lost.
    pub(super) won: usize,
    pub(super) lost: usize,
}

impl Looked {
    fn wait(&self) -> Option<Duration> {
        let earliest = self.earliest?;
        let wait = Duration::from_millis(earliest.saturating_sub(self.now_ms));
        Some(if self.stuck {
            wait.max(STUCK_WAIT)
        } else {
            wait
        })
    }
}

/// The worker's schedule task, until `stop` fires or its sender is dropped.
pub(super) async fn run(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let wake = shared.schedules.clone();
    let backoff = shared.queue.inner.target.backoff;
    let mut delay = backoff.min;
    let mut link_down = false;
    let mut conn = shared.queue.conn();
    loop {
        wake.target_ms.store(u64::MAX, Ordering::Release);
        let wait = match look(&shared, &mut conn).await {
            Ok(looked) => {
                delay = backoff.min;
                if link_down {
                    link_down = false;
                    tracing::info!(worker = %shared.id, "schedules reach Redis again");
                }
                wake.target_ms
                    .store(looked.earliest.unwrap_or(u64::MAX), Ordering::Release);
                looked.wait()
            }
            Err(error) => {
                if !link_down {
                    link_down = true;
                    tracing::warn!(worker = %shared.id, %error, "could not fire schedules; retrying");
                }
                let wait = delay;
                delay = backoff.next(delay);
                Some(wait)
            }
        };
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            () = wake.notify.notified() => {}
            () = sleep => {}
        }
    }
}

/// Fires (or skips) what is due now, as many rounds as it takes; returns what it found.
pub(super) async fn look(shared: &Shared, conn: &mut Conn) -> Result<Looked> {
    let mut looked = Looked::default();
    for _ in 0..MAX_ROUNDS {
        let (now_ms, earliest, due) = read_due(shared, conn).await?;
        looked.now_ms = now_ms;
        looked.earliest = earliest;
        if due.is_empty() {
            return Ok(looked);
        }
        let mut progress = false;
        for (name, def, state) in due {
            match fire(shared, conn, now_ms, &name, &def, &state).await? {
                Fired::Won => {
                    looked.won += 1;
                    progress = true;
                }
                Fired::Lost => {
                    looked.lost += 1;
                    progress = true;
                }
                Fired::Unreadable => {}
            }
        }
        if !progress {
            looked.stuck = true;
            return Ok(looked);
        }
    }
    // Still more due after many rounds: look again at once.
    looked.earliest = Some(looked.now_ms);
    Ok(looked)
}

pub(super) type Due = (u64, Option<u64>, Vec<(String, String, String)>);

pub(super) async fn read_due(shared: &Shared, conn: &mut Conn) -> Result<Due> {
    let reply: redis::Value = SCRIPTS
        .schedule_due
        .key(&shared.prefix)
        .run(conn)
        .await
        .map_err(|e| redis_error(&e))?;
    let parts = array(reply)?;
    let [now, earliest, due] = parts.as_slice() else {
        return Err(wire::protocol("schedule_due"));
    };
    let now_ms = string(now)?
        .parse()
        .map_err(|_| wire::protocol("schedule_due"))?;
    let earliest = match opt_string(earliest)? {
        // A sorted set's score comes back as a double's text.
        Some(score) => Some(
            score
                .parse::<f64>()
                .map_err(|_| wire::protocol("schedule_due"))? as u64,
        ),
        None => None,
    };
    let mut out = Vec::new();
    for fields in array(due.clone())?.chunks(3) {
        let [name, def, state] = fields else {
            return Err(wire::protocol("schedule_due"));
        };
        out.push((string(name)?, string(def)?, string(state)?));
    }
    Ok((now_ms, earliest, out))
}

pub(super) enum Fired {
    /// This worker moved the schedule past its due instants (fired or skipped them).
    Won,
    /// Another worker did, or the schedule changed since it was read.
    Lost,
    /// The schedule cannot be read by this version: left alone.
    Unreadable,
}

fn ms_arg(ms: Option<u64>) -> String {
    ms.map(|ms| ms.to_string()).unwrap_or_default()
}

/// Fires one due schedule, as read at `now_ms` (Redis clock).
pub(super) async fn fire(
    shared: &Shared,
    conn: &mut Conn,
    now_ms: u64,
    name: &str,
    def: &str,
    raw_state: &str,
) -> Result<Fired> {
    let unreadable = |error: LaneError| {
        tracing::warn!(worker = %shared.id, schedule = name, %error, "cannot fire a schedule");
        Ok(Fired::Unreadable)
    };
    let schedule = match parse_schedule(def) {
        Ok(schedule) => schedule,
        Err(error) => return unreadable(error),
    };
    let next = match ScheduleState::parse(raw_state) {
        Ok(ScheduleState {
            next_fire_at_ms: Some(next),
            ..
        }) => next,
        Ok(_) => return Ok(Fired::Unreadable),
        Err(error) => return unreadable(error),
    };
    // The compare-and-set compares the stored text, exactly as read.
    let next_raw = raw_state.split('|').nth(1).unwrap_or_default();
    let due = match schedule.due(next, now_ms) {
        Ok(due) => due,
        Err(error) => return unreadable(error),
    };
    if due.fire.is_none() && due.skipped.is_none() {
        return Ok(Fired::Unreadable);
    }
    let delay_us = due
        .fire
        .map_or(0, |instant| schedule.jitter_for(instant).as_micros());
    let payload = serde_json::to_string(&schedule.payload)?;
    let reply: Vec<String> = SCRIPTS
        .schedule_fire
        .key(&shared.prefix)
        .arg(name)
        .arg(def)
        .arg(next_raw)
        .arg(ms_arg(due.next))
        .arg(ms_arg(due.fire))
        .arg(ms_arg(due.skipped.map(|(from, _)| from)))
        .arg(ms_arg(due.skipped.map(|(_, until)| until)))
        .arg(&schedule.lane)
        .arg(&schedule.command_type)
        .arg(payload)
        .arg(delay_us.to_string())
        .arg(shared.queue.inner.result_ttl_ms)
        .run(conn)
        .await
        .map_err(|e| redis_error(&e))?;
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(Fired::Won),
        Some("lost") => Ok(Fired::Lost),
        _ => Err(wire::protocol("schedule_fire")),
    }
}
