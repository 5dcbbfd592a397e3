//! Which command starts next: priority between lanes, FIFO inside a lane, lane caps, and
//! the global budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use a3s_lane::{CommandContext, LaneConfig, handler_fn};
use serde_json::Value;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, named, next_start, registry, within};

conformance!(priority_between_lanes_then_fifo_inside_a_lane);
conformance!(a_lane_never_runs_more_than_its_cap);
conformance!(the_global_budget_bounds_all_lanes_together: in_process, local_storage);

/// A gated handler that also counts how many of its runs were running at once, at most.
fn counting_peak(gated: &Gated) -> (impl a3s_lane::Handler + use<>, Arc<AtomicUsize>) {
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (inner, now, most) = (gated.clone(), active, peak.clone());
    let handler = handler_fn(move |payload: Value, _ctx: CommandContext| {
        let (inner, now, most) = (inner.clone(), now.clone(), most.clone());
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(running, Ordering::SeqCst);
            let result =
                a3s_lane::Handler::handle(&inner.handler(), payload, CommandContext::detached())
                    .await;
            now.fetch_sub(1, Ordering::SeqCst);
            result
        }
    });
    (handler, peak)
}

/// Everything is queued before the runner starts; with one slot, commands start in
/// priority order of their lanes, and in submit order inside a lane.
async fn priority_between_lanes_then_fifo_inside_a_lane(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("low", LaneConfig::new(0, 4), 5)
        .lane("high", LaneConfig::new(0, 4), 1)
        .lane("mid", LaneConfig::new(0, 4), 3)
        .runner_slots(1);
    let mut queue = Harness::open(engine, spec).await;
    let mut handles = Vec::new();
    for (lane, name) in [
        ("low", "low-1"),
        ("mid", "mid-1"),
        ("low", "low-2"),
        ("high", "high-1"),
        ("mid", "mid-2"),
        ("high", "high-2"),
    ] {
        handles.push(
            queue
                .client()
                .submit(lane, "job", named(name))
                .await
                .unwrap(),
        );
    }
    queue.start().await;
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(next_start(&mut starts).await);
    }
    assert_eq!(
        order,
        ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]
    );
    for handle in handles {
        within("a result", handle).await.unwrap();
    }
}

/// A lane with cap 2 and plenty of runner slots: at most 2 of its commands run at
/// once, and it does reach 2.
async fn a_lane_never_runs_more_than_its_cap(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let (handler, peak) = counting_peak(&gated);
    let spec = Spec::new(registry("job", handler))
        .lane("capped", LaneConfig::new(1, 2), 0)
        .runner_slots(8);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let mut handles = Vec::new();
    for n in 0..6 {
        let name = format!("job-{n}");
        handles.push(
            queue
                .client()
                .submit("capped", "job", named(&name))
                .await
                .unwrap(),
        );
    }
    // Two start; each permit lets one finish and the next start.
    next_start(&mut starts).await;
    next_start(&mut starts).await;
    for _ in 2..6 {
        gated.gate.add_permits(1);
        next_start(&mut starts).await;
    }
    gated.gate.add_permits(2);
    for handle in handles {
        within("a result", handle).await.unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "the cap is reached, never passed"
    );
}

/// A global budget of 2 over two lanes of cap 2 each: at most 2 run in all.
async fn the_global_budget_bounds_all_lanes_together(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let (handler, peak) = counting_peak(&gated);
    let spec = Spec::new(registry("job", handler))
        .lane("a", LaneConfig::new(0, 2), 0)
        .lane("b", LaneConfig::new(0, 2), 1)
        .runner_slots(2);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let mut handles = Vec::new();
    for n in 0..4 {
        let lane = if n % 2 == 0 { "a" } else { "b" };
        handles.push(
            queue
                .client()
                .submit(lane, "job", named(lane))
                .await
                .unwrap(),
        );
    }
    next_start(&mut starts).await;
    next_start(&mut starts).await;
    gated.gate.add_permits(1);
    next_start(&mut starts).await;
    gated.gate.add_permits(1);
    next_start(&mut starts).await;
    gated.gate.add_permits(2);
    for handle in handles {
        within("a result", handle).await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}
