//! Recurring schedules in process: the book of schedules, and the task that fires them.
//!
//! One task per queue while it has schedules; it sleeps until the earliest next instant
//! (or until a schedule changes) and holds only a weak reference meanwhile. Every change
//! to a schedule — put, remove, pause, resume, an instant fired — takes the queue's
//! schedule-write lock across its durable write, so the store sees them in the order the
//! book does; an instant's command and the schedule moved past it are written as one
//! `StorageOp::FireSchedule`, so a crash neither fires an instant twice nor loses it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::CommandQueue;
use crate::command::{CommandId, ReplayableCommand};
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::schedule::{MISSED_GRACE, Schedule, ScheduleInfo, check_schedule_name};
use crate::storage::StorageOp;
use crate::timing::SubmitOptions;

/// A queue's schedules (made at the first one).
pub(super) struct Schedules {
    book: Mutex<BTreeMap<String, ScheduleInfo>>,
    /// Held across each change's durable write (never across user code).
    writes: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    driver_running: AtomicBool,
    clock: WallClock,
}

/// Wall-clock time that follows the runtime's clock: the wall clock read once, plus the
/// time the runtime measured since (so tests with paused tokio time move it), but never
/// behind the real wall clock (a suspended machine's monotonic clock stops).
struct WallClock {
    anchor_ms: u64,
    anchor: Instant,
}

impl WallClock {
    fn new() -> Self {
        Self {
            anchor_ms: real_now_ms(),
            anchor: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.anchor_ms.saturating_add(elapsed).max(real_now_ms())
    }
}

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl CommandQueue {
    fn schedule_book(&self) -> &Schedules {
        self.schedules.get_or_init(|| {
            Box::new(Schedules {
                book: Mutex::new(BTreeMap::new()),
                writes: tokio::sync::Mutex::new(()),
                wake: Arc::new(Notify::new()),
                driver_running: AtomicBool::new(false),
                clock: WallClock::new(),
            })
        })
    }

    /// Puts back the schedules read from storage when the queue is built.
    pub(crate) fn restore_schedules(&self, stored: Vec<ScheduleInfo>) {
        if stored.is_empty() {
            return;
        }
        let mut book = self.schedule_book().book.lock();
        for info in stored {
            book.insert(info.schedule.name.clone(), info);
        }
    }

    /// Creates or replaces the schedule of `schedule.name` (a replaced one keeps its
    /// counts, its last instant and whether it is paused; its next instant is the first
    /// after now). Refused when the schedule is invalid, its lane unknown, its command
    /// type has no handler or its payload is too big; with storage it is durable first.
    pub async fn put_schedule(self: &Arc<Self>, schedule: Schedule) -> Result<ScheduleInfo> {
        schedule.validate()?;
        crate::payload::check_payload(&schedule.payload)?;
        self.state.lock().lane_index(&schedule.lane)?;
        self.handlers.get(&schedule.command_type)?;
        let schedules = self.schedule_book();
        let _writes = schedules.writes.lock().await;
        let now = schedules.clock.now_ms();
        let mut info = ScheduleInfo::new(schedule, now)?;
        if let Some(old) = schedules.book.lock().get(&info.schedule.name) {
            info.paused = old.paused;
            info.fired = old.fired;
            info.skipped = old.skipped;
            info.last_fired_at_ms = old.last_fired_at_ms;
            info.last_command_id = old.last_command_id;
            // A put at the moment an instant is due must not drop it: the old next instant
            // stays when it is also one of the new schedule's and is not yet missed (the
            // Redis engine's rule too).
            if let Some(next) = old.next_fire_at_ms
                && !old.paused
                && now.saturating_sub(next) <= MISSED_GRACE.as_millis() as u64
                && next <= info.next_fire_at_ms.unwrap_or(u64::MAX)
                && (old.schedule == info.schedule || info.schedule.latest_at(next)? == Some(next))
            {
                info.next_fire_at_ms = Some(next);
            }
        }
        if let Some(journal) = &self.journal {
            journal
                .write_durably(StorageOp::SaveSchedule(info.clone()))
                .await?;
        }
        schedules
            .book
            .lock()
            .insert(info.schedule.name.clone(), info.clone());
        self.wake_schedules();
        Ok(info)
    }

    /// Removes a schedule; false when there was none of that name.
    pub async fn remove_schedule(self: &Arc<Self>, name: &str) -> Result<bool> {
        check_schedule_name(name)?;
        let Some(schedules) = self.schedules.get() else {
            return Ok(false);
        };
        let _writes = schedules.writes.lock().await;
        if !schedules.book.lock().contains_key(name) {
            return Ok(false);
        }
        if let Some(journal) = &self.journal {
            journal
                .write_durably(StorageOp::RemoveSchedule(name.to_owned()))
                .await?;
        }
        schedules.book.lock().remove(name);
        self.wake_schedules();
        Ok(true)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> Vec<ScheduleInfo> {
        self.schedules
            .get()
            .map(|s| s.book.lock().values().cloned().collect())
            .unwrap_or_default()
    }

    /// Pauses a schedule (it fires nothing until resumed) or resumes it (its next instant
    /// is the first after now; those in between are skipped and reported).
    pub async fn set_schedule_paused(self: &Arc<Self>, name: &str, paused: bool) -> Result<()> {
        check_schedule_name(name)?;
        let unknown = || {
            LaneError::InvalidInput(format!(
                "no schedule named '{name}'; put_schedule creates it"
            ))
        };
        let schedules = self.schedules.get().ok_or_else(unknown)?;
        let _writes = schedules.writes.lock().await;
        let mut info = schedules
            .book
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(unknown)?;
        if info.paused == paused {
            return Ok(());
        }
        let mut skipped = None;
        if paused {
            info.paused = true;
        } else {
            let now = schedules.clock.now_ms();
            let missed_from = info.next_fire_at_ms.filter(|next| *next <= now);
            info.resumed(now)?;
            if let (Some(from), Some(until)) = (missed_from, info.schedule.latest_at(now)?) {
                info.skipped += 1;
                skipped = Some((from, until));
            }
        }
        if let Some(journal) = &self.journal {
            journal
                .write_durably(StorageOp::SaveSchedule(info.clone()))
                .await?;
        }
        if let Some(range) = skipped {
            self.report_skip(&info, range, "paused");
        }
        schedules.book.lock().insert(name.to_owned(), info);
        self.wake_schedules();
        Ok(())
    }

    /// Wakes the schedule task, or starts it (once the queue runs and has schedules).
    pub(super) fn wake_schedules(self: &Arc<Self>) {
        let Some(schedules) = self.schedules.get() else {
            return;
        };
        if schedules.driver_running.load(Ordering::Acquire) {
            schedules.wake.notify_one();
            return;
        }
        let Some(handle) = self.runtime.get() else {
            return; // not started: start() wakes it
        };
        if schedules.book.lock().is_empty() || schedules.driver_running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let queue = Arc::downgrade(self);
        let wake = schedules.wake.clone();
        handle.spawn(async move {
            loop {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // A weak reference while asleep: a dropped queue ends the task.
                let wait = {
                    let Some(this) = queue.upgrade() else {
                        return;
                    };
                    if this.is_shutting_down() {
                        if let Some(schedules) = this.schedules.get() {
                            schedules.driver_running.store(false, Ordering::Release);
                        }
                        return;
                    }
                    this.fire_due_schedules().await
                };
                match wait {
                    Some(wait) => {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        });
    }

    /// Wakes the schedule task to see the queue shutting down.
    pub(super) fn stop_schedules(&self) {
        if let Some(schedules) = self.schedules.get() {
            schedules.wake.notify_one();
        }
    }

    /// Fires (or skips) every due instant; returns how long until the next one.
    async fn fire_due_schedules(self: &Arc<Self>) -> Option<Duration> {
        let schedules = self.schedules.get()?;
        let _writes = schedules.writes.lock().await;
        let now = schedules.clock.now_ms();
        let due: Vec<(ScheduleInfo, crate::schedule::Due)> = schedules
            .book
            .lock()
            .values()
            .filter(|info| !info.paused)
            .filter_map(|info| {
                let next = info.next_fire_at_ms?;
                let due = info.schedule.due(next, now).ok()?;
                (due.fire.is_some() || due.skipped.is_some()).then(|| (info.clone(), due))
            })
            .collect();
        for (mut info, due) in due {
            if self.is_shutting_down() {
                break;
            }
            let name = info.schedule.name.clone();
            info.next_fire_at_ms = due.next;
            if let Some(range) = due.skipped {
                info.skipped += 1;
                self.report_skip(&info, range, "missed");
            }
            let fired = match due.fire {
                Some(instant) => {
                    let before = (info.last_fired_at_ms, info.last_command_id);
                    info.fired += 1;
                    info.last_fired_at_ms = Some(instant);
                    match self.submit_instant(&info, instant).await {
                        Ok(id) => {
                            info.last_command_id = Some(id);
                            Some((instant, id))
                        }
                        Err(error) => {
                            info.fired -= 1;
                            info.skipped += 1;
                            (info.last_fired_at_ms, info.last_command_id) = before;
                            self.report_skip(&info, (instant, instant), &error.to_string());
                            self.save_schedule_quietly(&info).await;
                            None
                        }
                    }
                }
                None => {
                    self.save_schedule_quietly(&info).await;
                    None
                }
            };
            let lane = info.schedule.lane.clone();
            schedules.book.lock().insert(name.clone(), info);
            if let Some((instant, id)) = fired {
                self.observe(&self.observers, |observer| {
                    observer.on_schedule_fire(&name, &lane)
                });
                self.events.emit_with(keys::SCHEDULE_FIRED, || {
                    json!({ "schedule": &name, "lane_id": &lane, "command_id": id, "instant_ms": instant })
                });
            }
        }
        let now = schedules.clock.now_ms();
        schedules
            .book
            .lock()
            .values()
            .filter(|info| !info.paused)
            .filter_map(|info| info.next_fire_at_ms)
            .min()
            .map(|next| Duration::from_millis(next.saturating_sub(now)))
    }

    /// Submits instant `instant`'s command; with storage the schedule (already moved past
    /// the instant in `info`) is written with it.
    async fn submit_instant(
        self: &Arc<Self>,
        info: &ScheduleInfo,
        instant: u64,
    ) -> Result<CommandId> {
        let schedule = &info.schedule;
        let timing = SubmitOptions::new()
            .with_delay(schedule.jitter_for(instant))
            .resolve(SystemTime::now())?;
        let handler = self.handlers.get(&schedule.command_type)?;
        let kept = (self.journal.is_some() || self.dlq.is_some()).then(|| schedule.payload.clone());
        let command = Box::new(ReplayableCommand {
            command_type: schedule.command_type.clone(),
            payload: schedule.payload.clone(),
            handler,
        });
        let accepted = self
            .accept(
                &schedule.lane,
                command,
                kept,
                0,
                timing,
                None,
                None,
                Some(info),
            )
            .await?;
        Ok(accepted.id)
    }

    /// Writes a schedule whose instants were skipped; a failed write is reported by the
    /// journal (the instants then come due again after a restart and are skipped again).
    async fn save_schedule_quietly(&self, info: &ScheduleInfo) {
        if let Some(journal) = &self.journal
            && let Err(error) = journal
                .write_durably(StorageOp::SaveSchedule(info.clone()))
                .await
        {
            tracing::warn!(target: "a3s_lane", schedule = %info.schedule.name, %error, "could not store a schedule");
        }
    }

    fn report_skip(&self, info: &ScheduleInfo, (from, until): (u64, u64), reason: &str) {
        let (name, lane) = (&info.schedule.name, &info.schedule.lane);
        self.observe(&self.observers, |observer| {
            observer.on_schedule_skip(name, lane)
        });
        self.events.emit_with(
            keys::SCHEDULE_SKIPPED,
            || json!({ "schedule": name, "from_ms": from, "until_ms": until, "reason": reason }),
        );
    }
}
