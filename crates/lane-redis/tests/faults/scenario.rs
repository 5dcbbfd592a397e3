//! One fault case: the load, the fault, and the counts the table shows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, LaneError, RedisQueue, RedisQueueConfig, RedisWorker,
    RedisWorkerConfig, RemoteState, SubmitOptions, handler_fn,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use crate::proxy::{FaultProxy, Mode};
use crate::server::{ClusterServers, RedisServer, SentinelServer, Stop};

/// Commands are submitted at `RATE` per second; the fault comes after `FAULT_AT`.
const RATE: u64 = 400;
const FAULT_AT: Duration = Duration::from_secs(1);
/// A handle not answered this long after the fault ended counts as hung.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// What goes wrong, a third of the way into the load.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// The server goes down this way, stays down this long, and starts again.
    Restart(Stop, Duration),
    /// The server process is stopped (SIGSTOP) this long.
    Freeze(Duration),
    /// Every connection is cut, this many times 300 ms apart.
    Cut { times: u32 },
    /// Replies are thrown away this long (Redis acts, nobody hears), then every
    /// connection is cut.
    DropReplies(Duration),
    /// Every chunk is delayed this long, for the rest of the run.
    Latency(Duration),
    /// The queue is reached through Redis Sentinel; its master is killed and the
    /// sentinel promotes the replica.
    Failover,
    /// The queue is on a Redis Cluster with replicas; the master holding its slot is
    /// killed and its replica takes over.
    ClusterFailover,
}

/// What a case measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    name: String,
    submitted: u64,
    accepted: u64,
    refused: u64,
    /// Refused submits Redis may have received: withdrawn once it answers, and the error
    /// says a run may have started before that (such runs are not ghosts).
    in_doubt: u64,
    /// In-doubt submits whose command ran to the end before the withdrawal reached Redis.
    in_doubt_ran: u64,
    lost: Vec<u64>,
    hung: Vec<u64>,
    /// Commands Redis shows running once every handle answered and the workers are idle:
    /// claimed for a worker that never learned it had them.
    orphaned: usize,
    duplicated: Vec<u64>,
    ran_twice: Vec<u64>,
    ghosts: Vec<u64>,
    /// From the end of the fault to the first submit accepted after it.
    recovery: Option<Duration>,
}

impl Outcome {
    /// Submits that failed (Redis away longer than the reconnect wait).
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    pub(crate) fn assert_clean(self) {
        println!(
            "| {:<13} | {:>5} | {:>8} | {:>7} | {:>8} | {:>5} | {:>4} | {:>4} | {:>8} | {:>10} | {:>9} | {:>6} | {:>12} |",
            self.name,
            self.submitted,
            self.accepted,
            self.refused,
            self.in_doubt,
            self.in_doubt_ran,
            self.lost.len(),
            self.hung.len(),
            self.orphaned,
            self.duplicated.len(),
            self.ran_twice.len(),
            self.ghosts.len(),
            self.recovery
                .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
        );
        assert!(
            self.lost.is_empty()
                && self.hung.is_empty()
                && self.orphaned == 0
                && self.duplicated.is_empty()
                && self.ran_twice.is_empty()
                && self.ghosts.is_empty(),
            "{self:#?}"
        );
        assert!(self.accepted > 0, "nothing was accepted: {self:#?}");
    }
}

/// Runs of each command's handler that went to the end: payload sequence number ->
/// command ids, one per finished run.
type Runs = Arc<Mutex<HashMap<u64, Vec<u64>>>>;

fn config(base: &RedisQueueConfig, prefix: &str) -> RedisQueueConfig {
    base.clone()
        .with_key_prefix(prefix)
        .with_response_timeout(Duration::from_secs(1))
        .with_connect_timeout(Duration::from_secs(1))
        .with_reconnect_wait(Duration::from_secs(4))
        .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(250))
}

async fn start_worker(
    base: &RedisQueueConfig,
    prefix: &str,
    runs: Runs,
    name: &str,
) -> RedisWorker {
    let queue = RedisQueue::connect(config(base, prefix)).await.unwrap();
    let handlers = HandlerRegistry::default();
    handlers.register(
        "work",
        handler_fn(move |payload, ctx| {
            let runs = runs.clone();
            async move {
                // Cooperative: a withdrawn (or cancelled) command stops.
                let work = Duration::from_millis(1 + fastrand::u64(..4));
                tokio::select! {
                    () = tokio::time::sleep(work) => {}
                    () = ctx.cancelled() => {
                        return Err(LaneError::Cancelled("stopped by its cancel".into()));
                    }
                }
                let seq = payload.as_u64().unwrap();
                runs.lock().entry(seq).or_default().push(ctx.id());
                Ok(payload)
            }
        }),
    );
    // The lease outlasts every fault: a command runs twice only if its run was cut.
    let config = RedisWorkerConfig::new(8)
        .with_worker_id(name)
        .with_lease_ttl(Duration::from_secs(30));
    RedisWorker::start(&queue, handlers, config).await.unwrap()
}

/// Runs one case, `commands` submitted at `RATE`, and measures it.
pub(crate) async fn run(name: &str, fault: Fault, commands: u64) -> Outcome {
    let server = Arc::new(Mutex::new(RedisServer::start(name)));
    let addr = server.lock().addr;
    let proxy = Arc::new(FaultProxy::start(addr).await);
    let prefix = format!("faults-{name}");
    // A failover needs a replica and a sentinel; the clients then find the master
    // through the sentinel instead of the proxy.
    let mut standby = None;
    let mut cluster = None;
    let base = if matches!(fault, Fault::ClusterFailover) {
        let servers = tokio::task::block_in_place(|| ClusterServers::start(name));
        let base = RedisQueueConfig::cluster(servers.urls());
        cluster = Some(Arc::new(Mutex::new(servers)));
        base
    } else if matches!(fault, Fault::Failover) {
        let replica = RedisServer::replica_of(name, addr);
        wait_for_sync(replica.addr).await;
        let sentinel = SentinelServer::start(name, addr);
        let base =
            RedisQueueConfig::sentinel("redis://mymaster", [format!("redis://{}", sentinel.addr)]);
        standby = Some((replica, sentinel));
        base
    } else {
        RedisQueueConfig::new(proxy.url())
    };
    let queue =
        RedisQueue::connect(config(&base, &prefix).with_lane("jobs", LaneConfig::new(1, 16), 0))
            .await
            .unwrap();
    let runs: Runs = Arc::default();
    let workers = vec![
        start_worker(&base, &prefix, runs.clone(), "w1").await,
        start_worker(&base, &prefix, runs.clone(), "w2").await,
    ];

    let fault_end: Arc<Mutex<Option<Instant>>> = Arc::default();
    let accepted_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let sentinel_addr = standby.as_ref().map(|(_, sentinel)| sentinel.addr);
    // The fault runs beside the load: submits go on while Redis is away.
    let injector = tokio::spawn({
        let (server, proxy, fault_end) = (server.clone(), proxy.clone(), fault_end.clone());
        let (cluster, prefix) = (cluster.clone(), prefix.clone());
        async move {
            tokio::time::sleep(FAULT_AT).await;
            if let Some(cluster) = cluster {
                fail_over_cluster(&cluster, &format!("{{{prefix}}}")).await;
            } else {
                inject(fault, &server, &proxy, sentinel_addr).await;
            }
            *fault_end.lock() = Some(Instant::now());
        }
    });
    for seq in 0..commands {
        ticker.tick().await;
        let queue = queue.clone();
        let accepted_at = accepted_at.clone();
        tasks.push(tokio::spawn(async move {
            // Every third submit carries a delay and a start-by deadline (far off): sent
            // again after a lost reply, it too must be accepted once.
            let options = if seq % 3 == 0 {
                SubmitOptions::new()
                    .with_delay(Duration::from_millis(20))
                    .with_start_within(Duration::from_secs(3600))
            } else {
                SubmitOptions::new()
            };
            let mut handle = match queue.submit_with("jobs", "work", json!(seq), options).await {
                Ok(handle) => handle,
                Err(error) => return (seq, None, Err(error)),
            };
            accepted_at.lock().push(Instant::now());
            let id = handle.id();
            let result = handle.result_within(HANG_LIMIT).await;
            (seq, Some(id), result)
        }));
    }
    injector.await.unwrap();
    proxy.set_mode(Mode::Pass);

    let mut outcome = Outcome {
        name: name.to_owned(),
        submitted: commands,
        ..Outcome::default()
    };
    let mut accepted_ids: HashMap<u64, u64> = HashMap::new();
    let mut refused = HashSet::new();
    let mut in_doubt = HashSet::new();
    for task in tasks {
        let (seq, id, result) = task.await.unwrap();
        match (id, result) {
            (None, Err(error)) => {
                outcome.refused += 1;
                if std::env::var("FAULTS_DEBUG").is_ok() {
                    eprintln!("{name}: seq {seq} refused: {error}");
                }
                if error.to_string().contains("may have received it") {
                    outcome.in_doubt += 1;
                    in_doubt.insert(seq);
                } else {
                    refused.insert(seq);
                }
            }
            (None, Ok(_)) => unreachable!("a refused submit has an error"),
            (Some(id), result) => {
                outcome.accepted += 1;
                accepted_ids.insert(seq, id);
                match result {
                    Ok(value) => assert_eq!(value, json!(seq)),
                    Err(error) if error.is_timeout() => outcome.hung.push(seq),
                    Err(error) => {
                        // Any other error is a loss unless Redis shows it done.
                        let record = queue.command(id).await.unwrap();
                        if record.is_none_or(|record| record.state != RemoteState::Done) {
                            eprintln!("{name}: command {id} (seq {seq}) ended with {error}");
                            outcome.lost.push(seq);
                        }
                    }
                }
            }
        }
    }
    // Every handle answered: nothing may still be running once the workers are idle and
    // reported their last runs.
    let settled = Instant::now() + Duration::from_secs(5);
    loop {
        let active = queue.stats().await.unwrap().queue.total_active;
        let idle = workers.iter().all(|worker| worker.running() == 0);
        if (active == 0 && idle) || Instant::now() >= settled {
            outcome.orphaned = active;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for worker in workers {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
    let runs = runs.lock();
    for (seq, ids) in runs.iter() {
        let distinct: HashSet<_> = ids.iter().collect();
        if distinct.len() > 1 {
            outcome.duplicated.push(*seq);
        }
        if ids.len() > distinct.len() {
            outcome.ran_twice.push(*seq);
        }
        if refused.contains(seq) {
            outcome.ghosts.push(*seq);
        }
        if in_doubt.contains(seq) {
            outcome.in_doubt_ran += 1;
        }
    }
    for (seq, id) in &accepted_ids {
        if !runs.get(seq).is_some_and(|ids| ids.contains(id)) && !outcome.hung.contains(seq) {
            outcome.lost.push(*seq);
        }
    }
    let end = fault_end.lock().expect("the fault ran");
    outcome.recovery = accepted_at
        .lock()
        .iter()
        .filter(|at| **at >= end)
        .min()
        .map(|at| at.duration_since(end));
    outcome
}

/// Injects the fault and returns once it is over (Redis reachable again).
async fn inject(
    fault: Fault,
    server: &Mutex<RedisServer>,
    proxy: &FaultProxy,
    sentinel: Option<std::net::SocketAddr>,
) {
    match fault {
        Fault::Failover => {
            let old = server.lock().addr;
            tokio::task::block_in_place(|| server.lock().stop(Stop::Kill));
            // Over once the sentinel names another master.
            let sentinel = sentinel.expect("a failover case has a sentinel");
            let client = redis::Client::open(format!("redis://{sentinel}")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (_host, port): (String, u16) = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg("mymaster")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if port != old.port() {
                    break;
                }
                assert!(Instant::now() < deadline, "no failover within 20 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Fault::Restart(how, down) => {
            tokio::task::block_in_place(|| server.lock().stop(how));
            proxy.cut();
            tokio::time::sleep(down).await;
            tokio::task::block_in_place(|| server.lock().restart());
        }
        Fault::Freeze(duration) => {
            server.lock().freeze();
            tokio::time::sleep(duration).await;
            server.lock().thaw();
        }
        Fault::Cut { times } => {
            for _ in 0..times {
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        Fault::DropReplies(duration) => {
            proxy.set_mode(Mode::DropReplies);
            tokio::time::sleep(duration).await;
            proxy.cut();
            proxy.set_mode(Mode::Pass);
        }
        Fault::Latency(delay) => proxy.set_mode(Mode::Latency(delay)),
        Fault::ClusterFailover => unreachable!("handled by fail_over_cluster"),
    }
}

/// Waits until a replica finished its first sync with its master.
async fn wait_for_sync(replica: std::net::SocketAddr) {
    let client = redis::Client::open(format!("redis://{replica}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the master serving `key` and waits until another node serves its slot.
async fn fail_over_cluster(cluster: &Mutex<ClusterServers>, key: &str) {
    let victim = tokio::task::block_in_place(|| cluster.lock().master_of(key))
        .expect("a master serves the queue's slot");
    tokio::task::block_in_place(|| cluster.lock().nodes[victim].stop(Stop::Kill));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let taken_over = tokio::task::block_in_place(|| cluster.lock().master_of(key));
        if taken_over.is_some_and(|index| index != victim) {
            return;
        }
        if Instant::now() >= deadline {
            let view = tokio::task::block_in_place(|| cluster.lock().describe());
            panic!("no replica took over within 30 s:\n{view}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
