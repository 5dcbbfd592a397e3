//! Groups inside a lane: one queue serving many tenants or sessions fairly.
//!
//! A command submitted with a group key ([`SubmitOptions::with_group`](crate::SubmitOptions::with_group))
//! waits in its group's FIFO. Within a lane, groups with work take turns (round robin), so
//! one group's backlog delays another group's first command by at most one turn; the
//! lane's own priority, caps and rate limit still apply on top. Each group may have a
//! concurrency cap and a rate limit ([`GroupLimits`]: a default for every group, overrides
//! for some), and may be paused, resumed and cancelled as a whole.
//!
//! The rules here ([`GroupRules`], [`check_group`], [`Gcra`]) are shared by every engine;
//! `GroupBook` is the in-process engine's per-lane bookkeeping. Every operation on it is
//! O(1) amortised: the turn order is a ring of the groups that may start, kept lazily (a
//! group that stopped being able to start leaves the ring when its turn comes).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{LaneError, Result};
use crate::policy::RateLimitConfig;

/// The longest group key, in bytes of UTF-8.
pub const MAX_GROUP_BYTES: usize = 256;

/// The group of commands submitted without one, in a lane that has groups. They take
/// turns with the groups as one group of their own, which no group limit applies to.
pub(crate) const UNGROUPED: &str = "";

/// Checks a group key: not empty, at most [`MAX_GROUP_BYTES`], no control characters.
pub fn check_group(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(LaneError::InvalidInput(
            "a group key must not be empty; leave the group unset for a command of no group".into(),
        ));
    }
    if group.len() > MAX_GROUP_BYTES {
        return Err(LaneError::InvalidInput(format!(
            "a group key of {} bytes is longer than {MAX_GROUP_BYTES}; use a shorter key (a \
             tenant or session id, or a hash of a longer one)",
            group.len()
        )));
    }
    if group.chars().any(char::is_control) {
        return Err(LaneError::InvalidInput(
            "a group key must not contain control characters; use printable text".into(),
        ));
    }
    Ok(())
}

/// The limits of one group: how many of its commands run at once, how fast they start.
///
/// ```
/// use a3s_lane::{GroupLimits, RateLimitConfig};
///
/// let limits = GroupLimits::new()
///     .with_max_concurrency(2)
///     .with_rate_limit(RateLimitConfig::per_minute(60));
/// assert_eq!(limits.max_concurrency, Some(2));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct GroupLimits {
    /// At most this many of the group's commands run at once; `None`: the lane's cap only.
    pub max_concurrency: Option<usize>,
    /// How fast the group's commands may start (a token bucket; a sliding window is
    /// refused for groups, whose state must stay one number per group).
    pub rate_limit: RateLimitConfig,
}

impl GroupLimits {
    /// No limit beyond the lane's own.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max` of the group's commands run at once (at least 1).
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = Some(max);
        self
    }

    /// The group's commands start at most this fast (a token bucket:
    /// `RateLimitConfig::per_second` and friends, or `token_bucket`).
    pub fn with_rate_limit(mut self, limit: RateLimitConfig) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Whether these limits limit nothing.
    pub fn is_unlimited(&self) -> bool {
        self.max_concurrency.is_none() && self.rate_limit.is_unlimited()
    }

    /// Checks the values; `what` names them in the error ("lane 'x' group 'y'").
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.max_concurrency == Some(0) {
            return Err(LaneError::ConfigError(format!(
                "{what}: a group max_concurrency of 0 would never start a command; use at \
                 least 1, or pause_group to hold a group"
            )));
        }
        if matches!(self.rate_limit, RateLimitConfig::SlidingWindow { .. }) {
            return Err(LaneError::ConfigError(format!(
                "{what}: a group rate limit must be a token bucket (RateLimitConfig::per_second, \
                 per_minute, per_hour or token_bucket); a sliding window would keep every \
                 start of every group"
            )));
        }
        self.rate_limit
            .validate()
            .map_err(|error| LaneError::ConfigError(format!("{what}: {error}")))
    }
}

/// A lane's group limits: a default for every group, and overrides for some groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRules {
    /// The limits of a group without an override.
    pub default: GroupLimits,
    /// Limits of particular groups, replacing the default for them.
    pub overrides: BTreeMap<String, GroupLimits>,
}

impl GroupRules {
    /// The limits of group `group` (none for commands of no group).
    pub fn limits_of(&self, group: &str) -> GroupLimits {
        if group == UNGROUPED {
            return GroupLimits::new();
        }
        self.overrides.get(group).copied().unwrap_or(self.default)
    }

    /// Whether no group has any limit.
    pub fn is_unlimited(&self) -> bool {
        self.default.is_unlimited() && self.overrides.values().all(GroupLimits::is_unlimited)
    }

    /// Checks the default and every override of lane `lane`.
    pub fn validate(&self, lane: &str) -> Result<()> {
        self.default
            .validate(&format!("lane '{lane}' default group limits"))?;
        for (group, limits) in &self.overrides {
            check_group(group).map_err(|error| {
                LaneError::ConfigError(format!("lane '{lane}' group override: {error}"))
            })?;
            limits.validate(&format!("lane '{lane}' group '{group}'"))?;
        }
        Ok(())
    }
}

/// One group of a lane, as [`QueueClient::group_status`](crate::QueueClient::group_status)
/// and [`QueueClient::groups`](crate::QueueClient::groups) show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupStatus {
    /// The lane.
    pub lane: String,
    /// The group key.
    pub group: String,
    /// Its commands waiting for their turn.
    pub pending: usize,
    /// Its commands running.
    pub active: usize,
    /// Whether it is paused ([`QueueClient::pause_group`](crate::QueueClient::pause_group)).
    pub paused: bool,
    /// Whether its rate limit holds it back right now.
    pub throttled: bool,
    /// Its concurrency cap, if any.
    pub max_concurrency: Option<usize>,
}

impl GroupStatus {
    /// A group with nothing pending or running, not paused.
    pub fn empty(lane: &str, group: &str, rules: &GroupRules) -> Self {
        Self {
            lane: lane.to_owned(),
            group: group.to_owned(),
            pending: 0,
            active: 0,
            paused: false,
            throttled: false,
            max_concurrency: rules.limits_of(group).max_concurrency,
        }
    }
}

/// A token bucket as GCRA: one "theoretical arrival time" per group instead of a count and
/// a refill time. Equivalent to `RateLimitConfig::token_bucket(rate, period, burst)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two permits (`period / rate`).
    pub interval: Duration,
    /// How far ahead of now the arrival time may run (`interval * (burst - 1)`).
    pub tolerance: Duration,
}

impl Gcra {
    /// The GCRA form of a valid token bucket; `None` for no limit.
    pub fn of(limit: &RateLimitConfig) -> Option<Self> {
        match *limit {
            RateLimitConfig::TokenBucket {
                rate,
                period,
                burst,
            } => {
                let interval = period / rate.max(1);
                Some(Self {
                    interval,
                    tolerance: interval.saturating_mul(burst.saturating_sub(1)),
                })
            }
            _ => None,
        }
    }

    /// When a command may start, given the arrival time `tat` (`None`: never limited yet).
    pub fn allowed_at(&self, tat: Option<Instant>) -> Option<Instant> {
        tat.and_then(|tat| tat.checked_sub(self.tolerance))
    }

    /// The arrival time after a start at `now`.
    pub fn after_start(&self, tat: Option<Instant>, now: Instant) -> Instant {
        let base = tat.map_or(now, |tat| tat.max(now));
        base.checked_add(self.interval).unwrap_or(base)
    }
}

/// One group of a lane in process.
struct Group<T> {
    queue: VecDeque<T>,
    active: usize,
    paused: bool,
    /// The rate limit's arrival time (see [`Gcra`]).
    tat: Option<Instant>,
    /// Held back by its rate limit until then.
    throttled_until: Option<Instant>,
    /// In the ring of groups whose turn may come.
    in_ring: bool,
    /// In the list of idle groups kept only for their rate state.
    fading: bool,
    limits: GroupLimits,
    gcra: Option<Gcra>,
}

impl<T> Group<T> {
    fn may_start(&self) -> bool {
        !self.queue.is_empty()
            && !self.paused
            && self.throttled_until.is_none()
            && self
                .limits
                .max_concurrency
                .is_none_or(|max| self.active < max)
    }

    /// Nothing waits, runs or is paused: only its rate state (if any) keeps it.
    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.active == 0 && !self.paused
    }
}

/// Whether a lane has a group whose turn may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The ring's front group may start a command now.
    Ready,
    /// No group may start now.
    Empty,
}

/// The in-process engine's groups of one lane: each group's FIFO, its counts and rate
/// state, and the ring of groups whose turn may come.
pub(crate) struct GroupBook<T> {
    rules: Arc<GroupRules>,
    groups: HashMap<Arc<str>, Group<T>>,
    ring: VecDeque<Arc<str>>,
    /// Idle groups kept only for their rate state, dropped once it no longer matters.
    fading: VecDeque<Arc<str>>,
    /// The group that had the last turn: should it be at the ring's front at the next
    /// turn (it stayed there, or it came back after running out of commands) while
    /// another group waits, it goes to the back first. So a group that arrives while
    /// another's backlog runs gets the very next turn.
    last_served: Option<Arc<str>>,
    len: usize,
}

impl<T> GroupBook<T> {
    pub(crate) fn new(rules: Arc<GroupRules>) -> Self {
        Self {
            rules,
            groups: HashMap::new(),
            ring: VecDeque::new(),
            fading: VecDeque::new(),
            last_served: None,
            len: 0,
        }
    }

    /// Commands waiting in all groups.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether some group may be able to start a command (a lazily kept ring: exact after
    /// [`settle`](Self::settle)).
    pub(crate) fn may_start(&self) -> bool {
        !self.ring.is_empty()
    }

    fn group_mut(&mut self, key: &str, now: Instant) -> &mut Group<T> {
        if !self.groups.contains_key(key) {
            // A new group sweeps a little of the fading list: memory stays bounded by the
            // groups with work, a pause, or a rate state that still matters.
            for _ in 0..2 {
                self.sweep_one(now);
            }
            let limits = self.rules.limits_of(key);
            self.groups.insert(
                Arc::from(key),
                Group {
                    queue: VecDeque::new(),
                    active: 0,
                    paused: false,
                    tat: None,
                    throttled_until: None,
                    in_ring: false,
                    fading: false,
                    gcra: Gcra::of(&limits.rate_limit),
                    limits,
                },
            );
        }
        self.groups.get_mut(key).expect("inserted above")
    }

    fn sweep_one(&mut self, now: Instant) {
        let Some(key) = self.fading.pop_front() else {
            return;
        };
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        group.fading = false;
        if !group.is_idle() {
            return;
        }
        if group.tat.is_some_and(|tat| tat > now) {
            group.fading = true;
            self.fading.push_back(key);
        } else {
            self.groups.remove(&key);
        }
    }

    /// Puts group `key` in the ring if it may start and is not there.
    fn enter_ring(&mut self, key: &str) {
        let Some((name, group)) = self.groups.get_key_value(key) else {
            return;
        };
        if !group.in_ring && group.may_start() {
            let name = name.clone();
            self.groups.get_mut(key).expect("looked up above").in_ring = true;
            self.ring.push_back(name);
        }
    }

    /// Forgets a group that holds nothing, or keeps it fading for its rate state.
    fn after_change(&mut self, key: &str, now: Instant) {
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if !group.is_idle() || group.in_ring || group.fading {
            return;
        }
        if group.tat.is_some_and(|tat| tat > now) {
            group.fading = true;
            let name = self
                .groups
                .get_key_value(key)
                .map(|(name, _)| name.clone())
                .expect("looked up above");
            self.fading.push_back(name);
        } else {
            self.groups.remove(key);
        }
    }

    /// Queues `item` in group `key`, at the back (new) or front (retry, recovery).
    pub(crate) fn push(&mut self, key: &str, item: T, front: bool, now: Instant) {
        let group = self.group_mut(key, now);
        if front {
            group.queue.push_front(item);
        } else {
            group.queue.push_back(item);
        }
        self.len += 1;
        self.enter_ring(key);
    }

    /// Drops groups that cannot start from the ring's front until one can (its rate limit
    /// included); rate-limited groups are put in `throttled` with the instant they may
    /// start again (the caller arms a timer and calls [`unthrottle`](Self::unthrottle)).
    pub(crate) fn settle(
        &mut self,
        now: Instant,
        throttled: &mut Vec<(Arc<str>, Instant)>,
    ) -> Turn {
        if self.front_was_served()
            && let Some(served) = self.ring.pop_front()
        {
            self.ring.push_back(served);
        }
        self.last_served = None;
        while let Some(key) = self.ring.front().cloned() {
            let group = self
                .groups
                .get_mut(&key)
                .expect("a ring entry has its group");
            if group.may_start() {
                match group.gcra.and_then(|gcra| gcra.allowed_at(group.tat)) {
                    Some(at) if at > now => {
                        group.throttled_until = Some(at);
                        throttled.push((key.clone(), at));
                    }
                    _ => return Turn::Ready,
                }
            }
            group.in_ring = false;
            self.ring.pop_front();
            self.after_change(&key, now);
        }
        Turn::Empty
    }

    /// Takes the next command: the head of the group whose turn it is (call after
    /// [`settle`](Self::settle) said [`Turn::Ready`]). The group counts it as running and
    /// goes to the back of the ring.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(Arc<str>, T)> {
        let key = self.ring.front()?.clone();
        let group = self
            .groups
            .get_mut(&key)
            .expect("a ring entry has its group");
        let item = group.queue.pop_front()?;
        self.len -= 1;
        group.active += 1;
        if let Some(gcra) = group.gcra {
            group.tat = Some(gcra.after_start(group.tat, now));
        }
        if !group.may_start() {
            group.in_ring = false;
            self.ring.pop_front();
        }
        self.last_served = Some(key.clone());
        Some((key, item))
    }

    /// Whether the ring's front group had the last turn and another group waits.
    fn front_was_served(&self) -> bool {
        self.ring.len() > 1 && self.ring.front() == self.last_served.as_ref()
    }

    /// The head command of the group whose turn it is.
    pub(crate) fn front(&self) -> Option<&T> {
        self.ring
            .iter()
            .filter_map(|key| self.groups.get(key))
            .find_map(|group| group.queue.front())
    }

    /// A command of group `key` that [`pop`](Self::pop) took has ended its run.
    pub(crate) fn release(&mut self, key: &str, now: Instant) {
        if let Some(group) = self.groups.get_mut(key) {
            group.active = group.active.saturating_sub(1);
            self.enter_ring(key);
            self.after_change(key, now);
        }
    }

    /// Removes the commands of group `key` that `remove` says, in order; returns them.
    pub(crate) fn remove_where(
        &mut self,
        key: &str,
        mut remove: impl FnMut(&T) -> bool,
        now: Instant,
    ) -> Vec<T> {
        let Some(group) = self.groups.get_mut(key) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(group.queue.len());
        for item in group.queue.drain(..) {
            if remove(&item) {
                removed.push(item);
            } else {
                kept.push_back(item);
            }
        }
        group.queue = kept;
        self.len -= removed.len();
        self.after_change(key, now);
        removed
    }

    /// Pauses or resumes group `key` (a paused group is kept while paused, even empty).
    pub(crate) fn set_paused(&mut self, key: &str, paused: bool, now: Instant) {
        if !paused && !self.groups.contains_key(key) {
            return;
        }
        self.group_mut(key, now).paused = paused;
        self.enter_ring(key);
        self.after_change(key, now);
    }

    /// The rate limit of group `key` may admit again.
    pub(crate) fn unthrottle(&mut self, key: &str, now: Instant) {
        if let Some(group) = self.groups.get_mut(key) {
            group.throttled_until = None;
            self.enter_ring(key);
            self.after_change(key, now);
        }
    }

    /// Every waiting command in the order they would start if nothing changed: the ring's
    /// groups taking turns, then the groups held back (paused, at their cap, throttled).
    pub(crate) fn in_turn_order(&self) -> Vec<&T> {
        let mut out = Vec::with_capacity(self.len);
        let skip = usize::from(self.front_was_served());
        let mut turns: Vec<_> = self
            .ring
            .iter()
            .skip(skip)
            .chain(self.ring.iter().take(skip))
            .filter_map(|key| self.groups.get(key))
            .filter(|group| group.may_start())
            .map(|group| group.queue.iter())
            .collect();
        while !turns.is_empty() {
            turns.retain_mut(|queue| match queue.next() {
                Some(item) => {
                    out.push(item);
                    true
                }
                None => false,
            });
        }
        for group in self.groups.values() {
            if !(group.in_ring && group.may_start()) {
                out.extend(group.queue.iter());
            }
        }
        out
    }

    /// The status of group `key` in lane `lane`.
    pub(crate) fn status(&self, lane: &str, key: &str) -> GroupStatus {
        match self.groups.get(key) {
            Some(group) => GroupStatus {
                lane: lane.to_owned(),
                group: key.to_owned(),
                pending: group.queue.len(),
                active: group.active,
                paused: group.paused,
                throttled: group.throttled_until.is_some(),
                max_concurrency: group.limits.max_concurrency,
            },
            None => GroupStatus::empty(lane, key, &self.rules),
        }
    }

    /// The groups with commands waiting or running, or paused, sorted (commands of no
    /// group are not a group here).
    pub(crate) fn listed_keys(&self) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = self
            .groups
            .iter()
            .filter(|(key, group)| &***key != UNGROUPED && !group.is_idle())
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(rules: GroupRules) -> GroupBook<u32> {
        GroupBook::new(Arc::new(rules))
    }

    fn drain(book: &mut GroupBook<u32>, now: Instant) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut throttled = Vec::new();
        while book.settle(now, &mut throttled) == Turn::Ready {
            let (key, item) = book.pop(now).expect("ready");
            out.push((key.to_string(), item));
        }
        out
    }

    #[test]
    fn group_keys_are_checked_at_the_boundary() {
        assert!(check_group("tenant-1").is_ok());
        assert!(check_group("").is_err());
        assert!(check_group(&"x".repeat(MAX_GROUP_BYTES + 1)).is_err());
        assert!(check_group("a\nb").is_err());
        assert!(check_group(&"é".repeat(MAX_GROUP_BYTES / 2)).is_ok());
    }

    #[test]
    fn limits_refuse_a_zero_cap_and_a_sliding_window() {
        assert!(
            GroupLimits::new()
                .with_max_concurrency(0)
                .validate("g")
                .is_err()
        );
        let window = RateLimitConfig::sliding_window(5, Duration::from_secs(1));
        assert!(
            GroupLimits::new()
                .with_rate_limit(window)
                .validate("g")
                .is_err()
        );
        let zero = RateLimitConfig::per_second(0);
        assert!(
            GroupLimits::new()
                .with_rate_limit(zero)
                .validate("g")
                .is_err()
        );
        let mut rules = GroupRules::default();
        rules.overrides.insert(String::new(), GroupLimits::new());
        assert!(rules.validate("lane").is_err());
    }

    #[test]
    fn groups_take_turns_fifo_inside_each() {
        let now = Instant::now();
        let mut book = book(GroupRules::default());
        for i in 0..3 {
            book.push("a", i, false, now);
        }
        book.push("b", 10, false, now);
        let order: Vec<u32> = drain(&mut book, now).into_iter().map(|(_, i)| i).collect();
        assert_eq!(order, vec![0, 10, 1, 2]);
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn a_group_that_arrives_goes_before_the_group_just_served() {
        let now = Instant::now();
        let mut book = book(GroupRules::default());
        let mut throttled = Vec::new();
        for i in 0..3 {
            book.push("a", i, false, now);
        }
        assert_eq!(book.settle(now, &mut throttled), Turn::Ready);
        assert_eq!(book.pop(now).map(|(_, i)| i), Some(0));
        book.push("b", 10, false, now);
        let order: Vec<u32> = drain(&mut book, now).into_iter().map(|(_, i)| i).collect();
        assert_eq!(order, vec![10, 1, 2]);
    }

    #[test]
    fn a_group_that_ran_dry_and_refilled_still_lets_a_newcomer_go_first() {
        let now = Instant::now();
        let mut book = book(GroupRules::default());
        let mut throttled = Vec::new();
        book.push("a", 0, false, now);
        assert_eq!(book.settle(now, &mut throttled), Turn::Ready);
        assert_eq!(book.pop(now).map(|(_, i)| i), Some(0));
        book.push("a", 1, false, now);
        book.push("b", 10, false, now);
        let order: Vec<u32> = drain(&mut book, now).into_iter().map(|(_, i)| i).collect();
        assert_eq!(order, vec![10, 1]);
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn a_capped_group_waits_for_a_release() {
        let now = Instant::now();
        let mut book = book(GroupRules {
            default: GroupLimits::new().with_max_concurrency(1),
            ..GroupRules::default()
        });
        book.push("a", 1, false, now);
        book.push("a", 2, false, now);
        assert_eq!(drain(&mut book, now).len(), 1);
        assert!(!book.may_start());
        book.release("a", now);
        assert_eq!(drain(&mut book, now), vec![("a".into(), 2)]);
        book.release("a", now);
        assert!(
            book.groups.is_empty(),
            "an idle group without rate state is forgotten"
        );
    }

    #[test]
    fn a_rate_limited_group_is_throttled_until_its_next_permit() {
        let now = Instant::now();
        let mut book = book(GroupRules {
            default: GroupLimits::new().with_rate_limit(RateLimitConfig::per_second(2)),
            ..GroupRules::default()
        });
        for i in 0..3 {
            book.push("a", i, false, now);
        }
        let mut throttled = Vec::new();
        for _ in 0..2 {
            assert_eq!(book.settle(now, &mut throttled), Turn::Ready, "the burst");
            book.pop(now);
        }
        assert_eq!(book.settle(now, &mut throttled), Turn::Empty);
        assert_eq!(throttled.len(), 1);
        let at = throttled[0].1;
        assert_eq!(at, now + Duration::from_millis(500));
        assert!(book.status("l", "a").throttled);
        book.unthrottle("a", at);
        assert_eq!(drain(&mut book, at).len(), 1);
    }

    #[test]
    fn a_paused_group_keeps_its_commands_and_others_go_on() {
        let now = Instant::now();
        let mut book = book(GroupRules::default());
        book.push("a", 1, false, now);
        book.push("b", 2, false, now);
        book.set_paused("a", true, now);
        assert_eq!(drain(&mut book, now), vec![("b".into(), 2)]);
        assert!(book.status("l", "a").paused);
        assert_eq!(book.listed_keys().len(), 2, "a running b and a paused a");
        book.set_paused("a", false, now);
        assert_eq!(drain(&mut book, now), vec![("a".into(), 1)]);
    }

    #[test]
    fn idle_groups_with_rate_state_fade_out() {
        let now = Instant::now();
        let mut book = book(GroupRules {
            default: GroupLimits::new().with_rate_limit(RateLimitConfig::per_second(1)),
            ..GroupRules::default()
        });
        book.push("a", 1, false, now);
        drain(&mut book, now);
        book.release("a", now);
        assert_eq!(
            book.groups.len(),
            1,
            "kept: its next permit is a second away"
        );
        let later = now + Duration::from_secs(2);
        book.push("b", 2, false, later);
        assert!(
            !book.groups.contains_key("a"),
            "swept once its rate state expired"
        );
    }

    #[test]
    fn remove_where_takes_out_matching_commands() {
        let now = Instant::now();
        let mut book = book(GroupRules::default());
        for i in 0..4 {
            book.push("a", i, false, now);
        }
        let removed = book.remove_where("a", |i| i % 2 == 0, now);
        assert_eq!(removed, vec![0, 2]);
        assert_eq!(book.len(), 2);
        assert_eq!(drain(&mut book, now).len(), 2);
    }
}
