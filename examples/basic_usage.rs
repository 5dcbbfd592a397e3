//! The 0.3 README's basic usage: default lanes, a command, its result, stats, shutdown.
//!
//! Run: `cargo run --example basic_usage`

use std::time::Duration;

use a3s_lane::{Command, EventEmitter, QueueManagerBuilder, Result};
use async_trait::async_trait;

struct MyCommand {
    data: String,
}

#[async_trait]
impl Command for MyCommand {
    async fn execute(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "processed": self.data }))
    }

    fn command_type(&self) -> &str {
        "my_command"
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let emitter = EventEmitter::new(100);
    let manager = QueueManagerBuilder::new(emitter)
        .with_default_lanes()
        .build()
        .await?;
    manager.start().await?;

    // The 0.3 API: submit returns a oneshot receiver; `??` unwraps the channel and the result.
    let rx = manager
        .submit(
            "query",
            Box::new(MyCommand {
                data: "hello".to_string(),
            }),
        )
        .await?;
    println!("result: {}", rx.await??);

    // A handle lets you cancel, and awaits to the result.
    let handle = manager
        .submit_with_handle(
            "skill",
            Box::new(MyCommand {
                data: "tool call".into(),
            }),
        )
        .await?;
    println!("command #{} -> {}", handle.id(), handle.await?);

    // Closures work too, and receive the run's context.
    let handle = manager
        .submit_fn("session", "greet", |ctx| async move {
            Ok(serde_json::json!(format!(
                "hello from attempt {} in lane {}",
                ctx.attempt(),
                ctx.lane()
            )))
        })
        .await?;
    println!("closure -> {}", handle.await?);

    // Unknown lanes are rejected with the list of known ones.
    if let Err(error) = manager
        .submit(
            "qeury",
            Box::new(MyCommand {
                data: "typo".into(),
            }),
        )
        .await
    {
        println!("error: {error}");
    }

    let stats = manager.stats().await;
    println!(
        "pending {}, active {}",
        stats.total_pending, stats.total_active
    );

    manager.shutdown().await;
    manager.drain(Duration::from_secs(5)).await?;
    println!("shut down cleanly");
    Ok(())
}
