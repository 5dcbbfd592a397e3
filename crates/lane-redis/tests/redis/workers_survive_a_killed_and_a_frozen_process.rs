//! Three worker processes on one Redis queue. One is killed with SIGKILL and another is
//! frozen with SIGSTOP past its lease while they run commands. Nothing is lost, nothing
//! completes twice after its lease was taken over (the frozen worker's late results are
//! rejected by fencing), claims keep strict priority across lanes, and no lane exceeds
//! its cap over all workers.
//!
//! The worker processes are this test binary itself, running this same test with
//! `A3S_LANE_TEST_WORKER` set: with it, the test plays a worker instead.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
    handler_fn,
};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::support::{TestQueue, eventually, redis_url};

const LEASE: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_millis(300);

/// Keys the handlers write, under the queue's hash tag so `clear()` removes them.
fn log_key(prefix: &str) -> String {
    format!("{{{prefix}}}:test:log")
}
fn gauge_key(prefix: &str, lane: &str) -> String {
    format!("{{{prefix}}}:test:running:{lane}")
}
fn peak_key(prefix: &str, lane: &str) -> String {
    format!("{{{prefix}}}:test:peak:{lane}")
}

const ENTER: &str = "local n = redis.call('INCR', KEYS[1]) \
    if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end \
    return n";

/// The worker role: runs until its stdin closes, then shuts down gracefully.
fn run_worker(name: String) {
    let (Ok(url), Ok(prefix)) = (
        std::env::var("A3S_LANE_TEST_URL"),
        std::env::var("A3S_LANE_TEST_PREFIX"),
    ) else {
        panic!(
            "a worker process is started by the test itself, which sets A3S_LANE_TEST_URL and \
             A3S_LANE_TEST_PREFIX along with A3S_LANE_TEST_WORKER"
        );
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let queue = RedisQueue::connect(RedisQueueConfig::new(&url).with_key_prefix(&prefix))
            .await
            .unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let log = redis::aio::ConnectionManager::new(client).await.unwrap();
        let handlers = HandlerRegistry::default();
        let (log_conn, worker_name, key_prefix) = (log.clone(), name.clone(), prefix.clone());
        handlers.register(
            "work",
            handler_fn(move |payload: Value, ctx| {
                let (mut log, worker, prefix) =
                    (log_conn.clone(), worker_name.clone(), key_prefix.clone());
                async move {
                    let entry = format!("start {} {worker} {}", ctx.id(), ctx.attempt());
                    let _: () = log.rpush(log_key(&prefix), entry).await.unwrap();
                    let ms = payload["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let entry = format!("end {} {worker} {}", ctx.id(), ctx.attempt());
                    let _: () = log.rpush(log_key(&prefix), entry).await.unwrap();
                    Ok(json!({ "worker": worker, "attempt": ctx.attempt() }))
                }
            }),
        );
        let (gauge_conn, key_prefix) = (log.clone(), prefix.clone());
        handlers.register(
            "capped",
            handler_fn(move |payload: Value, ctx| {
                let (mut conn, prefix) = (gauge_conn.clone(), key_prefix.clone());
                async move {
                    let lane = ctx.lane().to_owned();
                    let _: i64 = redis::Script::new(ENTER)
                        .key(gauge_key(&prefix, &lane))
                        .key(peak_key(&prefix, &lane))
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                    let ms = payload["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _: i64 = conn.decr(gauge_key(&prefix, &lane), 1).await.unwrap();
                    Ok(Value::Null)
                }
            }),
        );
        let config = RedisWorkerConfig::new(2)
            .with_worker_id(&name)
            .with_lease_ttl(LEASE)
            .with_heartbeat_interval(HEARTBEAT)
            .with_block_timeout(Duration::from_secs(2));
        let worker = RedisWorker::start(&queue, handlers, config).await.unwrap();
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = eof_tx.send(());
        });
        let _ = eof_rx.await;
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    });
}

/// A worker process that is killed if the test ends without stopping it.
struct WorkerProcess {
    name: String,
    child: Child,
}

impl WorkerProcess {
    fn start(prefix: &str, name: &str) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                this_test().as_str(),
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("A3S_LANE_TEST_URL", redis_url())
            .env("A3S_LANE_TEST_PREFIX", prefix)
            .env("A3S_LANE_TEST_WORKER", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting a worker process");
        Self {
            name: name.to_owned(),
            child,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }

    /// Closes its stdin (it shuts down gracefully) and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "worker {} exited with {status}",
                    self.name
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker {} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The handlers' log: (event, command id, worker, attempt).
async fn read_log(
    conn: &mut redis::aio::ConnectionManager,
    prefix: &str,
) -> Vec<(String, u64, String, u32)> {
    let entries: Vec<String> = conn.lrange(log_key(prefix), 0, -1).await.unwrap();
    entries
        .iter()
        .map(|entry| {
            let parts: Vec<&str> = entry.split(' ').collect();
            (
                parts[0].to_owned(),
                parts[1].parse().unwrap(),
                parts[2].to_owned(),
                parts[3].parse().unwrap(),
            )
        })
        .collect()
}

/// Whether `worker` has a run that started and has not ended.
fn is_running(log: &[(String, u64, String, u32)], worker: &str) -> bool {
    let mut open: HashMap<(u64, u32), i32> = HashMap::new();
    for (event, id, who, attempt) in log {
        if who == worker {
            *open.entry((*id, *attempt)).or_default() += if event == "start" { 1 } else { -1 };
        }
    }
    open.values().any(|&n| n > 0)
}

/// The name the test harness knows this test by (its path in the test binary, without
/// the crate), which the worker processes are started with.
fn this_test() -> String {
    const TEST: &str = "three_worker_processes_lose_nothing_when_one_is_killed_and_one_frozen";
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{TEST}"),
        None => TEST.to_owned(),
    }
}

#[test]
fn three_worker_processes_lose_nothing_when_one_is_killed_and_one_frozen() {
    if let Ok(name) = std::env::var("A3S_LANE_TEST_WORKER") {
        return run_worker(name);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(lose_nothing_when_one_is_killed_and_one_frozen());
}

async fn lose_nothing_when_one_is_killed_and_one_frozen() {
    let test = TestQueue::connect("multi-process", |c| {
        c.with_lane("p0", LaneConfig::new(1, 10), 0)
            .with_lane("p1", LaneConfig::new(1, 10), 1)
            .with_lane("p2", LaneConfig::new(1, 10), 2)
            .with_lane("c0", LaneConfig::new(1, 2), 0)
            .with_lane("c1", LaneConfig::new(1, 1), 1)
    })
    .await;
    let queue = test.queue.clone();
    let mut conn = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap();

    // Phase 1: priority, kill, freeze. Submitted before any worker exists, lowest
    // priority first; 3 workers x 2 slots are scarce next to 30 commands.
    let mut handles = Vec::new();
    for lane in ["p2", "p1", "p0"] {
        for _ in 0..10 {
            handles.push(
                queue
                    .submit(lane, "work", json!({"ms": 250}))
                    .await
                    .unwrap(),
            );
        }
    }
    let ids: Vec<u64> = handles.iter().map(|h| h.id()).collect();
    let doomed = WorkerProcess::start(&test.prefix, "doomed");
    let frozen = WorkerProcess::start(&test.prefix, "frozen");
    let steady = WorkerProcess::start(&test.prefix, "steady");

    let prefix = test.prefix.clone();
    let mut log_conn = conn.clone();
    eventually(
        "the doomed worker runs a command",
        Duration::from_secs(30),
        || {
            let (mut c, p) = (log_conn.clone(), prefix.clone());
            async move { is_running(&read_log(&mut c, &p).await, "doomed") }
        },
    )
    .await;
    doomed.signal("KILL");
    eventually(
        "the frozen worker runs a command",
        Duration::from_secs(30),
        || {
            let (mut c, p) = (log_conn.clone(), prefix.clone());
            async move { is_running(&read_log(&mut c, &p).await, "frozen") }
        },
    )
    .await;
    frozen.signal("STOP");
    // Past its lease: the steady worker takes its commands (and the doomed one's) over.
    eventually(
        "both silent workers lose their leases",
        Duration::from_secs(30),
        || {
            let queue = queue.clone();
            async move { queue.stats().await.unwrap().counter("workers_lost") >= 2 }
        },
    )
    .await;
    frozen.signal("CONT");

    let mut ran_by = HashMap::new();
    for (handle, id) in handles.into_iter().zip(&ids) {
        let value = tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("every command finishes")
            .expect("every command succeeds");
        ran_by.insert(*id, value);
    }
    // Nothing lost, nothing completed twice.
    assert_eq!(ran_by.len(), 30);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.counter("completed"),
        30,
        "exactly one accepted completion each"
    );
    assert!(
        stats.counter("requeued") >= 2,
        "both silent workers' runs were taken over"
    );
    eventually(
        "the frozen worker's late results are rejected",
        Duration::from_secs(30),
        || {
            let queue = queue.clone();
            async move { queue.stats().await.unwrap().counter("stale") >= 1 }
        },
    )
    .await;
    assert_eq!(queue.stats().await.unwrap().counter("completed"), 30);
    let log = read_log(&mut log_conn, &test.prefix).await;
    for (id, value) in &ran_by {
        assert_ne!(
            value["worker"], "doomed",
            "command {id}: a killed worker reported nothing"
        );
        let record = queue.command(*id).await.unwrap().unwrap();
        assert_eq!(
            record.result,
            Some(Ok(value.clone())),
            "the stored result is the accepted one"
        );
    }
    let twice: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| {
            log.iter()
                .filter(|(e, i, _, _)| e == "start" && i == id)
                .count()
                > 1
        })
        .collect();
    assert!(
        !twice.is_empty(),
        "some commands ran again after a takeover: {log:?}"
    );

    // Strict priority: first runs were claimed p0 before p1 before p2 (fencing tokens
    // order claims over all workers; runs taken over are claimed again later).
    let mut first_claims = Vec::new();
    for id in &ids {
        let record = queue.command(*id).await.unwrap().unwrap();
        if record.attempts == 1 {
            first_claims.push((record.fencing_token.unwrap(), record.lane_id));
        }
    }
    first_claims.sort();
    let lanes: Vec<&str> = first_claims.iter().map(|(_, lane)| lane.as_str()).collect();
    let mut sorted = lanes.clone();
    sorted.sort_unstable();
    assert_eq!(lanes, sorted, "claims in priority order: {first_claims:?}");

    // Phase 2: caps over the two live workers (4 slots): c0 holds at most 2, c1 at most 1.
    let mut capped = Vec::new();
    for i in 0..24 {
        let lane = if i % 2 == 0 { "c0" } else { "c1" };
        capped.push(
            queue
                .submit(lane, "capped", json!({"ms": 40}))
                .await
                .unwrap(),
        );
    }
    for handle in capped {
        tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .unwrap()
            .unwrap();
    }
    let peak_c0: Option<u64> = conn.get(peak_key(&test.prefix, "c0")).await.unwrap();
    let peak_c1: Option<u64> = conn.get(peak_key(&test.prefix, "c1")).await.unwrap();
    assert_eq!(
        (peak_c0, peak_c1),
        (Some(2), Some(1)),
        "caps reached, never exceeded"
    );

    frozen.stop();
    steady.stop();
    drop(doomed);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.workers, 0,
        "the surviving workers left; the dead one was removed"
    );
    assert_eq!(stats.queue.total_active, 0);
}
