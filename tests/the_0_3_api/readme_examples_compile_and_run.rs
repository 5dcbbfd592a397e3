//! The 0.3 README's Rust code blocks, kept as close to verbatim as a test allows: code
//! written against the 0.3 API must compile against the facade and behave as described.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    Command, CommandQueue, DeadLetterQueue, EventEmitter, LaneConfig, LocalStorage,
    QueueManagerBuilder, Result, RetryPolicy,
};
use async_trait::async_trait;

struct MyCommand {
    data: String,
}

#[async_trait]
impl Command for MyCommand {
    async fn execute(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({"processed": self.data}))
    }

    fn command_type(&self) -> &str {
        "my_command"
    }
}

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn event_subscription() -> TestResult {
    let emitter = EventEmitter::new(100);
    let mut receiver = emitter.subscribe();
    let mut started = emitter.subscribe_filtered(|e| e.key == "queue.command.started");
    let manager = QueueManagerBuilder::new(emitter.clone())
        .with_default_lanes()
        .build()
        .await?;
    manager.start().await?;
    let rx = manager
        .submit("query", Box::new(MyCommand { data: "x".into() }))
        .await?;
    rx.await??;
    let first = receiver.recv().await?;
    assert_eq!(first.key, "queue.command.submitted");
    println!("[{}] {}", first.timestamp, first.key);
    assert_eq!(started.recv().await?.key, "queue.command.started");
    Ok(())
}

#[tokio::test]
async fn command_timeout_and_retry_policies() -> TestResult {
    let emitter = EventEmitter::new(100);
    let config = LaneConfig::new(1, 5).with_timeout(Duration::from_secs(30));
    let _manager = QueueManagerBuilder::new(emitter)
        .with_lane("api", config, 0)
        .build()
        .await?;

    let emitter = EventEmitter::new(100);
    let retry_policy = RetryPolicy::exponential(3);
    let _retry_policy = RetryPolicy::fixed(5, Duration::from_secs(1));
    let config = LaneConfig::new(1, 5).with_retry_policy(retry_policy);
    let _manager = QueueManagerBuilder::new(emitter)
        .with_lane("external-api", config, 0)
        .build()
        .await?;
    Ok(())
}

#[tokio::test]
async fn dead_letter_queue() -> TestResult {
    let emitter = EventEmitter::new(100);
    let dlq = DeadLetterQueue::new(1000);
    let queue = CommandQueue::with_dlq(emitter, dlq.clone());
    let _ = queue;
    let dead_letters = dlq.list().await;
    for letter in dead_letters {
        println!("Failed: {} - {}", letter.command_type, letter.error);
    }
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown() -> TestResult {
    let manager = QueueManagerBuilder::new(EventEmitter::new(100))
        .with_default_lanes()
        .build()
        .await?;
    manager.start().await?;
    manager.shutdown().await;
    manager.drain(Duration::from_secs(30)).await?;
    println!("All commands completed, safe to exit");
    Ok(())
}

#[tokio::test]
async fn persistent_storage() -> TestResult {
    let dir = std::env::temp_dir().join(format!("a3s-lane-0-3-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let emitter = EventEmitter::new(100);
    let storage_dir = PathBuf::from(&dir);
    let storage = Arc::new(LocalStorage::new(storage_dir).await?);
    let manager = QueueManagerBuilder::new(emitter)
        .with_storage(storage.clone())
        .with_lane("api", LaneConfig::new(1, 5), 0)
        .build()
        .await?;
    let stored_commands = storage.load_commands().await?;
    for cmd in stored_commands {
        println!("Pending: {} ({})", cmd.command_type, cmd.id);
    }
    drop(manager);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
