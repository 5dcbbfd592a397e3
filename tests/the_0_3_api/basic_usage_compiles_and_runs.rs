//! The 0.3 README's Rust examples, verbatim where they are complete programs.

use a3s_lane::{Command, EventEmitter, LaneConfig, QueueManagerBuilder, Result};
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

#[tokio::test]
async fn basic_usage_returns_the_command_result()
-> std::result::Result<(), Box<dyn std::error::Error>> {
    let emitter = EventEmitter::new(100);
    let manager = QueueManagerBuilder::new(emitter)
        .with_default_lanes()
        .build()
        .await?;
    manager.start().await?;
    let cmd = Box::new(MyCommand {
        data: "hello".to_string(),
    });
    let rx = manager.submit("query", cmd).await?;
    let result = rx.await??;
    assert_eq!(result, serde_json::json!({"processed": "hello"}));
    Ok(())
}

#[tokio::test]
async fn custom_lanes_build() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let emitter = EventEmitter::new(100);
    let manager = QueueManagerBuilder::new(emitter)
        .with_lane("high-priority", LaneConfig::new(1, 4), 0)
        .with_lane("normal", LaneConfig::new(1, 8), 1)
        .with_lane("background", LaneConfig::new(1, 2), 2)
        .build()
        .await?;
    manager.start().await?;
    let rx = manager
        .submit("normal", Box::new(MyCommand { data: "x".into() }))
        .await?;
    assert_eq!(rx.await??, serde_json::json!({"processed": "x"}));
    let err = manager
        .submit("nope", Box::new(MyCommand { data: "x".into() }))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lane 'nope' not found; known lanes: high-priority, normal, background"
    );
    Ok(())
}
