//! Property tests of groups inside a lane, under paused time. Random workloads of
//! commands in random groups (some groups capped, one paused for a while, some commands
//! cancelled) run through a real queue; an observer logs submits, starts and ends in the
//! order the scheduler decided them, and the log is checked for:
//! - no group runs more than its cap, the lane never more than its own;
//! - commands of one group start in submit order (FIFO inside a group);
//! - every accepted command ends exactly once.
//!
//! Turns between groups are checked exactly on a fixed workload below.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandContext, CommandInfo, EventEmitter, GroupLimits, LaneConfig, Observer, QueueClient,
    QueueManagerBuilder, RunOutcome, SubmitOptions, command_fn,
};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::Value;

const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];

/// What the queue reported, in its order (observer calls follow the scheduler's
/// decisions, unlike the order in which spawned runs first get polled).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Submit(u64),
    Start(u64),
    End(u64),
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Observer for Recorder {
    fn on_submit(&self, c: &CommandInfo<'_>) {
        self.0.lock().push(Seen::Submit(c.id));
    }
    fn on_start(&self, c: &CommandInfo<'_>, _: Duration) {
        self.0.lock().push(Seen::Start(c.id));
    }
    fn on_finish(&self, c: &CommandInfo<'_>, _: RunOutcome<'_>, _: Duration) {
        self.0.lock().push(Seen::End(c.id));
    }
    fn on_cancel_pending(&self, c: &CommandInfo<'_>) {
        self.0.lock().push(Seen::End(c.id));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Submit { group: usize, millis: u64 },
    Advance(u64),
    Cancel(usize),
    PauseFor { group: usize, millis: u64 },
}

#[derive(Debug, Clone)]
struct Workload {
    lane_cap: usize,
    /// Per group: its cap, if any.
    caps: Vec<Option<usize>>,
    ops: Vec<Op>,
}

fn workload() -> impl Strategy<Value = Workload> {
    let caps = prop::collection::vec(prop_oneof![Just(None), (1usize..3).prop_map(Some)], 4);
    let op = prop_oneof![
        8 => (0..4usize, 1u64..40).prop_map(|(group, millis)| Op::Submit { group, millis }),
        2 => (0u64..30).prop_map(Op::Advance),
        1 => (0usize..64).prop_map(Op::Cancel),
        1 => (0..4usize, 1u64..50).prop_map(|(group, millis)| Op::PauseFor { group, millis }),
    ];
    (1usize..5, caps, prop::collection::vec(op, 1..70)).prop_map(|(lane_cap, caps, ops)| Workload {
        lane_cap,
        caps,
        ops,
    })
}

/// Runs the workload; returns the log and each command's group.
fn run(workload: &Workload) -> (Vec<Seen>, HashMap<u64, usize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let recorder = Arc::new(Recorder::default());
        let mut lane = LaneConfig::new(1, workload.lane_cap);
        for (group, cap) in GROUPS.iter().zip(&workload.caps) {
            if let Some(cap) = cap {
                lane =
                    lane.with_group_override(*group, GroupLimits::new().with_max_concurrency(*cap));
            }
        }
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", lane, 0)
            .with_observer(recorder.clone())
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        let mut handles = Vec::new();
        let mut groups = HashMap::new();
        let mut ids = Vec::new();
        for op in &workload.ops {
            match *op {
                Op::Submit { group, millis } => {
                    let command = command_fn("work", move |_ctx: CommandContext| async move {
                        tokio::time::sleep(Duration::from_millis(millis)).await;
                        Ok(Value::Null)
                    });
                    let handle = manager
                        .submit_with_options(
                            "work",
                            Box::new(command),
                            &SubmitOptions::new().with_group(GROUPS[group]),
                        )
                        .await
                        .unwrap();
                    groups.insert(handle.id(), group);
                    ids.push(handle.id());
                    handles.push(handle);
                }
                Op::Advance(millis) => tokio::time::sleep(Duration::from_millis(millis)).await,
                Op::Cancel(k) => {
                    if let Some(id) = ids.get(k) {
                        manager.cancel(*id);
                    }
                }
                Op::PauseFor { group, millis } => {
                    manager.pause_group("work", GROUPS[group]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    manager.resume_group("work", GROUPS[group]).await.unwrap();
                }
            }
        }
        for handle in handles {
            let id = handle.id();
            match tokio::time::timeout(Duration::from_secs(3600), handle).await {
                Err(_) => panic!("command {id} never finished: {:?}", manager.stats().await),
                Ok(Ok(_)) => {}
                Ok(Err(error)) if error.is_cancelled() => {}
                Ok(Err(error)) => panic!("unexpected error {error}"),
            }
        }
        let log = recorder.0.lock().clone();
        (log, groups)
    })
}

fn check(
    workload: &Workload,
    log: &[Seen],
    groups: &HashMap<u64, usize>,
) -> Result<(), TestCaseError> {
    let mut pending: Vec<VecDeque<u64>> = vec![VecDeque::new(); GROUPS.len()];
    let mut active = vec![0usize; GROUPS.len()];
    let mut running = HashSet::new();
    let mut ends: HashMap<u64, usize> = HashMap::new();
    for event in log {
        match *event {
            Seen::Submit(id) => pending[groups[&id]].push_back(id),
            Seen::Start(id) => {
                let group = groups[&id];
                prop_assert_eq!(
                    pending[group].front(),
                    Some(&id),
                    "FIFO inside group {}",
                    group
                );
                pending[group].pop_front();
                active[group] += 1;
                running.insert(id);
                if let Some(cap) = workload.caps[group] {
                    prop_assert!(
                        active[group] <= cap,
                        "group {} ran {} > its cap {}",
                        group,
                        active[group],
                        cap
                    );
                }
                prop_assert!(
                    running.len() <= workload.lane_cap,
                    "the lane ran {} > its cap {}",
                    running.len(),
                    workload.lane_cap
                );
            }
            Seen::End(id) => {
                *ends.entry(id).or_default() += 1;
                let group = groups[&id];
                if running.remove(&id) {
                    active[group] -= 1;
                } else {
                    // Cancelled while pending: it leaves its group's queue.
                    pending[group].retain(|waiting| *waiting != id);
                }
            }
        }
    }
    prop_assert!(
        ends.values().all(|n| *n == 1),
        "a command ended twice: {:?}",
        ends
    );
    prop_assert_eq!(ends.len(), groups.len(), "every command ends once");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn group_caps_fifo_and_single_ends_hold(workload in workload()) {
        let (log, groups) = run(&workload);
        check(&workload, &log, &groups)?;
    }
}

/// Turns, checked on a fixed workload where they are exact: two groups with a backlog
/// each and a lane of one slot alternate, and a group that arrives later takes its turn
/// before the group that just had one.
#[test]
#[allow(
    clippy::async_yields_async,
    reason = "the helper submits and returns the handle, awaited later"
)]
fn groups_alternate_and_a_newcomer_gets_the_next_turn() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .build()
            .await
            .unwrap();
        let order: Arc<Mutex<Vec<String>>> = Arc::default();
        let submit = |name: String, group: &'static str| {
            let order = order.clone();
            let manager = &manager;
            async move {
                let command = command_fn("work", move |_ctx: CommandContext| {
                    let order = order.clone();
                    let name = name.clone();
                    async move {
                        order.lock().push(name);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok(Value::Null)
                    }
                });
                manager
                    .submit_with_options(
                        "work",
                        Box::new(command),
                        &SubmitOptions::new().with_group(group),
                    )
                    .await
                    .unwrap()
            }
        };
        let mut handles = Vec::new();
        for n in 0..3 {
            handles.push(submit(format!("a{n}"), "a").await);
        }
        for n in 0..3 {
            handles.push(submit(format!("b{n}"), "b").await);
        }
        manager.start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        handles.push(submit("c0".into(), "c").await);
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(
            *order.lock(),
            ["a0", "b0", "c0", "a1", "b1", "a2", "b2"],
            "c arrived while a0 ran: it goes after b (waiting before it), before a's next"
        );
    });
}
