//! Per-group metrics ([`GroupMetricsConfig`]): opt-in, and bounded so that a queue
//! serving a million sessions as groups does not make a million series. The groups the
//! config names always get their own series (in every lane); other (lane, group) pairs
//! get one in the order they are first seen until `max_series` is reached; every group
//! after that counts in its lane's `other` bucket.
//!
//! The series are kept by [`QueueMetrics`](crate::QueueMetrics) itself, whatever its
//! backend, behind one short lock taken only for commands that have a group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lane_core::{LaneError, Result, check_group};
use parking_lot::Mutex;

use crate::histogram::{Hdr, is_recordable};
use crate::snapshot::{GroupMetricsSnapshot, LaneGroupsSnapshot};

/// Names of the per-group metrics (in [`GroupMetricsSnapshot`] and, with `.` as `_`, in
/// the Prometheus text, labelled `lane` and `group`, or `lane` and `group_other="true"`
/// for a lane's `other` bucket).
pub mod group_metric_names {
    /// Counter: runs of the group's commands started (each attempt counts).
    pub const STARTED: &str = "group.commands.started";
    /// Counter: the group's commands that returned `Ok`.
    pub const COMPLETED: &str = "group.commands.completed";
    /// Counter: the group's commands that failed for good (a timeout included).
    pub const FAILED: &str = "group.commands.failed";
    /// Counter: the group's commands cancelled, pending or running.
    pub const CANCELLED: &str = "group.commands.cancelled";
    /// Counter: times the group's rate limit held its next start back.
    pub const THROTTLED: &str = "group.throttled";
    /// Histogram: how long the group's commands waited before starting, in ms.
    pub const WAIT_MS: &str = "group.command.wait_ms";

    /// Every counter above.
    pub const COUNTERS: [&str; 5] = [STARTED, COMPLETED, FAILED, CANCELLED, THROTTLED];

    /// The Prometheus help text of a per-group metric.
    pub(crate) fn describe(name: &str) -> &'static str {
        match name {
            STARTED => "Runs of the group's commands started (each attempt counts)",
            COMPLETED => "The group's commands that returned Ok",
            FAILED => "The group's commands that failed for good (a timeout included)",
            CANCELLED => "The group's commands cancelled, pending or running",
            THROTTLED => "Times the group's rate limit held its next start back",
            _ => "Time the group's commands waited before starting, in milliseconds",
        }
    }
}

/// Which groups get series of their own, given to
/// [`QueueMetrics::with_group_metrics`](crate::QueueMetrics::with_group_metrics).
///
/// ```
/// use a3s_lane::GroupMetricsConfig;
///
/// // The first 100 groups seen, plus "vip" always; the rest in each lane's `other`.
/// let config = GroupMetricsConfig::first(100)?.with_group("vip")?;
/// assert_eq!(config.max_series(), 100);
/// assert!(GroupMetricsConfig::first(0).is_err());
/// # Ok::<(), a3s_lane::LaneError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetricsConfig {
    max_series: usize,
    named: BTreeSet<String>,
}

impl GroupMetricsConfig {
    /// The most series `first` accepts: each costs a few kilobytes (its wait histogram)
    /// and one line per metric in every scrape.
    pub const MAX_SERIES: usize = 10_000;

    /// Series for the first `max_series` (lane, group) pairs seen, 1 to
    /// [`MAX_SERIES`](Self::MAX_SERIES).
    pub fn first(max_series: usize) -> Result<Self> {
        if max_series == 0 || max_series > Self::MAX_SERIES {
            return Err(LaneError::ConfigError(format!(
                "group metrics max_series is {max_series}; use 1 to {} (groups beyond it \
                 count in their lane's `other` bucket)",
                Self::MAX_SERIES
            )));
        }
        Ok(Self {
            max_series,
            named: BTreeSet::new(),
        })
    }

    /// `group` always gets a series of its own (in every lane), in addition to the first
    /// `max_series`.
    pub fn with_group(mut self, group: impl Into<String>) -> Result<Self> {
        let group = group.into();
        check_group(&group)?;
        self.named.insert(group);
        Ok(self)
    }

    /// How many (lane, group) pairs seen first get a series.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// The groups that always get a series.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.named.iter().map(String::as_str)
    }
}

/// One series' values.
#[derive(Default)]
struct Cells {
    counters: [u64; group_metric_names::COUNTERS.len()],
    wait: Option<Hdr>,
}

impl Cells {
    fn snapshot(&self) -> GroupMetricsSnapshot {
        let mut out = GroupMetricsSnapshot::default();
        for (name, value) in group_metric_names::COUNTERS.iter().zip(self.counters) {
            out.counters.insert((*name).to_owned(), value);
        }
        if let Some(wait) = self.wait.as_ref().filter(|h| h.len() > 0) {
            out.histograms
                .insert(group_metric_names::WAIT_MS.to_owned(), wait.stats());
        }
        out
    }
}

/// What happened to one command of a group.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupRecord {
    Started { waited_ms: f64 },
    Completed,
    Failed,
    Cancelled,
    Throttled,
}

#[derive(Default)]
struct LaneGroups {
    groups: HashMap<String, Cells>,
    other: Option<Cells>,
}

#[derive(Default)]
struct Book {
    lanes: HashMap<String, LaneGroups>,
    /// Series given to (lane, group) pairs whose group is not named.
    first_seen: usize,
}

/// The per-group series of one [`QueueMetrics`](crate::QueueMetrics).
pub(crate) struct GroupSeries {
    config: GroupMetricsConfig,
    book: Mutex<Book>,
}

impl GroupSeries {
    pub(crate) fn new(config: GroupMetricsConfig) -> Self {
        Self {
            config,
            book: Mutex::new(Book::default()),
        }
    }

    pub(crate) fn record(&self, lane: &str, group: &str, record: GroupRecord) {
        let mut book = self.book.lock();
        let book = &mut *book;
        let first_seen = &mut book.first_seen;
        let lane = match book.lanes.get_mut(lane) {
            Some(lane) => lane,
            None => book.lanes.entry(lane.to_owned()).or_default(),
        };
        let cells = if let Some(cells) = lane.groups.get_mut(group) {
            cells
        } else if self.config.named.contains(group) {
            lane.groups.entry(group.to_owned()).or_default()
        } else if *first_seen < self.config.max_series {
            *first_seen += 1;
            lane.groups.entry(group.to_owned()).or_default()
        } else {
            lane.other.get_or_insert_with(Cells::default)
        };
        let counter = match record {
            GroupRecord::Started { waited_ms } => {
                if is_recordable(waited_ms) {
                    cells.wait.get_or_insert_with(Hdr::new).record(waited_ms);
                }
                0
            }
            GroupRecord::Completed => 1,
            GroupRecord::Failed => 2,
            GroupRecord::Cancelled => 3,
            GroupRecord::Throttled => 4,
        };
        cells.counters[counter] += 1;
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, LaneGroupsSnapshot> {
        let book = self.book.lock();
        book.lanes
            .iter()
            .map(|(lane, groups)| {
                let snapshot = LaneGroupsSnapshot {
                    groups: groups
                        .groups
                        .iter()
                        .map(|(group, cells)| (group.clone(), cells.snapshot()))
                        .collect(),
                    other: groups.other.as_ref().map(Cells::snapshot),
                };
                (lane.clone(), snapshot)
            })
            .collect()
    }

    pub(crate) fn reset(&self) {
        *self.book.lock() = Book::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_beyond_the_first_n_share_their_lanes_other_bucket_and_named_ones_never_do() {
        let series = GroupSeries::new(
            GroupMetricsConfig::first(2)
                .unwrap()
                .with_group("vip")
                .unwrap(),
        );
        for group in ["a", "b", "c", "d", "vip", "a"] {
            series.record("jobs", group, GroupRecord::Started { waited_ms: 1.0 });
        }
        series.record("jobs", "c", GroupRecord::Throttled);
        series.record("other-lane", "a", GroupRecord::Completed);
        series.record("other-lane", "z", GroupRecord::Completed);
        let snapshot = series.snapshot();
        let jobs = &snapshot["jobs"];
        let keys: Vec<&String> = jobs.groups.keys().collect();
        assert_eq!(keys, ["a", "b", "vip"]);
        assert_eq!(jobs.groups["a"].counter(group_metric_names::STARTED), 2);
        assert_eq!(
            jobs.groups["a"].histograms[group_metric_names::WAIT_MS].count,
            2
        );
        let other = jobs.other.as_ref().unwrap();
        assert_eq!(other.counter(group_metric_names::STARTED), 2, "c and d");
        assert_eq!(other.counter(group_metric_names::THROTTLED), 1);
        // A series is a (lane, group) pair: "a" of another lane is a new one, over the max.
        let lane = &snapshot["other-lane"];
        assert!(lane.groups.is_empty());
        assert_eq!(
            lane.other
                .as_ref()
                .unwrap()
                .counter(group_metric_names::COMPLETED),
            2
        );
        series.reset();
        assert!(series.snapshot().is_empty());
    }

    #[test]
    fn bad_configs_are_refused_with_the_range() {
        let error = GroupMetricsConfig::first(0).unwrap_err().to_string();
        assert!(error.contains("use 1 to 10000"), "{error}");
        assert!(GroupMetricsConfig::first(GroupMetricsConfig::MAX_SERIES + 1).is_err());
        assert!(
            GroupMetricsConfig::first(1)
                .unwrap()
                .with_group("")
                .is_err()
        );
        assert!(
            GroupMetricsConfig::first(1)
                .unwrap()
                .with_group("a\nb")
                .is_err()
        );
    }
}
