//! The queue feeds `QueueMetrics` by itself: after a known workload the counters,
//! gauges and percentiles say what happened. Paused time makes run times exact.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_lane::{
    EventEmitter, HistogramStats, LaneConfig, LaneError, MetricsBackend, MetricsSnapshot,
    QueueManager, QueueManagerBuilder, QueueMetrics, RetryStrategy, SubmitOptions, command_fn,
    metric_names as names,
};
use async_trait::async_trait;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_millis(50);

async fn manager(metrics: QueueMetrics) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 4).with_timeout(TIMEOUT), 0)
        .with_lane("other", LaneConfig::new(1, 2), 1)
        .with_dlq(1_000)
        .with_metrics(metrics)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

/// 100 commands in `work`: 7 fail after 5 ms, 3 time out (at 50 ms), 90 complete in
/// 10 ms; plus 5 commands in `other` that complete in 20 ms.
async fn run_known_workload(manager: &QueueManager) {
    let mut handles = Vec::new();
    for i in 0..100u32 {
        let handle = manager
            .submit_fn("work", "job", move |_ctx| async move {
                match i {
                    0..7 => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Err(LaneError::CommandError(format!("job {i} failed")))
                    }
                    7..10 => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(json!("too late"))
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok(json!(i))
                    }
                }
            })
            .await
            .unwrap();
        handles.push(handle);
    }
    for _ in 0..5 {
        handles.push(
            manager
                .submit_fn("other", "job", |_ctx| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(json!(null))
                })
                .await
                .unwrap(),
        );
    }
    let mut ok = 0;
    for handle in handles {
        if handle.await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 95);
    manager.drain(Duration::from_secs(5)).await.unwrap();
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.001 + 1e-9
}

fn assert_known_workload(snapshot: &MetricsSnapshot) {
    let work = snapshot.lane("work").expect("lane work recorded");
    for (name, want) in [
        (names::COMMANDS_SUBMITTED, 100),
        (names::COMMANDS_STARTED, 100),
        (names::COMMANDS_COMPLETED, 90),
        (names::COMMANDS_FAILED, 7),
        (names::COMMANDS_TIMED_OUT, 3),
        (names::COMMANDS_RETRIED, 0),
        (names::COMMANDS_DEAD_LETTERED, 10),
        (names::COMMANDS_CANCELLED, 0),
    ] {
        assert_eq!(work.counter(name), want, "work {name}");
    }
    let other = snapshot.lane("other").expect("lane other recorded");
    assert_eq!(other.counter(names::COMMANDS_COMPLETED), 5);
    assert_eq!(other.counter(names::COMMANDS_FAILED), 0);
    // Totals are the sums over lanes.
    assert_eq!(snapshot.counters[names::COMMANDS_SUBMITTED], 105);
    assert_eq!(snapshot.counters[names::COMMANDS_COMPLETED], 95);
    assert_eq!(snapshot.counters[names::COMMANDS_FAILED], 7);
    assert_eq!(snapshot.counters[names::COMMANDS_TIMED_OUT], 3);

    // Everything finished: nothing pending, nothing running.
    for lane in [work, other] {
        assert_eq!(lane.gauge(names::QUEUE_DEPTH), Some(0.0));
        assert_eq!(lane.gauge(names::COMMANDS_ACTIVE), Some(0.0));
    }
    assert_eq!(snapshot.gauges[names::QUEUE_DEPTH], 0.0);

    // 7 × 5 ms, 90 × 10 ms, 3 × 50 ms.
    let latency: &HistogramStats = work.histogram(names::COMMAND_LATENCY_MS).unwrap();
    assert_eq!(latency.count, 100);
    assert!(close(latency.min, 5.0), "{latency:?}");
    assert!(close(latency.max, 50.0), "{latency:?}");
    assert!(close(latency.mean, 10.85), "{latency:?}");
    assert!(close(latency.percentiles.p50, 10.0), "{latency:?}");
    assert!(close(latency.percentiles.p90, 10.0), "{latency:?}");
    assert!(close(latency.percentiles.p95, 10.0), "{latency:?}");
    assert!(close(latency.percentiles.p99, 50.0), "{latency:?}");
    // The 0.3 API's total histogram merges both lanes: 105 runs, the slowest 50 ms.
    let total = &snapshot.histograms["lane.command.latency_ms"];
    assert_eq!(total.count, 105);
    assert!(close(total.percentiles.p99, 50.0), "{total:?}");
    assert!(close(total.max, 50.0));
    assert_eq!(snapshot.histograms[names::COMMAND_WAIT_MS].count, 105);
}

#[tokio::test(start_paused = true)]
async fn counters_gauges_and_percentiles_match_a_known_workload() {
    let metrics = QueueMetrics::local();
    let manager = manager(metrics.clone()).await;
    run_known_workload(&manager).await;
    let snapshot = metrics.snapshot().await;
    assert_known_workload(&snapshot);
    // 4 slots, 100 commands of at least 5 ms: most of them waited.
    let wait = &snapshot.lane("work").unwrap().histograms[names::COMMAND_WAIT_MS];
    assert!(wait.max >= 100.0, "{wait:?}");
}

#[tokio::test(start_paused = true)]
async fn the_prometheus_text_carries_the_lane_label() {
    let metrics = QueueMetrics::local();
    let manager = manager(metrics.clone()).await;
    run_known_workload(&manager).await;
    let text = metrics.render_prometheus().await;
    for line in [
        "# TYPE lane_commands_failed_total counter\n",
        "lane_commands_failed_total{lane=\"work\"} 7\n",
        "lane_commands_timed_out_total{lane=\"work\"} 3\n",
        "lane_commands_completed_total{lane=\"other\"} 5\n",
        "lane_queue_depth{lane=\"work\"} 0\n",
        "# TYPE lane_command_latency_ms summary\n",
        "lane_command_latency_ms{lane=\"work\",quantile=\"0.99\"} 50\n",
        "lane_command_latency_ms_count{lane=\"work\"} 100\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// Retries once, at once, whatever the error.
#[derive(Debug)]
struct RetryOnce;

impl RetryStrategy for RetryOnce {
    fn retry_delay(&self, failures: u32, _error: &LaneError) -> Option<Duration> {
        (failures == 1).then_some(Duration::from_millis(5))
    }
}

#[tokio::test(start_paused = true)]
async fn retries_count_as_retried_and_started_again_not_as_failed() {
    let metrics = QueueMetrics::local();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "flaky",
            LaneConfig::new(1, 2).with_retry_policy(RetryOnce),
            0,
        )
        .with_metrics(metrics.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..10u32 {
        handles.push(
            manager
                .submit_fn("flaky", "flaky", move |ctx| async move {
                    // Even commands fail their first attempt; odd ones fail both.
                    if ctx.attempt() == 1 || i % 2 == 1 {
                        Err(LaneError::CommandError("not yet".into()))
                    } else {
                        Ok(json!(i))
                    }
                })
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        let _ = handle.await;
    }
    let flaky = metrics.snapshot().await.lanes["flaky"].clone();
    assert_eq!(flaky.counter(names::COMMANDS_SUBMITTED), 10);
    assert_eq!(flaky.counter(names::COMMANDS_STARTED), 20);
    assert_eq!(flaky.counter(names::COMMANDS_RETRIED), 10);
    assert_eq!(flaky.counter(names::COMMANDS_COMPLETED), 5);
    assert_eq!(flaky.counter(names::COMMANDS_FAILED), 5);
    // Without a dead letter queue nothing is dead-lettered.
    assert_eq!(flaky.counter(names::COMMANDS_DEAD_LETTERED), 0);
    assert_eq!(flaky.histograms[names::COMMAND_LATENCY_MS].count, 20);
}

#[tokio::test(start_paused = true)]
async fn cancelled_commands_are_counted_pending_or_running() {
    let metrics = QueueMetrics::local();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "slow",
            LaneConfig::new(1, 1).with_cancel_grace(Duration::from_millis(10)),
            0,
        )
        .with_metrics(metrics.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let sleepy = |_ctx| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(json!(null))
    };
    let running = manager.submit_fn("slow", "sleep", sleepy).await.unwrap();
    let pending = manager.submit_fn("slow", "sleep", sleepy).await.unwrap();
    tokio::task::yield_now().await;
    let snapshot = metrics.snapshot().await;
    assert_eq!(snapshot.lanes["slow"].gauge(names::QUEUE_DEPTH), Some(1.0));
    assert_eq!(
        snapshot.lanes["slow"].gauge(names::COMMANDS_ACTIVE),
        Some(1.0)
    );
    assert!(pending.cancel());
    assert!(running.cancel());
    assert!(running.await.unwrap_err().is_cancelled());
    assert!(pending.await.unwrap_err().is_cancelled());
    let slow = metrics.snapshot().await.lanes["slow"].clone();
    assert_eq!(slow.counter(names::COMMANDS_CANCELLED), 2);
    assert_eq!(slow.counter(names::COMMANDS_STARTED), 1);
    // A cancelled run did not end by itself: no latency for it.
    assert!(slow.histogram(names::COMMAND_LATENCY_MS).is_none());
    assert_eq!(slow.gauge(names::QUEUE_DEPTH), Some(0.0));
    assert_eq!(slow.gauge(names::COMMANDS_ACTIVE), Some(0.0));
}

/// Delays, promotions, expiries and submits refused by a full lane each have a counter,
/// and reach the Prometheus text by their names.
#[tokio::test(start_paused = true)]
async fn delayed_promoted_expired_and_rejected_full_are_counted() {
    let metrics = QueueMetrics::local();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("timed", LaneConfig::new(1, 1).with_max_waiting(3), 0)
        .with_metrics(metrics.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let sleep = |ms| {
        move |_ctx| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(null))
        }
    };
    // Runs for 100 ms; behind it one command that must start within 10 ms (it expires),
    // and two delayed by 50 ms (promoted, then run). The lane now holds 3 waiting: full.
    let running = manager.submit_fn("timed", "job", sleep(100)).await.unwrap();
    let within = SubmitOptions::new().with_start_within(Duration::from_millis(10));
    let expiring = manager
        .submit_with_options("timed", Box::new(command_fn("job", sleep(1))), &within)
        .await
        .unwrap();
    let delayed = SubmitOptions::new().with_delay(Duration::from_millis(50));
    let mut later = Vec::new();
    for _ in 0..2 {
        later.push(
            manager
                .submit_with_options("timed", Box::new(command_fn("job", sleep(1))), &delayed)
                .await
                .unwrap(),
        );
    }
    let refused = manager
        .submit_fn("timed", "job", sleep(1))
        .await
        .unwrap_err();
    assert!(refused.is_lane_full(), "{refused:?}");
    assert!(expiring.await.unwrap_err().is_expired());
    running.await.unwrap();
    for handle in later {
        handle.await.unwrap();
    }
    let timed = metrics.snapshot().await.lanes["timed"].clone();
    assert_eq!(timed.counter(names::COMMANDS_SUBMITTED), 4);
    assert_eq!(timed.counter(names::COMMANDS_DELAYED), 2);
    assert_eq!(timed.counter(names::COMMANDS_PROMOTED), 2);
    assert_eq!(timed.counter(names::COMMANDS_EXPIRED), 1);
    assert_eq!(timed.counter(names::COMMANDS_REJECTED_FULL), 1);
    assert_eq!(timed.counter(names::COMMANDS_COMPLETED), 3);
    let text = metrics.render_prometheus().await;
    for line in [
        "lane_commands_delayed_total{lane=\"timed\"} 2\n",
        "lane_commands_promoted_total{lane=\"timed\"} 2\n",
        "lane_commands_expired_total{lane=\"timed\"} 1\n",
        "lane_commands_rejected_full_total{lane=\"timed\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// A 0.3-API-style backend: async methods only, totals only.
#[derive(Default)]
struct Totals {
    counters: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<String, f64>>,
    histograms: Mutex<BTreeMap<String, Vec<f64>>>,
}

#[async_trait]
impl MetricsBackend for Totals {
    async fn increment_counter(&self, name: &str, value: u64) {
        // Yield, as a backend doing I/O would: the queue must not wait for it.
        tokio::task::yield_now().await;
        *self
            .counters
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default() += value;
    }
    async fn set_gauge(&self, name: &str, value: f64) {
        self.gauges.lock().unwrap().insert(name.into(), value);
    }
    async fn record_histogram(&self, name: &str, value: f64) {
        self.histograms
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .push(value);
    }
    async fn get_counter(&self, name: &str) -> Option<u64> {
        self.counters.lock().unwrap().get(name).copied()
    }
    async fn get_gauge(&self, name: &str) -> Option<f64> {
        self.gauges.lock().unwrap().get(name).copied()
    }
    async fn get_histogram_stats(&self, name: &str) -> Option<HistogramStats> {
        let values = self.histograms.lock().unwrap().get(name)?.clone();
        Some(HistogramStats {
            count: values.len() as u64,
            max: values.iter().copied().fold(0.0, f64::max),
            ..HistogramStats::default()
        })
    }
    async fn reset(&self) {
        self.counters.lock().unwrap().clear();
    }
    async fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            counters: self.counters.lock().unwrap().clone(),
            gauges: self.gauges.lock().unwrap().clone(),
            ..MetricsSnapshot::default()
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_async_only_backend_receives_the_totals_through_the_forwarder() {
    let backend = Arc::new(Totals::default());
    let metrics = QueueMetrics::new(backend.clone());
    let manager = manager(metrics.clone()).await;
    run_known_workload(&manager).await;
    metrics.flush().await;
    let counters = backend.counters.lock().unwrap().clone();
    assert_eq!(counters[names::COMMANDS_SUBMITTED], 105);
    assert_eq!(counters[names::COMMANDS_COMPLETED], 95);
    assert_eq!(counters[names::COMMANDS_FAILED], 7);
    assert_eq!(counters[names::COMMANDS_TIMED_OUT], 3);
    assert_eq!(counters[names::COMMANDS_DEAD_LETTERED], 10);
    assert_eq!(backend.gauges.lock().unwrap()[names::QUEUE_DEPTH], 0.0);
    let latency = backend
        .get_histogram_stats(names::COMMAND_LATENCY_MS)
        .await
        .unwrap();
    assert_eq!(latency.count, 105);
    assert!(close(latency.max, 50.0), "{latency:?}");
    // The 0.3 API's record_* methods reach the backend too.
    metrics.record_submit("work").await;
    assert_eq!(
        backend.get_counter(names::COMMANDS_SUBMITTED).await,
        Some(106)
    );
    assert_eq!(
        metrics.snapshot().await.counters[names::COMMANDS_SUBMITTED],
        106
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_end_on_the_final_depth_when_runners_race() {
    let metrics = QueueMetrics::local();
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("a", LaneConfig::new(1, 8), 0)
        .with_lane("b", LaneConfig::new(1, 3), 1)
        .with_metrics(metrics.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    for round in 0..20 {
        let mut handles = Vec::new();
        for i in 0..200u32 {
            let lane = if i % 3 == 0 { "b" } else { "a" };
            handles.push(
                manager
                    .submit_fn(lane, "spin", |_ctx| async {
                        tokio::task::yield_now().await;
                        Ok(json!(null))
                    })
                    .await
                    .unwrap(),
            );
        }
        for handle in handles {
            handle.await.unwrap();
        }
        manager.queue().wait_idle().await;
        let snapshot = metrics.snapshot().await;
        for lane in ["a", "b"] {
            let lane = &snapshot.lanes[lane];
            assert_eq!(lane.gauge(names::QUEUE_DEPTH), Some(0.0), "round {round}");
            assert_eq!(
                lane.gauge(names::COMMANDS_ACTIVE),
                Some(0.0),
                "round {round}"
            );
        }
    }
    assert_eq!(
        metrics.snapshot().await.counters[names::COMMANDS_COMPLETED],
        4_000
    );
}

/// Per-group metrics, turned on with a bound: the first two groups and the named `vip`
/// get series of their own, every later group counts in the lane's `other` bucket; a
/// group's rate limit counts its throttles.
#[tokio::test(start_paused = true)]
async fn group_metrics_count_per_group_within_their_bound() {
    use a3s_lane::{GroupLimits, GroupMetricsConfig, RateLimitConfig, group_metric_names as g};

    let metrics = QueueMetrics::local()
        .with_group_metrics(
            GroupMetricsConfig::first(2)
                .unwrap()
                .with_group("vip")
                .unwrap(),
        )
        .unwrap();
    assert!(
        metrics
            .clone()
            .with_group_metrics(GroupMetricsConfig::first(1).unwrap())
            .is_err(),
        "clones share the series: turning them on twice is refused"
    );
    let limits = GroupLimits::new().with_rate_limit(RateLimitConfig::token_bucket(
        1,
        Duration::from_millis(100),
        1,
    ));
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "tenants",
            LaneConfig::new(1, 4).with_group_limits(limits),
            0,
        )
        .with_metrics(metrics.clone())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut handles = Vec::new();
    for (group, n) in [("a", 3), ("b", 1), ("c", 1), ("d", 2), ("vip", 1)] {
        for _ in 0..n {
            let command = command_fn("job", |_ctx| async { Ok(json!(null)) });
            handles.push(
                manager
                    .submit_with_options(
                        "tenants",
                        Box::new(command),
                        &SubmitOptions::new().with_group(group),
                    )
                    .await
                    .unwrap(),
            );
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let snapshot = metrics.snapshot().await;
    let lane = &snapshot.groups["tenants"];
    assert_eq!(lane.groups.keys().collect::<Vec<_>>(), ["a", "b", "vip"]);
    let a = &lane.groups["a"];
    assert_eq!((a.counter(g::STARTED), a.counter(g::COMPLETED)), (3, 3));
    assert!(
        a.counter(g::THROTTLED) >= 1,
        "a's second start waited for its permit"
    );
    assert!(
        a.histograms[g::WAIT_MS].max >= 99.0,
        "{:?}",
        a.histograms[g::WAIT_MS]
    );
    let other = lane.other.as_ref().expect("c and d share the other bucket");
    assert_eq!(
        (other.counter(g::STARTED), other.counter(g::COMPLETED)),
        (3, 3)
    );
    let text = metrics.render_prometheus().await;
    assert!(
        text.contains("group_commands_completed_total{lane=\"tenants\",group=\"a\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("group_commands_completed_total{lane=\"tenants\",group_other=\"true\"} 3\n"),
        "{text}"
    );
    assert!(snapshot.lane("tenants").unwrap().counter(names::THROTTLED) >= 1);
    manager.shutdown().await;
}
