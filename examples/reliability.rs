//! Reliability features: command timeouts, retry policies, dead letters (with re-drive)
//! and a graceful shutdown with drain.
//!
//! ```sh
//! cargo run --example reliability
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LaneError, QueueManagerBuilder, RetryJitter,
    RetryPolicy, event_keys, handler_fn,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An upstream API that fails its first two calls, then recovers.
    let calls = Arc::new(AtomicU32::new(0));
    let flaky_api = {
        let calls = calls.clone();
        handler_fn(move |payload: Value, ctx: CommandContext| {
            let calls = calls.clone();
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                println!("  fetch {} (attempt {})", payload["url"], ctx.attempt());
                if call <= 2 {
                    Err(LaneError::CommandError("503 from upstream".into()))
                } else {
                    Ok(json!({ "status": 200 }))
                }
            }
        })
    };
    // Bad input is never worth retrying: say so with a non-retryable error.
    let validate = handler_fn(|payload: Value, _ctx: CommandContext| async move {
        match payload["email"].as_str() {
            Some(email) if email.contains('@') => Ok(json!({ "valid": email })),
            _ => Err(LaneError::non_retryable(format!(
                "not an email address: {}",
                payload["email"]
            ))),
        }
    });
    let slow_report = handler_fn(|_payload: Value, _ctx: CommandContext| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(json!("report"))
    });

    let retry = RetryPolicy::builder()
        .max_retries(3)
        .initial_delay(Duration::from_millis(50))
        .multiplier(2.0)
        .max_delay(Duration::from_secs(1))
        .jitter(RetryJitter::Equal)
        .build()?;
    let manager = QueueManagerBuilder::new(EventEmitter::new(256))
        .with_lane("api", LaneConfig::new(1, 4).with_retry_policy(retry), 0)
        .with_lane(
            "reports",
            LaneConfig::new(1, 2)
                .with_timeout(Duration::from_millis(200))
                .with_retry_policy(RetryPolicy::fixed(1, Duration::from_millis(100))),
            1,
        )
        .with_dlq(100)
        .with_handler("fetch", flaky_api)
        .with_handler("validate", validate)
        .with_handler("report", slow_report)
        .build()
        .await?;
    let mut retries = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_RETRY);
    tokio::spawn(async move {
        while let Some(event) = retries.next().await {
            println!(
                "  [retry] command {} attempt {} in {} ms: {}",
                event.payload["command_id"],
                event.payload["attempt"],
                event.payload["delay_ms"],
                event.payload["error"]
            );
        }
    });
    manager.start().await?;

    println!("1. Retries with exponential backoff and jitter:");
    let result = manager
        .submit_replayable("api", "fetch", json!({ "url": "https://example.com/a" }))
        .await?
        .await?;
    println!("  -> {result}");

    println!("2. A non-retryable error goes straight to the dead letters:");
    let bad = manager
        .submit_replayable("api", "validate", json!({ "email": "nobody" }))
        .await?;
    let bad_id = bad.id();
    println!("  -> {}", bad.await.unwrap_err());

    println!("3. A timeout, retried once, then dead-lettered:");
    let report = manager
        .submit_replayable("reports", "report", json!({ "month": "2025-01" }))
        .await?;
    println!("  -> {}", report.await.unwrap_err());

    println!("4. The dead letters:");
    let dlq = manager.dead_letters().expect("built with_dlq");
    for letter in dlq.list().await {
        println!(
            "  #{} {} in '{}' after {} attempt(s): {} (payload {})",
            letter.command_id,
            letter.command_type,
            letter.lane_id,
            letter.attempts,
            letter.error,
            letter.payload.clone().unwrap_or_default()
        );
    }

    println!("5. Fix the input, re-drive the dead letter:");
    manager.register_handler(
        "validate",
        handler_fn(|_payload: Value, _ctx: CommandContext| async move {
            Ok(json!({ "valid": "fixed by a new handler version" }))
        }),
    );
    let redriven = manager.redrive(bad_id).await?;
    println!("  -> {}", redriven.await?);
    println!("  dead letters left: {}", dlq.len().await);

    println!("6. Graceful shutdown: stop accepting, drain what is queued:");
    for n in 0..3 {
        // Detached: drain() waits for it.
        drop(
            manager
                .submit_replayable(
                    "api",
                    "validate",
                    json!({ "email": format!("user{n}@example.com") }),
                )
                .await?,
        );
    }
    manager.shutdown().await;
    match manager.submit_replayable("api", "fetch", json!({})).await {
        Err(e) => println!("  new submit refused: {e}"),
        Ok(_) => unreachable!("the queue is shutting down"),
    }
    manager.drain(Duration::from_secs(10)).await?;
    println!("  drained; safe to exit");
    Ok(())
}
