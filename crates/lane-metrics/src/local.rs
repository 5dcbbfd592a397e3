//! [`LocalMetrics`]: the in-memory backend. Per lane, counters and gauges are atomics and
//! each histogram is an HDR histogram behind its own short lock; counters and histograms
//! are sharded per recording thread. The first [`LANE_SLOTS`] lanes live in write-once
//! slots found by a lock-free scan, so recording from many runners at once takes no
//! shared lock: one atomic load to find the lane, then one atomic add or one uncontended
//! histogram lock on the thread's own shard.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use crate::backend::{MetricsBackend, MetricsRecorder};
use crate::histogram::{Hdr, HistogramStats, is_recordable};
use crate::names::{LaneCounter, LaneGauge, LaneHistogram, metric_names};
use crate::snapshot::{LaneMetricsSnapshot, MetricsSnapshot};

/// Lanes kept in lock-free slots; more lanes go to a map behind a read-write lock.
const LANE_SLOTS: usize = 32;

/// Counter and histogram cells are split into this many shards, one per recording thread
/// (threads beyond it share), so that runners on different threads do not contend on
/// one cache line or one histogram lock.
const SHARDS: usize = 8;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn my_shard() -> usize {
    SHARD.with(|shard| match shard.get() {
        usize::MAX => {
            let mine = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(mine);
            mine
        }
        mine => mine,
    })
}

/// One thread's share of a lane's counters and histograms, on its own cache lines.
#[repr(align(128))]
struct Shard {
    counters: [AtomicU64; LaneCounter::COUNT],
    /// The last value this thread set for each gauge (f64 bits) …
    gauges: [AtomicU64; LaneGauge::COUNT],
    /// … and when ([`stamp`]; 0 = never): a gauge's value is the newest over shards.
    gauges_at: [AtomicU64; LaneGauge::COUNT],
    histograms: [Mutex<Option<Hdr>>; LaneHistogram::COUNT],
}

/// Nanoseconds since the first call, plus one (0 means "never set"). Gauges are sharded
/// like counters; the newest write over all shards is the gauge's value. The queue
/// delivers a lane's depth reports so that the last one delivered is the newest, so the
/// newest write is the current depth.
fn stamp() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
        + 1
}

/// One lane's cells, sharded per recording thread: counters are summed, histograms
/// merged, and a gauge is the newest value over the shards.
pub(crate) struct LaneSeries {
    shards: Box<[Shard; SHARDS]>,
}

impl LaneSeries {
    fn new() -> Self {
        Self {
            shards: Box::new(std::array::from_fn(|_| Shard {
                counters: std::array::from_fn(|_| AtomicU64::new(0)),
                gauges: std::array::from_fn(|_| AtomicU64::new(0)),
                gauges_at: std::array::from_fn(|_| AtomicU64::new(0)),
                histograms: std::array::from_fn(|_| Mutex::new(None)),
            })),
        }
    }

    /// The newest value of a gauge: `(shard, stamp, value)`.
    fn newest_gauge(&self, gauge: LaneGauge) -> Option<(usize, u64, f64)> {
        let mut newest: Option<(usize, u64, f64)> = None;
        for (index, shard) in self.shards.iter().enumerate() {
            let at = shard.gauges_at[gauge.index()].load(Ordering::Acquire);
            if at != 0 && newest.is_none_or(|(_, best, _)| at > best) {
                let value = f64::from_bits(shard.gauges[gauge.index()].load(Ordering::Relaxed));
                newest = Some((index, at, value));
            }
        }
        newest
    }

    fn gauge(&self, gauge: LaneGauge) -> Option<f64> {
        self.newest_gauge(gauge).map(|(_, _, value)| value)
    }

    /// The newest value of a gauge set since the last take, forgetting it; a value set
    /// meanwhile is kept for the next take.
    fn take_gauge(&self, gauge: LaneGauge) -> Option<f64> {
        let (_, _, value) = self.newest_gauge(gauge)?;
        for shard in self.shards.iter() {
            let cell = &shard.gauges_at[gauge.index()];
            let at = cell.load(Ordering::Acquire);
            if at != 0 {
                let _ = cell.compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
        Some(value)
    }

    fn counter(&self, counter: LaneCounter) -> u64 {
        self.shards
            .iter()
            .map(|s| s.counters[counter.index()].load(Ordering::Relaxed))
            .sum()
    }

    fn take_counter(&self, counter: LaneCounter) -> u64 {
        self.shards
            .iter()
            .map(|s| s.counters[counter.index()].swap(0, Ordering::Relaxed))
            .sum()
    }

    /// The shards' histograms merged, if any value was recorded.
    fn histogram(&self, histogram: LaneHistogram) -> Option<Hdr> {
        let mut merged: Option<Hdr> = None;
        for shard in self.shards.iter() {
            if let Some(hdr) = shard.histograms[histogram.index()].lock().as_ref() {
                merged.get_or_insert_with(Hdr::new).merge(hdr);
            }
        }
        merged.filter(|h| h.len() > 0)
    }

    fn take_histogram(&self, histogram: LaneHistogram) -> Option<Hdr> {
        let mut merged: Option<Hdr> = None;
        for shard in self.shards.iter() {
            if let Some(hdr) = shard.histograms[histogram.index()].lock().take() {
                merged.get_or_insert_with(Hdr::new).merge(&hdr);
            }
        }
        merged
    }

    pub(crate) fn add(&self, counter: LaneCounter, value: u64) {
        self.shards[my_shard()].counters[counter.index()].fetch_add(value, Ordering::Relaxed);
    }

    /// Sets a gauge; the caller checked that `value` is finite.
    pub(crate) fn set(&self, gauge: LaneGauge, value: f64) {
        let shard = &self.shards[my_shard()];
        shard.gauges[gauge.index()].store(value.to_bits(), Ordering::Relaxed);
        shard.gauges_at[gauge.index()].store(stamp(), Ordering::Release);
    }

    /// Records a value; the caller checked [`is_recordable`].
    pub(crate) fn observe(&self, histogram: LaneHistogram, value_ms: f64) {
        self.shards[my_shard()].histograms[histogram.index()]
            .lock()
            .get_or_insert_with(Hdr::new)
            .record(value_ms);
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            for counter in &shard.counters {
                counter.store(0, Ordering::Relaxed);
            }
            for histogram in &shard.histograms {
                *histogram.lock() = None;
            }
            for at in &shard.gauges_at {
                at.store(0, Ordering::Release);
            }
        }
    }
}

struct Slot {
    lane: Box<str>,
    series: LaneSeries,
}

/// Values recorded without a lane, by name.
#[derive(Default)]
struct Unlabelled {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Hdr>,
}

struct Store {
    slots: [OnceLock<Slot>; LANE_SLOTS],
    /// Slots filled so far (filled in order, under `adding`).
    used: AtomicUsize,
    adding: Mutex<()>,
    more: RwLock<HashMap<Box<str>, LaneSeries>>,
    unlabelled: Mutex<Unlabelled>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
            used: AtomicUsize::new(0),
            adding: Mutex::new(()),
            more: RwLock::new(HashMap::new()),
            unlabelled: Mutex::default(),
        }
    }
}

impl Store {
    fn find(&self, lane: &str, used: usize) -> Option<&LaneSeries> {
        self.slots[..used]
            .iter()
            .filter_map(OnceLock::get)
            .find(|slot| &*slot.lane == lane)
            .map(|slot| &slot.series)
    }

    /// Calls `f` with every lane's series.
    fn for_each(&self, mut f: impl FnMut(&str, &LaneSeries)) {
        let used = self.used.load(Ordering::Acquire);
        for slot in self.slots[..used].iter().filter_map(OnceLock::get) {
            f(&slot.lane, &slot.series);
        }
        for (lane, series) in self.more.read().iter() {
            f(lane, series);
        }
    }
}

/// What a drain took out of an outbox (see [`LocalMetrics::drain`]).
#[derive(Default)]
pub(crate) struct Drained {
    pub(crate) counters: Vec<(Box<str>, LaneCounter, u64)>,
    pub(crate) gauges: Vec<(Box<str>, LaneGauge, f64)>,
    pub(crate) histograms: Vec<(Box<str>, LaneHistogram, Hdr)>,
}

impl Drained {
    pub(crate) fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.gauges.is_empty() && self.histograms.is_empty()
    }
}

/// The in-memory metrics backend behind [`QueueMetrics::local`](crate::QueueMetrics::local).
/// Cheap to clone; clones share the values.
///
/// Per-lane values come from [`MetricsRecorder`] (what the queue calls); the name-only
/// [`MetricsBackend`] methods record values without a lane, which count in the totals.
/// Histogram values must be finite and non-negative, gauge values finite; any other
/// value is refused and counted under [`metric_names::REJECTED_VALUES`].
///
/// Memory is bounded: per lane, 8 shards of fixed cells, and per lane and recording
/// thread one HDR histogram per histogram metric (about 16 KiB each for sub-second
/// values, at most about 270 KiB), whatever the number of values recorded.
#[derive(Clone, Default)]
pub struct LocalMetrics {
    store: Arc<Store>,
}

impl std::fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMetrics")
            .field(
                "lanes",
                &(self.store.used.load(Ordering::Relaxed) + self.store.more.read().len()),
            )
            .finish_non_exhaustive()
    }
}

impl LocalMetrics {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with `lane`'s series, creating it on first use.
    pub(crate) fn with_lane<R>(&self, lane: &str, f: impl FnOnce(&LaneSeries) -> R) -> R {
        let store = &*self.store;
        let used = store.used.load(Ordering::Acquire);
        if let Some(series) = store.find(lane, used) {
            return f(series);
        }
        if used == LANE_SLOTS {
            if let Some(series) = store.more.read().get(lane) {
                return f(series);
            }
            let mut more = store.more.write();
            return f(more.entry(lane.into()).or_insert_with(LaneSeries::new));
        }
        let adding = store.adding.lock();
        let used = store.used.load(Ordering::Acquire);
        if let Some(series) = store.find(lane, used) {
            drop(adding);
            return f(series);
        }
        if used == LANE_SLOTS {
            drop(adding);
            return self.with_lane(lane, f);
        }
        let slot = Slot {
            lane: lane.into(),
            series: LaneSeries::new(),
        };
        let _ = store.slots[used].set(slot);
        store.used.store(used + 1, Ordering::Release);
        drop(adding);
        let slot = store.slots[used].get().expect("filled just above");
        f(&slot.series)
    }

    fn reject(&self) {
        *self
            .store
            .unlabelled
            .lock()
            .counters
            .entry(metric_names::REJECTED_VALUES.to_owned())
            .or_default() += 1;
    }

    /// Every lane's latest value of `gauge` (lanes where it was never set are left out).
    pub fn lane_gauge(&self, gauge: LaneGauge) -> Vec<(String, f64)> {
        let mut values = Vec::new();
        self.store.for_each(|lane, series| {
            if let Some(value) = series.gauge(gauge) {
                values.push((lane.to_owned(), value));
            }
        });
        values
    }

    /// Every metric now, in total and per lane.
    pub fn snapshot_now(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot {
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            ..MetricsSnapshot::default()
        };
        let mut merged: BTreeMap<&'static str, Hdr> = BTreeMap::new();
        {
            self.store.for_each(|lane, series| {
                let mut lane_snapshot = LaneMetricsSnapshot::default();
                for &counter in LaneCounter::ALL {
                    let value = series.counter(counter);
                    lane_snapshot.counters.insert(counter.name().into(), value);
                    *snapshot.counters.entry(counter.name().into()).or_default() += value;
                }
                for &gauge in LaneGauge::ALL {
                    if let Some(value) = series.gauge(gauge) {
                        lane_snapshot.gauges.insert(gauge.name().into(), value);
                        *snapshot.gauges.entry(gauge.name().into()).or_default() += value;
                    }
                }
                for &histogram in LaneHistogram::ALL {
                    if let Some(hdr) = series.histogram(histogram) {
                        lane_snapshot
                            .histograms
                            .insert(histogram.name().into(), hdr.stats());
                        merged
                            .entry(histogram.name())
                            .or_insert_with(Hdr::new)
                            .merge(&hdr);
                    }
                }
                snapshot.lanes.insert(lane.to_string(), lane_snapshot);
            });
        }
        let unlabelled = self.store.unlabelled.lock();
        for (name, value) in &unlabelled.counters {
            *snapshot.counters.entry(name.clone()).or_default() += value;
        }
        for (name, value) in &unlabelled.gauges {
            *snapshot.gauges.entry(name.clone()).or_default() += value;
        }
        let mut merged: BTreeMap<String, Hdr> =
            merged.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        for (name, hdr) in &unlabelled.histograms {
            merged
                .entry(name.clone())
                .or_insert_with(Hdr::new)
                .merge(hdr);
        }
        snapshot.histograms = merged
            .into_iter()
            .map(|(name, hdr)| (name, hdr.stats()))
            .collect();
        snapshot
    }

    /// Forgets every value (lanes seen so far stay listed, with counters at zero).
    pub fn reset_now(&self) {
        self.store.for_each(|_, series| series.clear());
        *self.store.unlabelled.lock() = Unlabelled::default();
    }

    /// Takes the per-lane values recorded since the last drain: counter increments,
    /// gauges set, histogram values. Used when this store is a forwarding outbox.
    pub(crate) fn drain(&self) -> Drained {
        let mut drained = Drained::default();
        self.store.for_each(|lane, series| {
            let lane: Box<str> = lane.into();
            for &counter in LaneCounter::ALL {
                let value = series.take_counter(counter);
                if value > 0 {
                    drained.counters.push((lane.clone(), counter, value));
                }
            }
            for &gauge in LaneGauge::ALL {
                if let Some(value) = series.take_gauge(gauge) {
                    drained.gauges.push((lane.clone(), gauge, value));
                }
            }
            for &histogram in LaneHistogram::ALL {
                if let Some(hdr) = series.take_histogram(histogram) {
                    drained.histograms.push((lane.clone(), histogram, hdr));
                }
            }
        });
        drained
    }

    fn total_counter(&self, name: &str) -> Option<u64> {
        let mut found = None;
        if let Some(counter) = LaneCounter::from_name(name) {
            self.store.for_each(|_, series| {
                *found.get_or_insert(0) += series.counter(counter);
            });
        }
        if let Some(value) = self.store.unlabelled.lock().counters.get(name) {
            *found.get_or_insert(0) += value;
        }
        found
    }

    fn total_gauge(&self, name: &str) -> Option<f64> {
        let mut found = None;
        if let Some(gauge) = LaneGauge::from_name(name) {
            self.store.for_each(|_, series| {
                if let Some(value) = series.gauge(gauge) {
                    *found.get_or_insert(0.0) += value;
                }
            });
        }
        if let Some(value) = self.store.unlabelled.lock().gauges.get(name) {
            *found.get_or_insert(0.0) += value;
        }
        found
    }

    fn total_histogram(&self, name: &str) -> Option<HistogramStats> {
        let mut merged = Hdr::new();
        if let Some(histogram) = LaneHistogram::from_name(name) {
            self.store.for_each(|_, series| {
                if let Some(hdr) = series.histogram(histogram) {
                    merged.merge(&hdr);
                }
            });
        }
        if let Some(hdr) = self.store.unlabelled.lock().histograms.get(name) {
            merged.merge(hdr);
        }
        (merged.len() > 0).then(|| merged.stats())
    }
}

impl MetricsRecorder for LocalMetrics {
    fn add(&self, lane: &str, counter: LaneCounter, value: u64) {
        self.with_lane(lane, |series| series.add(counter, value));
    }

    fn set(&self, lane: &str, gauge: LaneGauge, value: f64) {
        if !value.is_finite() {
            return self.reject();
        }
        self.with_lane(lane, |series| series.set(gauge, value));
    }

    fn observe(&self, lane: &str, histogram: LaneHistogram, value_ms: f64) {
        if !is_recordable(value_ms) {
            return self.reject();
        }
        self.with_lane(lane, |series| series.observe(histogram, value_ms));
    }
}

#[async_trait]
impl MetricsBackend for LocalMetrics {
    async fn increment_counter(&self, name: &str, value: u64) {
        *self
            .store
            .unlabelled
            .lock()
            .counters
            .entry(name.to_owned())
            .or_default() += value;
    }

    async fn set_gauge(&self, name: &str, value: f64) {
        if !value.is_finite() {
            return self.reject();
        }
        self.store
            .unlabelled
            .lock()
            .gauges
            .insert(name.to_owned(), value);
    }

    async fn record_histogram(&self, name: &str, value: f64) {
        if !is_recordable(value) {
            return self.reject();
        }
        self.store
            .unlabelled
            .lock()
            .histograms
            .entry(name.to_owned())
            .or_insert_with(Hdr::new)
            .record(value);
    }

    async fn get_counter(&self, name: &str) -> Option<u64> {
        self.total_counter(name)
    }

    async fn get_gauge(&self, name: &str) -> Option<f64> {
        self.total_gauge(name)
    }

    async fn get_histogram_stats(&self, name: &str) -> Option<HistogramStats> {
        self.total_histogram(name)
    }

    async fn reset(&self) {
        self.reset_now();
    }

    async fn snapshot(&self) -> MetricsSnapshot {
        self.snapshot_now()
    }

    fn recorder(&self) -> Option<&dyn MetricsRecorder> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn totals_sum_lanes_and_unlabelled_values() {
        let m = LocalMetrics::new();
        m.add("a", LaneCounter::Submitted, 2);
        m.add("b", LaneCounter::Submitted, 3);
        m.increment_counter(metric_names::COMMANDS_SUBMITTED, 1)
            .await;
        m.set("a", LaneGauge::QueueDepth, 4.0);
        m.set("b", LaneGauge::QueueDepth, 1.0);
        m.observe("a", LaneHistogram::LatencyMs, 10.0);
        m.observe("b", LaneHistogram::LatencyMs, 30.0);
        let s = m.snapshot_now();
        assert_eq!(s.counters[metric_names::COMMANDS_SUBMITTED], 6);
        assert_eq!(
            s.lane("a")
                .unwrap()
                .counter(metric_names::COMMANDS_SUBMITTED),
            2
        );
        assert_eq!(s.gauges[metric_names::QUEUE_DEPTH], 5.0);
        let latency = &s.histograms[metric_names::COMMAND_LATENCY_MS];
        assert_eq!((latency.count, latency.min, latency.max), (2, 10.0, 30.0));
        assert_eq!(
            m.get_counter(metric_names::COMMANDS_SUBMITTED).await,
            Some(6)
        );
        assert_eq!(m.get_gauge(metric_names::QUEUE_DEPTH).await, Some(5.0));
        assert_eq!(
            m.get_histogram_stats(metric_names::COMMAND_LATENCY_MS)
                .await
                .map(|h| h.count),
            Some(2)
        );
        assert_eq!(m.get_counter("never").await, None);
        m.reset().await;
        let s = m.snapshot_now();
        assert_eq!(s.counters[metric_names::COMMANDS_SUBMITTED], 0);
        assert!(s.gauges.is_empty() && s.histograms.is_empty());
    }

    #[tokio::test]
    async fn bad_values_are_refused_and_counted() {
        let m = LocalMetrics::new();
        m.observe("a", LaneHistogram::LatencyMs, -1.0);
        m.set("a", LaneGauge::Active, f64::NAN);
        m.record_histogram("x", f64::INFINITY).await;
        m.set_gauge("y", f64::NAN).await;
        let s = m.snapshot_now();
        assert_eq!(s.counters[metric_names::REJECTED_VALUES], 4);
        assert!(s.histograms.is_empty());
        assert!(s.gauges.is_empty());
    }

    #[test]
    fn drain_takes_what_was_recorded_since_the_last_drain() {
        let m = LocalMetrics::new();
        m.add("a", LaneCounter::Failed, 2);
        m.set("a", LaneGauge::Active, 3.0);
        m.observe("a", LaneHistogram::WaitMs, 1.0);
        let first = m.drain();
        assert_eq!(first.counters.len(), 1);
        assert_eq!(first.gauges.len(), 1);
        assert_eq!(first.histograms.len(), 1);
        assert!(m.drain().is_empty());
    }
}

#[cfg(test)]
mod more_lanes_than_slots {
    use super::*;

    #[test]
    fn lanes_beyond_the_slots_are_kept_too() {
        let m = LocalMetrics::new();
        for round in 0..2 {
            for lane in 0..LANE_SLOTS + 8 {
                m.add(&format!("lane-{lane}"), LaneCounter::Submitted, round + 1);
            }
        }
        let s = m.snapshot_now();
        assert_eq!(s.lanes.len(), LANE_SLOTS + 8);
        assert!(
            s.lanes
                .values()
                .all(|l| l.counter(metric_names::COMMANDS_SUBMITTED) == 3)
        );
        assert_eq!(
            s.counters[metric_names::COMMANDS_SUBMITTED],
            3 * (LANE_SLOTS as u64 + 8)
        );
    }

    #[test]
    fn concurrent_first_use_of_a_lane_creates_it_once() {
        let m = LocalMetrics::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        m.add(&format!("l{}", i % 5), LaneCounter::Started, 1);
                    }
                });
            }
        });
        let s = m.snapshot_now();
        assert_eq!(s.lanes.len(), 5);
        assert_eq!(s.counters[metric_names::COMMANDS_STARTED], 4000);
    }
}
