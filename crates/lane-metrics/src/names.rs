//! What the queue records: the metric names and the typed handles the hot path uses.
//!
//! Every metric the queue records is kept **per lane**; the totals under the same name
//! (`snapshot.counters["lane.commands.submitted"]`) are the sum over lanes (histograms:
//! the merge). In Prometheus text and in OpenTelemetry the lane is a label / attribute
//! named `lane`, never part of the name.

/// The metric names, as they appear in [`MetricsSnapshot`](crate::MetricsSnapshot)
/// (Prometheus replaces each `.` with `_` and adds `_total` to counters).
pub mod metric_names {
    /// Counter: commands accepted by `submit`.
    pub const COMMANDS_SUBMITTED: &str = "lane.commands.submitted";
    /// Counter: runs started (every attempt counts, so retries count again).
    pub const COMMANDS_STARTED: &str = "lane.commands.started";
    /// Counter: commands that returned `Ok`.
    pub const COMMANDS_COMPLETED: &str = "lane.commands.completed";
    /// Counter: commands that failed for good with an error other than a timeout.
    pub const COMMANDS_FAILED: &str = "lane.commands.failed";
    /// Counter: commands that failed for good by running past their lane's timeout.
    pub const COMMANDS_TIMED_OUT: &str = "lane.commands.timed_out";
    /// Counter: failed runs that the retry policy scheduled to run again.
    pub const COMMANDS_RETRIED: &str = "lane.commands.retried";
    /// Counter: commands recorded as dead letters.
    pub const COMMANDS_DEAD_LETTERED: &str = "lane.commands.dead_lettered";
    /// Counter: commands cancelled, pending or running.
    pub const COMMANDS_CANCELLED: &str = "lane.commands.cancelled";
    /// Counter: commands accepted with a delayed start.
    pub const COMMANDS_DELAYED: &str = "lane.commands.delayed";
    /// Counter: delayed commands whose start time came (they joined their lane).
    pub const COMMANDS_PROMOTED: &str = "lane.commands.promoted";
    /// Counter: commands that had not started by their start-by deadline (never run).
    pub const COMMANDS_EXPIRED: &str = "lane.commands.expired";
    /// Counter: submits whose idempotency key a live command held (nothing queued).
    pub const COMMANDS_DEDUPLICATED: &str = "lane.commands.deduplicated";
    /// Counter: submits refused because the lane held its `max_waiting` commands.
    pub const COMMANDS_REJECTED_FULL: &str = "lane.commands.rejected_full";
    /// Counter: times a rate limit (the lane's, a group's or a shared budget's) held
    /// back the lane's next start.
    pub const THROTTLED: &str = "lane.throttled";
    /// Counter: instants a recurring schedule fired into the lane.
    pub const SCHEDULES_FIRED: &str = "lane.schedules.fired";
    /// Counter: times a recurring schedule of the lane skipped instants (missed while
    /// down or paused, or refused by a full lane).
    pub const SCHEDULES_SKIPPED: &str = "lane.schedules.skipped";
    /// Gauge: commands waiting to start.
    pub const QUEUE_DEPTH: &str = "lane.queue.depth";
    /// Gauge: commands running.
    pub const COMMANDS_ACTIVE: &str = "lane.commands.active";
    /// Histogram (milliseconds): how long each run took, for runs that ended by
    /// themselves (completed, failed or timed out; not cancelled).
    pub const COMMAND_LATENCY_MS: &str = "lane.command.latency_ms";
    /// Histogram (milliseconds): how long each run waited in its lane before it started.
    pub const COMMAND_WAIT_MS: &str = "lane.command.wait_ms";
    /// Counter: values a backend refused to record (a non-finite gauge, a negative or
    /// non-finite histogram value), so that a bad value is visible instead of lost.
    pub const REJECTED_VALUES: &str = "lane.metrics.rejected_values";
}

use metric_names as n;

macro_rules! metric_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $const:ident, $desc:literal; )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// The metric's name (see [`metric_names`]).
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => n::$const,)* }
            }

            /// A one-line description (Prometheus `# HELP`, OpenTelemetry description).
            pub const fn description(self) -> &'static str {
                match self { $(Self::$variant => $desc,)* }
            }

            /// The variant with this name, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|m| m.name() == name)
            }

            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

metric_enum! {
    /// A per-lane counter the queue increments.
    LaneCounter {
        /// [`metric_names::COMMANDS_SUBMITTED`]
        Submitted => COMMANDS_SUBMITTED, "Commands accepted into the lane";
        /// [`metric_names::COMMANDS_STARTED`]
        Started => COMMANDS_STARTED, "Runs started (each attempt counts)";
        /// [`metric_names::COMMANDS_COMPLETED`]
        Completed => COMMANDS_COMPLETED, "Commands that returned Ok";
        /// [`metric_names::COMMANDS_FAILED`]
        Failed => COMMANDS_FAILED, "Commands that failed for good (not a timeout)";
        /// [`metric_names::COMMANDS_TIMED_OUT`]
        TimedOut => COMMANDS_TIMED_OUT, "Commands that failed for good by timing out";
        /// [`metric_names::COMMANDS_RETRIED`]
        Retried => COMMANDS_RETRIED, "Failed runs scheduled to run again";
        /// [`metric_names::COMMANDS_DEAD_LETTERED`]
        DeadLettered => COMMANDS_DEAD_LETTERED, "Commands recorded as dead letters";
        /// [`metric_names::COMMANDS_CANCELLED`]
        Cancelled => COMMANDS_CANCELLED, "Commands cancelled, pending or running";
        /// [`metric_names::COMMANDS_DELAYED`]
        Delayed => COMMANDS_DELAYED, "Commands accepted with a delayed start";
        /// [`metric_names::COMMANDS_PROMOTED`]
        Promoted => COMMANDS_PROMOTED, "Delayed commands whose start time came";
        /// [`metric_names::COMMANDS_EXPIRED`]
        Expired => COMMANDS_EXPIRED, "Commands not started by their start-by deadline (never run)";
        /// [`metric_names::COMMANDS_DEDUPLICATED`]
        Deduplicated => COMMANDS_DEDUPLICATED, "Submits that returned the live command holding their idempotency key";
        /// [`metric_names::COMMANDS_REJECTED_FULL`]
        RejectedFull => COMMANDS_REJECTED_FULL, "Submits refused because the lane was full (max_waiting)";
        /// [`metric_names::THROTTLED`]
        Throttled => THROTTLED, "Times a rate limit (the lane's, a group's or a shared budget's) held back the lane's next start";
        /// [`metric_names::SCHEDULES_FIRED`]
        SchedulesFired => SCHEDULES_FIRED, "Instants recurring schedules fired into the lane";
        /// [`metric_names::SCHEDULES_SKIPPED`]
        SchedulesSkipped => SCHEDULES_SKIPPED, "Times recurring schedules of the lane skipped instants";
    }
}

metric_enum! {
    /// A per-lane gauge the queue sets.
    LaneGauge {
        /// [`metric_names::QUEUE_DEPTH`]
        QueueDepth => QUEUE_DEPTH, "Commands waiting to start";
        /// [`metric_names::COMMANDS_ACTIVE`]
        Active => COMMANDS_ACTIVE, "Commands running";
    }
}

metric_enum! {
    /// A per-lane histogram (milliseconds) the queue records into.
    LaneHistogram {
        /// [`metric_names::COMMAND_LATENCY_MS`]
        LatencyMs => COMMAND_LATENCY_MS, "Run time of commands that ended by themselves, in milliseconds";
        /// [`metric_names::COMMAND_WAIT_MS`]
        WaitMs => COMMAND_WAIT_MS, "Time commands waited in their lane before starting, in milliseconds";
    }
}

/// The description of a metric name the queue records, if it is one.
pub(crate) fn describe(name: &str) -> Option<&'static str> {
    LaneCounter::from_name(name)
        .map(LaneCounter::description)
        .or_else(|| LaneGauge::from_name(name).map(LaneGauge::description))
        .or_else(|| LaneHistogram::from_name(name).map(LaneHistogram::description))
        .or((name == n::REJECTED_VALUES).then_some("Values a metrics backend refused to record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut all: Vec<&str> = LaneCounter::ALL.iter().map(|c| c.name()).collect();
        all.extend(LaneGauge::ALL.iter().map(|g| g.name()));
        all.extend(LaneHistogram::ALL.iter().map(|h| h.name()));
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
        for counter in LaneCounter::ALL {
            assert_eq!(LaneCounter::from_name(counter.name()), Some(*counter));
        }
        assert_eq!(LaneHistogram::LatencyMs.name(), "lane.command.latency_ms");
        assert_eq!(LaneCounter::Submitted.name(), "lane.commands.submitted");
        assert_eq!(LaneCounter::from_name("nope"), None);
    }
}
