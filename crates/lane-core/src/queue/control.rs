//! Controlling commands and lanes: cancel, command status, pause and resume.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::effects::Effects;
use super::{CommandQueue, info};
use crate::client::{CancelOutcome, CommandState, CommandStatus};
use crate::command::CommandId;
use crate::dead_letter::DeadLetter;
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::retention::{CommandFailure, Page};
use crate::scheduler::timers::TimerKind;
use crate::scheduler::{LaneIdx, Phase, State, Task};

impl CommandQueue {
    /// Cancels a pending, delayed or running command. Returns false when no such command
    /// is live (it finished, or the id is unknown).
    pub fn cancel(self: &Arc<Self>, id: CommandId) -> bool {
        self.cancel_one(id).total() > 0
    }

    fn cancel_one(self: &Arc<Self>, id: CommandId) -> Cancelled {
        let select = |state: &State| state.tasks.get(&id).cloned().into_iter().collect();
        self.cancel_where(select, "cancelled by request", false)
    }

    /// Cancels every pending, delayed and running command of a lane; returns how many.
    pub fn cancel_lane(self: &Arc<Self>, lane_id: &str) -> Result<usize> {
        let lane = self.state.lock().lane_index(lane_id)?;
        Ok(self
            .cancel_where(
                live_where(|task| task.lane() == lane),
                "lane cancelled",
                false,
            )
            .total())
    }

    /// Cancels everything live; `interrupted` keeps the commands in the journal.
    pub(crate) fn cancel_all(self: &Arc<Self>, reason: &'static str, interrupted: bool) -> usize {
        self.cancel_where(live_where(|_| true), reason, interrupted)
            .total()
    }

    /// Cancels the live commands `select` picks (under the state lock).
    fn cancel_where(
        self: &Arc<Self>,
        select: impl FnOnce(&State) -> Vec<Arc<Task>>,
        reason: &'static str,
        interrupted: bool,
    ) -> Cancelled {
        let mut effects = Effects::default();
        let mut dropped = Vec::new();
        let mut pending = Vec::new();
        let mut signalled = 0;
        let mut running = 0;
        {
            let mut state = self.state.lock();
            let now = Instant::now();
            for task in select(&state) {
                if interrupted {
                    task.interrupted.store(true, Ordering::Relaxed);
                }
                match task.phase() {
                    Phase::Pending => {
                        pending.push(task);
                    }
                    Phase::Delayed => {
                        state.leave_delayed(&task);
                        state.finish_task(&task);
                        if !interrupted {
                            state.retain(
                                &task,
                                CommandState::Cancelled,
                                None,
                                Some(cancelled(reason)),
                                false,
                                now,
                            );
                        }
                        dropped.push(task);
                    }
                    Phase::Running => {
                        running += 1;
                        if task.cancel.request() {
                            signalled += 1;
                        }
                    }
                    Phase::Done => {}
                }
            }
            // One pass over the lanes for all of them: removing pending commands one by
            // one would cost O(pending) each, O(n^2) for a whole lane or a hard stop.
            if !pending.is_empty() {
                for task in state.remove_pending_many(&pending, &mut effects.signals) {
                    state.finish_task(&task);
                    if !interrupted {
                        state.retain(
                            &task,
                            CommandState::Cancelled,
                            None,
                            Some(cancelled(reason)),
                            false,
                            now,
                        );
                    }
                    dropped.push(task);
                }
            }
            if !dropped.is_empty() {
                self.dispatch_locked(&mut state, now, &mut effects);
                let touched: Vec<LaneIdx> = dropped.iter().map(|t| t.lane()).collect();
                self.capture_depths(&state, &mut effects, &touched);
                effects.idle = state.is_idle();
            }
        }
        let outcome = Cancelled {
            ended: dropped.len(),
            signalled,
            running,
        };
        for task in dropped {
            let lane = self.lane_name_unlocked(task.lane());
            let info = info(&task, &lane, task.failures() + 1);
            self.observe(&self.observers, |observer| {
                observer.on_cancel_pending(&info);
            });
            self.events.emit_with(keys::COMMAND_CANCELLED, || {
                json!({ "lane_id": &*lane, "command_id": task.id, "was_running": false, "reason": reason })
            });
            if !interrupted {
                self.journal_end(&task);
            }
            task.reply(Err(LaneError::Cancelled(reason.into())));
        }
        self.apply(effects, false);
        outcome
    }

    /// Cancels a command and says what that did ([`CancelOutcome`]).
    pub fn cancel_command(self: &Arc<Self>, id: CommandId) -> CancelOutcome {
        // The outcome is what the cancel saw under the lock: a signalled run may end
        // before a second look, and a run cancelled twice is still running.
        let outcome = self.cancel_one(id);
        if outcome.ended > 0 {
            return CancelOutcome::Cancelled;
        }
        if outcome.running > 0 {
            return CancelOutcome::Signalled;
        }
        if self.command_status(id).is_some() || id < self.next_id.load(Ordering::Relaxed) {
            CancelOutcome::AlreadyFinished
        } else {
            CancelOutcome::Unknown
        }
    }

    /// Where a live command or a dead letter is; `None` for a command that finished
    /// otherwise (or never existed).
    pub fn command_status(&self, id: CommandId) -> Option<CommandStatus> {
        {
            let state = self.state.lock();
            if let Some(task) = state.tasks.get(&id) {
                return Some(task.live_status(&self.lane_name(&state, task.lane())));
            }
            if let Some(kept) = state.retained.get(id, Instant::now()) {
                return Some(kept.clone());
            }
        }
        let letter = self.dlq.as_ref()?.get(id)?;
        Some(dead_letter_status(letter))
    }

    /// Puts finished commands' records loaded from storage back (oldest first), as their
    /// lanes keep them now; records of lanes the queue no longer has, or that expired,
    /// are left out (the store drops them as it prunes).
    pub(crate) fn restore_finished(&self, records: Vec<crate::storage::StoredFinished>) {
        let mut state = self.state.lock();
        let now = Instant::now();
        let wall = super::now_ms();
        for record in records {
            let Ok(lane) = state.lane_index(&record.status.lane_id) else {
                continue;
            };
            let Some(left) = record.expires_at_ms.checked_sub(wall).filter(|ms| *ms > 0) else {
                continue;
            };
            let retention = state.lane(lane).config.retention;
            let left = Duration::from_millis(left).min(retention.keep_for());
            let expires = now.checked_add(left).unwrap_or(now);
            state.retained.keep_until(
                lane as usize,
                retention.keep_last(),
                record.status,
                expires,
                now,
            );
        }
    }

    /// A lane's commands in `state`, paged (see
    /// [`QueueClient::list_commands`](crate::QueueClient::list_commands) for the order).
    /// Listing running or delayed commands walks the live commands of every lane.
    pub fn list_commands(
        &self,
        lane_id: &str,
        wanted: CommandState,
        page: Page,
    ) -> Result<Vec<CommandStatus>> {
        page.validate()?;
        let state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        let name = state.lane(lane).id.clone();
        let live = |phase: Phase| {
            state
                .tasks
                .values()
                .filter(move |task| task.lane() == lane && task.phase() == phase)
        };
        let listed = match wanted {
            CommandState::Pending => state
                .lane(lane)
                .pending
                .in_start_order()
                .skip(page.offset)
                .take(page.limit)
                .map(|queued| queued.task.live_status(&name))
                .collect(),
            CommandState::Delayed => {
                let mut delayed: Vec<&Arc<Task>> = live(Phase::Delayed).collect();
                delayed.sort_by_key(|task| (task.due_at_ms(), task.id));
                page_of(delayed, page, &name)
            }
            CommandState::Running => {
                let mut running: Vec<&Arc<Task>> = live(Phase::Running).collect();
                running.sort_by_key(|task| (task.started_at_ms(), task.id));
                page_of(running, page, &name)
            }
            CommandState::DeadLettered => {
                drop(state);
                let Some(dlq) = &self.dlq else {
                    return Ok(Vec::new());
                };
                return Ok(dlq
                    .list_lane(&name, page.offset, page.limit)
                    .into_iter()
                    .map(dead_letter_status)
                    .collect());
            }
            finished => state
                .retained
                .list(lane as usize, finished, page, Instant::now()),
        };
        Ok(listed)
    }

    /// Stops starting commands from a lane; running ones continue.
    pub fn pause_lane(&self, lane_id: &str) -> Result<()> {
        let mut state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        state.set_paused(lane, true);
        Ok(())
    }

    /// Pauses a lane for `duration` (for example after an HTTP 429), then resumes it. A
    /// later call extends the pause and an earlier, shorter one never cuts it short; a
    /// lane paused with [`CommandQueue::pause_lane`] stays paused until resumed.
    pub fn pause_lane_for(self: &Arc<Self>, lane_id: &str, duration: Duration) -> Result<()> {
        crate::config::validate_timed_pause(duration)?;
        let mut state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        let until = Instant::now() + duration;
        if state.pause_until(lane, until) {
            state.timers.schedule(until, TimerKind::Resume(lane));
            self.ensure_timer_driver(&mut state);
        }
        Ok(())
    }

    /// Resumes a paused lane and starts what now fits.
    pub fn resume_lane(self: &Arc<Self>, lane_id: &str) -> Result<()> {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let lane = state.lane_index(lane_id)?;
            state.set_paused(lane, false);
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            self.capture_depths(&state, &mut effects, &[]);
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Stops starting the commands of group `group` of a lane until resumed (see
    /// [`QueueClient::pause_group`](crate::QueueClient::pause_group)).
    pub fn pause_group(&self, lane_id: &str, group: &str) -> Result<()> {
        crate::group::check_group(group)?;
        let mut state = self.state.lock();
        let lane = state.lane_index(lane_id)?;
        state.set_group_paused(lane, group, true);
        Ok(())
    }

    /// Resumes a paused group and starts what now fits.
    pub fn resume_group(self: &Arc<Self>, lane_id: &str, group: &str) -> Result<()> {
        crate::group::check_group(group)?;
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let lane = state.lane_index(lane_id)?;
            state.set_group_paused(lane, group, false);
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            self.capture_depths(&state, &mut effects, &[]);
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Cancels every pending, delayed and running command of a group; returns how many
    /// the cancel reached.
    pub fn cancel_group(self: &Arc<Self>, lane_id: &str, group: &str) -> Result<usize> {
        crate::group::check_group(group)?;
        let lane = self.state.lock().lane_index(lane_id)?;
        Ok(self
            .cancel_where(
                live_where(|task| task.lane() == lane && task.group.as_deref() == Some(group)),
                "group cancelled",
                false,
            )
            .total())
    }

    /// A group's counts.
    pub fn group_status(&self, lane_id: &str, group: &str) -> Result<crate::GroupStatus> {
        crate::group::check_group(group)?;
        let state = self.state.lock();
        let lane = state.lane(state.lane_index(lane_id)?);
        Ok(lane
            .pending
            .group_status(&lane.id, group, lane.config.group_rules()))
    }

    /// The lane's groups with commands waiting or running, or paused, by key, paged.
    pub fn groups(&self, lane_id: &str, page: Page) -> Result<Vec<crate::GroupStatus>> {
        page.validate()?;
        let state = self.state.lock();
        let lane = state.lane(state.lane_index(lane_id)?);
        Ok(lane
            .pending
            .group_statuses(&lane.id)
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .collect())
    }
}

/// What one cancel pass did.
struct Cancelled {
    /// Pending and delayed commands it ended.
    ended: usize,
    /// Running commands it signalled for the first time.
    signalled: usize,
    /// Running commands it found, signalled now or before.
    running: usize,
}

impl Cancelled {
    /// Commands this pass ended or newly signalled.
    fn total(&self) -> usize {
        self.ended + self.signalled
    }
}

/// Selects the live commands that `matches` (for [`CommandQueue::cancel_where`]).
fn live_where(matches: impl Fn(&Task) -> bool) -> impl FnOnce(&State) -> Vec<Arc<Task>> {
    move |state| {
        state
            .tasks
            .values()
            .filter(|task| matches(task))
            .cloned()
            .collect()
    }
}

/// A page of live commands, as lookups show them.
fn page_of(tasks: Vec<&Arc<Task>>, page: Page, lane: &str) -> Vec<CommandStatus> {
    tasks
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|task| task.live_status(lane))
        .collect()
}

/// A dead letter as a lookup shows it.
fn dead_letter_status(letter: DeadLetter) -> CommandStatus {
    let mut status = CommandStatus::new(
        letter.command_id,
        letter.lane_id,
        letter.command_type,
        CommandState::DeadLettered,
        letter.attempts,
    );
    status.finished_at_ms = Some(letter.failed_at);
    status.error = Some(CommandFailure {
        kind: "failed".into(),
        message: letter.error,
        timeout_ms: None,
    });
    status
}

/// The kept error of a command cancelled for `reason`.
fn cancelled(reason: &str) -> CommandFailure {
    CommandFailure::from_error(&LaneError::Cancelled(reason.into()))
}
