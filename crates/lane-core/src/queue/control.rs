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
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::scheduler::timers::TimerKind;
use crate::scheduler::{LaneIdx, Phase, State, Task};

impl CommandQueue {
    /// Cancels a pending, delayed or running command. Returns false when no such command
    /// is live (it finished, or the id is unknown).
    pub fn cancel(self: &Arc<Self>, id: CommandId) -> bool {
        let select = |state: &State| state.tasks.get(&id).cloned().into_iter().collect();
        self.cancel_where(select, "cancelled by request", false) > 0
    }

    /// Cancels every pending, delayed and running command of a lane; returns how many.
    pub fn cancel_lane(self: &Arc<Self>, lane_id: &str) -> Result<usize> {
        let lane = self.state.lock().lane_index(lane_id)?;
        Ok(self.cancel_where(
            live_where(|task| task.lane() == lane),
            "lane cancelled",
            false,
        ))
    }

    /// Cancels everything live; `interrupted` keeps the commands in the journal.
    pub(crate) fn cancel_all(self: &Arc<Self>, reason: &'static str, interrupted: bool) -> usize {
        self.cancel_where(live_where(|_| true), reason, interrupted)
    }

    /// Cancels the live commands `select` picks (under the state lock).
    fn cancel_where(
        self: &Arc<Self>,
        select: impl FnOnce(&State) -> Vec<Arc<Task>>,
        reason: &'static str,
        interrupted: bool,
    ) -> usize {
        let mut effects = Effects::default();
        let mut dropped = Vec::new();
        let mut pending = Vec::new();
        let mut signalled = 0;
        {
            let mut state = self.state.lock();
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
                        dropped.push(task);
                    }
                    Phase::Running => {
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
                    dropped.push(task);
                }
            }
            if !dropped.is_empty() {
                self.dispatch_locked(&mut state, Instant::now(), &mut effects);
                let touched: Vec<LaneIdx> = dropped.iter().map(|t| t.lane()).collect();
                self.capture_depths(&state, &mut effects, &touched);
                effects.idle = state.is_idle();
            }
        }
        let count = dropped.len() + signalled;
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
                self.journal_remove(&task);
            }
            task.reply(Err(LaneError::Cancelled(reason.into())));
        }
        self.apply(effects, false);
        count
    }

    /// Cancels a command and says what that did ([`CancelOutcome`]).
    pub fn cancel_command(self: &Arc<Self>, id: CommandId) -> CancelOutcome {
        if self.cancel(id) {
            // A cancelled pending or delayed command is gone at once; a running one stays
            // until it stops.
            let running = self
                .state
                .lock()
                .tasks
                .get(&id)
                .is_some_and(|task| task.phase() == Phase::Running);
            return if running {
                CancelOutcome::Signalled
            } else {
                CancelOutcome::Cancelled
            };
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
                let (state_now, attempts) = match task.phase() {
                    Phase::Pending => (CommandState::Pending, task.failures()),
                    Phase::Delayed => (CommandState::Delayed, task.failures()),
                    Phase::Running => (CommandState::Running, task.failures() + 1),
                    Phase::Done => (CommandState::Completed, task.failures() + 1),
                };
                return Some(CommandStatus {
                    id,
                    lane_id: self.lane_name(&state, task.lane()).to_string(),
                    command_type: task.command.command_type().to_owned(),
                    state: state_now,
                    attempts,
                });
            }
        }
        let letter = self.dlq.as_ref()?.get(id)?;
        Some(CommandStatus {
            id,
            lane_id: letter.lane_id,
            command_type: letter.command_type,
            state: CommandState::DeadLettered,
            attempts: letter.attempts,
        })
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
