//! What a state change leaves to do once the state lock is released ([`Effects`]), and
//! doing it: dispatching under the lock, then publishing, reporting depths and starting
//! runners after it.

use std::sync::Arc;

use serde_json::json;
use tokio::time::Instant;

use super::{CommandQueue, info};
use crate::event::keys;
use crate::scheduler::{Dispatch, Dispatches, LaneIdx, LaneSignal, State, Task};

/// What to do after the state lock is released.
#[derive(Default)]
pub(super) struct Effects {
    pub(super) start: Dispatches,
    pub(super) signals: Vec<LaneSignal>,
    /// Each touched lane's depth, read under the lock, for observers.
    depths: Depths,
    pub(super) idle: bool,
    /// Commands that expired unstarted (start-by deadline): answered after the lock.
    pub(super) expired: Vec<Arc<Task>>,
    /// Lanes (of any queue) a shared budget handed a slot to: woken after the lock.
    pub(super) budget_wakes: Vec<crate::budget::BudgetWake>,
}

impl CommandQueue {
    /// Publishes effects and starts dispatched commands; returns one to run inline when
    /// the caller is a runner (`keep_one`).
    pub(super) fn apply(
        self: &Arc<Self>,
        mut effects: Effects,
        keep_one: bool,
    ) -> Option<Dispatch> {
        let notify_observers = !self.observers.is_empty();
        if notify_observers || self.events.has_subscribers() {
            for dispatch in &effects.start {
                let info = info(&dispatch.task, &dispatch.lane, dispatch.attempt);
                self.observe(&self.observers, |observer| {
                    observer.on_start(&info, dispatch.waited);
                });
                self.events.emit_with(keys::COMMAND_STARTED, || {
                    json!({
                        "lane_id": &*dispatch.lane,
                        "command_id": dispatch.task.id,
                        "command_type": dispatch.task.command.command_type(),
                        "attempt": dispatch.attempt,
                    })
                });
            }
            for signal in &effects.signals {
                match signal {
                    LaneSignal::Pressure { lane, pending } => self.events.emit_with(
                        keys::LANE_PRESSURE,
                        || json!({ "lane_id": &**lane, "pending": pending }),
                    ),
                    LaneSignal::Idle { lane } => self
                        .events
                        .emit_with(keys::LANE_IDLE, || json!({ "lane_id": &**lane })),
                    LaneSignal::Throttled {
                        lane,
                        group,
                        limit,
                        until,
                    } => {
                        let wait = until.saturating_duration_since(Instant::now());
                        self.observe(&self.observers, |observer| {
                            observer.on_throttle(lane, group.as_deref(), wait);
                        });
                        self.events.emit_with(keys::LANE_THROTTLED, || {
                            let until_ms = super::now_ms().saturating_add(
                                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            );
                            json!({
                                "lane_id": &**lane,
                                "group": group.as_deref(),
                                "limit": limit.as_str(),
                                "until_ms": until_ms,
                            })
                        });
                    }
                }
            }
        }
        for task in effects.expired.drain(..) {
            self.answer_expired(&task);
        }
        if !effects.depths.is_empty() {
            self.report_depths(&effects.depths);
        }
        if self.room_waiters.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.room.notify_waiters();
        }
        if effects.idle {
            self.became_idle();
        }
        let keep = if keep_one { effects.start.pop() } else { None };
        for dispatch in effects.start {
            self.spawn(dispatch);
        }
        if !effects.budget_wakes.is_empty() {
            crate::budget::wake_all(effects.budget_wakes);
        }
        keep
    }

    /// Under the state lock: records the depth of the lanes in `touched` and of the lanes
    /// commands were just dispatched from, for the observers that want depth reports.
    pub(super) fn capture_depths(&self, state: &State, effects: &mut Effects, touched: &[LaneIdx]) {
        if self.depth_observers.is_empty() {
            return;
        }
        let started = effects.start.iter().map(|d| d.task.lane());
        for index in touched.iter().copied().chain(started) {
            if !effects.depths.contains(index) {
                let lane = state.lane(index);
                effects.depths.push(Depth {
                    lane: index,
                    pending: lane.pending.len(),
                    active: lane.active,
                });
            }
        }
    }

    /// Reports captured depths, after the lock is released. Reports made on different
    /// threads may arrive out of order; the exact depth now is always one
    /// [`QueueProbe`](crate::QueueProbe) read away.
    fn report_depths(&self, depths: &Depths) {
        for depth in depths.iter() {
            let name = self.lane_name_unlocked(depth.lane);
            self.observe(&self.depth_observers, |observer| {
                observer.on_lane_depth(&name, depth.pending, depth.active);
            });
        }
    }

    /// Dispatches under the lock; when that throttled a lane (its admission policy named
    /// the instant it may start again), makes sure the timer task will wake it then.
    pub(super) fn dispatch_locked(
        self: &Arc<Self>,
        state: &mut State,
        now: Instant,
        effects: &mut Effects,
    ) {
        state.dispatch(now, &mut effects.start, &mut effects.signals);
        if !state.budget_wakes.is_empty() {
            effects.budget_wakes.append(&mut state.budget_wakes);
        }
        if !state.expired.is_empty() {
            effects.expired.append(&mut state.expired);
            effects.idle = state.is_idle();
        }
        if state.timers.take_scheduled() {
            self.ensure_timer_driver(state);
        }
    }

    /// Answers a command that expired unstarted: its submitter gets
    /// [`LaneError::Expired`], subscribers `queue.command.expired`, and the journal
    /// forgets it.
    fn answer_expired(&self, task: &Arc<Task>) {
        let lane = self.lane_name_unlocked(task.lane());
        let lane: &str = &lane;
        let by = task.timing.start_by_ms.unwrap_or_default();
        self.events.emit_with(keys::COMMAND_EXPIRED, || {
            json!({
                "lane_id": lane,
                "command_id": task.id,
                "command_type": task.command.command_type(),
                "start_by_ms": by,
            })
        });
        let info = info(task, lane, task.failures() + 1);
        self.observe(&self.observers, |observer| observer.on_expire(&info));
        self.journal_end(task);
        task.reply(Err(crate::scheduler::expired_error(task, lane)));
    }
}

/// One lane's depth, captured under the state lock.
#[derive(Clone, Copy)]
struct Depth {
    lane: LaneIdx,
    pending: usize,
    active: usize,
}

/// The depths one state change touched: almost always one or two lanes, kept inline.
#[derive(Default)]
struct Depths {
    inline: [Option<Depth>; 2],
    more: Vec<Depth>,
}

impl Depths {
    fn is_empty(&self) -> bool {
        self.inline[0].is_none()
    }

    fn contains(&self, lane: LaneIdx) -> bool {
        self.iter().any(|d| d.lane == lane)
    }

    fn push(&mut self, depth: Depth) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(depth),
            None => self.more.push(depth),
        }
    }

    fn iter(&self) -> impl Iterator<Item = Depth> + '_ {
        self.inline
            .iter()
            .flatten()
            .copied()
            .chain(self.more.iter().copied())
    }
}
