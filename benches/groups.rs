//! Groups inside a lane: what turns between many groups cost the dispatch path. A backlog
//! of no-op commands is queued in a paused lane (cap 64), then the lane is resumed and
//! the time until the last one finished is measured, per command:
//! - baseline: the same commands with no group (the lane keeps one FIFO);
//! - all of them in 1 group;
//! - spread over 10,000 groups (every group has work: the ring holds 10,000 groups);
//! - spread over 10,000 groups, each capped at 1 (the ring empties and refills as runs
//!   end).
//!
//! With `A3S_LANE_REDIS_URL`, the same on Redis with one worker (a smaller backlog): 1
//! group next to 1,000 groups, and no group as the baseline. 3 rounds, interleaved.
//!
//! Then shared budgets (`SharedBudget`): 100 queues of one lane each (cap 2) drain
//! 1,000 commands each, with no budget (baseline), under a budget of 200 (never full:
//! the cost of taking and giving back a slot) and under a budget of 16 (full: every
//! slot is handed to the next waiting queue).
//!
//! Run: `cargo bench --bench groups` (Redis rows: `A3S_LANE_REDIS_URL=redis://127.0.0.1:6379
//! cargo bench --bench groups --features redis`).

use std::time::{Duration, Instant};

use a3s_lane::{
    CommandContext, EventEmitter, GroupLimits, LaneConfig, QueueClient, QueueManagerBuilder,
    SharedBudget, SubmitOptions, command_fn,
};
use serde_json::Value;

/// Commands per in-process measurement.
const COMMANDS: usize = 200_000;

#[derive(Debug, Clone, Copy)]
enum Shape {
    NoGroup,
    OneGroup,
    Groups(usize),
    CappedGroups(usize),
}

impl Shape {
    fn name(self) -> String {
        match self {
            Self::NoGroup => "no group (baseline)".into(),
            Self::OneGroup => "1 group".into(),
            Self::Groups(n) => format!("{n} groups"),
            Self::CappedGroups(n) => format!("{n} groups, cap 1 each"),
        }
    }

    fn group_of(self, i: usize) -> Option<String> {
        match self {
            Self::NoGroup => None,
            Self::OneGroup => Some("g".into()),
            Self::Groups(n) | Self::CappedGroups(n) => Some(format!("g{}", i % n)),
        }
    }

    fn lane(self) -> LaneConfig {
        let lane = LaneConfig::new(1, 64);
        match self {
            Self::CappedGroups(_) => {
                lane.with_group_limits(GroupLimits::new().with_max_concurrency(1))
            }
            _ => lane,
        }
    }
}

/// Time per command to drain a backlog of `COMMANDS` in `shape`.
async fn in_process(shape: Shape) -> Duration {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("jobs", shape.lane(), 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager.pause_lane("jobs").unwrap();
    let mut handles = Vec::with_capacity(COMMANDS);
    for i in 0..COMMANDS {
        let command = command_fn("job", |_ctx: CommandContext| async { Ok(Value::Null) });
        let options = match shape.group_of(i) {
            Some(group) => SubmitOptions::new().with_group(group),
            None => SubmitOptions::new(),
        };
        handles.push(
            manager
                .submit_with_options("jobs", Box::new(command), &options)
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    manager.resume_lane("jobs").unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    started.elapsed() / COMMANDS as u32
}

/// Queues and commands per queue of the budget rows.
const QUEUES: usize = 100;
const PER_QUEUE: usize = 1_000;

/// Time per command for `QUEUES` queues to drain `PER_QUEUE` commands each, their lanes
/// drawing from a budget of `slots` (none: no budget).
async fn budgeted(slots: Option<usize>) -> Duration {
    let budget = slots.map(|slots| SharedBudget::new("bench", slots).unwrap().shared());
    let mut queues = Vec::with_capacity(QUEUES);
    for _ in 0..QUEUES {
        let mut lane = LaneConfig::new(1, 2);
        if let Some(budget) = &budget {
            lane = lane.with_budget(budget.clone());
        }
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("jobs", lane, 0)
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        manager.pause_lane("jobs").unwrap();
        queues.push(manager);
    }
    let mut handles = Vec::with_capacity(QUEUES * PER_QUEUE);
    for queue in &queues {
        for _ in 0..PER_QUEUE {
            let command = command_fn("job", |_ctx: CommandContext| async { Ok(Value::Null) });
            handles.push(
                queue
                    .submit_with_handle("jobs", Box::new(command))
                    .await
                    .unwrap(),
            );
        }
    }
    let started = Instant::now();
    for queue in &queues {
        queue.resume_lane("jobs").unwrap();
    }
    for handle in handles {
        handle.await.unwrap();
    }
    started.elapsed() / (QUEUES * PER_QUEUE) as u32
}

#[cfg(feature = "redis")]
mod redis_rows {
    use super::*;
    use a3s_lane::{
        HandlerRegistry, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig, handler_fn,
    };

    /// Commands per Redis measurement.
    pub(crate) const REDIS_COMMANDS: usize = 20_000;

    async fn noop(_payload: Value, _ctx: CommandContext) -> a3s_lane::Result<Value> {
        Ok(Value::Null)
    }

    /// Time per command to drain a backlog of `REDIS_COMMANDS` in `shape` with one worker.
    pub(crate) async fn redis(url: &str, shape: Shape, round: usize) -> Duration {
        let prefix = format!(
            "bench-groups-{}-{round}-{}",
            std::process::id(),
            shape.name()
        );
        let config = RedisQueueConfig::new(url)
            .with_key_prefix(prefix.replace(' ', "-").replace(['(', ')', ','], ""))
            .with_lane("jobs", shape.lane(), 0);
        let queue = RedisQueue::connect(config).await.unwrap();
        queue.pause_lane("jobs").await.unwrap();
        let mut handles = Vec::with_capacity(REDIS_COMMANDS);
        for chunk in (0..REDIS_COMMANDS).collect::<Vec<_>>().chunks(500) {
            let submits = chunk.iter().map(|i| {
                let options = match shape.group_of(*i) {
                    Some(group) => SubmitOptions::new().with_group(group),
                    None => SubmitOptions::new(),
                };
                queue.submit_with("jobs", "job", Value::Null, options)
            });
            for submitted in futures_util::future::join_all(submits).await {
                handles.push(submitted.unwrap());
            }
        }
        let handlers = HandlerRegistry::default();
        handlers.register("job", handler_fn(noop));
        let worker = RedisWorker::start(&queue, handlers, RedisWorkerConfig::new(64))
            .await
            .unwrap();
        let started = Instant::now();
        QueueClient::resume_lane(&queue, "jobs").await.unwrap();
        for handle in handles {
            handle.await.unwrap();
        }
        let took = started.elapsed() / REDIS_COMMANDS as u32;
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
        queue.clear().await.unwrap();
        took
    }
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
    let shapes = [
        Shape::NoGroup,
        Shape::OneGroup,
        Shape::Groups(10_000),
        Shape::CappedGroups(10_000),
    ];
    println!("{COMMANDS} no-op commands queued, then drained through a lane of cap 64; 3 rounds");
    let redis_url = std::env::var("A3S_LANE_REDIS_URL").ok();
    #[cfg(not(feature = "redis"))]
    if redis_url.is_some() {
        println!("(the Redis rows need --features redis)");
    }
    if redis_url.is_none() {
        println!(
            "(the Redis rows are left out: set A3S_LANE_REDIS_URL=redis://127.0.0.1:6379 and \
             pass --features redis)"
        );
    }
    for round in 1..=3 {
        let took: Vec<Duration> = shapes.iter().map(|s| rt.block_on(in_process(*s))).collect();
        let one = took[1].as_secs_f64();
        for (shape, took) in shapes.iter().zip(&took) {
            println!(
                "round {round} in process {:<24} {:>6} ns/cmd  {:>9.0} cmd/s  throughput {:.2}x of 1 group",
                shape.name(),
                took.as_nanos(),
                1.0 / took.as_secs_f64(),
                one / took.as_secs_f64(),
            );
        }
        let budgets = [None, Some(200), Some(16)];
        let took: Vec<Duration> = budgets.iter().map(|b| rt.block_on(budgeted(*b))).collect();
        let none = took[0].as_secs_f64();
        for (slots, took) in budgets.iter().zip(&took) {
            let name = slots.map_or("no budget (baseline)".to_owned(), |s| {
                format!("budget of {s}")
            });
            println!(
                "round {round} {QUEUES} queues x {PER_QUEUE}, {:<22} {:>6} ns/cmd  {:>9.0} cmd/s  throughput {:.2}x of no budget",
                name,
                took.as_nanos(),
                1.0 / took.as_secs_f64(),
                none / took.as_secs_f64(),
            );
        }
        #[cfg(feature = "redis")]
        if let Some(url) = &redis_url {
            let shapes = [Shape::NoGroup, Shape::OneGroup, Shape::Groups(1_000)];
            let took: Vec<Duration> = shapes
                .iter()
                .map(|s| rt.block_on(redis_rows::redis(url, *s, round)))
                .collect();
            let one = took[1].as_secs_f64();
            for (shape, took) in shapes.iter().zip(&took) {
                println!(
                    "round {round} redis ({} cmds) {:<20} {:>6} ns/cmd  {:>9.0} cmd/s  throughput {:.2}x of 1 group",
                    redis_rows::REDIS_COMMANDS,
                    shape.name(),
                    took.as_nanos(),
                    1.0 / took.as_secs_f64(),
                    one / took.as_secs_f64(),
                );
            }
        }
    }
}
