//! Idempotency keys: the cost of a submit with a key next to a plain submit, measured in
//! the same run, interleaved over 3 rounds. 100,000 replayable commands into one lane
//! that is paused while they are submitted (so the submit path alone is timed), then
//! resumed and drained; a third pattern submits every key twice (each second submit a
//! duplicate that queues nothing).
//! Run: `cargo bench --bench idempotent_submit`.

use std::time::{Duration, Instant};

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, SubmitOptions,
    handler_fn,
};
use serde_json::{Value, json};

const COMMANDS: usize = 100_000;

async fn manager() -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("jobs", LaneConfig::new(1, 64), 0)
        .with_handler(
            "job",
            handler_fn(|_payload: Value, _ctx: CommandContext| async { Ok(Value::Null) }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

#[derive(Clone, Copy)]
enum Pattern {
    Plain,
    UniqueKeys,
    EveryKeyTwice,
}

/// Submits `COMMANDS` commands to a paused lane; returns the submit time per call.
async fn run(pattern: Pattern) -> Duration {
    let manager = manager().await;
    manager.pause_lane("jobs").unwrap();
    let keys: Vec<String> = (0..COMMANDS).map(|i| format!("order-{i}")).collect();
    let mut handles = Vec::with_capacity(COMMANDS);
    let started = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        let options = match pattern {
            Pattern::Plain => SubmitOptions::new(),
            Pattern::UniqueKeys => SubmitOptions::new().with_key(key.as_str()),
            Pattern::EveryKeyTwice => SubmitOptions::new().with_key(keys[i / 2].as_str()),
        };
        handles.push(
            manager
                .submit_replayable_with("jobs", "job", json!(i), &options)
                .await
                .unwrap(),
        );
    }
    let per_call = started.elapsed() / COMMANDS as u32;
    manager.resume_lane("jobs").unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    per_call
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with no
    // such flag, and the whole bench in a debug build would take minutes.
    if !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{COMMANDS} submits to a paused lane, per call; 3 rounds, interleaved");
    for round in 1..=3 {
        let plain = rt.block_on(run(Pattern::Plain));
        let unique = rt.block_on(run(Pattern::UniqueKeys));
        let twice = rt.block_on(run(Pattern::EveryKeyTwice));
        println!(
            "round {round}: plain {:>5} ns   unique keys {:>5} ns ({:.2}x)   every key twice \
             (half duplicates) {:>5} ns ({:.2}x)",
            plain.as_nanos(),
            unique.as_nanos(),
            unique.as_secs_f64() / plain.as_secs_f64(),
            twice.as_nanos(),
            twice.as_secs_f64() / plain.as_secs_f64(),
        );
    }
}
