//! Budgets shared across queues: lanes of many queues draw from one `SharedBudget` on
//! top of their own caps. The budget is never exceeded, waiting queues are served in
//! turn, a lane without the budget (control) is never held by it, a shut-down or dropped
//! queue gives back what it holds, and the budget's rate limit spaces starts. All under
//! paused time; a property test checks the cap on random workloads over 3 queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, RateLimitConfig,
    SharedBudget, command_fn, event_keys,
};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::Value;
use tokio::sync::Semaphore;

/// A queue with a `prompt` lane (cap `cap`) drawing from `budget`, and a `control` lane
/// that does not.
async fn session(budget: &Arc<SharedBudget>, cap: usize) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("control", LaneConfig::new(1, 3), 1)
        .with_lane(
            "prompt",
            LaneConfig::new(1, cap).with_budget(budget.clone()),
            5,
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

/// Counts runs in flight over every queue, and the most at once.
#[derive(Default)]
struct Flight {
    now: AtomicUsize,
    most: AtomicUsize,
    order: Mutex<Vec<String>>,
}

impl Flight {
    /// A command that records its start and holds a permit of `gate` until it ends.
    fn command(
        self: &Arc<Self>,
        name: String,
        gate: &Arc<Semaphore>,
    ) -> Box<dyn a3s_lane::Command> {
        let (flight, gate) = (self.clone(), gate.clone());
        Box::new(command_fn("work", move |_ctx: CommandContext| {
            let (flight, gate, name) = (flight.clone(), gate.clone(), name.clone());
            async move {
                let running = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
                flight.most.fetch_max(running, Ordering::SeqCst);
                flight.order.lock().push(name);
                let permit = gate.acquire().await.expect("never closed");
                permit.forget();
                flight.now.fetch_sub(1, Ordering::SeqCst);
                Ok(Value::Null)
            }
        }))
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn two_queues_share_two_slots_take_turns_and_control_is_never_held() {
    let budget = SharedBudget::new("llm", 2).unwrap().shared();
    let (a, b) = (session(&budget, 2).await, session(&budget, 2).await);
    let flight = Arc::new(Flight::default());
    let gate = Arc::new(Semaphore::new(0));
    let mut handles = Vec::new();
    for n in 0..4 {
        handles.push(
            a.submit_with_handle("prompt", flight.command(format!("a{n}"), &gate))
                .await
                .unwrap(),
        );
    }
    for n in 0..4 {
        handles.push(
            b.submit_with_handle("prompt", flight.command(format!("b{n}"), &gate))
                .await
                .unwrap(),
        );
    }
    settle().await;
    assert_eq!(
        flight.now.load(Ordering::SeqCst),
        2,
        "the budget holds both queues to 2"
    );
    assert_eq!(*flight.order.lock(), ["a0", "a1"]);
    let status = budget.status();
    assert_eq!(
        (status.in_use, status.waiting),
        (2, 1),
        "b's prompt lane waits in line"
    );
    // Control never waits for the budget it does not use.
    let control = a
        .submit_with_handle(
            "control",
            Box::new(command_fn("stop", |_| async { Ok(Value::Null) })),
        )
        .await
        .unwrap();
    control.await.unwrap();
    // Each slot given back goes to the queue whose turn it is: b, then a, then b...
    for _ in 0..6 {
        gate.add_permits(1);
        settle().await;
    }
    gate.add_permits(2);
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(flight.most.load(Ordering::SeqCst), 2);
    assert_eq!(
        *flight.order.lock(),
        ["a0", "a1", "b0", "a2", "b1", "a3", "b2", "b3"],
        "queues take turns for the slots given back"
    );
    assert_eq!(budget.status().in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_shuts_down_or_is_dropped_gives_back_what_it_holds() {
    let budget = SharedBudget::new("gpu", 1).unwrap().shared();
    let (a, b) = (session(&budget, 4).await, session(&budget, 4).await);
    let flight = Arc::new(Flight::default());
    let gate = Arc::new(Semaphore::new(0));
    let held = a
        .submit_with_handle("prompt", flight.command("a0".into(), &gate))
        .await
        .unwrap();
    let waiting = b
        .submit_with_handle("prompt", flight.command("b0".into(), &gate))
        .await
        .unwrap();
    settle().await;
    assert_eq!(*flight.order.lock(), ["a0"]);
    // A hard stop cancels a's run (dropped after its grace): its slot goes to b.
    a.shutdown_now().await;
    assert!(held.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*flight.order.lock(), ["a0", "b0"]);
    // A third queue waits behind b; it is dropped before its turn: the slot passes on.
    let c = session(&budget, 4).await;
    let dropped = c
        .submit_with_handle("prompt", flight.command("c0".into(), &gate))
        .await
        .unwrap();
    let d = session(&budget, 4).await;
    let last = d
        .submit_with_handle("prompt", flight.command("d0".into(), &gate))
        .await
        .unwrap();
    settle().await;
    assert_eq!(budget.status().waiting, 2);
    c.shutdown_now().await;
    drop(c);
    drop(dropped);
    gate.add_permits(1);
    waiting.await.unwrap();
    settle().await;
    assert_eq!(
        *flight.order.lock(),
        ["a0", "b0", "d0"],
        "c's turn passed on to d"
    );
    gate.add_permits(1);
    last.await.unwrap();
    assert_eq!(budget.status().in_use, 0, "every slot came back");
}

#[tokio::test(start_paused = true)]
async fn the_budgets_rate_limit_spaces_starts_over_every_queue() {
    let budget = SharedBudget::new("api", 100)
        .unwrap()
        .with_rate_limit(RateLimitConfig::token_bucket(
            1,
            Duration::from_millis(100),
            1,
        ))
        .unwrap()
        .shared();
    let queues = [
        session(&budget, 8).await,
        session(&budget, 8).await,
        session(&budget, 8).await,
    ];
    let mut throttled =
        queues[0].subscribe_filtered(|event| event.key == event_keys::LANE_THROTTLED);
    let starts: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let begin = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for queue in &queues {
        for _ in 0..3 {
            let starts = starts.clone();
            let command = command_fn("call", move |_| {
                let starts = starts.clone();
                async move {
                    starts.lock().push(tokio::time::Instant::now());
                    Ok(Value::Null)
                }
            });
            handles.push(
                queue
                    .submit_with_handle("prompt", Box::new(command))
                    .await
                    .unwrap(),
            );
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut at: Vec<Duration> = starts
        .lock()
        .iter()
        .map(|s| s.duration_since(begin))
        .collect();
    at.sort();
    assert_eq!(at.len(), 9);
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(99),
            "starts 100 ms apart: {at:?}"
        );
    }
    // The budget's rate limit held the first queue back, and its subscribers heard why.
    let event = throttled
        .recv()
        .await
        .expect("a queue.lane.throttled event");
    assert_eq!(event.payload["lane_id"], "prompt");
    assert_eq!(event.payload["limit"], "budget");
    assert_eq!(event.payload["group"], Value::Null);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random commands over 3 queues sharing a budget, with random lane caps: never more
    /// than the budget runs, and every command ends.
    #[test]
    fn a_shared_budget_is_never_exceeded(
        slots in 1usize..4,
        caps in prop::collection::vec(1usize..4, 3),
        work in prop::collection::vec((0usize..3, 1u64..30, 0u64..10), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (most, ended, submitted) = rt.block_on(async {
            let budget = SharedBudget::new("p", slots).unwrap().shared();
            let mut queues = Vec::new();
            for cap in &caps {
                queues.push(session(&budget, *cap).await);
            }
            let now = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            for (queue, millis, pause) in &work {
                let (now, most, millis) = (now.clone(), most.clone(), *millis);
                let command = command_fn("w", move |_| {
                    let (now, most) = (now.clone(), most.clone());
                    async move {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(millis)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok(Value::Null)
                    }
                });
                handles.push(queues[*queue].submit_with_handle("prompt", Box::new(command)).await.unwrap());
                tokio::time::sleep(Duration::from_millis(*pause)).await;
            }
            let submitted = handles.len();
            let mut ended = 0;
            for handle in handles {
                if tokio::time::timeout(Duration::from_secs(3600), handle).await.is_ok() {
                    ended += 1;
                }
            }
            (most.load(Ordering::SeqCst), ended, submitted)
        });
        prop_assert!(most <= slots, "{} ran at once under a budget of {}", most, slots);
        prop_assert_eq!(ended, submitted, "every command ends");
    }
}
