//! The queue as its lanes' shared budgets see it ([`BudgetWaker`]): woken when a slot was
//! handed to one of its lanes.

use std::sync::{Arc, Weak};

use tokio::time::Instant;

use super::CommandQueue;
use super::effects::Effects;
use crate::budget::{BudgetWake, BudgetWaker};
use crate::scheduler::LaneIdx;

impl BudgetWaker for CommandQueue {
    fn budget_available(self: Arc<Self>, lane: LaneIdx) -> Vec<BudgetWake> {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            state.unblock_budget(lane);
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            // Nothing of the lane started (emptied, paused, at its cap, or the queue
            // stops): the slot goes on.
            state.give_back_unused_budget(lane);
            effects.budget_wakes.append(&mut state.budget_wakes);
            self.capture_depths(&state, &mut effects, &[lane]);
        }
        // The caller wakes these: a chain of lanes handing a slot on is a loop there.
        let wakes = std::mem::take(&mut effects.budget_wakes);
        self.apply(effects, false);
        wakes
    }
}

impl CommandQueue {
    /// This queue as a budget keeps it in line (weakly: a dropped queue is skipped).
    pub(super) fn budget_waker(self: &Arc<Self>) -> Weak<dyn BudgetWaker> {
        let this: Arc<dyn BudgetWaker> = self.clone();
        Arc::downgrade(&this)
    }
}
