//! Delays, start-by deadlines and a bounded lane, in process (the same calls work on a
//! `RedisQueue`, since both are a `QueueClient`).
//!
//! Run: `cargo run --example delays_and_deadlines`

use std::time::{Duration, Instant};

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, QueueClient, QueueManagerBuilder, SubmitOptions,
    WhenFull, handler_fn,
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        // One report at a time; at most two waiting; a third submit waits up to 1 s for room.
        .with_lane(
            "reports",
            LaneConfig::new(1, 1)
                .with_max_waiting(2)
                .with_when_full(WhenFull::Wait {
                    timeout: Some(Duration::from_secs(1)),
                }),
            0,
        )
        .with_handler(
            "report",
            handler_fn(|payload: Value, _ctx: CommandContext| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(json!({ "done": payload }))
            }),
        )
        .build()
        .await?;
    manager.start().await?;
    let origin = Instant::now();

    // Runs at once and keeps the lane's one slot for 300 ms.
    // (`QueueClient::submit`: the manager's own `submit` is the 0.3 API's, for a `Box<dyn Command>`.)
    let first = QueueClient::submit(&manager, "reports", "report", json!("first")).await?;
    // Starts no earlier than 200 ms from now (then after `first`, which holds the slot).
    let later = manager
        .submit_with(
            "reports",
            "report",
            json!("later"),
            SubmitOptions::new().with_delay(Duration::from_millis(200)),
        )
        .await?;
    // Must start within 100 ms, but waits behind `first`: it expires, never runs.
    let impatient = manager
        .submit_with(
            "reports",
            "report",
            json!("impatient"),
            SubmitOptions::new().with_start_within(Duration::from_millis(100)),
        )
        .await?;

    println!("{} after {:?}", first.await?, origin.elapsed());
    println!("{} after {:?}", later.await?, origin.elapsed());
    match impatient.await {
        Err(error) if error.is_expired() => println!("impatient expired: {error}"),
        other => println!("impatient: {other:?}"),
    }

    let stats = manager.stats().await;
    let lane = &stats.lanes["reports"];
    println!(
        "reports: expired {}, delayed now {}",
        lane.expired, lane.delayed
    );
    manager.shutdown().await;
    Ok(())
}
