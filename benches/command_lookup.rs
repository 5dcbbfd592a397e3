//! A command's state and result afterwards: the cost of looking a finished command up
//! (`QueueClient::command`) and of listing a page of them (`list_commands`), next to
//! same-run baselines: in process, the lookup of a live (pending) command, the path that
//! existed before retention; on Redis, a `PING` round trip on its own connection. Then
//! what keeping finished commands costs the hot path: 200,000 no-op commands through one
//! lane that keeps the last 1000 of each final state (the default) next to one that
//! keeps nothing. 3 rounds, interleaved.
//!
//! Run: `cargo bench --bench command_lookup` (the Redis rows need
//! `A3S_LANE_REDIS_URL=redis://127.0.0.1:6379`; without it they are left out, saying so).

use std::time::{Duration, Instant};

use a3s_lane::{
    CommandContext, CommandState, EventEmitter, HandlerRegistry, LaneConfig, Page, QueueClient,
    QueueManager, QueueManagerBuilder, RedisQueue, RedisQueueConfig, RedisWorker,
    RedisWorkerConfig, Retention, handler_fn,
};
use serde_json::{Value, json};

/// Finished commands kept and looked up.
const KEPT: usize = 10_000;
/// Commands through the hot path per round.
const HOT: usize = 200_000;

fn registry() -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register("job", handler_fn(echo));
    handlers
}

async fn echo(payload: Value, _ctx: CommandContext) -> a3s_lane::Result<Value> {
    Ok(json!({ "echo": payload }))
}

fn keep_all() -> LaneConfig {
    LaneConfig::new(1, 64).with_retention(Retention::new(KEPT, Duration::from_secs(3600)))
}

async fn manager(config: LaneConfig) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("jobs", config, 0)
        .with_handler("job", handler_fn(echo))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

/// Runs `KEPT` commands to the end on `client`; returns their ids.
async fn finish_many(client: &dyn QueueClient) -> Vec<u64> {
    let mut handles = Vec::with_capacity(KEPT);
    for i in 0..KEPT {
        handles.push(client.submit("jobs", "job", json!(i)).await.unwrap());
    }
    let ids = handles.iter().map(|h| h.id()).collect();
    for handle in handles {
        handle.await.unwrap();
    }
    ids
}

/// Mean time per lookup of `ids` (a scrambled order, so caches do not help).
async fn lookups(client: &dyn QueueClient, ids: &[u64], rounds: usize) -> Duration {
    let started = Instant::now();
    let mut n = 0u32;
    for i in 0..rounds {
        let id = ids[(i * 7919) % ids.len()];
        assert!(client.command(id).await.unwrap().is_some());
        n += 1;
    }
    started.elapsed() / n
}

async fn pages(client: &dyn QueueClient, state: CommandState, rounds: usize) -> Duration {
    let started = Instant::now();
    for i in 0..rounds {
        let page = Page::new((i * 100) % (KEPT - 100), 100);
        assert_eq!(
            client
                .list_commands("jobs", state, page)
                .await
                .unwrap()
                .len(),
            100
        );
    }
    started.elapsed() / rounds as u32
}

async fn in_process_round(round: usize) {
    let manager = manager(keep_all()).await;
    let finished = finish_many(&manager).await;
    // The baseline: live commands, waiting in a paused lane.
    manager.pause_lane("jobs").unwrap();
    let mut pending = Vec::with_capacity(KEPT);
    for i in 0..KEPT {
        pending.push(
            QueueClient::submit(&manager, "jobs", "job", json!(i))
                .await
                .unwrap(),
        );
    }
    let pending_ids: Vec<u64> = pending.iter().map(|h| h.id()).collect();
    let live = lookups(&manager, &pending_ids, 100_000).await;
    let kept = lookups(&manager, &finished, 100_000).await;
    let page = pages(&manager, CommandState::Completed, 2_000).await;
    println!(
        "round {round} in process: lookup of a finished command {:>5} ns ({:.2}x the lookup \
         of a live one, {:>5} ns); a page of 100 finished {:>6} ns",
        kept.as_nanos(),
        kept.as_secs_f64() / live.as_secs_f64(),
        live.as_nanos(),
        page.as_nanos(),
    );
    manager.resume_lane("jobs").unwrap();
    for handle in pending {
        handle.await.unwrap();
    }
}

/// Per-command wall time of `HOT` commands through a lane with `retention`.
async fn hot_path(retention: Retention) -> Duration {
    let manager = manager(LaneConfig::new(1, 64).with_retention(retention)).await;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(1024);
    for i in 0..HOT {
        handles.push(
            QueueClient::submit(&manager, "jobs", "job", json!(i))
                .await
                .unwrap(),
        );
        if handles.len() == 1024 {
            for handle in handles.drain(..) {
                handle.await.unwrap();
            }
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    started.elapsed() / HOT as u32
}

async fn redis_round(url: &str, round: usize) {
    let prefix = format!("bench-lookup-{}-{round}", std::process::id());
    let config = RedisQueueConfig::new(url)
        .with_key_prefix(&prefix)
        .with_lane("jobs", keep_all(), 0);
    let queue = RedisQueue::connect(config).await.unwrap();
    let worker = RedisWorker::start(&queue, registry(), RedisWorkerConfig::new(64))
        .await
        .unwrap();
    let finished = finish_many(&queue).await;
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    for _ in 0..5_000 {
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    }
    let ping = started.elapsed() / 5_000;
    let kept = lookups(&queue, &finished, 5_000).await;
    let page = pages(&queue, CommandState::Completed, 500).await;
    println!(
        "round {round} Redis: lookup of a finished command {:>6} ns ({:.2}x a PING round trip, \
         {:>6} ns); a page of 100 finished {:>7} ns",
        kept.as_nanos(),
        kept.as_secs_f64() / ping.as_secs_f64(),
        ping.as_nanos(),
        page.as_nanos(),
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        keys.sort();
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with no
    // such flag, and the whole bench in a debug build would take minutes.
    if !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{KEPT} finished commands kept; lookups in a scrambled order; 3 rounds");
    let redis_url = std::env::var("A3S_LANE_REDIS_URL").ok();
    if redis_url.is_none() {
        println!(
            "(the Redis rows are left out: set A3S_LANE_REDIS_URL=redis://127.0.0.1:6379, or \
             run `source scripts/redis.sh && ensure_redis` first)"
        );
    }
    for round in 1..=3 {
        rt.block_on(in_process_round(round));
        if let Some(url) = &redis_url {
            rt.block_on(redis_round(url, round));
        }
        let kept = rt.block_on(hot_path(Retention::default()));
        let none = rt.block_on(hot_path(Retention::none()));
        println!(
            "round {round} hot path, {HOT} commands: keeping the last 1000 (the default) {:>5} \
             ns per command ({:.2}x keeping nothing, {:>5} ns)",
            kept.as_nanos(),
            kept.as_secs_f64() / none.as_secs_f64(),
            none.as_nanos(),
        );
    }
}
