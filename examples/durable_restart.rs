//! Durable commands survive a restart: run this twice.
//!
//! ```sh
//! cargo run --example durable_restart            # queues 5 jobs, runs 2, stops hard
//! cargo run --example durable_restart            # recovers the other 3 and runs them
//! cargo run --example durable_restart -- reset   # deletes the store
//! ```
//!
//! The store lives in `./target/durable_restart_store` (a directory; `LocalStorage` keeps
//! `lane.db` inside it). A killed process (`kill -9`) recovers the same way: every
//! command whose submit returned is there on the next start; one that was running at
//! the crash runs again (at-least-once delivery).

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LocalStorage, QueueManagerBuilder, handler_fn,
};
use serde_json::{Value, json};

const STORE: &str = "./target/durable_restart_store";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("reset") {
        let _ = std::fs::remove_dir_all(STORE);
        println!("store deleted");
        return Ok(());
    }
    let storage = Arc::new(LocalStorage::new(STORE).await?);
    let recovered = storage.load_commands().await?;
    println!(
        "store {}: {}",
        storage.path().display(),
        if storage.was_created() {
            "created".to_owned()
        } else {
            format!(
                "{} unfinished command(s) from the last run",
                recovered.len()
            )
        }
    );

    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_lane("jobs", LaneConfig::new(1, 1), 0)
        .with_storage(storage.clone())
        .with_dlq(100)
        .with_handler(
            "resize_image",
            handler_fn(|payload: Value, ctx: CommandContext| async move {
                println!(
                    "  resizing {} (command {}, attempt {})",
                    payload["file"],
                    ctx.id(),
                    ctx.attempt()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(json!({ "resized": payload["file"] }))
            }),
        )
        .build()
        .await?;
    manager.start().await?;

    if recovered.is_empty() {
        for n in 1..=5 {
            // Durable (fsynced) before submit_replayable returns.
            let handle = manager
                .submit_replayable(
                    "jobs",
                    "resize_image",
                    json!({ "file": format!("photo{n}.jpg") }),
                )
                .await?;
            drop(handle);
        }
        println!("queued 5 jobs; stopping hard after ~2 of them");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let cancelled = manager.shutdown_now().await;
        manager.drain(Duration::from_secs(5)).await?;
        println!(
            "stopped: {cancelled} command(s) interrupted, {} left in the store; run me again",
            storage.load_commands().await?.len()
        );
    } else {
        manager.shutdown().await;
        manager.drain(Duration::from_secs(30)).await?;
        println!(
            "recovered commands done; {} left in the store",
            storage.load_commands().await?.len()
        );
    }
    Ok(())
}
