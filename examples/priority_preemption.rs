//! An agent session on a3s-lane: long `prompt` generations saturate their lane, yet
//! `control` commands start at once, and a cancel really stops a running generation.
//!
//! Run: `cargo run --example priority_preemption`

use std::time::{Duration, Instant};

use a3s_lane::{CommandContext, EventEmitter, LaneConfig, QueueManagerBuilder, Result, event_keys};
use serde_json::{Value, json};

/// A stand-in for an LLM generation: streams tokens until done or cancelled.
async fn generate(ctx: CommandContext, tokens: u32) -> Result<Value> {
    for token in 1..=tokens {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => ctx.report_progress(json!({ "tokens": token })),
            () = ctx.cancelled() => return Ok(json!({ "stopped_after_tokens": token - 1 })),
        }
    }
    Ok(json!({ "tokens": tokens }))
}

/// A generation stuck in a call that never looks at the cancellation signal.
async fn stuck_generation() -> Result<Value> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(Value::Null)
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let at = move || format!("{:>5} ms", t0.elapsed().as_millis());

    // The six default lanes; `prompt` gets a 300 ms cancel grace period for the demo.
    let mut builder = QueueManagerBuilder::new(EventEmitter::new(256));
    for (id, priority, max) in a3s_lane::DEFAULT_LANES {
        let mut config = LaneConfig::new(1, max);
        if id == "prompt" {
            config = config.with_cancel_grace(Duration::from_millis(300));
        }
        builder = builder.with_lane(id, config, priority);
    }
    let manager = builder.build().await?;
    manager.start().await?;

    let mut timeline = manager.subscribe_filtered(|e| e.key != event_keys::COMMAND_PROGRESS);
    let printer = tokio::spawn(async move {
        while let Ok(event) = timeline.recv().await {
            let what = event.key.trim_start_matches("queue.");
            let lane = event.lane_id().unwrap_or("-");
            let id = event
                .command_id()
                .map(|id| format!("#{id}"))
                .unwrap_or_default();
            let extra = event
                .payload
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            println!(
                "{:>5} ms  {what:<26} {lane:<8} {id:<4} {extra}",
                t0.elapsed().as_millis()
            );
        }
    });

    println!(
        "{}  agent session: 4 generations queued on `prompt` (max 2 at once)",
        at()
    );
    let stuck = manager
        .submit_fn("prompt", "generate", |_| stuck_generation())
        .await?;
    let mut generations = vec![];
    for _ in 0..3 {
        generations.push(
            manager
                .submit_fn("prompt", "generate", |ctx| generate(ctx, 8))
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(250)).await;

    println!(
        "{}  user presses pause: a `control` command, while `prompt` is full",
        at()
    );
    let submitted = Instant::now();
    let pause = manager
        .submit_fn("control", "pause", move |_| async move {
            Ok(json!({ "waited_us": submitted.elapsed().as_micros() as u64 }))
        })
        .await?;
    let waited = pause.await?["waited_us"].clone();
    println!(
        "{}  pause started {waited} µs after submit, ahead of 2 queued generations",
        at()
    );

    println!(
        "{}  user cancels the generation that streams tokens (it notices the signal)",
        at()
    );
    let cooperative = generations.remove(0);
    cooperative.cancel();
    let outcome = cooperative.await.unwrap_err();
    println!("{}  -> {outcome}", at());

    println!(
        "{}  user cancels the stuck generation (it ignores the signal; dropped after the grace)",
        at()
    );
    stuck.cancel();
    let outcome = stuck.await.unwrap_err();
    println!("{}  -> {outcome}", at());

    for generation in generations {
        let result = generation.await?;
        println!("{}  generation finished: {result}", at());
    }
    manager.shutdown().await;
    manager.drain(Duration::from_secs(5)).await?;
    let stats = manager.stats().await;
    println!(
        "{}  done: {} pending, {} active",
        at(),
        stats.total_pending,
        stats.total_active
    );
    drop(manager);
    let _ = printer.await;
    Ok(())
}
