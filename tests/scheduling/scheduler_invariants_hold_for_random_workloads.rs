//! Property tests of the scheduler's invariants. A recording observer captures the order
//! in which the queue accepted, started and finished commands; replaying that log checks,
//! at every start, that:
//! - no lane runs more than its `max_concurrency` and the global budget is never exceeded;
//! - a lane's commands start in FIFO order;
//! - no more urgent lane had pending work and free capacity (strict priority);
//!
//! and at the end that every accepted command finished exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{CommandInfo, EventEmitter, LaneConfig, Observer, QueueManagerBuilder, RunOutcome};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Submit(u64, String),
    Start(u64, String),
    Finish(u64, String),
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Observer for Recorder {
    fn on_submit(&self, c: &CommandInfo<'_>) {
        self.0.lock().push(Seen::Submit(c.id, c.lane.to_owned()));
    }
    fn on_start(&self, c: &CommandInfo<'_>, _: Duration) {
        self.0.lock().push(Seen::Start(c.id, c.lane.to_owned()));
    }
    fn on_finish(&self, c: &CommandInfo<'_>, _: RunOutcome<'_>, _: Duration) {
        self.0.lock().push(Seen::Finish(c.id, c.lane.to_owned()));
    }
    fn on_cancel_pending(&self, c: &CommandInfo<'_>) {
        self.0.lock().push(Seen::Finish(c.id, c.lane.to_owned()));
    }
}

#[derive(Debug, Clone)]
struct LaneSpec {
    priority: u8,
    min: usize,
    max: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Submit { lane: usize, millis: u64 },
    Advance(u64),
    Cancel(usize),
}

fn lanes() -> impl Strategy<Value = Vec<LaneSpec>> {
    prop::collection::vec(
        (0u8..4, 0usize..3, 1usize..4).prop_map(|(priority, min, extra)| LaneSpec {
            priority,
            min: min.min(extra),
            max: extra,
        }),
        1..5,
    )
}

fn ops(lanes: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0..lanes, 0u64..40).prop_map(|(lane, millis)| Op::Submit { lane, millis }),
            2 => (0u64..30).prop_map(Op::Advance),
            1 => (0usize..64).prop_map(Op::Cancel),
        ],
        1..60,
    )
}

fn workload() -> impl Strategy<Value = (Vec<LaneSpec>, Option<usize>, Vec<Op>)> {
    lanes().prop_flat_map(|lanes| {
        let reserved: usize = lanes.iter().map(|l| l.min).sum();
        // A lane with no reserved slot needs a shared one (a smaller budget is a ConfigError).
        let least = if lanes.iter().any(|l| l.min == 0) {
            reserved + 1
        } else {
            reserved.max(1)
        };
        let budget = prop_oneof![Just(None), (least..least + 4).prop_map(Some)];
        let n = lanes.len();
        (Just(lanes), budget, ops(n))
    })
}

fn run(lanes: &[LaneSpec], budget: Option<usize>, ops: &[Op]) -> (Vec<Seen>, usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let recorder = Arc::new(Recorder::default());
        let mut builder =
            QueueManagerBuilder::new(EventEmitter::new(16)).with_observer(recorder.clone());
        for (i, lane) in lanes.iter().enumerate() {
            builder = builder.with_lane(
                format!("l{i}"),
                LaneConfig::new(lane.min, lane.max),
                lane.priority,
            );
        }
        if let Some(budget) = budget {
            builder = builder.with_max_concurrency(budget);
        }
        let manager = builder.build().await.unwrap();
        manager.start().await.unwrap();
        let mut handles = Vec::new();
        let mut ids = Vec::new();
        for op in ops {
            match op {
                Op::Submit { lane, millis } => {
                    let millis = *millis;
                    let handle = manager
                        .submit_fn(&format!("l{lane}"), "work", move |_| async move {
                            tokio::time::sleep(Duration::from_millis(millis)).await;
                            Ok(Value::Null)
                        })
                        .await
                        .unwrap();
                    ids.push(handle.id());
                    handles.push(handle);
                }
                Op::Advance(millis) => tokio::time::sleep(Duration::from_millis(*millis)).await,
                Op::Cancel(k) => {
                    if let Some(id) = ids.get(*k) {
                        manager.cancel(*id);
                    }
                }
            }
        }
        let accepted = handles.len();
        let mut finished = 0;
        for handle in handles {
            let id = handle.id();
            let outcome = tokio::time::timeout(Duration::from_secs(3600), handle).await;
            let Ok(outcome) = outcome else {
                panic!(
                    "command {id} never finished: {:?} log {:?}",
                    manager.stats().await,
                    recorder.0.lock()
                );
            };
            match outcome {
                Ok(_) => finished += 1,
                Err(error) if error.is_cancelled() => finished += 1,
                Err(error) => panic!("unexpected error {error}"),
            }
        }
        let log = recorder.0.lock().clone();
        (log, accepted, finished)
    })
}

fn check(lanes: &[LaneSpec], budget: Option<usize>, log: &[Seen]) -> Result<(), TestCaseError> {
    let index = |lane: &str| lane[1..].parse::<usize>().unwrap();
    let mut pending: Vec<VecDeque<u64>> = vec![VecDeque::new(); lanes.len()];
    let mut active = vec![0usize; lanes.len()];
    let mut running: HashMap<u64, usize> = HashMap::new();
    let mut finishes: HashMap<u64, usize> = HashMap::new();
    let shared = budget.map(|b| b - lanes.iter().map(|l| l.min).sum::<usize>());
    let shared_used = |active: &[usize]| -> usize {
        lanes
            .iter()
            .zip(active)
            .map(|(l, &a)| a.saturating_sub(l.min))
            .sum()
    };
    for event in log {
        match event {
            Seen::Submit(id, lane) => pending[index(lane)].push_back(*id),
            Seen::Start(id, lane) => {
                let l = index(lane);
                prop_assert_eq!(pending[l].front(), Some(id), "FIFO inside lane {}", lane);
                // Strict priority: every more urgent lane with pending work was blocked.
                for (other, spec) in lanes.iter().enumerate() {
                    if spec.priority < lanes[l].priority && !pending[other].is_empty() {
                        let lane_full = active[other] >= spec.max;
                        let budget_full = shared.is_some_and(|s| {
                            shared_used(&active) >= s && active[other] >= spec.min
                        });
                        prop_assert!(
                            lane_full || budget_full,
                            "lane l{} could start before {}",
                            other,
                            lane
                        );
                    }
                }
                pending[l].pop_front();
                active[l] += 1;
                running.insert(*id, l);
                prop_assert!(active[l] <= lanes[l].max, "lane {} above its max", lane);
                if let (Some(budget), Some(shared)) = (budget, shared) {
                    prop_assert!(
                        active.iter().sum::<usize>() <= budget,
                        "global budget exceeded"
                    );
                    prop_assert!(shared_used(&active) <= shared, "shared pool exceeded");
                }
            }
            Seen::Finish(id, lane) => {
                *finishes.entry(*id).or_default() += 1;
                match running.remove(id) {
                    Some(l) => active[l] -= 1,
                    None => {
                        let l = index(lane);
                        let position = pending[l].iter().position(|p| p == id);
                        prop_assert!(position.is_some(), "a cancelled command {} was pending", id);
                        pending[l].remove(position.unwrap());
                    }
                }
            }
        }
    }
    prop_assert!(
        finishes.values().all(|&n| n == 1),
        "a command finished twice"
    );
    prop_assert!(pending.iter().all(VecDeque::is_empty));
    prop_assert!(active.iter().all(|&a| a == 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn scheduler_invariants_hold((lanes, budget, ops) in workload()) {
        let (log, accepted, finished) = run(&lanes, budget, &ops);
        prop_assert_eq!(accepted, finished, "every accepted command ends exactly once");
        let submits = log.iter().filter(|e| matches!(e, Seen::Submit(..))).count();
        prop_assert_eq!(submits, accepted);
        check(&lanes, budget, &log)?;
    }
}
