//! Scheduler benchmarks, each paired with a bare-tokio baseline doing the same work in the
//! same run. Run: `cargo bench --bench scheduler`.
//!
//! 1. `dispatch_throughput`: 200k no-op commands on one lane of max 64, versus
//!    `tokio::spawn` + oneshot + `Semaphore(64)`.
//! 2. `many_lanes`: the same 60k commands over 1000 lanes versus 6 lanes (global budget 64).
//! 3. `control_latency`: submit-to-start of a `control` command while `prompt` is saturated
//!    with a 400-command backlog, versus a bare `tokio::spawn` under the same load.
//! 4. `wide_lane`: 200 commands of 100 ms on a lane of max 100, versus spawn + Semaphore(100).
//! 5. `session_lifecycle`: what an agent platform pays per session: build a queue with the
//!    six default lanes, start it, run one command, shut it down and drain it; versus one
//!    `tokio::spawn` + oneshot (the floor of running one thing).
//!
//! Idle cost (memory and CPU of 10,000 idle managers) is `benches/idle_managers.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_lane::{Command, EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, Result};
use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, oneshot};

struct Noop;

#[async_trait]
impl Command for Noop {
    async fn execute(&self) -> Result<Value> {
        Ok(Value::Null)
    }
    fn command_type(&self) -> &str {
        "noop"
    }
}

struct Sleep(Duration);

#[async_trait]
impl Command for Sleep {
    async fn execute(&self) -> Result<Value> {
        tokio::time::sleep(self.0).await;
        Ok(Value::Null)
    }
    fn command_type(&self) -> &str {
        "sleep"
    }
}

/// Runtime worker threads: 2, or `A3S_LANE_BENCH_WORKERS` (with 1, the submitter and the
/// runners do not outnumber the 2 cores, and the state lock is not fought over).
fn worker_threads() -> usize {
    std::env::var("A3S_LANE_BENCH_WORKERS").map_or(2, |value| {
        value
            .parse()
            .expect("A3S_LANE_BENCH_WORKERS must be a positive number of threads")
    })
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .unwrap()
}

async fn manager(lanes: &[(String, LaneConfig, u8)], budget: Option<usize>) -> QueueManager {
    let mut builder = QueueManagerBuilder::new(EventEmitter::new(100));
    for (id, config, priority) in lanes {
        builder = builder.with_lane(id.clone(), config.clone(), *priority);
    }
    if let Some(budget) = budget {
        builder = builder.with_max_concurrency(budget);
    }
    let manager = builder.build().await.unwrap();
    manager.start().await.unwrap();
    manager
}

async fn run_queue(
    manager: &QueueManager,
    lanes: &[String],
    commands: usize,
    make: impl Fn() -> Box<dyn Command>,
) {
    let mut receivers = Vec::with_capacity(commands);
    for i in 0..commands {
        receivers.push(
            manager
                .submit(&lanes[i % lanes.len()], make())
                .await
                .unwrap(),
        );
    }
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
}

async fn run_baseline(permits: usize, commands: usize, make: impl Fn() -> Box<dyn Command>) {
    let semaphore = Arc::new(Semaphore::new(permits));
    let mut receivers = Vec::with_capacity(commands);
    for _ in 0..commands {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let command = make();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(command.execute().await);
            drop(permit);
        });
        receivers.push(rx);
    }
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
}

fn dispatch_throughput(c: &mut Criterion) {
    const COMMANDS: usize = 200_000;
    let rt = runtime();
    let lanes = vec![("work".to_owned(), LaneConfig::new(1, 64), 0)];
    let manager = rt.block_on(manager(&lanes, None));
    let names = vec!["work".to_owned()];
    let mut group = c.benchmark_group("dispatch_throughput");
    group
        .sample_size(10)
        .throughput(criterion::Throughput::Elements(COMMANDS as u64));
    group.bench_function("a3s_lane_one_lane_max64", |b| {
        b.to_async(&rt)
            .iter(|| run_queue(&manager, &names, COMMANDS, || Box::new(Noop)))
    });
    group.bench_function("baseline_spawn_oneshot_semaphore64", |b| {
        b.to_async(&rt)
            .iter(|| run_baseline(64, COMMANDS, || Box::new(Noop)))
    });
    group.finish();
}

fn many_lanes(c: &mut Criterion) {
    const COMMANDS: usize = 60_000;
    let rt = runtime();
    let mut group = c.benchmark_group("many_lanes");
    group
        .sample_size(10)
        .throughput(criterion::Throughput::Elements(COMMANDS as u64));
    for lane_count in [6usize, 1000] {
        let lanes: Vec<(String, LaneConfig, u8)> = (0..lane_count)
            .map(|i| (format!("lane-{i}"), LaneConfig::new(0, 64), (i % 256) as u8))
            .collect();
        let names: Vec<String> = lanes.iter().map(|(id, _, _)| id.clone()).collect();
        let manager = rt.block_on(manager(&lanes, Some(64)));
        group.bench_with_input(
            BenchmarkId::new("lanes", lane_count),
            &lane_count,
            |b, _| {
                b.to_async(&rt)
                    .iter(|| run_queue(&manager, &names, COMMANDS, || Box::new(Noop)))
            },
        );
    }
    group.finish();
}

const LATENCY_SAMPLES: usize = 2000;

/// Time from submitting a `control` command to the moment it starts running.
async fn control_submit_to_start(manager: &QueueManager) -> Duration {
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let submitted = Instant::now();
    let handle = manager
        .submit_fn("control", "stamp", move |_| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(Instant::now());
            }
            async { Ok(Value::Null) }
        })
        .await
        .unwrap();
    let started = rx.await.unwrap();
    handle.await.unwrap();
    started - submitted
}

/// Time from `tokio::spawn` to the moment the task starts running.
async fn spawn_to_start() -> Duration {
    let (tx, rx) = oneshot::channel();
    let submitted = Instant::now();
    let task = tokio::spawn(async move {
        let _ = tx.send(Instant::now());
    });
    let started = rx.await.unwrap();
    task.await.unwrap();
    started - submitted
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn control_latency(c: &mut Criterion) {
    let rt = runtime();
    let manager = rt.block_on(async {
        let manager = QueueManagerBuilder::new(EventEmitter::new(100))
            .with_default_lanes()
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        manager
    });
    // Saturate `prompt` (max 2) with a backlog of 400 commands that keep it busy.
    let backlog: Vec<_> = rt.block_on(async {
        let mut receivers = Vec::new();
        for _ in 0..402 {
            receivers.push(
                manager
                    .submit("prompt", Box::new(Sleep(Duration::from_secs(60))))
                    .await
                    .unwrap(),
            );
        }
        receivers
    });
    assert_eq!(rt.block_on(manager.stats()).lanes["prompt"].pending, 400);
    // Percentiles over individual samples, the figure the README quotes.
    let (ours, bare) = rt.block_on(async {
        let mut ours = Vec::with_capacity(LATENCY_SAMPLES);
        let mut bare = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            ours.push(control_submit_to_start(&manager).await);
            bare.push(spawn_to_start().await);
        }
        (ours, bare)
    });
    let (ours, bare) = (percentiles(ours), percentiles(bare));
    println!(
        "control_latency p50/p99 over {LATENCY_SAMPLES} samples: a3s-lane {:?}/{:?}, bare tokio::spawn {:?}/{:?}, p50 ratio {:.2}",
        ours.0,
        ours.1,
        bare.0,
        bare.1,
        ours.0.as_secs_f64() / bare.0.as_secs_f64()
    );
    let mut group = c.benchmark_group("control_latency");
    group.bench_function("a3s_lane_control_submit_to_start", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let manager = manager.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += control_submit_to_start(&manager).await;
                }
                total
            }
        })
    });
    group.bench_function("baseline_tokio_spawn_to_start", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += spawn_to_start().await;
            }
            total
        })
    });
    group.finish();
    rt.block_on(async {
        manager.cancel_lane("prompt").unwrap();
        for rx in backlog {
            let _ = rx.await;
        }
    });
}

fn wide_lane(c: &mut Criterion) {
    const COMMANDS: usize = 200;
    let rt = runtime();
    let lanes = vec![("wide".to_owned(), LaneConfig::new(1, 100), 0)];
    let manager = rt.block_on(manager(&lanes, None));
    let names = vec!["wide".to_owned()];
    let mut group = c.benchmark_group("wide_lane_200x100ms");
    group.sample_size(10);
    group.bench_function("a3s_lane_max100", |b| {
        b.to_async(&rt).iter(|| {
            run_queue(&manager, &names, COMMANDS, || {
                Box::new(Sleep(Duration::from_millis(100)))
            })
        })
    });
    group.bench_function("baseline_spawn_semaphore100", |b| {
        b.to_async(&rt).iter(|| {
            run_baseline(100, COMMANDS, || {
                Box::new(Sleep(Duration::from_millis(100)))
            })
        })
    });
    group.finish();
}

fn session_lifecycle(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("session_lifecycle");
    group.bench_function("a3s_lane_default_lanes", |b| {
        b.to_async(&rt).iter(|| async {
            let manager = QueueManagerBuilder::new(EventEmitter::new(100))
                .with_default_lanes()
                .build()
                .await
                .unwrap();
            manager.start().await.unwrap();
            let done = manager.submit("control", Box::new(Noop)).await.unwrap();
            done.await.unwrap().unwrap();
            manager.shutdown().await;
            manager.drain(Duration::from_secs(5)).await.unwrap();
        })
    });
    group.bench_function("baseline_spawn_oneshot", |b| {
        b.to_async(&rt).iter(|| async {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let _ = tx.send(Noop.execute().await);
            });
            rx.await.unwrap().unwrap();
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    dispatch_throughput,
    many_lanes,
    control_latency,
    wide_lane,
    session_lifecycle
);
criterion_main!(benches);
