//! A lane's pending commands: one FIFO, or once the lane has groups, the groups' FIFOs
//! taking turns ([`GroupBook`]). A lane without groups pays one branch per operation.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Queued, Task};
use crate::group::{GroupBook, GroupRules, GroupStatus, Turn, UNGROUPED};

#[derive(Default)]
pub(crate) struct Pending {
    fifo: VecDeque<Queued>,
    /// Set at the lane's first grouped command or group pause; from then on every
    /// command waits in a group (commands of no group in [`UNGROUPED`]).
    groups: Option<Box<GroupBook<Queued>>>,
}

/// The group a task waits in once its lane has groups.
fn group_of(task: &Task) -> &str {
    task.group.as_deref().unwrap_or(UNGROUPED)
}

impl Pending {
    pub(crate) fn len(&self) -> usize {
        match &self.groups {
            None => self.fifo.len(),
            Some(book) => book.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a command may be taken (for groups: a lazily kept ring, exact after
    /// [`settle`](Self::settle)).
    pub(crate) fn may_start(&self) -> bool {
        match &self.groups {
            None => !self.fifo.is_empty(),
            Some(book) => book.may_start(),
        }
    }

    /// The command that starts next (for groups: the head of the group whose turn it is).
    pub(crate) fn front(&self) -> Option<&Queued> {
        match &self.groups {
            None => self.fifo.front(),
            Some(book) => book.front(),
        }
    }

    /// Turns on groups for the lane: what waits in the FIFO moves to [`UNGROUPED`].
    fn book(&mut self, rules: &Arc<GroupRules>, now: Instant) -> &mut GroupBook<Queued> {
        if self.groups.is_none() {
            let mut book = GroupBook::new(rules.clone());
            for queued in self.fifo.drain(..) {
                book.push(UNGROUPED, queued, false, now);
            }
            self.fifo = VecDeque::new();
            self.groups = Some(Box::new(book));
        }
        self.groups.as_mut().expect("set above")
    }

    pub(crate) fn push(
        &mut self,
        queued: Queued,
        front: bool,
        now: Instant,
        rules: &Arc<GroupRules>,
    ) {
        if self.groups.is_none() && queued.task.group.is_none() {
            if front {
                self.fifo.push_front(queued);
            } else {
                self.fifo.push_back(queued);
            }
            return;
        }
        let book = self.book(rules, now);
        let key = Arc::clone(&queued.task);
        book.push(group_of(&key), queued, front, now);
    }

    /// Makes [`may_start`](Self::may_start) exact: false when no group may start now.
    /// Groups held back by their rate limit are added to `throttled`.
    pub(crate) fn settle(
        &mut self,
        now: Instant,
        throttled: &mut Vec<(Arc<str>, Instant)>,
    ) -> bool {
        match &mut self.groups {
            None => !self.fifo.is_empty(),
            Some(book) => book.settle(now, throttled) == Turn::Ready,
        }
    }

    /// Takes the command that starts next, with the group that now counts it as running.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(Queued, Option<Arc<str>>)> {
        match &mut self.groups {
            None => self.fifo.pop_front().map(|queued| (queued, None)),
            Some(book) => book.pop(now).map(|(key, queued)| (queued, Some(key))),
        }
    }

    /// A run taken from group `key` ended.
    pub(crate) fn release(&mut self, key: &str, now: Instant) {
        if let Some(book) = &mut self.groups {
            book.release(key, now);
        }
    }

    /// Removes the pending commands `remove` says; returns them.
    pub(crate) fn remove_where(
        &mut self,
        mut remove: impl FnMut(&Task) -> bool,
        groups_of: &[&str],
        now: Instant,
    ) -> Vec<Arc<Task>> {
        let mut removed = Vec::new();
        match &mut self.groups {
            None => self.fifo.retain(|queued| {
                if remove(&queued.task) {
                    removed.push(queued.task.clone());
                    false
                } else {
                    true
                }
            }),
            Some(book) => {
                for key in groups_of {
                    removed.extend(
                        book.remove_where(key, |queued| remove(&queued.task), now)
                            .into_iter()
                            .map(|queued| queued.task),
                    );
                }
            }
        }
        removed
    }

    /// The pending commands in the order they would start if nothing changed.
    pub(crate) fn in_start_order(&self) -> Box<dyn Iterator<Item = &Queued> + '_> {
        match &self.groups {
            None => Box::new(self.fifo.iter()),
            Some(book) => Box::new(book.in_turn_order().into_iter()),
        }
    }

    pub(crate) fn set_group_paused(
        &mut self,
        key: &str,
        paused: bool,
        now: Instant,
        rules: &Arc<GroupRules>,
    ) {
        if paused {
            self.book(rules, now).set_paused(key, true, now);
        } else if let Some(book) = &mut self.groups {
            book.set_paused(key, false, now);
        }
    }

    pub(crate) fn unthrottle_group(&mut self, key: &str, now: Instant) {
        if let Some(book) = &mut self.groups {
            book.unthrottle(key, now);
        }
    }

    pub(crate) fn group_status(&self, lane: &str, key: &str, rules: &GroupRules) -> GroupStatus {
        match &self.groups {
            None => GroupStatus::empty(lane, key, rules),
            Some(book) => book.status(lane, key),
        }
    }

    /// The listed groups' statuses, sorted by key.
    pub(crate) fn group_statuses(&self, lane: &str) -> Vec<GroupStatus> {
        match &self.groups {
            None => Vec::new(),
            Some(book) => book
                .listed_keys()
                .iter()
                .map(|key| book.status(lane, key))
                .collect(),
        }
    }
}
