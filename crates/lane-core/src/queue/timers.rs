//! The timer task: sleeps until the earliest deadline (delayed retries and starts,
//! start-by deadlines, rate-limit refills, timed pauses) and acts on the due ones. It exists only while a deadline does.

use std::sync::Arc;

use tokio::time::Instant;

use super::effects::Effects;
use super::{CommandQueue, info};
use crate::error::LaneError;
use crate::scheduler::timers::TimerKind;
use crate::scheduler::{Phase, State};

impl CommandQueue {
    /// Spawns the timer task if it is not running, or wakes it to re-read the deadline.
    pub(super) fn ensure_timer_driver(self: &Arc<Self>, state: &mut State) {
        state.timers.take_scheduled();
        if state.timers.driver_running {
            self.timer_wake.notify_one();
            return;
        }
        let Some(handle) = self.runtime.get() else {
            return;
        };
        state.timers.driver_running = true;
        let queue = Arc::downgrade(self);
        let wake = self.timer_wake.clone();
        handle.spawn(async move {
            loop {
                // A weak reference: a dropped queue ends the timer task at its next wake-up.
                let Some(deadline) = queue.upgrade().and_then(|queue| queue.fire_timers()) else {
                    return;
                };
                // A deadline near the end of the clock (a custom policy's) would overflow
                // tokio's rounding; waking early only means sleeping again.
                let now = Instant::now();
                let deadline = now
                    .checked_add(crate::config::MAX_DURATION)
                    .map_or(deadline, |far| deadline.min(far));
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }

    /// Acts on every due timer and dispatches; returns the next deadline, or `None`
    /// (and marks the driver stopped) when no timer is left.
    fn fire_timers(self: &Arc<Self>) -> Option<Instant> {
        let mut effects = Effects::default();
        let mut cancelled_while_delayed = Vec::new();
        let mut promoted = Vec::new();
        let next = {
            let mut state = self.state.lock();
            let now = Instant::now();
            while let Some(kind) = state.timers.pop_due(now) {
                match kind {
                    // A retry goes back to the front of its lane; a delayed start takes
                    // its place at the back, in the order of due times.
                    TimerKind::Retry(task) | TimerKind::Due(task)
                        if task.phase() == Phase::Delayed =>
                    {
                        let front = task.started_once();
                        state.leave_delayed(&task);
                        if state.shutting_down_hard() {
                            // Ended now, so its deadline timer in this same pass finds it done.
                            state.finish_task(&task);
                            cancelled_while_delayed.push(task);
                            continue;
                        }
                        if !front && !self.observers.is_empty() {
                            promoted.push(task.clone());
                        }
                        effects.signals.extend(state.enqueue(task, now, front));
                    }
                    TimerKind::Retry(_) | TimerKind::Due(_) => {}
                    TimerKind::Expire(task) => state.expire(&task, now, &mut effects.signals),
                    TimerKind::Unthrottle(lane) => state.unthrottle(lane),
                    TimerKind::Resume(lane) => state.resume_if_due(lane, now),
                    TimerKind::BudgetRetry(lane) => state.unblock_budget(lane),
                    TimerKind::GroupUnthrottle(lane, group) => {
                        state.unthrottle_group(lane, &group, now);
                    }
                }
            }
            state.dispatch(now, &mut effects.start, &mut effects.signals);
            effects.expired.append(&mut state.expired);
            self.capture_depths(&state, &mut effects, &[]);
            // This is the timer task: it reads the next deadline below, so new ones need no wake-up.
            state.timers.take_scheduled();
            effects.idle = state.is_idle();
            let next = state.timers.next_deadline();
            if next.is_none() {
                state.timers.driver_running = false;
            }
            next
        };
        for task in cancelled_while_delayed {
            task.reply(Err(LaneError::Cancelled("the queue was stopped".into())));
        }
        for task in promoted {
            let lane = self.lane_name_unlocked(task.lane());
            let info = info(&task, &lane, 1);
            self.observe(&self.observers, |observer| observer.on_promote(&info));
        }
        self.apply(effects, false);
        next
    }
}
