//! Starting, shutting down and waiting until idle.

use std::sync::Arc;

use serde_json::json;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::CommandQueue;
use super::effects::Effects;
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::scheduler::LaneIdx;

impl CommandQueue {
    /// Starts dispatching on the current tokio runtime. Commands submitted before are
    /// kept in their lanes and start now. Calling it again does nothing.
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let handle = Handle::try_current().map_err(|_| {
            LaneError::QueueError("start() must be called from inside a tokio runtime".into())
        })?;
        let _ = self.runtime.set(handle);
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            if state.started {
                return Ok(());
            }
            state.started = true;
            state.budget_waker = Some(self.budget_waker());
            for index in 0..state.lanes.len() as LaneIdx {
                state.mark_ready(index);
            }
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            // Deadlines set before start (a timed pause) had no runtime to drive them.
            if state.timers.next_deadline().is_some() {
                self.ensure_timer_driver(&mut state);
            }
            self.capture_depths(&state, &mut effects, &[]);
        }
        self.apply(effects, false);
        self.wake_schedules();
        Ok(())
    }

    /// Whether [`CommandQueue::start`] was called.
    pub fn is_started(&self) -> bool {
        self.state.lock().started
    }

    pub(crate) fn begin_shutdown(&self, hard: bool) -> bool {
        let first = {
            let mut state = self.state.lock();
            let first = !state.shutting_down;
            state.shutting_down = true;
            if hard {
                state.hard_stop = true;
            }
            first
        };
        // Submits waiting for room, and producers waiting for the backlog to shrink, end
        // now: no command is taken any more.
        self.room.notify_waiters();
        // The schedule task ends: nothing more fires.
        self.stop_schedules();
        first
    }

    /// Whether shutdown (graceful or hard) has begun; no new command is accepted.
    pub fn is_shutting_down(&self) -> bool {
        self.state.lock().shutting_down
    }

    pub(super) fn became_idle(&self) {
        let complete = {
            let mut state = self.state.lock();
            if state.shutting_down && state.is_idle() && !state.shutdown_complete_sent {
                state.shutdown_complete_sent = true;
                true
            } else {
                false
            }
        };
        if complete {
            self.events.emit_with(keys::SHUTDOWN_COMPLETE, || json!({}));
        }
        self.idle.notify_waiters();
    }

    /// Reports idleness after `shutdown()` when nothing was running.
    pub(crate) fn check_idle(&self) {
        if self.state.lock().is_idle() {
            self.became_idle();
        }
    }

    /// Waits until no command is pending, delayed or running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until fewer than `limit` commands wait to start (pending and delayed) in
    /// lane `lane`, or in all lanes together when `lane` is `None` (p-queue's
    /// `onSizeLessThan`). Resolves at once if that holds now. `limit` 0 can never hold
    /// and is refused; an unknown lane is `LaneNotFound`; once the queue shuts down (it
    /// takes no more commands) it fails with `ShutdownInProgress`.
    pub async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()> {
        crate::client::check_waiting_limit(limit)?;
        let index = match lane {
            Some(lane) => Some(self.state.lock().lane_index(lane)?),
            None => None,
        };
        let waiting = |state: &crate::scheduler::State| match index {
            Some(index) => state.lane(index).waiting(),
            None => state.lanes.iter().map(|lane| lane.waiting()).sum(),
        };
        // Every state change that lets a command leave a waiting state (a start, a
        // cancel, an expiry) ends in `apply`, which wakes room waiters.
        let _waiting = self.room_waiter();
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state.lock();
                if waiting(&state) < limit {
                    return Ok(());
                }
                if state.shutting_down {
                    return Err(LaneError::ShutdownInProgress);
                }
            }
            notified.await;
        }
    }
}
