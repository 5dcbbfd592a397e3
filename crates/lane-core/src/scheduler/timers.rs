//! Deadlines the scheduler must act on: delayed retries and starts, start-by deadlines,
//! rate-limit refills, timed pauses.
//! One task per queue sleeps until the earliest; with no deadline there is no task.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use tokio::time::Instant;

use super::{LaneIdx, Task};

pub(crate) enum TimerKind {
    /// A failed command's retry delay is over: back to the front of its lane.
    Retry(Arc<Task>),
    /// A delayed command's start time has come: to the back of its lane.
    Due(Arc<Task>),
    /// A command's start-by deadline: if it has not started, it expires.
    Expire(Arc<Task>),
    /// The lane's admission policy may admit again.
    Unthrottle(LaneIdx),
    /// A timed pause is over.
    Resume(LaneIdx),
    /// A group's rate limit may admit again.
    GroupUnthrottle(LaneIdx, Arc<str>),
    /// The lane's shared budget has a permit again.
    BudgetRetry(LaneIdx),
}

struct Entry {
    at: Instant,
    seq: u64,
    kind: TimerKind,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Whether the timer task is alive (it exits when the heap empties).
    pub(crate) driver_running: bool,
    /// A deadline was added since the queue last made sure the timer task knows about it.
    scheduled: bool,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, kind: TimerKind) {
        self.seq += 1;
        self.scheduled = true;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            kind,
        }));
    }

    /// Whether a deadline was added since the last call (the timer task must be told).
    pub(crate) fn take_scheduled(&mut self) -> bool {
        std::mem::take(&mut self.scheduled)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKind> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            self.heap.pop().map(|Reverse(e)| e.kind)
        } else {
            None
        }
    }
}
