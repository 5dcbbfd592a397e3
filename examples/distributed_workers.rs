//! One producer, several worker processes, one Redis queue.
//!
//! The producer starts three worker processes (this same program, in `worker` mode),
//! submits commands to prioritised lanes, cancels a long generation while a worker runs
//! it, and prints which worker ran what. The lanes' caps and rate limits hold over all
//! workers together.
//!
//! ```bash
//! # needs a Redis server; defaults to redis://127.0.0.1:6379
//! A3S_LANE_REDIS_URL=redis://127.0.0.1:6379 cargo run --example distributed_workers
//! ```

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, LaneError, RateLimitConfig, RedisQueue, RedisQueueConfig,
    RedisWorker, RedisWorkerConfig, handler_fn,
};
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("A3S_LANE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(&args[2], &args[3]).await,
        _ => producer().await,
    }
}

/// The lanes, declared by the producer: default lanes plus a rate-limited API lane.
fn queue_config(prefix: &str) -> RedisQueueConfig {
    RedisQueueConfig::new(redis_url())
        .with_key_prefix(prefix)
        .with_default_lanes()
        .with_lane(
            "external-api",
            LaneConfig::new(1, 4).with_rate_limit(RateLimitConfig::per_second(10)),
            3,
        )
}

async fn producer() -> Result<(), Box<dyn std::error::Error>> {
    // A prefix of our own: several runs (or tenants) on one server never mix.
    let prefix = format!("a3s-lane-example-{}", std::process::id());
    let queue = RedisQueue::connect(queue_config(&prefix)).await?;
    println!("queue {} on {}", queue.key_prefix(), redis_url());

    let mut workers: Vec<Child> = (1..=3)
        .map(|n| {
            Command::new(std::env::current_exe().expect("own path"))
                .args(["worker", &format!("worker-{n}"), &prefix])
                .stdin(Stdio::piped())
                .spawn()
                .expect("starting a worker process")
        })
        .collect();

    // A long generation that we will cancel while it runs.
    let generation = queue
        .submit("prompt", "generate", json!({"tokens": 10_000}))
        .await?;

    let mut handles = Vec::new();
    for i in 0..12 {
        handles.push((
            "query",
            queue
                .submit(
                    "query",
                    "fetch_data",
                    json!({"url": format!("https://example.com/{i}")}),
                )
                .await?,
        ));
    }
    for i in 0..10 {
        handles.push((
            "external-api",
            queue
                .submit(
                    "external-api",
                    "fetch_data",
                    json!({"url": format!("https://api.example.com/{i}")}),
                )
                .await?,
        ));
    }
    handles.push((
        "control",
        queue
            .submit("control", "pause_agent", json!({"session": 7}))
            .await?,
    ));

    for (lane, handle) in handles {
        let id = handle.id();
        let value = handle.await?;
        println!("  {lane:>12} #{id:<3} ran on {}", value["worker"]);
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "cancelling the generation: {:?}",
        generation.cancel().await?
    );
    match generation.await {
        Err(LaneError::Cancelled(reason)) => println!("  generation cancelled: {reason}"),
        other => println!("  generation ended with {other:?}"),
    }

    let stats = queue.stats().await?;
    println!(
        "workers: {}, completed: {}, cancelled: {}",
        stats.workers,
        stats.counter("completed"),
        stats.counter("cancelled")
    );

    // Closing a worker's stdin asks it to finish what it runs and leave.
    for worker in &mut workers {
        drop(worker.stdin.take());
    }
    for mut worker in workers {
        worker.wait()?;
    }
    queue.clear().await?;
    Ok(())
}

async fn worker(name: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let queue =
        RedisQueue::connect(RedisQueueConfig::new(redis_url()).with_key_prefix(prefix)).await?;
    let handlers = HandlerRegistry::default();
    let me = name.to_owned();
    handlers.register(
        "fetch_data",
        handler_fn(move |payload: Value, _ctx| {
            let me = me.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(json!({ "url": payload["url"], "worker": me }))
            }
        }),
    );
    let me = name.to_owned();
    handlers.register(
        "pause_agent",
        handler_fn(move |payload: Value, _ctx| {
            let me = me.clone();
            async move { Ok(json!({ "paused": payload["session"], "worker": me })) }
        }),
    );
    let me = name.to_owned();
    handlers.register(
        "generate",
        handler_fn(move |_payload: Value, ctx| {
            let me = me.clone();
            async move {
                println!("  [{me}] generating (command {})", ctx.id());
                // A cooperative long task: it stops when cancelled.
                ctx.cancelled().await;
                println!("  [{me}] generation noticed the cancel and stops");
                Ok(json!({ "worker": me }))
            }
        }),
    );
    let worker = RedisWorker::start(
        &queue,
        handlers,
        RedisWorkerConfig::new(8).with_worker_id(name),
    )
    .await?;
    // Run until the producer closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    worker.shutdown(Duration::from_secs(10)).await?;
    Ok(())
}
