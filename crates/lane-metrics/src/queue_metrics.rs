//! [`QueueMetrics`]: the metrics handle given to
//! [`QueueManagerBuilder::with_metrics`](lane_core::QueueManagerBuilder::with_metrics).
//! It is an [`Observer`]: the queue feeds it by itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lane_core::{CommandInfo, Observer, QueueProbe, RunOutcome};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::backend::{MetricsBackend, MetricsRecorder};
use crate::groups::{GroupMetricsConfig, GroupRecord, GroupSeries};
use crate::histogram::{Hdr, is_recordable};
use crate::local::{Drained, LocalMetrics};
use crate::names::{LaneCounter, LaneGauge, LaneHistogram};
use crate::snapshot::MetricsSnapshot;
use crate::watched::WatchedQueues;

/// Queue metrics: per lane and in total, counters of submitted, started, completed,
/// failed, timed-out, retried, dead-lettered and cancelled commands; gauges of depth and
/// active commands; HDR histograms of run latency and queue wait (milliseconds). The
/// names are in [`metric_names`](crate::metric_names). Cheap to clone; clones share
/// everything.
///
/// Given to [`QueueManagerBuilder::with_metrics`](lane_core::QueueManagerBuilder::with_metrics),
/// the queue records by itself: synchronously, outside its locks, in a few atomic
/// operations per event. `failed` and `timed_out` count commands that failed for good;
/// a failed run that will run again counts in `retried` instead. Latency is recorded for
/// every run that ended by itself (completed, failed or timed out).
///
/// ```
/// use a3s_lane::{EventEmitter, LaneConfig, QueueManagerBuilder, QueueMetrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> a3s_lane::Result<()> {
/// let metrics = QueueMetrics::local();
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_metrics(metrics.clone())
///     .with_lane("api", LaneConfig::new(1, 5), 0)
///     .build()
///     .await?;
/// manager.start().await?;
/// let handle = manager.submit_fn("api", "ping", |_ctx| async { Ok(serde_json::json!("pong")) }).await?;
/// handle.await?;
///
/// let snapshot = metrics.snapshot().await;
/// assert_eq!(snapshot.counters["lane.commands.submitted"], 1);
/// assert_eq!(snapshot.lane("api").unwrap().counter("lane.commands.completed"), 1);
/// assert_eq!(snapshot.histograms["lane.command.latency_ms"].count, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct QueueMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn MetricsBackend>,
    sink: Sink,
    /// Per-group series, once turned on ([`QueueMetrics::with_group_metrics`]).
    groups: OnceLock<GroupSeries>,
    /// The queues this handle observes; their lane gauges are read, not pushed.
    watched: WatchedQueues,
}

enum Sink {
    /// The built-in store, called directly.
    Local(LocalMetrics),
    /// A backend with its own synchronous recorder.
    Recorder,
    /// An async-only backend, fed by a forwarder task.
    Forward(Forwarder),
}

impl std::fmt::Debug for QueueMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match &self.inner.sink {
            Sink::Local(_) => "local",
            Sink::Recorder => "recorder",
            Sink::Forward(_) => "forwarded",
        };
        f.debug_struct("QueueMetrics")
            .field("backend", &sink)
            .finish_non_exhaustive()
    }
}

impl Default for QueueMetrics {
    fn default() -> Self {
        Self::local()
    }
}

impl QueueMetrics {
    /// Metrics kept in memory ([`LocalMetrics`]).
    pub fn local() -> Self {
        let local = LocalMetrics::new();
        Self {
            inner: Arc::new(Inner {
                backend: Arc::new(local.clone()),
                sink: Sink::Local(local),
                groups: OnceLock::new(),
                watched: WatchedQueues::default(),
            }),
        }
    }

    /// Metrics kept by `backend`. A backend with a [`MetricsRecorder`] is called
    /// synchronously; any other is fed through a forwarder task, as
    /// [`MetricsBackend`] explains.
    pub fn new(backend: Arc<dyn MetricsBackend>) -> Self {
        let watched = WatchedQueues::default();
        let sink = match backend.recorder() {
            Some(recorder) => {
                recorder.watch_queues(watched.clone());
                Sink::Recorder
            }
            None => Sink::Forward(Forwarder::new(backend.clone())),
        };
        Self {
            inner: Arc::new(Inner {
                backend,
                sink,
                groups: OnceLock::new(),
                watched,
            }),
        }
    }

    /// Turns on per-group metrics ([`GroupMetricsConfig`]: which groups get a series of
    /// their own, the rest counting in their lane's `other` bucket). The series are kept
    /// here whatever the backend, and appear in [`snapshot`](Self::snapshot)'s `groups`
    /// and in the Prometheus text. Fails when they are already on: clones share them.
    ///
    /// ```
    /// use a3s_lane::{GroupMetricsConfig, QueueMetrics, group_metric_names};
    /// use a3s_lane::{CommandInfo, Observer};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> a3s_lane::Result<()> {
    /// let metrics = QueueMetrics::local().with_group_metrics(GroupMetricsConfig::first(100)?)?;
    /// let info = CommandInfo { id: 1, lane: "prompt", command_type: "chat", attempt: 1, group: Some("session-7") };
    /// metrics.on_start(&info, Duration::from_millis(3));
    /// let snapshot = metrics.snapshot().await;
    /// assert_eq!(snapshot.group("prompt", "session-7").unwrap().counter(group_metric_names::STARTED), 1);
    /// # Ok(()) }
    /// ```
    pub fn with_group_metrics(self, config: GroupMetricsConfig) -> lane_core::Result<Self> {
        self.inner
            .groups
            .set(GroupSeries::new(config))
            .map_err(|_| {
                lane_core::LaneError::ConfigError(
                    "group metrics are already on for these QueueMetrics (clones share them)"
                        .into(),
                )
            })?;
        Ok(self)
    }

    /// Records what happened to a command of a group, when group metrics are on.
    fn record_group(&self, command: &CommandInfo<'_>, record: GroupRecord) {
        if let (Some(group), Some(series)) = (command.group, self.inner.groups.get()) {
            series.record(command.lane, group, record);
        }
    }

    /// The backend the metrics go to.
    pub fn backend(&self) -> Arc<dyn MetricsBackend> {
        self.inner.backend.clone()
    }

    /// Records `ops` for `lane`: with the built-in store, one lane lookup for all of them.
    fn record(&self, lane: &str, ops: &[Op]) {
        match &self.inner.sink {
            Sink::Local(local) => apply(local, lane, ops),
            Sink::Recorder => {
                if let Some(recorder) = self.inner.backend.recorder() {
                    for op in ops {
                        match *op {
                            Op::Add(counter) => recorder.add(lane, counter, 1),
                            Op::Set(gauge, value) => recorder.set(lane, gauge, value),
                            Op::Observe(histogram, value) => {
                                recorder.observe(lane, histogram, value)
                            }
                        }
                    }
                }
            }
            Sink::Forward(forwarder) => {
                apply(&forwarder.outbox, lane, ops);
                forwarder.wake();
            }
        }
    }

    fn add(&self, lane: &str, counter: LaneCounter) {
        self.record(lane, &[Op::Add(counter)]);
    }

    fn set(&self, lane: &str, gauge: LaneGauge, value: f64) {
        self.record(lane, &[Op::Set(gauge, value)]);
    }

    fn observe(&self, lane: &str, histogram: LaneHistogram, value_ms: f64) {
        self.record(lane, &[Op::Observe(histogram, value_ms)]);
    }

    /// For a forwarded backend, waits until what was just recorded reached it.
    async fn settle(&self) {
        if let Sink::Forward(_) = &self.inner.sink {
            self.flush().await;
        }
    }

    /// Records a submitted command.
    pub async fn record_submit(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::Submitted);
        self.settle().await;
    }

    /// Records a started run.
    pub async fn record_start(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::Started);
        self.settle().await;
    }

    /// Records a completed command and its run latency.
    pub async fn record_complete(&self, lane_id: &str, latency_ms: f64) {
        self.add(lane_id, LaneCounter::Completed);
        self.observe(lane_id, LaneHistogram::LatencyMs, latency_ms);
        self.settle().await;
    }

    /// Records a command that failed for good.
    pub async fn record_failure(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::Failed);
        self.settle().await;
    }

    /// Records a command that timed out for good.
    pub async fn record_timeout(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::TimedOut);
        self.settle().await;
    }

    /// Records a retry.
    pub async fn record_retry(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::Retried);
        self.settle().await;
    }

    /// Records a dead letter.
    pub async fn record_dead_letter(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::DeadLettered);
        self.settle().await;
    }

    /// Records a cancelled command.
    pub async fn record_cancel(&self, lane_id: &str) {
        self.add(lane_id, LaneCounter::Cancelled);
        self.settle().await;
    }

    /// Sets a lane's queue depth gauge.
    pub async fn set_queue_depth(&self, lane_id: &str, depth: usize) {
        self.set(lane_id, LaneGauge::QueueDepth, depth as f64);
        self.settle().await;
    }

    /// Sets a lane's active commands gauge.
    pub async fn set_active_commands(&self, lane_id: &str, active: usize) {
        self.set(lane_id, LaneGauge::Active, active as f64);
        self.settle().await;
    }

    /// Records how long a command waited in its lane before it started.
    pub async fn record_wait_time(&self, lane_id: &str, wait_time_ms: f64) {
        self.observe(lane_id, LaneHistogram::WaitMs, wait_time_ms);
        self.settle().await;
    }

    /// The queues this handle is attached to (their lane gauges are read from them).
    pub fn watched_queues(&self) -> &WatchedQueues {
        &self.inner.watched
    }

    /// Sets the lane gauges from the watched queues' current counts.
    fn refresh_gauges(&self) {
        for (lane, gauge, value) in self.inner.watched.lane_gauges() {
            self.set(&lane, gauge, value);
        }
    }

    /// Every metric now (from the backend, after forwarding what is pending). The depth
    /// and active gauges of the lanes of attached queues are read from the queues now.
    pub async fn snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self.backend_snapshot().await;
        if let Some(series) = self.inner.groups.get() {
            snapshot.groups = series.snapshot();
        }
        snapshot
    }

    async fn backend_snapshot(&self) -> MetricsSnapshot {
        match &self.inner.sink {
            Sink::Local(local) => {
                self.refresh_gauges();
                local.snapshot_now()
            }
            Sink::Recorder => {
                self.refresh_gauges();
                self.inner.backend.snapshot().await
            }
            Sink::Forward(_) => {
                self.flush().await;
                self.inner.backend.snapshot().await
            }
        }
    }

    /// [`QueueMetrics::snapshot`] in the Prometheus text format
    /// ([`MetricsSnapshot::to_prometheus`]).
    pub async fn render_prometheus(&self) -> String {
        self.snapshot().await.to_prometheus()
    }

    /// Forgets every value (pending forwards included).
    pub async fn reset(&self) {
        if let Sink::Forward(forwarder) = &self.inner.sink {
            forwarder.outbox.reset_now();
        }
        if let Some(series) = self.inner.groups.get() {
            series.reset();
        }
        self.inner.backend.reset().await;
    }

    /// For a backend fed by the forwarder: returns once everything recorded before the
    /// call, and the attached queues' current lane gauges, were handed to the backend.
    /// Otherwise returns at once (recording is synchronous).
    pub async fn flush(&self) {
        let Sink::Forward(forwarder) = &self.inner.sink else {
            return;
        };
        self.refresh_gauges();
        if !forwarder.ensure_started() {
            // No tokio runtime to run the forwarder on: forward inline.
            let mut latest = forwarder.gauges.lock().clone();
            forward(&*self.inner.backend, forwarder.outbox.drain(), &mut latest).await;
            *forwarder.gauges.lock() = latest;
            return;
        }
        let (ack, done) = oneshot::channel();
        if forwarder.flushes.send(ack).is_ok() {
            let _ = done.await;
        }
    }
}

/// The queue's values are always valid (durations and counts), so the built-in store
/// takes them without checks, with one lane lookup per callback.
impl Observer for QueueMetrics {
    fn on_submit(&self, command: &CommandInfo<'_>) {
        if let Sink::Local(local) = &self.inner.sink {
            return local.with_lane(command.lane, |s| s.add(LaneCounter::Submitted, 1));
        }
        self.add(command.lane, LaneCounter::Submitted);
    }

    fn on_start(&self, command: &CommandInfo<'_>, waited: Duration) {
        self.record_group(
            command,
            GroupRecord::Started {
                waited_ms: millis(waited),
            },
        );
        if let Sink::Local(local) = &self.inner.sink {
            return local.with_lane(command.lane, |s| {
                s.add(LaneCounter::Started, 1);
                s.observe(LaneHistogram::WaitMs, millis(waited));
            });
        }
        self.record(
            command.lane,
            &[
                Op::Add(LaneCounter::Started),
                Op::Observe(LaneHistogram::WaitMs, millis(waited)),
            ],
        );
    }

    fn on_finish(&self, command: &CommandInfo<'_>, outcome: RunOutcome<'_>, elapsed: Duration) {
        match outcome {
            RunOutcome::Completed => self.record_group(command, GroupRecord::Completed),
            RunOutcome::Failed {
                retrying: false, ..
            }
            | RunOutcome::TimedOut { retrying: false } => {
                self.record_group(command, GroupRecord::Failed);
            }
            RunOutcome::Cancelled => self.record_group(command, GroupRecord::Cancelled),
            RunOutcome::Failed { retrying: true, .. } | RunOutcome::TimedOut { retrying: true } => {
            }
        }
        let counter = match outcome {
            RunOutcome::Completed => Some(LaneCounter::Completed),
            RunOutcome::Failed {
                retrying: false, ..
            } => Some(LaneCounter::Failed),
            RunOutcome::TimedOut { retrying: false } => Some(LaneCounter::TimedOut),
            // Counted by on_retry.
            RunOutcome::Failed { retrying: true, .. } | RunOutcome::TimedOut { retrying: true } => {
                None
            }
            RunOutcome::Cancelled => {
                self.add(command.lane, LaneCounter::Cancelled);
                return;
            }
        };
        if let Sink::Local(local) = &self.inner.sink {
            return local.with_lane(command.lane, |s| {
                if let Some(counter) = counter {
                    s.add(counter, 1);
                }
                s.observe(LaneHistogram::LatencyMs, millis(elapsed));
            });
        }
        let latency = Op::Observe(LaneHistogram::LatencyMs, millis(elapsed));
        match counter {
            Some(counter) => self.record(command.lane, &[Op::Add(counter), latency]),
            None => self.record(command.lane, &[latency]),
        }
    }

    fn on_retry(&self, command: &CommandInfo<'_>, _delay: Duration) {
        self.add(command.lane, LaneCounter::Retried);
    }

    fn on_cancel_pending(&self, command: &CommandInfo<'_>) {
        self.record_group(command, GroupRecord::Cancelled);
        self.add(command.lane, LaneCounter::Cancelled);
    }

    fn on_dead_letter(&self, command: &CommandInfo<'_>) {
        self.add(command.lane, LaneCounter::DeadLettered);
    }

    fn on_delay(&self, command: &CommandInfo<'_>, _delay: Duration) {
        self.add(command.lane, LaneCounter::Delayed);
    }

    fn on_promote(&self, command: &CommandInfo<'_>) {
        self.add(command.lane, LaneCounter::Promoted);
    }

    fn on_expire(&self, command: &CommandInfo<'_>) {
        self.add(command.lane, LaneCounter::Expired);
    }

    fn on_deduplicate(&self, command: &CommandInfo<'_>) {
        self.add(command.lane, LaneCounter::Deduplicated);
    }

    fn on_reject_full(&self, lane: &str) {
        self.add(lane, LaneCounter::RejectedFull);
    }

    fn on_throttle(&self, lane: &str, group: Option<&str>, _wait: Duration) {
        self.add(lane, LaneCounter::Throttled);
        if let (Some(group), Some(series)) = (group, self.inner.groups.get()) {
            series.record(lane, group, GroupRecord::Throttled);
        }
    }

    fn on_schedule_fire(&self, _schedule: &str, lane: &str) {
        self.add(lane, LaneCounter::SchedulesFired);
    }

    fn on_schedule_skip(&self, _schedule: &str, lane: &str) {
        self.add(lane, LaneCounter::SchedulesSkipped);
    }

    /// Gauges are read from the queue when needed: no report per change.
    fn wants_lane_depth(&self) -> bool {
        false
    }

    fn attach(&self, queue: QueueProbe) {
        self.inner.watched.attach(queue);
    }
}

/// One recording.
#[derive(Clone, Copy)]
enum Op {
    Add(LaneCounter),
    Set(LaneGauge, f64),
    Observe(LaneHistogram, f64),
}

/// Applies `ops` to one lane of `store` with a single lookup; bad values are refused
/// through the recorder path, which counts them.
fn apply(store: &LocalMetrics, lane: &str, ops: &[Op]) {
    let valid = ops.iter().all(|op| match *op {
        Op::Add(_) => true,
        Op::Set(_, value) => value.is_finite(),
        Op::Observe(_, value) => is_recordable(value),
    });
    if !valid {
        for op in ops {
            match *op {
                Op::Add(counter) => store.add(lane, counter, 1),
                Op::Set(gauge, value) => store.set(lane, gauge, value),
                Op::Observe(histogram, value) => store.observe(lane, histogram, value),
            }
        }
        return;
    }
    store.with_lane(lane, |series| {
        for op in ops {
            match *op {
                Op::Add(counter) => series.add(counter, 1),
                Op::Set(gauge, value) => series.set(gauge, value),
                Op::Observe(histogram, value) => series.observe(histogram, value),
            }
        }
    });
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

type Ack = oneshot::Sender<()>;

/// Feeds an async-only backend: the hot path records into `outbox` and wakes the task;
/// the task drains the outbox and awaits the backend. Coalescing keeps the outbox
/// bounded whatever the backend's speed.
struct Forwarder {
    backend: Arc<dyn MetricsBackend>,
    outbox: LocalMetrics,
    wake: Arc<Notify>,
    flushes: mpsc::UnboundedSender<Ack>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Ack>>>,
    started: AtomicBool,
    /// Each lane's latest gauges, to hand the backend their sum.
    gauges: Arc<Mutex<LaneGauges>>,
}

type LaneGauges = HashMap<Box<str>, [Option<f64>; LaneGauge::COUNT]>;

impl Forwarder {
    fn new(backend: Arc<dyn MetricsBackend>) -> Self {
        let (flushes, receiver) = mpsc::unbounded_channel();
        let forwarder = Self {
            backend,
            outbox: LocalMetrics::new(),
            wake: Arc::new(Notify::new()),
            flushes,
            receiver: Mutex::new(Some(receiver)),
            started: AtomicBool::new(false),
            gauges: Arc::default(),
        };
        forwarder.ensure_started();
        forwarder
    }

    fn wake(&self) {
        if self.ensure_started() {
            self.wake.notify_one();
        }
    }

    /// Spawns the forwarder task on the current runtime the first time one is there.
    fn ensure_started(&self) -> bool {
        if self.started.load(Ordering::Acquire) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let Some(mut receiver) = self.receiver.lock().take() else {
            return true;
        };
        self.started.store(true, Ordering::Release);
        let backend = self.backend.clone();
        let outbox = self.outbox.clone();
        let wake = self.wake.clone();
        let gauges = self.gauges.clone();
        runtime.spawn(async move {
            loop {
                let mut acks = Vec::new();
                let open = tokio::select! {
                    () = wake.notified() => true,
                    ack = receiver.recv() => match ack {
                        Some(ack) => { acks.push(ack); true }
                        // Every QueueMetrics clone is gone: forward the rest and stop.
                        None => false,
                    },
                };
                while let Ok(ack) = receiver.try_recv() {
                    acks.push(ack);
                }
                let drained = outbox.drain();
                if !drained.is_empty() {
                    let mut latest = gauges.lock().clone();
                    forward(&*backend, drained, &mut latest).await;
                    *gauges.lock() = latest;
                }
                for ack in acks {
                    let _ = ack.send(());
                }
                if !open {
                    return;
                }
            }
        });
        true
    }
}

/// Hands drained per-lane values to an async backend as totals.
async fn forward(backend: &dyn MetricsBackend, drained: Drained, latest: &mut LaneGauges) {
    let mut counters: BTreeMap<LaneCounter, u64> = BTreeMap::new();
    for (_, counter, value) in drained.counters {
        *counters.entry(counter).or_default() += value;
    }
    for (counter, value) in counters {
        backend.increment_counter(counter.name(), value).await;
    }
    let mut touched: Vec<LaneGauge> = Vec::new();
    for (lane, gauge, value) in drained.gauges {
        latest.entry(lane).or_default()[gauge.index()] = Some(value);
        if !touched.contains(&gauge) {
            touched.push(gauge);
        }
    }
    for gauge in touched {
        let total: f64 = latest.values().filter_map(|g| g[gauge.index()]).sum();
        backend.set_gauge(gauge.name(), total).await;
    }
    let mut histograms: BTreeMap<LaneHistogram, Hdr> = BTreeMap::new();
    for (_, histogram, hdr) in drained.histograms {
        histograms
            .entry(histogram)
            .or_insert_with(Hdr::new)
            .merge(&hdr);
    }
    for (histogram, hdr) in histograms {
        for (value, count) in hdr.recorded() {
            for _ in 0..count {
                backend.record_histogram(histogram.name(), value).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::HistogramStats;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicU64;

    /// Counts what reaches it; async only, so it is fed by the forwarder.
    #[derive(Default)]
    struct Counting {
        submitted: AtomicU64,
        arrived: Notify,
    }

    #[async_trait]
    impl MetricsBackend for Counting {
        async fn increment_counter(&self, _name: &str, value: u64) {
            self.submitted.fetch_add(value, Ordering::SeqCst);
            self.arrived.notify_one();
        }
        async fn set_gauge(&self, _name: &str, _value: f64) {}
        async fn record_histogram(&self, _name: &str, _value: f64) {}
        async fn get_counter(&self, _name: &str) -> Option<u64> {
            Some(self.submitted.load(Ordering::SeqCst))
        }
        async fn get_gauge(&self, _name: &str) -> Option<f64> {
            None
        }
        async fn get_histogram_stats(&self, _name: &str) -> Option<HistogramStats> {
            None
        }
        async fn reset(&self) {}
        async fn snapshot(&self) -> MetricsSnapshot {
            MetricsSnapshot::default()
        }
    }

    fn info(lane: &str) -> CommandInfo<'_> {
        CommandInfo {
            id: 1,
            lane,
            command_type: "t",
            attempt: 1,
            group: None,
        }
    }

    #[tokio::test]
    async fn what_is_recorded_before_the_last_clone_drops_still_reaches_the_backend() {
        let backend = Arc::new(Counting::default());
        let metrics = QueueMetrics::new(backend.clone());
        for _ in 0..3 {
            metrics.on_submit(&info("a"));
        }
        metrics.on_submit(&info("b"));
        drop(metrics);
        while backend.submitted.load(Ordering::SeqCst) < 4 {
            backend.arrived.notified().await;
        }
        assert_eq!(backend.submitted.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn values_recorded_outside_a_runtime_are_forwarded_by_the_first_flush() {
        let backend = Arc::new(Counting::default());
        let metrics = QueueMetrics::new(backend.clone());
        metrics.on_submit(&info("a"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Recorded outside any runtime: the forwarder could not start then; the first
        // flush inside a runtime starts it and forwards what was waiting.
        runtime.block_on(async {
            metrics.flush().await;
        });
        assert!(backend.submitted.load(Ordering::SeqCst) >= 1);
    }
}
