//! A fleet of agent sessions in one process: 1,000 session queues, each with its own
//! `control` and `prompt` lanes, share one LLM provider that allows 16 generations at
//! once and 15,000 a minute. Every session submits two prompts (a simulated generation
//! of 20–80 ms); while the provider is saturated, every session also sends a control
//! command. The table shows that the provider's budget holds over all sessions, that
//! the waiting sessions are served in turn, and that control commands start within
//! milliseconds, never waiting for the budget they do not use.
//!
//! Run: `cargo run --release --example session_fleet`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, RateLimitConfig,
    SharedBudget, command_fn,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

const SESSIONS: usize = 1_000;
const PROMPTS_PER_SESSION: usize = 2;
const PROVIDER_SLOTS: usize = 16;
const PROVIDER_PER_MINUTE: u32 = 15_000;

#[derive(Default)]
struct Fleet {
    generating: AtomicUsize,
    most_generating: AtomicUsize,
    /// Submit-to-start waits.
    control_waits: Mutex<Vec<Duration>>,
    prompt_waits: Mutex<Vec<Duration>>,
    /// The session of each generation, in start order (to show the turns).
    prompt_sessions: Mutex<Vec<usize>>,
}

async fn session(provider: &Arc<SharedBudget>) -> a3s_lane::Result<QueueManager> {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("control", LaneConfig::new(1, 3), 1)
        .with_lane(
            "prompt",
            LaneConfig::new(1, 2).with_budget(provider.clone()),
            5,
        )
        .build()
        .await?;
    manager.start().await?;
    Ok(manager)
}

fn percentile(waits: &mut [Duration], p: f64) -> Duration {
    waits.sort();
    let index = ((waits.len() as f64 - 1.0) * p).round() as usize;
    waits.get(index).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> a3s_lane::Result<()> {
    let provider = SharedBudget::new("llm-provider", PROVIDER_SLOTS)?
        .with_rate_limit(RateLimitConfig::per_minute(PROVIDER_PER_MINUTE))?
        .shared();
    let fleet = Arc::new(Fleet::default());
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(session(&provider).await?);
    }
    let began = Instant::now();
    let mut prompts = Vec::new();
    for (n, queue) in sessions.iter().enumerate() {
        for p in 0..PROMPTS_PER_SESSION {
            let fleet = fleet.clone();
            let submitted = Instant::now();
            let generation = command_fn("generate", move |_ctx: CommandContext| {
                let fleet = fleet.clone();
                async move {
                    fleet.prompt_waits.lock().push(submitted.elapsed());
                    fleet.prompt_sessions.lock().push(n);
                    let now = fleet.generating.fetch_add(1, Ordering::SeqCst) + 1;
                    fleet.most_generating.fetch_max(now, Ordering::SeqCst);
                    let millis = 20 + ((n * 7 + p * 13) % 4) as u64 * 20;
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    fleet.generating.fetch_sub(1, Ordering::SeqCst);
                    Ok(Value::Null)
                }
            });
            prompts.push(
                queue
                    .submit_with_handle("prompt", Box::new(generation))
                    .await?,
            );
        }
    }
    // The provider is saturated now; every session sends a control command.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let saturated_at = provider.status();
    let mut controls = Vec::with_capacity(SESSIONS);
    for queue in &sessions {
        let fleet = fleet.clone();
        let submitted = Instant::now();
        let stop = command_fn("stop", move |_ctx: CommandContext| {
            let fleet = fleet.clone();
            async move {
                fleet.control_waits.lock().push(submitted.elapsed());
                Ok(Value::Null)
            }
        });
        controls.push(queue.submit_with_handle("control", Box::new(stop)).await?);
    }
    for control in controls {
        control.await?;
    }
    let controls_done = began.elapsed();
    for prompt in prompts {
        prompt.await?;
    }
    let all_done = began.elapsed();

    let mut control_waits = fleet.control_waits.lock().clone();
    let mut prompt_waits = fleet.prompt_waits.lock().clone();
    let order = fleet.prompt_sessions.lock().clone();
    // Turns: how many of the first 1,000 generations went to distinct sessions.
    let mut seen = std::collections::HashSet::new();
    let first_round = order
        .iter()
        .take(SESSIONS)
        .filter(|s| seen.insert(**s))
        .count();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "{SESSIONS} session queues, {PROMPTS_PER_SESSION} prompts each, one provider: {PROVIDER_SLOTS} at once, {PROVIDER_PER_MINUTE}/min"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| generations at once, most (budget {PROVIDER_SLOTS}) | {} |",
        fleet.most_generating.load(Ordering::SeqCst)
    );
    println!(
        "| provider while saturated: in use / lanes waiting | {} / {} |",
        saturated_at.in_use, saturated_at.waiting
    );
    println!(
        "| control commands: submit to start p50 / p99 / max | {} / {} / {} |",
        ms(percentile(&mut control_waits, 0.5)),
        ms(percentile(&mut control_waits, 0.99)),
        ms(percentile(&mut control_waits, 1.0)),
    );
    println!(
        "| all {SESSIONS} control commands done after | {} |",
        ms(controls_done)
    );
    println!(
        "| prompts: submit to start p50 / p99 | {} / {} |",
        ms(percentile(&mut prompt_waits, 0.5)),
        ms(percentile(&mut prompt_waits, 0.99)),
    );
    println!(
        "| distinct sessions among the first {SESSIONS} generations (turns) | {first_round} |"
    );
    println!(
        "| all {} generations done after | {} |",
        SESSIONS * PROMPTS_PER_SESSION,
        ms(all_done)
    );
    let status = provider.status();
    println!(
        "| provider at the end: in use / started | {} / {} |",
        status.in_use, status.started
    );
    assert!(fleet.most_generating.load(Ordering::SeqCst) <= PROVIDER_SLOTS);
    Ok(())
}
