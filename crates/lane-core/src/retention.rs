//! What is kept of a command after it finished, and for how long: [`Retention`] (per
//! lane), the error as kept ([`CommandFailure`]), the paging of listings ([`Page`]), and
//! the in-process store of finished commands.
//!
//! Every engine follows the same rule: a lane keeps, for each final state (completed,
//! failed, cancelled, expired), its last [`Retention::keep_last`] commands, each for at
//! most [`Retention::keep_for`] after it finished. Dead letters are kept apart, until
//! redriven or purged.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::{CommandState, CommandStatus};
use crate::command::CommandId;
use crate::error::{LaneError, Result};

/// How long a lane keeps its finished commands for lookup
/// ([`QueueClient::command`](crate::QueueClient::command)) and listing
/// ([`QueueClient::list_commands`](crate::QueueClient::list_commands)): the last
/// `keep_last` of each final state, each for at most `keep_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    keep_last: usize,
    keep_for: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: Self::DEFAULT_KEEP_LAST,
            keep_for: Self::DEFAULT_KEEP_FOR,
        }
    }
}

impl Retention {
    /// Finished commands kept per lane and final state by default.
    pub const DEFAULT_KEEP_LAST: usize = 1000;
    /// How long a finished command is kept by default: a day.
    pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
    /// The most a lane keeps per final state: a million.
    pub const MAX_KEEP_LAST: usize = 1_000_000;
    /// The longest a finished command is kept: a year.
    pub const MAX_KEEP_FOR: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Keeps the last `keep_last` commands of each final state, each for at most
    /// `keep_for` after it finished. Checked when the lane is declared.
    pub fn new(keep_last: usize, keep_for: Duration) -> Self {
        Self {
            keep_last,
            keep_for,
        }
    }

    /// Keeps nothing: a command is gone once it finished (its submitter still gets the
    /// result).
    pub fn none() -> Self {
        Self {
            keep_last: 0,
            keep_for: Self::DEFAULT_KEEP_FOR,
        }
    }

    /// Finished commands kept per final state.
    pub fn keep_last(&self) -> usize {
        self.keep_last
    }

    /// How long a finished command is kept at most.
    pub fn keep_for(&self) -> Duration {
        self.keep_for
    }

    /// Whether anything is kept.
    pub fn keeps_any(&self) -> bool {
        self.keep_last > 0
    }

    /// Checks the values, naming the lane in the error.
    pub fn validate(&self, lane: &str) -> Result<()> {
        if self.keep_last > Self::MAX_KEEP_LAST {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': retention keep_last {} is more than {}; keep fewer and list \
                 the rest from your own store",
                self.keep_last,
                Self::MAX_KEEP_LAST
            )));
        }
        if self.keep_for < Duration::from_millis(1) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': retention keep_for {:?} is shorter than 1 ms; use \
                 Retention::none() to keep nothing",
                self.keep_for
            )));
        }
        if self.keep_for > Self::MAX_KEEP_FOR {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': retention keep_for {:?} is longer than a year; use a shorter one",
                self.keep_for
            )));
        }
        Ok(())
    }
}

/// How a command failed, as kept after it finished: a stable kind (`failed`,
/// `non_retryable`, `timeout`, `cancelled`, `expired`, `handler_not_found`,
/// `invalid_input`, `other`) and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFailure {
    /// The kind of error, one of the names above.
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// The run timeout, for kind `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl CommandFailure {
    /// The kept form of `error`.
    pub fn from_error(error: &LaneError) -> Self {
        let (kind, message) = match error {
            LaneError::CommandError(m) => ("failed", m.clone()),
            LaneError::NonRetryable(m) => ("non_retryable", m.clone()),
            LaneError::Timeout(_) => ("timeout", error.to_string()),
            LaneError::Cancelled(m) => ("cancelled", m.clone()),
            LaneError::HandlerNotFound { .. } => ("handler_not_found", error.to_string()),
            LaneError::InvalidInput(m) => ("invalid_input", m.clone()),
            LaneError::Expired(m) => ("expired", m.clone()),
            other => ("other", other.to_string()),
        };
        Self {
            kind: kind.to_owned(),
            message,
            timeout_ms: match error {
                LaneError::Timeout(limit) => {
                    Some(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
                }
                _ => None,
            },
        }
    }

    /// The error back, as the submitter got it (a `handler_not_found` comes back as
    /// [`LaneError::Other`] with its message).
    pub fn to_error(&self) -> LaneError {
        match self.kind.as_str() {
            "failed" => LaneError::CommandError(self.message.clone()),
            "non_retryable" => LaneError::NonRetryable(self.message.clone()),
            "timeout" => LaneError::Timeout(Duration::from_millis(self.timeout_ms.unwrap_or(0))),
            "cancelled" => LaneError::Cancelled(self.message.clone()),
            "invalid_input" => LaneError::InvalidInput(self.message.clone()),
            "expired" => LaneError::Expired(self.message.clone()),
            _ => LaneError::Other(self.message.clone()),
        }
    }
}

/// A page of a listing: skip `offset` commands, return at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Commands skipped from the start of the listing.
    pub offset: usize,
    /// The most commands returned, 1 to [`Page::MAX_LIMIT`].
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl Page {
    /// Commands per page by default.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most commands one page returns.
    pub const MAX_LIMIT: usize = 1000;

    /// The page of at most `limit` commands after the first `offset`.
    pub fn new(offset: usize, limit: usize) -> Self {
        Self { offset, limit }
    }

    /// The first page of at most `limit` commands.
    pub fn first(limit: usize) -> Self {
        Self::new(0, limit)
    }

    /// The same rule on every engine: `limit` from 1 to [`Page::MAX_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > Self::MAX_LIMIT {
            return Err(LaneError::InvalidInput(format!(
                "a page limit of {} is outside 1..={}; ask for at most {} commands and page \
                 with the offset",
                self.limit,
                Self::MAX_LIMIT,
                Self::MAX_LIMIT
            )));
        }
        Ok(())
    }
}

/// The final states a lane keeps, in the order of its per-state lists.
pub(crate) const KEPT_STATES: [CommandState; 4] = [
    CommandState::Completed,
    CommandState::Failed,
    CommandState::Cancelled,
    CommandState::Expired,
];

fn kept_index(state: CommandState) -> Option<usize> {
    KEPT_STATES.iter().position(|s| *s == state)
}

/// The in-process store of finished commands: by id for lookup, and per lane and final
/// state in finishing order for listing and eviction. Bounded by each lane's
/// `keep_last`; an expired record is dropped when its list is next touched and is never
/// returned.
#[derive(Debug, Default)]
pub(crate) struct Retained {
    /// Each record with when it expires.
    by_id: HashMap<CommandId, (CommandStatus, Instant)>,
    /// Per lane index, per kept state: (id, expiry), oldest first. Every entry has its
    /// record in `by_id`, so a page is found by position.
    order: Vec<[VecDeque<(CommandId, Instant)>; 4]>,
}

impl Retained {
    /// Keeps `status` (a final state) for `lane` under `retention`, evicting the oldest
    /// beyond `keep_last` and the expired from its list.
    pub(crate) fn keep(
        &mut self,
        lane: usize,
        retention: Retention,
        status: CommandStatus,
        now: Instant,
    ) {
        let expires = now.checked_add(retention.keep_for).unwrap_or(now);
        self.keep_until(lane, retention.keep_last, status, expires, now)
    }

    /// [`keep`](Self::keep) with the expiry given (a record loaded from storage).
    pub(crate) fn keep_until(
        &mut self,
        lane: usize,
        keep_last: usize,
        status: CommandStatus,
        expires: Instant,
        now: Instant,
    ) {
        let Some(slot) = kept_index(status.state) else {
            return;
        };
        if keep_last == 0 {
            return;
        }
        if self.order.len() <= lane {
            self.order.resize_with(lane + 1, Default::default);
        }
        let id = status.id;
        if self.by_id.insert(id, (status, expires)).is_some() {
            // Kept before (a redriven command that ended again): rare, so a scan.
            for list in &mut self.order[lane] {
                list.retain(|(kept, _)| *kept != id);
            }
        }
        let list = &mut self.order[lane][slot];
        list.push_back((id, expires));
        while list.len() > keep_last || list.front().is_some_and(|(_, until)| *until <= now) {
            let Some((old, _)) = list.pop_front() else {
                break;
            };
            self.by_id.remove(&old);
        }
    }

    /// The kept record of `id`, unless it expired.
    pub(crate) fn get(&self, id: CommandId, now: Instant) -> Option<&CommandStatus> {
        self.by_id
            .get(&id)
            .filter(|(_, until)| *until > now)
            .map(|(status, _)| status)
    }

    /// A lane's kept commands in `state`, newest first, paged: found by position, so a
    /// deep page costs no more than the first.
    pub(crate) fn list(
        &self,
        lane: usize,
        state: CommandState,
        page: Page,
        now: Instant,
    ) -> Vec<CommandStatus> {
        let (Some(slot), Some(lists)) = (kept_index(state), self.order.get(lane)) else {
            return Vec::new();
        };
        let list = &lists[slot];
        // Expiries grow along a list (one keep_for per lane), so the expired are a prefix.
        let live = list.partition_point(|(_, until)| *until <= now);
        let newest = list.len();
        let end = newest.saturating_sub(page.offset);
        let start = end.saturating_sub(page.limit).max(live);
        (start..end)
            .rev()
            .filter_map(|i| {
                let (id, until) = list[i];
                (until > now).then(|| self.by_id.get(&id).map(|(status, _)| status.clone()))?
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(id: CommandId, state: CommandState) -> CommandStatus {
        CommandStatus {
            id,
            lane_id: "query".into(),
            command_type: "t".into(),
            state,
            attempts: 1,
            submitted_at_ms: Some(1),
            started_at_ms: Some(2),
            finished_at_ms: Some(3),
            result: None,
            error: None,
        }
    }

    #[test]
    fn keeps_the_last_n_of_each_state_newest_first() {
        let now = Instant::now();
        let mut kept = Retained::default();
        let retention = Retention::new(2, Duration::from_secs(60));
        for id in 1..=3 {
            kept.keep(0, retention, finished(id, CommandState::Completed), now);
        }
        kept.keep(0, retention, finished(9, CommandState::Failed), now);
        assert!(
            kept.get(2, now).is_some() && kept.get(3, now).is_some(),
            "another state has its own list"
        );
        let ids: Vec<_> = kept
            .list(0, CommandState::Completed, Page::default(), now)
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [3, 2]);
        assert!(kept.get(1, now).is_none());
        assert_eq!(
            kept.get(9, now).map(|s| s.state),
            Some(CommandState::Failed)
        );
    }

    #[test]
    fn an_expired_record_is_never_returned_and_is_dropped() {
        let now = Instant::now();
        let mut kept = Retained::default();
        let retention = Retention::new(10, Duration::from_secs(1));
        kept.keep(0, retention, finished(1, CommandState::Cancelled), now);
        let later = now + Duration::from_secs(1);
        assert!(kept.get(1, later).is_none());
        assert!(
            kept.list(0, CommandState::Cancelled, Page::default(), later)
                .is_empty()
        );
        kept.keep(0, retention, finished(2, CommandState::Cancelled), later);
        assert!(
            !kept.by_id.contains_key(&1),
            "dropped when its list was next touched"
        );
    }

    #[test]
    fn retention_none_keeps_nothing() {
        let now = Instant::now();
        let mut kept = Retained::default();
        kept.keep(
            0,
            Retention::none(),
            finished(1, CommandState::Completed),
            now,
        );
        assert!(kept.get(1, now).is_none());
    }

    #[test]
    fn bad_retention_and_pages_are_refused_with_the_value() {
        let error = Retention::new(1, Duration::ZERO).validate("q").unwrap_err();
        assert!(error.to_string().contains("keep_for"), "{error}");
        let error = Retention::new(Retention::MAX_KEEP_LAST + 1, Duration::from_secs(1))
            .validate("q")
            .unwrap_err();
        assert!(error.to_string().contains("keep_last"), "{error}");
        assert!(Page::new(0, 0).validate().is_err());
        assert!(Page::new(0, Page::MAX_LIMIT + 1).validate().is_err());
        assert!(Page::new(5, Page::MAX_LIMIT).validate().is_ok());
    }
}
