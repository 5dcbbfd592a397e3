//! Delayed commands: 10,000 and then 100,000 commands submitted with delays spread over one
//! second, then promoted and run by the in-process queue (10,000/s leaves the scheduler
//! idle most of the time; 100,000/s keeps it near saturation, so starts queue up). Reports the submit cost per command, the
//! whole run's CPU time per command, and the lateness of each start after its due time
//! (p50, p99, max), next to a baseline measured in the same run: one tokio task per
//! command sleeping until its due time (`tokio::time::sleep_until`), the hand-rolled way.
//! Run: `cargo bench --bench delayed_commands`.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{EventEmitter, LaneConfig, QueueManagerBuilder, SubmitOptions, command_fn};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

const SIZES: [u64; 2] = [10_000, 100_000];
const SPREAD: Duration = Duration::from_secs(1);

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time;

/// The delay of command `i`: spread evenly, in a shuffled order (a multiplicative hash),
/// so the due times do not arrive in submit order.
fn delay_of(i: u64, commands: u64) -> Duration {
    let slot = (i.wrapping_mul(2_654_435_761)) % commands;
    SPREAD * slot as u32 / commands as u32
}

struct Figures {
    submit_per_command: Duration,
    cpu_per_command: Duration,
    lateness: Vec<Duration>,
}

impl Figures {
    /// The figures of a run of `commands` that began when the CPU time was `cpu_before`
    /// and took `submit` to submit them all, now that every one ended.
    fn of(
        commands: u64,
        submit: Duration,
        cpu_before: Duration,
        lateness: &Mutex<Vec<Duration>>,
    ) -> Self {
        Self {
            submit_per_command: submit / commands as u32,
            cpu_per_command: (cpu_time() - cpu_before) / commands as u32,
            lateness: std::mem::take(&mut *lateness.lock()),
        }
    }

    fn print(&mut self, name: &str) {
        self.lateness.sort_unstable();
        let at = |q: f64| self.lateness[((self.lateness.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<34} submit {:>7.0} ns/cmd   cpu {:>7.0} ns/cmd   lateness p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            self.submit_per_command.as_nanos() as f64,
            self.cpu_per_command.as_nanos() as f64,
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
    }
}

async fn lane_queue(commands: u64) -> Figures {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("jobs", LaneConfig::new(1, 64), 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(commands as usize)));
    let cpu = cpu_time();
    let origin = Instant::now();
    let mut handles = Vec::with_capacity(commands as usize);
    for i in 0..commands {
        let delay = delay_of(i, commands);
        let due = origin + delay;
        let lateness = lateness.clone();
        let command = command_fn("job", move |_| {
            let lateness = lateness.clone();
            async move {
                lateness
                    .lock()
                    .push(Instant::now().saturating_duration_since(due));
                Ok(Value::Null)
            }
        });
        let options = SubmitOptions::new().with_delay(delay);
        handles.push(
            manager
                .submit_with_options("jobs", Box::new(command), &options)
                .await
                .unwrap(),
        );
    }
    let submit = origin.elapsed();
    for handle in handles {
        handle.await.unwrap();
    }
    Figures::of(commands, submit, cpu, &lateness)
}

async fn sleeping_tasks(commands: u64) -> Figures {
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(commands as usize)));
    let cpu = cpu_time();
    let origin = Instant::now();
    let mut tasks = Vec::with_capacity(commands as usize);
    for i in 0..commands {
        let due = origin + delay_of(i, commands);
        let lateness = lateness.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            lateness
                .lock()
                .push(Instant::now().saturating_duration_since(due));
        }));
    }
    let submit = origin.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    Figures::of(commands, submit, cpu, &lateness)
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
    for commands in SIZES {
        println!("{commands} commands, delays spread over {SPREAD:?}; 3 rounds, interleaved");
        for round in 1..=3 {
            println!("round {round}");
            rt.block_on(sleeping_tasks(commands))
                .print("baseline: a sleeping task each");
            rt.block_on(lane_queue(commands))
                .print("a3s-lane: submit with a delay");
        }
    }
}
