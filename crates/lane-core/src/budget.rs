//! Budgets shared across queues in one process: "at most 16 generations at once, at most
//! 500 a minute", drawn from by lanes of any number of queues on top of their own caps.
//!
//! A lane takes a slot of its budget when one of its commands starts and gives it back
//! when the run ends (an abandoned run keeps it until it returns, as it keeps the lane's
//! slot). When the budget is full, the lane waits in the budget's FIFO of waiting lanes;
//! a slot given back goes straight to the first of them (a handoff: nobody can take it in
//! between), whose queue is woken and starts its most urgent command. So waiting queues
//! are served in turn, each queue's priorities hold, a lane without a budget (a `control`
//! lane) is never held by one, and a queue that was dropped is skipped: its slot passes
//! on. The budget's rate limit (a token bucket as GCRA) is checked when a slot is taken:
//! a lane refused by it waits for the instant of its next permit on its own queue's
//! timer, and takes the permit then (first come, first served among such lanes).
//!
//! A lane without a budget pays one branch per start.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::error::{LaneError, Result};
use crate::group::Gcra;
use crate::policy::RateLimitConfig;
use crate::scheduler::LaneIdx;

/// A queue, as a budget sees it: woken when a slot was handed to one of its lanes.
pub(crate) trait BudgetWaker: Send + Sync {
    /// A slot of a budget is reserved for lane `lane` of this queue: start a command of
    /// it, or give the slot back.
    fn budget_available(self: Arc<Self>, lane: LaneIdx) -> Vec<BudgetWake>;
}

/// Which lane of which queue waits.
#[derive(Clone)]
struct Waiter {
    queue: Weak<dyn BudgetWaker>,
    lane: LaneIdx,
}

impl Waiter {
    fn is(&self, queue: &Weak<dyn BudgetWaker>, lane: LaneIdx) -> bool {
        self.lane == lane && Weak::ptr_eq(&self.queue, queue)
    }
}

/// A slot handed to a waiting lane: its queue must be woken (after the caller's state
/// lock is released).
pub(crate) struct BudgetWake {
    budget: Arc<SharedBudget>,
    waiter: Waiter,
}

impl BudgetWake {
    /// Wakes the lane's queue; a queue that is gone gives the slot on. Returns further
    /// wakes (never recursing: a chain of lanes that give a slot back is a loop here).
    pub(crate) fn wake(self) -> Vec<BudgetWake> {
        match self.waiter.queue.upgrade() {
            Some(queue) => queue.budget_available(self.waiter.lane),
            None => self
                .budget
                .give_back_grant(&self.waiter.queue, self.waiter.lane)
                .into_iter()
                .collect(),
        }
    }
}

/// Wakes every lane in `wakes`, and the lanes their queues hand slots on to.
pub(crate) fn wake_all(mut wakes: Vec<BudgetWake>) {
    while let Some(wake) = wakes.pop() {
        wakes.extend(wake.wake());
    }
}

/// What [`SharedBudget::try_acquire`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// A slot (and a permit) is taken: start the command.
    Granted,
    /// The budget is full: the lane waits in line and is woken with a slot.
    Wait,
    /// The rate limit has no permit until then; the lane asks again at that instant.
    Throttled(Instant),
}

struct Inner {
    /// Slots taken, handed-over ones included.
    in_use: usize,
    /// Lanes waiting for a slot, in the order they asked.
    waiters: VecDeque<Waiter>,
    /// Lanes a slot was handed to, not yet used by them (counted in `in_use`).
    granted: Vec<Waiter>,
    /// The rate limit's arrival time.
    tat: Option<Instant>,
    /// Commands started under the budget, since it was made.
    started: u64,
}

/// A concurrency budget (and optionally a rate limit) shared by lanes of any number of
/// queues in one process. Give it to lanes with
/// [`LaneConfig::with_budget`](crate::LaneConfig::with_budget).
///
/// ```
/// use a3s_lane::{LaneConfig, RateLimitConfig, SharedBudget};
///
/// // One LLM provider: 16 generations at once, 500 a minute, for every session.
/// let provider = SharedBudget::new("llm", 16)?
///     .with_rate_limit(RateLimitConfig::per_minute(500))?
///     .shared();
/// let prompt_lane = LaneConfig::new(1, 2).with_budget(provider.clone());
/// # let _ = prompt_lane;
/// # Ok::<(), a3s_lane::LaneError>(())
/// ```
pub struct SharedBudget {
    name: String,
    slots: usize,
    rate: Option<Gcra>,
    rate_config: RateLimitConfig,
    inner: Mutex<Inner>,
}

impl fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBudget")
            .field("name", &self.name)
            .field("slots", &self.slots)
            .field("rate_limit", &self.rate_config)
            .finish_non_exhaustive()
    }
}

/// A budget's counts right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The budget's name.
    pub name: String,
    /// Its slots.
    pub slots: usize,
    /// Slots taken by running commands (and handed to a lane about to start one).
    pub in_use: usize,
    /// Lanes waiting for a slot.
    pub waiting: usize,
    /// Commands started under it since it was made.
    pub started: u64,
}

impl SharedBudget {
    /// A budget of `slots` commands running at once over every lane that uses it. A
    /// `slots` of 0 is a [`LaneError::ConfigError`]; `name` (for errors and status) must
    /// not be empty.
    pub fn new(name: impl Into<String>, slots: usize) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(LaneError::ConfigError(
                "a shared budget needs a name (it appears in errors and status)".into(),
            ));
        }
        if slots == 0 {
            return Err(LaneError::ConfigError(format!(
                "shared budget '{name}': 0 slots would never start a command; use at least 1"
            )));
        }
        Ok(Self {
            name,
            slots,
            rate: None,
            rate_config: RateLimitConfig::Unlimited,
            inner: Mutex::new(Inner {
                in_use: 0,
                waiters: VecDeque::new(),
                granted: Vec::new(),
                tat: None,
                started: 0,
            }),
        })
    }

    /// Also limits how fast commands start under the budget (a token bucket:
    /// `RateLimitConfig::per_minute` and friends, or `token_bucket`; a sliding window is
    /// refused).
    pub fn with_rate_limit(mut self, limit: RateLimitConfig) -> Result<Self> {
        if matches!(limit, RateLimitConfig::SlidingWindow { .. }) {
            return Err(LaneError::ConfigError(format!(
                "shared budget '{}': the rate limit must be a token bucket \
                 (RateLimitConfig::per_second, per_minute, per_hour or token_bucket)",
                self.name
            )));
        }
        limit.validate().map_err(|error| {
            LaneError::ConfigError(format!("shared budget '{}': {error}", self.name))
        })?;
        self.rate = Gcra::of(&limit);
        self.rate_config = limit;
        Ok(self)
    }

    /// The budget in an `Arc`, as lanes take it.
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Its counts right now.
    pub fn status(&self) -> BudgetStatus {
        let inner = self.inner.lock();
        BudgetStatus {
            name: self.name.clone(),
            slots: self.slots,
            in_use: inner.in_use,
            waiting: inner.waiters.len(),
            started: inner.started,
        }
    }

    /// Takes a slot and a permit for lane `lane` of `queue`, which is about to start a
    /// command. A lane told to [`Acquire::Wait`] is in line and must not ask again until
    /// woken.
    pub(crate) fn try_acquire(
        &self,
        queue: &Weak<dyn BudgetWaker>,
        lane: LaneIdx,
        now: Instant,
    ) -> Acquire {
        let mut inner = self.inner.lock();
        let granted = inner.granted.iter().position(|w| w.is(queue, lane));
        if let Some(rate) = self.rate
            && let Some(at) = rate.allowed_at(inner.tat).filter(|at| *at > now)
        {
            // A handed-over slot stays reserved for the lane meanwhile.
            return Acquire::Throttled(at);
        }
        match granted {
            Some(position) => {
                inner.granted.swap_remove(position);
            }
            None if inner.in_use < self.slots && inner.waiters.is_empty() => inner.in_use += 1,
            None => {
                inner.waiters.push_back(Waiter {
                    queue: queue.clone(),
                    lane,
                });
                return Acquire::Wait;
            }
        }
        if let Some(rate) = self.rate {
            inner.tat = Some(rate.after_start(inner.tat, now));
        }
        inner.started += 1;
        Acquire::Granted
    }

    /// A run that held a slot ended: the slot goes to the first waiting lane (returned,
    /// to be woken after the caller's lock), or back to the budget.
    pub(crate) fn release(self: &Arc<Self>) -> Option<BudgetWake> {
        let mut inner = self.inner.lock();
        Self::hand_on(self, &mut inner)
    }

    fn hand_on(budget: &Arc<Self>, inner: &mut Inner) -> Option<BudgetWake> {
        while let Some(waiter) = inner.waiters.pop_front() {
            if waiter.queue.strong_count() == 0 {
                continue;
            }
            inner.granted.push(waiter.clone());
            return Some(BudgetWake {
                budget: budget.clone(),
                waiter,
            });
        }
        inner.in_use -= 1;
        None
    }

    /// Lane `lane` of `queue` did not use the slot handed to it (nothing to start after
    /// all, or its queue is gone): it goes on. Nothing when no slot waits for that lane.
    pub(crate) fn give_back_grant(
        self: &Arc<Self>,
        queue: &Weak<dyn BudgetWaker>,
        lane: LaneIdx,
    ) -> Option<BudgetWake> {
        let mut inner = self.inner.lock();
        let position = inner.granted.iter().position(|w| w.is(queue, lane))?;
        inner.granted.swap_remove(position);
        Self::hand_on(self, &mut inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Probe(AtomicUsize);

    impl BudgetWaker for Probe {
        fn budget_available(self: Arc<Self>, _lane: LaneIdx) -> Vec<BudgetWake> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Vec::new()
        }
    }

    fn queue() -> (Arc<Probe>, Weak<dyn BudgetWaker>) {
        let probe = Arc::new(Probe(AtomicUsize::new(0)));
        let weak = Arc::downgrade(&(probe.clone() as Arc<dyn BudgetWaker>));
        (probe, weak)
    }

    #[test]
    fn bad_budgets_are_refused() {
        assert!(SharedBudget::new("x", 0).is_err());
        assert!(SharedBudget::new(" ", 1).is_err());
        let window = RateLimitConfig::sliding_window(1, std::time::Duration::from_secs(1));
        assert!(
            SharedBudget::new("x", 1)
                .unwrap()
                .with_rate_limit(window)
                .is_err()
        );
        let zero = RateLimitConfig::per_second(0);
        assert!(
            SharedBudget::new("x", 1)
                .unwrap()
                .with_rate_limit(zero)
                .is_err()
        );
    }

    #[test]
    fn a_released_slot_is_handed_to_the_first_waiter_and_nobody_barges() {
        let budget = SharedBudget::new("b", 1).unwrap().shared();
        let now = Instant::now();
        let (_a, qa) = queue();
        let (b, qb) = queue();
        assert_eq!(budget.try_acquire(&qa, 0, now), Acquire::Granted);
        assert_eq!(budget.try_acquire(&qb, 0, now), Acquire::Wait);
        let wake = budget.release().expect("b waits");
        // The slot is b's: a asking again waits behind.
        assert_eq!(budget.try_acquire(&qa, 0, now), Acquire::Wait);
        wake_all(vec![wake]);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(budget.try_acquire(&qb, 0, now), Acquire::Granted);
        assert_eq!(budget.status().in_use, 1);
    }

    #[test]
    fn a_slot_handed_to_a_dropped_queue_passes_on() {
        let budget = SharedBudget::new("b", 1).unwrap().shared();
        let now = Instant::now();
        let (_a, qa) = queue();
        let (b, qb) = queue();
        let (c, qc) = queue();
        assert_eq!(budget.try_acquire(&qa, 0, now), Acquire::Granted);
        assert_eq!(budget.try_acquire(&qb, 0, now), Acquire::Wait);
        assert_eq!(budget.try_acquire(&qc, 0, now), Acquire::Wait);
        drop(b);
        wake_all(budget.release().into_iter().collect());
        assert_eq!(c.0.load(Ordering::SeqCst), 1, "b is gone: c was woken");
        assert_eq!(budget.try_acquire(&qc, 0, now), Acquire::Granted);
        wake_all(budget.release().into_iter().collect());
        assert_eq!(budget.status().in_use, 0, "every slot came back");
    }

    #[test]
    fn the_rate_limit_names_the_next_permit() {
        let budget = SharedBudget::new("b", 8)
            .unwrap()
            .with_rate_limit(RateLimitConfig::per_second(2))
            .unwrap()
            .shared();
        let now = Instant::now();
        let (_a, qa) = queue();
        assert_eq!(budget.try_acquire(&qa, 0, now), Acquire::Granted);
        assert_eq!(budget.try_acquire(&qa, 0, now), Acquire::Granted);
        assert_eq!(
            budget.try_acquire(&qa, 0, now),
            Acquire::Throttled(now + std::time::Duration::from_millis(500))
        );
        assert_eq!(budget.status().in_use, 2, "a throttled ask takes no slot");
    }
}
