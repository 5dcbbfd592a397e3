//! Scalability features in one process, no external services:
//! rate limiting, a timed pause after an HTTP 429, priority boosting, and partitioned
//! work spread over every CPU core.
//!
//! ```bash
//! cargo run --example scalability
//! ```

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandEnvelope, EventEmitter, HandlerRegistry, LaneConfig, LocalDistributedQueue,
    PartitionConfig, PartitionWorkers, PriorityBoostConfig, QueueManagerBuilder, RateLimitConfig,
    handler_fn,
};
use serde_json::{Value, json};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rate_limiting().await?;
    priority_boosting().await?;
    partitioning().await?;
    Ok(())
}

/// A lane limited to 5 commands per second: a burst of 5, then one every 200 ms. A 429
/// from the remote API pauses the lane for a while; it resumes by itself.
async fn rate_limiting() -> Result<(), Box<dyn std::error::Error>> {
    println!("== Rate limiting: 5 per second, burst 5");
    let manager = QueueManagerBuilder::new(EventEmitter::new(100))
        .with_lane(
            "external-api",
            LaneConfig::new(1, 10).with_rate_limit(RateLimitConfig::per_second(5)),
            0,
        )
        .build()
        .await?;
    manager.start().await?;
    let origin = Instant::now();
    let mut handles = Vec::new();
    for i in 0..8 {
        handles.push(
            manager
                .submit_fn("external-api", "call", move |_| async move {
                    println!(
                        "  call {i} starts at {:>4} ms",
                        origin.elapsed().as_millis()
                    );
                    Ok(Value::Null)
                })
                .await?,
        );
    }
    for handle in handles {
        handle.await?;
    }

    println!("== The API answered 429 Retry-After: 1s; the lane pauses and resumes by itself");
    manager.pause_lane_for("external-api", Duration::from_secs(1))?;
    let origin = Instant::now();
    let handle = manager
        .submit_fn("external-api", "call", move |_| async move {
            println!(
                "  call after the pause starts at {:>4} ms",
                origin.elapsed().as_millis()
            );
            Ok(Value::Null)
        })
        .await?;
    handle.await?;
    manager.shutdown().await;
    manager.drain(Duration::from_secs(5)).await?;
    Ok(())
}

/// One slot shared by a busy interactive lane (priority 1) and a batch lane (priority
/// 5) whose commands must start within 1 s: the boost lets the batch command overtake.
async fn priority_boosting() -> Result<(), Box<dyn std::error::Error>> {
    println!("== Priority boosting: a batch command with a 1 s deadline behind busy chat");
    let manager = QueueManagerBuilder::new(EventEmitter::new(100))
        .with_lane("chat", LaneConfig::new(0, 1), 1)
        .with_lane(
            "batch",
            LaneConfig::new(0, 1)
                .with_priority_boost(PriorityBoostConfig::standard(Duration::from_secs(1))),
            5,
        )
        .with_max_concurrency(1)
        .build()
        .await?;
    manager.start().await?;
    let origin = Instant::now();
    let mut handles = Vec::new();
    for i in 0..15 {
        handles.push(
            manager
                .submit_fn("chat", "reply", move |_| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    println!(
                        "  chat {i:>2} done at {:>4} ms",
                        origin.elapsed().as_millis()
                    );
                    Ok(Value::Null)
                })
                .await?,
        );
    }
    let queue = manager.queue();
    handles.push(
        manager
            .submit_fn("batch", "report", move |_| async move {
                println!(
                    "  batch report starts at {:>4} ms",
                    origin.elapsed().as_millis()
                );
                Ok(Value::Null)
            })
            .await?,
    );
    for at in [300, 600, 950] {
        tokio::time::sleep_until(origin + Duration::from_millis(at)).await;
        let status = queue.lane_status("batch")?;
        println!(
            "  at {at:>4} ms the batch lane's effective priority is {} (configured {})",
            status.effective_priority, status.priority
        );
    }
    for handle in handles {
        handle.await?;
    }
    Ok(())
}

/// Work spread over one partition per core; the same user always lands on the same
/// partition, so one user's commands run in order.
async fn partitioning() -> Result<(), Box<dyn std::error::Error>> {
    let cores = PartitionConfig::auto().num_partitions;
    println!("== Partitioning: hash by user over {cores} partitions (one per core)");
    let queue = Arc::new(LocalDistributedQueue::new(PartitionConfig::hash(cores))?);
    let handlers = HandlerRegistry::default();
    handlers.register(
        "score",
        handler_fn(|payload, _ctx| async move {
            let n = payload["n"].as_u64().unwrap_or(0);
            Ok(json!({ "user": payload["user"], "score": (1..=n).sum::<u64>() }))
        }),
    );
    let workers = PartitionWorkers::spawn(queue.clone(), handlers);
    let mut results = Vec::new();
    for i in 0..12u64 {
        let user = format!("user-{}", i % 4);
        let partition = a3s_lane::hash_partition(&user, cores);
        let envelope = CommandEnvelope::new("query", "score", json!({ "user": user, "n": i }))
            .with_partition_key(&user);
        results.push((user, partition, queue.submit(envelope).await?));
    }
    for (user, partition, result) in results {
        let result = result.await?;
        println!(
            "  {user} on partition {partition}: {} (worker {})",
            result.result?["score"], result.worker_id
        );
    }
    queue.close();
    workers.join().await;
    Ok(())
}
