//! Throughput of the queue with metrics and alerts on, against the same queue with them
//! off, measured in the same run.
//!
//! Each iteration submits `COMMANDS` trivial commands to one lane (16 slots) of a
//! started, reused manager and awaits every result: what is timed is submit → dispatch →
//! run → reply, not building or shutting down a manager.
//!
//! Criterion times the two variants one after the other. Because a shared machine's
//! load drifts between the two, the bench then also runs them interleaved (off, on, off,
//! on, …) and prints the median throughput of each and their ratio.
//!
//! ```text
//! cargo bench --bench observability_overhead -- --warm-up-time 1 --measurement-time 3
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_lane::{
    AlertManager, Command, EventEmitter, LaneConfig, LatencyAlertConfig, Observer,
    QueueDepthAlertConfig, QueueManager, QueueManagerBuilder, QueueMetrics, Result,
};
use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const COMMANDS: usize = 2_000;

/// What each command does.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Returns at once: the queue's own cost per command, the worst case for overhead.
    Noop,
    /// Awaits once before returning, as any command doing I/O does.
    Yield,
}

struct Job(Work);

#[async_trait]
impl Command for Job {
    async fn execute(&self) -> Result<serde_json::Value> {
        if let Work::Yield = self.0 {
            tokio::task::yield_now().await;
        }
        Ok(serde_json::Value::Null)
    }
    fn command_type(&self) -> &str {
        "job"
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Observed {
    Off,
    /// An observer that does nothing: what the queue itself pays to call observers.
    NoopObserver,
    Metrics,
    Alerts,
    MetricsAndAlerts,
    /// Metrics recorded into OpenTelemetry instruments too (exported once an hour to a
    /// port nobody listens on: the recording cost, not the network).
    #[cfg(feature = "telemetry")]
    OtelAndAlerts,
}

#[derive(Debug)]
struct NoopObserver;
impl Observer for NoopObserver {}

fn alerts() -> Arc<AlertManager> {
    Arc::new(
        AlertManager::with_configs(
            QueueDepthAlertConfig::new(10_000, 50_000).unwrap(),
            LatencyAlertConfig::new(1_000.0, 5_000.0).unwrap(),
        )
        .unwrap(),
    )
}

async fn manager(observed: Observed) -> QueueManager {
    let builder = QueueManagerBuilder::new(EventEmitter::new(100)).with_lane(
        "work",
        LaneConfig::new(1, 16),
        0,
    );
    let builder = match observed {
        Observed::Off => builder,
        Observed::NoopObserver => builder.with_observer(NoopObserver),
        Observed::Metrics => builder.with_metrics(QueueMetrics::local()),
        Observed::Alerts => builder.with_alerts(alerts()),
        Observed::MetricsAndAlerts => builder
            .with_metrics(QueueMetrics::local())
            .with_alerts(alerts()),
        #[cfg(feature = "telemetry")]
        Observed::OtelAndAlerts => {
            let config = a3s_lane::OtlpConfig::new("http://127.0.0.1:9")
                .with_export_interval(Duration::from_secs(3600));
            let otel = a3s_lane::OtelMetricsBackend::otlp(&config).unwrap();
            builder
                .with_metrics(QueueMetrics::new(Arc::new(otel)))
                .with_alerts(alerts())
        }
    };
    let manager = builder.build().await.unwrap();
    manager.start().await.unwrap();
    manager
}

async fn run_batch(manager: &QueueManager, work: Work) {
    let mut replies = Vec::with_capacity(COMMANDS);
    for _ in 0..COMMANDS {
        replies.push(manager.submit("work", Box::new(Job(work))).await.unwrap());
    }
    for reply in replies {
        reply.await.unwrap().unwrap();
    }
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let off = runtime.block_on(manager(Observed::Off));
    let on = runtime.block_on(manager(Observed::MetricsAndAlerts));
    #[cfg(feature = "telemetry")]
    let otel = runtime.block_on(manager(Observed::OtelAndAlerts));
    for work in [Work::Noop, Work::Yield] {
        let mut group = c.benchmark_group(format!("observability_overhead/{work:?}"));
        group.throughput(Throughput::Elements(COMMANDS as u64));
        group.bench_function("off", |b| {
            b.to_async(&runtime).iter(|| run_batch(&off, work))
        });
        group.bench_function("metrics_and_alerts", |b| {
            b.to_async(&runtime).iter(|| run_batch(&on, work))
        });
        #[cfg(feature = "telemetry")]
        group.bench_function("otel_metrics_and_alerts", |b| {
            b.to_async(&runtime).iter(|| run_batch(&otel, work))
        });
        group.finish();
    }
    for work in [Work::Noop, Work::Yield] {
        interleaved(&runtime, work);
    }
}

/// Runs the variants in rotation (each round in a different order) so that all see the
/// same machine load; prints each one's median throughput and its ratio to `Off`, and
/// (on Linux) the median CPU time the process spent per command, which other processes'
/// load disturbs much less than wall time.
fn interleaved(runtime: &tokio::runtime::Runtime, work: Work) {
    const ROUNDS: usize = 101;
    let variants = [
        Observed::Off,
        Observed::NoopObserver,
        Observed::Metrics,
        Observed::Alerts,
        Observed::MetricsAndAlerts,
    ];
    let managers: Vec<QueueManager> = variants
        .iter()
        .map(|&v| runtime.block_on(manager(v)))
        .collect();
    let mut wall: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut cpu: Vec<Vec<u64>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for step in 0..variants.len() {
            let i = (round + step) % variants.len();
            let cpu_before = process_cpu_ns();
            let start = Instant::now();
            runtime.block_on(run_batch(&managers[i], work));
            wall[i].push(start.elapsed());
            if let (Some(before), Some(after)) = (cpu_before, process_cpu_ns()) {
                cpu[i].push(after.saturating_sub(before));
            }
        }
    }
    let median_rate = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        COMMANDS as f64 / times[times.len() / 2].as_secs_f64()
    };
    let median_cpu = |times: &mut Vec<u64>| {
        times.sort_unstable();
        times
            .get(times.len() / 2)
            .map(|ns| *ns as f64 / COMMANDS as f64)
    };
    let rates: Vec<f64> = wall.iter_mut().map(median_rate).collect();
    let cpus: Vec<Option<f64>> = cpu.iter_mut().map(median_cpu).collect();
    println!("{work:?} commands, interleaved medians over {ROUNDS} rounds of {COMMANDS}:");
    for (i, variant) in variants.iter().enumerate() {
        let cpu = match (cpus[i], cpus[0]) {
            (Some(ns), Some(off)) => {
                format!(", CPU {ns:.0} ns/command (ratio to Off {:.3})", off / ns)
            }
            _ => String::new(),
        };
        println!(
            "  {variant:?}: {:.0} commands/s (ratio to Off {:.3}){cpu}",
            rates[i],
            rates[i] / rates[0]
        );
    }
}

/// CPU time used so far by every thread of this process, in nanoseconds (Linux only:
/// the first field of each `/proc/self/task/*/schedstat`).
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

criterion_group!(benches, overhead);
criterion_main!(benches);
