//! [`MetricsSnapshot`]: every metric at one moment, in total and per lane, and its
//! Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::groups::group_metric_names;
use crate::histogram::HistogramStats;
use crate::names::describe;

/// One lane's metrics at the moment of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneMetricsSnapshot {
    /// Counters by name (every queue counter, 0 if it never moved).
    pub counters: BTreeMap<String, u64>,
    /// Gauges by name (only those set at least once).
    pub gauges: BTreeMap<String, f64>,
    /// Histograms by name (only those with at least one value).
    pub histograms: BTreeMap<String, HistogramStats>,
}

impl LaneMetricsSnapshot {
    /// A counter's value, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A gauge's value, if set.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.get(name).copied()
    }

    /// A histogram's statistics, if it has values.
    pub fn histogram(&self, name: &str) -> Option<&HistogramStats> {
        self.histograms.get(name)
    }
}

/// One group's metrics (or a lane's `other` bucket) at the moment of a snapshot; the
/// names are in [`group_metric_names`](crate::group_metric_names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupMetricsSnapshot {
    /// Counters by name (every group counter).
    pub counters: BTreeMap<String, u64>,
    /// Histograms by name (only those with at least one value).
    pub histograms: BTreeMap<String, HistogramStats>,
}

impl GroupMetricsSnapshot {
    /// A counter's value, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// The group series of one lane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneGroupsSnapshot {
    /// Groups with a series of their own, by group key.
    pub groups: BTreeMap<String, GroupMetricsSnapshot>,
    /// Every other group of the lane together, once a group found no series free.
    pub other: Option<GroupMetricsSnapshot>,
}

/// Every metric at one moment.
///
/// `counters`, `gauges` and `histograms` hold the totals over all lanes (the 0.3 API's
/// `snapshot.counters["lane.commands.submitted"]`); `lanes` holds the same names per lane.
/// A value recorded without a lane (through [`MetricsBackend`](crate::MetricsBackend)'s
/// name-only methods) counts in the totals only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Counter totals by name.
    pub counters: BTreeMap<String, u64>,
    /// Gauge totals by name (per-lane gauges are summed: total depth, total active).
    pub gauges: BTreeMap<String, f64>,
    /// Histograms by name, merged over lanes.
    pub histograms: BTreeMap<String, HistogramStats>,
    /// Per-lane metrics by lane id.
    pub lanes: BTreeMap<String, LaneMetricsSnapshot>,
    /// Per-group metrics by lane id, when
    /// [`QueueMetrics::with_group_metrics`](crate::QueueMetrics::with_group_metrics)
    /// turned them on (empty otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, LaneGroupsSnapshot>,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

impl MetricsSnapshot {
    /// One lane's metrics, if the lane recorded anything.
    pub fn lane(&self, lane: &str) -> Option<&LaneMetricsSnapshot> {
        self.lanes.get(lane)
    }

    /// One group's metrics, if it has a series of its own.
    pub fn group(&self, lane: &str, group: &str) -> Option<&GroupMetricsSnapshot> {
        self.groups.get(lane)?.groups.get(group)
    }

    /// A counter total, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Renders the snapshot in the Prometheus text exposition format (version 0.0.4).
    ///
    /// Names replace `.` (and anything else Prometheus does not allow) with `_`; counters
    /// end in `_total`; histograms become summaries with quantiles 0.5, 0.9, 0.95, 0.99
    /// plus `_sum` and `_count`. Metrics recorded per lane are rendered per lane with a
    /// `lane` label and no separate total (`sum by ()` gives it); a value recorded without
    /// a lane appears as a series without the label.
    ///
    /// ```
    /// use a3s_lane::{LaneCounter, LocalMetrics, MetricsRecorder};
    ///
    /// let metrics = LocalMetrics::new();
    /// metrics.add("query", LaneCounter::Submitted, 3);
    /// let text = metrics.snapshot_now().to_prometheus();
    /// assert!(text.contains("lane_commands_submitted_total{lane=\"query\"} 3\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, total) in &self.counters {
            let family = format!("{}_total", prometheus_name(name));
            header(&mut out, &family, name, "counter");
            let mut in_lanes = 0u64;
            for (lane, metrics) in &self.lanes {
                if let Some(value) = metrics.counters.get(name) {
                    in_lanes += value;
                    let _ = writeln!(out, "{family}{{lane=\"{}\"}} {value}", escape(lane));
                }
            }
            if *total > in_lanes || self.lanes.values().all(|l| !l.counters.contains_key(name)) {
                let _ = writeln!(out, "{family} {}", total - in_lanes);
            }
        }
        for (name, total) in &self.gauges {
            let family = prometheus_name(name);
            header(&mut out, &family, name, "gauge");
            let mut in_lanes = 0.0;
            let mut any = false;
            for (lane, metrics) in &self.lanes {
                if let Some(value) = metrics.gauges.get(name) {
                    any = true;
                    in_lanes += value;
                    let _ = writeln!(out, "{family}{{lane=\"{}\"}} {value}", escape(lane));
                }
            }
            let rest = total - in_lanes;
            if !any || rest != 0.0 {
                let _ = writeln!(out, "{family} {rest}");
            }
        }
        for (name, total) in &self.histograms {
            let family = prometheus_name(name);
            header(&mut out, &family, name, "summary");
            let mut any = false;
            for (lane, metrics) in &self.lanes {
                if let Some(stats) = metrics.histograms.get(name) {
                    any = true;
                    summary(
                        &mut out,
                        &family,
                        &format!("lane=\"{}\"", escape(lane)),
                        stats,
                    );
                }
            }
            if !any {
                summary(&mut out, &family, "", total);
            }
        }
        self.render_groups(&mut out);
        out
    }

    /// The per-group series: labelled `lane` and `group`, a lane's `other` bucket
    /// `lane` and `group_other="true"`.
    fn render_groups(&self, out: &mut String) {
        if self.groups.is_empty() {
            return;
        }
        let series = || {
            self.groups.iter().flat_map(|(lane, groups)| {
                let named = groups.groups.iter().map(move |(group, m)| {
                    (
                        format!("lane=\"{}\",group=\"{}\"", escape(lane), escape(group)),
                        m,
                    )
                });
                let other = groups
                    .other
                    .iter()
                    .map(move |m| (format!("lane=\"{}\",group_other=\"true\"", escape(lane)), m));
                named.chain(other)
            })
        };
        for name in group_metric_names::COUNTERS {
            let family = format!("{}_total", prometheus_name(name));
            let _ = writeln!(
                out,
                "# HELP {family} {}",
                group_metric_names::describe(name)
            );
            let _ = writeln!(out, "# TYPE {family} counter");
            for (labels, metrics) in series() {
                let _ = writeln!(out, "{family}{{{labels}}} {}", metrics.counter(name));
            }
        }
        let name = group_metric_names::WAIT_MS;
        let family = prometheus_name(name);
        let _ = writeln!(
            out,
            "# HELP {family} {}",
            group_metric_names::describe(name)
        );
        let _ = writeln!(out, "# TYPE {family} summary");
        for (labels, metrics) in series() {
            if let Some(stats) = metrics.histograms.get(name) {
                summary(out, &family, &labels, stats);
            }
        }
    }
}

fn header(out: &mut String, family: &str, name: &str, kind: &str) {
    let help = describe(name).unwrap_or(name);
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

fn summary(out: &mut String, family: &str, labels: &str, stats: &HistogramStats) {
    let sep = if labels.is_empty() { "" } else { "," };
    let p = &stats.percentiles;
    for (q, value) in [
        ("0.5", p.p50),
        ("0.9", p.p90),
        ("0.95", p.p95),
        ("0.99", p.p99),
    ] {
        let _ = writeln!(out, "{family}{{{labels}{sep}quantile=\"{q}\"}} {value}");
    }
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(out, "{family}_sum{} {}", braces(labels), stats.sum);
    let _ = writeln!(out, "{family}_count{} {}", braces(labels), stats.count);
}

/// `lane.commands.submitted` → `lane_commands_submitted`; anything outside
/// `[a-zA-Z0-9_:]` becomes `_`, and a leading digit gets a `_` in front.
fn prometheus_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_made_valid() {
        assert_eq!(
            prometheus_name("lane.command.latency_ms"),
            "lane_command_latency_ms"
        );
        assert_eq!(prometheus_name("9-lives"), "_9_lives");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn lane_series_are_labelled_and_unlabelled_rest_is_kept() {
        let mut snapshot = MetricsSnapshot::default();
        snapshot.counters.insert("lane.commands.failed".into(), 5);
        snapshot.counters.insert("custom.events".into(), 2);
        snapshot.gauges.insert("lane.queue.depth".into(), 4.0);
        let mut lane = LaneMetricsSnapshot::default();
        lane.counters.insert("lane.commands.failed".into(), 3);
        lane.gauges.insert("lane.queue.depth".into(), 4.0);
        lane.histograms.insert(
            "lane.command.latency_ms".into(),
            HistogramStats {
                count: 2,
                sum: 3.0,
                min: 1.0,
                max: 2.0,
                mean: 1.5,
                ..Default::default()
            },
        );
        snapshot.histograms.insert(
            "lane.command.latency_ms".into(),
            lane.histograms["lane.command.latency_ms"],
        );
        snapshot.lanes.insert("q\"1".into(), lane);
        let text = snapshot.to_prometheus();
        assert!(text.contains("# TYPE lane_commands_failed_total counter\n"));
        assert!(text.contains("lane_commands_failed_total{lane=\"q\\\"1\"} 3\n"));
        assert!(text.contains("lane_commands_failed_total 2\n"), "{text}");
        assert!(text.contains("custom_events_total 2\n"));
        assert!(text.contains("lane_queue_depth{lane=\"q\\\"1\"} 4\n"));
        assert!(!text.contains("lane_queue_depth 0"));
        assert!(text.contains("# TYPE lane_command_latency_ms summary\n"));
        assert!(text.contains("lane_command_latency_ms_count{lane=\"q\\\"1\"} 2\n"));
        assert!(text.contains("lane_command_latency_ms_sum{lane=\"q\\\"1\"} 3\n"));
        assert!(!text.contains("group_"), "no group series unless turned on");
    }

    #[test]
    fn group_series_are_labelled_by_lane_and_group_and_the_rest_as_other() {
        let mut snapshot = MetricsSnapshot::default();
        let mut vip = GroupMetricsSnapshot::default();
        vip.counters.insert(group_metric_names::STARTED.into(), 4);
        vip.histograms.insert(
            group_metric_names::WAIT_MS.into(),
            HistogramStats {
                count: 4,
                sum: 10.0,
                ..Default::default()
            },
        );
        let mut other = GroupMetricsSnapshot::default();
        other.counters.insert(group_metric_names::STARTED.into(), 9);
        snapshot.groups.insert(
            "jobs".into(),
            LaneGroupsSnapshot {
                groups: [("v\"ip".to_owned(), vip)].into(),
                other: Some(other),
            },
        );
        let text = snapshot.to_prometheus();
        assert!(
            text.contains("# TYPE group_commands_started_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("group_commands_started_total{lane=\"jobs\",group=\"v\\\"ip\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("group_commands_started_total{lane=\"jobs\",group_other=\"true\"} 9\n"),
            "{text}"
        );
        assert!(
            text.contains("group_command_wait_ms_count{lane=\"jobs\",group=\"v\\\"ip\"} 4\n"),
            "{text}"
        );
        assert_eq!(
            snapshot
                .group("jobs", "v\"ip")
                .unwrap()
                .counter(group_metric_names::STARTED),
            4
        );
    }
}
