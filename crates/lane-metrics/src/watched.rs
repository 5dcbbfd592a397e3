//! [`WatchedQueues`]: the queues a [`QueueMetrics`](crate::QueueMetrics) observes, read
//! when a gauge is needed instead of pushed after every change.

use std::collections::BTreeMap;
use std::sync::Arc;

use lane_core::QueueProbe;
use parking_lot::Mutex;

use crate::names::LaneGauge;

/// The queues a [`QueueMetrics`](crate::QueueMetrics) is attached to. Depth and active
/// gauges are read from them on demand — when a snapshot is taken, or when an exporter
/// collects ([`MetricsRecorder::watch_queues`](crate::MetricsRecorder::watch_queues)) —
/// so the queue pays nothing per command for its gauges and a gauge is never stale.
/// Cheap to clone; clones share the list.
#[derive(Clone, Debug, Default)]
pub struct WatchedQueues {
    probes: Arc<Mutex<Vec<QueueProbe>>>,
}

impl WatchedQueues {
    pub(crate) fn attach(&self, probe: QueueProbe) {
        let mut probes = self.probes.lock();
        probes.retain(|known| known.is_alive() && !known.same_queue(&probe));
        probes.push(probe);
    }

    /// Each lane's current depth and active count, summed over the watched queues (two
    /// queues may share lane names), as gauge values.
    pub fn lane_gauges(&self) -> Vec<(String, LaneGauge, f64)> {
        let probes: Vec<QueueProbe> = self.probes.lock().clone();
        let mut lanes: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for stats in probes.iter().filter_map(QueueProbe::stats) {
            for (lane, status) in stats.lanes {
                let entry = lanes.entry(lane).or_default();
                entry.0 += status.pending;
                entry.1 += status.active;
            }
        }
        lanes
            .into_iter()
            .flat_map(|(lane, (pending, active))| {
                [
                    (lane.clone(), LaneGauge::QueueDepth, pending as f64),
                    (lane, LaneGauge::Active, active as f64),
                ]
            })
            .collect()
    }

    /// Whether no live queue is watched.
    pub fn is_empty(&self) -> bool {
        !self.probes.lock().iter().any(QueueProbe::is_alive)
    }
}
