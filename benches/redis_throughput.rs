//! The Redis backend, end to end, against a real server (A3S_LANE_REDIS_URL).
//!
//! - `redis/end_to_end`: submit a batch of no-op commands spread over six prioritised
//!   lanes and wait for every result, with 1, 2 and 4 worker processes of 64 slots each;
//!   then with the queue's event stream off (`with_events(false)`), 1 and 2 processes.
//!   Baseline in the same run: `redis/raw_list_roundtrip`, the same number of messages
//!   pushed to a plain Redis list, popped by one consumer that pushes a reply to a second
//!   list, all pipelined in batches through the same client: the floor for any queue on
//!   this server and client.
//! - `redis/pickup`: submit one command to an idle worker (blocked on Redis) and time
//!   until its handler starts. Baseline: `redis/blpop_wake`, a raw LPUSH waking a client
//!   blocked in BLPOP. Percentiles of both are printed after the group.
//!
//! ```bash
//! A3S_LANE_REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench redis_throughput -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The worker processes are this bench binary, started with A3S_LANE_BENCH_WORKER set.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use a3s_lane::{
    HandlerRegistry, LaneConfig, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
    handler_fn,
};
use criterion::{BenchmarkId, Criterion, Throughput};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Commands per measured batch.
const BATCH: usize = 5_000;
/// Six lanes, priorities 0 to 5.
const LANES: [&str; 6] = ["system", "control", "query", "session", "skill", "prompt"];
const SLOTS: usize = 64;

fn redis_url() -> String {
    std::env::var("A3S_LANE_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "A3S_LANE_REDIS_URL is not set; this bench needs a Redis server, for example \
             A3S_LANE_REDIS_URL=redis://127.0.0.1:6379 (or start a throwaway one with \
             scripts/redis.sh)"
        )
    })
}

fn queue_config(prefix: &str) -> RedisQueueConfig {
    let mut config = RedisQueueConfig::new(redis_url()).with_key_prefix(prefix);
    for (priority, lane) in LANES.iter().enumerate() {
        config = config.with_lane(*lane, LaneConfig::new(1, SLOTS), priority as u8);
    }
    config
}

fn noop_handlers() -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register("noop", handler_fn(|_, _| async { Ok(Value::Null) }));
    handlers
}

fn main() {
    if std::env::var_os("A3S_LANE_BENCH_WORKER").is_some() {
        worker_process();
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    end_to_end(&mut criterion);
    pickup(&mut criterion);
    criterion.final_summary();
}

/// A worker process: 64 slots of no-op handlers until stdin closes. One thread each:
/// the bench scales by processes.
fn worker_process() {
    let prefix = std::env::var("A3S_LANE_BENCH_PREFIX").expect("A3S_LANE_BENCH_PREFIX");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let queue =
            RedisQueue::connect(RedisQueueConfig::new(redis_url()).with_key_prefix(&prefix))
                .await
                .unwrap();
        let worker = RedisWorker::start(&queue, noop_handlers(), RedisWorkerConfig::new(SLOTS))
            .await
            .unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    });
}

fn unique_prefix(what: &str) -> String {
    format!("a3s-bench-{what}-{}", std::process::id())
}

fn start_workers(prefix: &str, count: usize) -> Vec<Child> {
    (0..count)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env("A3S_LANE_BENCH_WORKER", "1")
                .env("A3S_LANE_BENCH_PREFIX", prefix)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("starting a worker process")
        })
        .collect()
}

fn stop_workers(workers: Vec<Child>) {
    for mut worker in workers {
        drop(worker.stdin.take());
        let _ = worker.wait();
    }
}

/// Submits BATCH no-op commands round-robin over the lanes and waits for every result.
async fn run_batch(queue: &RedisQueue) -> Duration {
    let started = Instant::now();
    let handles = queue
        .submit_batch((0..BATCH).map(|i| (LANES[i % LANES.len()], "noop", json!({ "i": i }))))
        .await
        .unwrap();
    for result in futures_util::future::join_all(handles).await {
        result.unwrap();
    }
    started.elapsed()
}

/// The same number of messages through plain Redis lists: pipelined pushes, one consumer
/// popping in batches and pushing replies, the producer popping the replies.
async fn run_raw_batch(conn: &mut redis::aio::ConnectionManager, prefix: &str) -> Duration {
    let jobs = format!("{{{prefix}}}:jobs");
    let replies = format!("{{{prefix}}}:replies");
    let started = Instant::now();
    for chunk in (0..BATCH).collect::<Vec<_>>().chunks(512) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let message =
                json!({ "lane": LANES[i % LANES.len()], "type": "noop", "payload": { "i": i } });
            pipe.rpush(&jobs, message.to_string()).ignore();
        }
        let () = pipe.query_async(conn).await.unwrap();
    }
    let mut received = 0;
    while received < BATCH {
        let (_, _first): (String, String) = conn.blpop(&replies, 5.0).await.unwrap();
        received += 1;
        let more: Option<Vec<String>> = redis::cmd("LPOP")
            .arg(&replies)
            .arg(512)
            .query_async(conn)
            .await
            .unwrap();
        received += more.map_or(0, |m| m.len());
    }
    started.elapsed()
}

async fn raw_consumer(url: String, prefix: String, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let client = redis::Client::open(url).unwrap();
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut blocking = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let jobs = format!("{{{prefix}}}:jobs");
    let replies = format!("{{{prefix}}}:replies");
    loop {
        let popped = tokio::select! {
            _ = &mut stop => return,
            popped = blocking.blpop::<_, Option<(String, String)>>(&jobs, 1.0) => popped.unwrap(),
        };
        let Some((_, first)) = popped else { continue };
        let mut batch = vec![first];
        let more: Option<Vec<String>> = redis::cmd("LPOP")
            .arg(&jobs)
            .arg(511)
            .query_async(&mut blocking)
            .await
            .unwrap();
        batch.extend(more.unwrap_or_default());
        let mut pipe = redis::pipe();
        for message in &batch {
            let parsed: Value = serde_json::from_str(message).unwrap();
            pipe.rpush(&replies, json!({ "ok": parsed["payload"] }).to_string())
                .ignore();
        }
        let () = pipe.query_async(&mut blocking).await.unwrap();
    }
}

fn end_to_end(criterion: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = criterion.benchmark_group("redis");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));

    // Baseline: raw lists through the same client.
    let prefix = unique_prefix("raw");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    runtime.spawn(raw_consumer(redis_url(), prefix.clone(), stop_rx));
    let mut conn = runtime.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
            .await
            .unwrap()
    });
    group.bench_function("raw_list_roundtrip", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (mut conn, prefix) = (conn.clone(), prefix.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run_raw_batch(&mut conn, &prefix).await;
                }
                total
            }
        });
    });
    let _ = stop_tx.send(());
    runtime.block_on(async {
        let _: () = redis::cmd("DEL")
            .arg(format!("{{{prefix}}}:jobs"))
            .arg(format!("{{{prefix}}}:replies"))
            .query_async(&mut conn)
            .await
            .unwrap();
    });

    // The event stream on (the default), then off (`with_events(false)`): what the
    // stream of every command's events costs.
    for (events, workers) in [(true, 1usize), (true, 2), (true, 4), (false, 1), (false, 2)] {
        let prefix = unique_prefix(&format!("e2e-{workers}-{events}"));
        let queue = runtime
            .block_on(RedisQueue::connect(
                queue_config(&prefix).with_events(events),
            ))
            .unwrap();
        let children = start_workers(&prefix, workers);
        runtime.block_on(async {
            while queue.stats().await.unwrap().workers < workers {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let name = if events {
            "end_to_end_worker_processes"
        } else {
            "end_to_end_events_off_worker_processes"
        };
        group.bench_with_input(BenchmarkId::new(name, workers), &workers, |b, _| {
            b.to_async(&runtime).iter_custom(|iters| {
                let queue = queue.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += run_batch(&queue).await;
                    }
                    total
                }
            });
        });
        stop_workers(children);
        runtime.block_on(queue.clear()).unwrap();
    }
    group.finish();
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        return;
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "{label}: n={} p50={:?} p90={:?} p99={:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

fn pickup(criterion: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = criterion.benchmark_group("redis");
    group.sample_size(20);

    // Baseline: LPUSH waking a client blocked in BLPOP.
    let prefix = unique_prefix("wake");
    let key = format!("{{{prefix}}}:wake");
    let (woke_tx, mut woke_rx) = mpsc::unbounded_channel::<Instant>();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener_key = key.clone();
    runtime.spawn(async move {
        let client = redis::Client::open(redis_url()).unwrap();
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut blocking = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        loop {
            let popped = tokio::select! {
                _ = &mut stop_rx => return,
                popped = blocking.blpop::<_, Option<(String, String)>>(&listener_key, 1.0) => popped.unwrap(),
            };
            if popped.is_some() {
                let _ = woke_tx.send(Instant::now());
            }
        }
    });
    let conn = runtime.block_on(async {
        redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
            .await
            .unwrap()
    });
    let mut wake_samples = Vec::new();
    group.bench_function("blpop_wake", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let sample = runtime.block_on(async {
                    let mut conn = conn.clone();
                    // Let the listener block again before pushing.
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    let started = Instant::now();
                    let _: () = conn.lpush(&key, "x").await.unwrap();
                    woke_rx.recv().await.unwrap() - started
                });
                wake_samples.push(sample);
                total += sample;
            }
            total
        });
    });
    let _ = stop_tx.send(());

    // The queue: an idle worker in this process, one command at a time.
    let prefix = unique_prefix("pickup");
    let queue = runtime
        .block_on(RedisQueue::connect(queue_config(&prefix)))
        .unwrap();
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<Instant>();
    let handlers = HandlerRegistry::default();
    handlers.register(
        "probe",
        handler_fn(move |_, _| {
            let _ = started_tx.send(Instant::now());
            async { Ok(Value::Null) }
        }),
    );
    let worker = runtime
        .block_on(RedisWorker::start(
            &queue,
            handlers,
            RedisWorkerConfig::new(SLOTS),
        ))
        .unwrap();
    let mut pickup_samples = Vec::new();
    group.bench_function("pickup", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let sample = runtime.block_on(async {
                    // Let the worker block on its wake list again.
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    let submitted = Instant::now();
                    let handle = queue.submit("query", "probe", json!({})).await.unwrap();
                    let started = started_rx.recv().await.unwrap();
                    handle.await.unwrap();
                    started - submitted
                });
                pickup_samples.push(sample);
                total += sample;
            }
            total
        });
    });
    group.finish();
    percentiles("baseline: LPUSH -> BLPOP wake", wake_samples);
    percentiles(
        "pickup: submit -> handler start on an idle worker",
        pickup_samples,
    );
    runtime.block_on(async {
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        queue.clear().await.unwrap();
        let mut conn = conn.clone();
        let _: () = conn.del(&key).await.unwrap();
    });
}
