//! A recurring schedule every 100 ms on one queue with three worker processes and two
//! producer processes (which put the schedule, put it again now and then, and submit
//! other work meanwhile). One worker is killed with SIGKILL midway. Over the whole
//! window every instant fires exactly once — no duplicate, no gap while workers live —
//! as the event stream and the schedule's commands show, and every instant's command
//! runs.
//!
//! The child processes are this test binary itself, running this same test with
//! `A3S_LANE_TEST_SCHEDULE_ROLE` set (`worker:<name>` or `producer:<name>`).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use a3s_lane::{
    CommandState, HandlerRegistry, LaneConfig, QueueClient, RedisQueue, RedisQueueConfig,
    RedisWorker, RedisWorkerConfig, Schedule, event_keys, handler_fn,
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{TestQueue, eventually, redis_url};

const INTERVAL: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_secs(1);
/// How long the schedule runs before and after the kill.
const BEFORE_KILL: Duration = Duration::from_secs(6);
const AFTER_KILL: Duration = Duration::from_secs(8);

fn tick() -> Schedule {
    Schedule::every("tick", "ticks", "tick", json!({"tick": true}), INTERVAL)
}

/// The handlers' log of runs: `<command id> <worker>`, under the queue's hash tag so
/// `clear()` removes it.
fn ran_key(prefix: &str) -> String {
    format!("{{{prefix}}}:test:ran")
}

/// Waits until the test closes this process's stdin.
async fn stdin_closed() {
    let (eof_tx, eof_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = eof_tx.send(());
    });
    let _ = eof_rx.await;
}

/// A child process's part: a worker, or a producer.
fn run_child(role: &str) {
    let (Ok(url), Ok(prefix)) = (
        std::env::var("A3S_LANE_TEST_URL"),
        std::env::var("A3S_LANE_TEST_PREFIX"),
    ) else {
        panic!(
            "a child process is started by the test itself, which sets A3S_LANE_TEST_URL and \
             A3S_LANE_TEST_PREFIX along with A3S_LANE_TEST_SCHEDULE_ROLE"
        );
    };
    let (kind, name) = role.split_once(':').expect("role is kind:name");
    let (kind, name) = (kind.to_owned(), name.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let queue = RedisQueue::connect(RedisQueueConfig::new(&url).with_key_prefix(&prefix))
            .await
            .unwrap();
        match kind.as_str() {
            "worker" => run_worker(queue, &url, &prefix, &name).await,
            _ => run_producer(queue).await,
        }
    });
}

async fn run_worker(queue: RedisQueue, url: &str, prefix: &str, name: &str) {
    let log = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    let handlers = HandlerRegistry::default();
    let (key, worker) = (ran_key(prefix), name.to_owned());
    handlers.register(
        "tick",
        handler_fn(move |payload: Value, ctx| {
            let (mut log, key, worker) = (log.clone(), key.clone(), worker.clone());
            async move {
                let _: () = log
                    .rpush(&key, format!("{} {worker}", ctx.id()))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(payload)
            }
        }),
    );
    handlers.register(
        "work",
        handler_fn(|_payload: Value, _ctx| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(Value::Null)
        }),
    );
    let config = RedisWorkerConfig::new(4)
        .with_worker_id(name)
        .with_lease_ttl(LEASE)
        .with_heartbeat_interval(Duration::from_millis(300))
        .with_block_timeout(Duration::from_secs(2));
    let worker = RedisWorker::start(&queue, handlers, config).await.unwrap();
    stdin_closed().await;
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// Puts the schedule (both producers do: the second put replaces the first, keeping its
/// counts), submits other work, and puts the schedule again now and then.
async fn run_producer(queue: RedisQueue) {
    queue.put_schedule(tick()).await.unwrap();
    let stop = stdin_closed();
    tokio::pin!(stop);
    let mut round = 0_u64;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        round += 1;
        // Nobody awaits these results; the handles may go.
        drop(queue.submit("work", "work", json!(round)).await.unwrap());
        if round.is_multiple_of(40) {
            queue.put_schedule(tick()).await.unwrap();
        }
    }
}

/// A child process that is killed if the test ends without stopping it.
struct ChildProcess {
    name: String,
    child: Child,
}

impl ChildProcess {
    fn start(prefix: &str, role: &str) -> Self {
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
            .env("A3S_LANE_TEST_SCHEDULE_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting a child process");
        Self {
            name: role.to_owned(),
            child,
        }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Closes its stdin (it stops gracefully) and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn this_test() -> String {
    const TEST: &str = "a_schedule_fires_each_instant_once_across_processes_and_a_killed_worker";
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{TEST}"),
        None => TEST.to_owned(),
    }
}

#[test]
fn a_schedule_fires_each_instant_once_across_processes_and_a_killed_worker() {
    if let Ok(role) = std::env::var("A3S_LANE_TEST_SCHEDULE_ROLE") {
        return run_child(&role);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(fires_each_instant_once());
}

/// What the event stream said about the schedule.
#[derive(Debug, Default)]
struct Seen {
    /// instant → (command id, lateness in ms: stream entry time minus the instant), for
    /// every fired event (a duplicate instant is kept in `duplicates`).
    fired: BTreeMap<u64, (u64, i64)>,
    duplicates: Vec<(u64, u64)>,
    skipped: Vec<Value>,
    lagged: bool,
}

async fn fires_each_instant_once() {
    let test = TestQueue::connect("schedules-processes", |c| {
        c.with_lane("ticks", LaneConfig::new(1, 8), 0)
            .with_lane("work", LaneConfig::new(1, 8), 1)
    })
    .await;
    let queue = test.queue.clone();
    let mut log = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap();

    // Every schedule event from before the first put on.
    let mut events = queue.subscribe();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut seen = Seen::default();
        loop {
            let event = tokio::select! {
                _ = &mut stop_rx => return seen,
                event = events.recv() => event,
            };
            let Ok(event) = event else { return seen };
            match event.key.as_str() {
                event_keys::SCHEDULE_FIRED if event.payload["schedule"] == "tick" => {
                    let instant = event.payload["instant_ms"].as_u64().unwrap();
                    let id = event.payload["command_id"].as_u64().unwrap();
                    let late = event.timestamp as i64 - instant as i64;
                    if seen.fired.insert(instant, (id, late)).is_some() {
                        seen.duplicates.push((instant, id));
                    }
                }
                event_keys::SCHEDULE_SKIPPED => seen.skipped.push(event.payload),
                event_keys::EVENTS_LAGGED => seen.lagged = true,
                _ => {}
            }
        }
    });

    let workers: Vec<ChildProcess> = ["worker:steady-a", "worker:steady-b"]
        .iter()
        .map(|role| ChildProcess::start(&test.prefix, role))
        .collect();
    let mut doomed = ChildProcess::start(&test.prefix, "worker:doomed");
    let producers: Vec<ChildProcess> = ["producer:p1", "producer:p2"]
        .iter()
        .map(|role| ChildProcess::start(&test.prefix, role))
        .collect();

    let key = ran_key(&test.prefix);
    let log_conn = log.clone();
    eventually(
        "the doomed worker runs an instant's command",
        Duration::from_secs(30),
        || {
            let (mut conn, key) = (log_conn.clone(), key.clone());
            async move {
                let ran: Vec<String> = conn.lrange(&key, 0, -1).await.unwrap();
                ran.iter().any(|line| line.ends_with(" doomed"))
            }
        },
    )
    .await;
    tokio::time::sleep(BEFORE_KILL).await;
    doomed.kill();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(AFTER_KILL).await;
    // The producers first: they put the schedule again now and then.
    for producer in producers {
        producer.stop();
    }
    let info = queue.schedules().await.unwrap().remove(0);
    assert!(queue.remove_schedule("tick").await.unwrap());
    // Events of the last instants reach the reader.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(());
    let seen = collector.await.unwrap();

    assert!(!seen.lagged, "the collector kept up with the event stream");
    assert!(
        seen.duplicates.is_empty(),
        "instants fired twice: {:?}",
        seen.duplicates
    );
    // A check that comes more than one interval late (a machine stalled under load)
    // fires the latest instant and reports the ones before it as skipped ("missed"):
    // every instant is fired once or reported, never lost silently, never both.
    let skipped: Vec<(u64, u64)> = seen
        .skipped
        .iter()
        .map(|skip| {
            assert_eq!(skip["reason"], "missed", "{skip}");
            (
                skip["from_ms"].as_u64().unwrap(),
                skip["until_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let instants: Vec<u64> = seen.fired.keys().copied().collect();
    let step = INTERVAL.as_millis() as u64;
    let reported = |from: u64, until: u64| skipped.iter().any(|(a, b)| *a <= from && until <= *b);
    let gaps: Vec<(u64, u64)> = instants
        .windows(2)
        .filter(|w| w[1] - w[0] != step && !reported(w[0] + step, w[1] - 1))
        .map(|w| (w[0], w[1]))
        .collect();
    for instant in &instants {
        assert!(
            !skipped.iter().any(|(a, b)| a <= instant && instant <= b),
            "instant {instant} both fired and reported skipped: {skipped:?}"
        );
    }
    let skipped_instants: u64 = skipped.iter().map(|(a, b)| (b - a) / step + 1).sum();
    assert!(
        skipped_instants * 10 <= instants.len() as u64,
        "{skipped_instants} instants skipped as missed against {} fired: more than a stall",
        instants.len()
    );
    let stats = queue.stats().await.unwrap();
    assert!(
        gaps.is_empty(),
        "instants missing between {gaps:?}, not reported skipped ({skipped:?}); the schedule \
         counted {} fired and {} skipped, Redis {} fired and {} skipped, the stream showed {} \
         fired",
        info.fired,
        info.skipped,
        stats.counter("schedule_fired"),
        stats.counter("schedule_skipped"),
        instants.len()
    );
    assert_eq!(
        (stats.counter("schedule_skipped"), info.skipped),
        (skipped.len() as u64, skipped.len() as u64),
        "Redis and the schedule counted as many skips as the stream showed"
    );
    let (first, last) = (instants[0], instants[instants.len() - 1]);
    assert!(
        first < killed_at && last > killed_at + AFTER_KILL.as_millis() as u64 / 2,
        "instants fired before and after the kill: {first}..{last}, killed at {killed_at}"
    );
    let expected = (BEFORE_KILL + AFTER_KILL).as_millis() as u64 / step;
    assert!(
        instants.len() as u64 + skipped_instants >= expected,
        "{} instants fired and {skipped_instants} skipped in {:?}",
        instants.len(),
        BEFORE_KILL + AFTER_KILL
    );
    let ids: HashSet<u64> = seen.fired.values().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), instants.len(), "one command per instant");
    assert_eq!(
        (stats.counter("schedule_fired"), info.fired),
        (instants.len() as u64, instants.len() as u64),
        "Redis and the schedule counted as many fires as the stream showed"
    );

    // Each instant's command ran (one run by the killed worker is taken over).
    for id in &ids {
        let queue = queue.clone();
        eventually(
            "an instant's command completes",
            Duration::from_secs(30),
            || {
                let queue = queue.clone();
                async move {
                    QueueClient::command(&queue, *id)
                        .await
                        .unwrap()
                        .is_some_and(|status| {
                            status.state == CommandState::Completed
                                && status.result == Some(json!({"tick": true}))
                        })
                }
            },
        )
        .await;
    }
    let ran: Vec<String> = log.lrange(&key, 0, -1).await.unwrap();
    let ran_ids: HashSet<u64> = ran
        .iter()
        .filter_map(|line| line.split(' ').next()?.parse().ok())
        .collect();
    assert!(ids.is_subset(&ran_ids), "every instant's command ran");

    let mut late: Vec<i64> = seen.fired.values().map(|(_, late)| *late).collect();
    late.sort_unstable();
    println!(
        "{} instants fired once each ({first}..{last}); worker killed at {killed_at}; \
         lateness of the fire after its instant: median {} ms, p99 {} ms, max {} ms",
        instants.len(),
        late[late.len() / 2],
        late[late.len() * 99 / 100],
        late[late.len() - 1],
    );
    for worker in workers {
        worker.stop();
    }
    drop(doomed);
}
