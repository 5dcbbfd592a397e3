//! The queue's life: stats, drain, and commands that outlive the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{CommandContext, CommandState, Handler, LaneConfig, handler_fn};
use serde_json::Value;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, named, next_start, registry, within};

conformance!(stats_count_pending_and_running_per_lane);
conformance!(drain_waits_for_what_runs);
conformance!(accepted_commands_run_after_a_restart: local_storage, redis, redis_cluster);

async fn stats_count_pending_and_running_per_lane(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("one", LaneConfig::new(1, 1), 0)
        .lane("idle", LaneConfig::new(1, 3), 4);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let first = client.submit("one", "job", named("first")).await.unwrap();
    let second = client.submit("one", "job", named("second")).await.unwrap();
    next_start(&mut starts).await;
    let stats = client.stats().await.unwrap();
    let one = &stats.lanes["one"];
    assert_eq!(
        (one.pending, one.active, one.max, one.priority),
        (1, 1, 1, 0)
    );
    let idle = &stats.lanes["idle"];
    assert_eq!(
        (idle.pending, idle.active, idle.max, idle.priority),
        (0, 0, 3, 4)
    );
    assert_eq!((stats.total_pending, stats.total_active), (1, 1));
    gated.gate.add_permits(2);
    within("the first", first).await.unwrap();
    within("the second", second).await.unwrap();
}

async fn drain_waits_for_what_runs(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    // Counts runs that got through the gate and returned: what drain must wait for.
    let finished = Arc::new(AtomicUsize::new(0));
    let (inner, done) = (gated.handler(), finished.clone());
    let inner = Arc::new(inner);
    let handler = handler_fn(move |payload: Value, ctx: CommandContext| {
        let (inner, done) = (inner.clone(), done.clone());
        async move {
            let result = inner.handle(payload, ctx).await;
            done.fetch_add(1, Ordering::SeqCst);
            result
        }
    });
    let spec = Spec::new(registry("job", handler)).lane("jobs", LaneConfig::new(1, 4), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let mut handles = Vec::new();
    for n in 0..3 {
        let name = format!("job-{n}");
        handles.push(
            queue
                .client()
                .submit("jobs", "job", named(&name))
                .await
                .unwrap(),
        );
    }
    for _ in 0..3 {
        next_start(&mut starts).await;
    }
    let gate = gated.gate.clone();
    let opener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.add_permits(3);
    });
    within("the drain", queue.drain(crate::WAIT)).await;
    // Drain returned only once the three runs (held until the gate opened) had returned.
    assert_eq!(finished.load(Ordering::SeqCst), 3);
    opener.await.unwrap();
    // None was cut short: every command completed.
    for handle in handles {
        within("a drained result", handle).await.unwrap();
    }
}

/// Commands accepted while nothing runs them are still there after the process that
/// accepted them is gone, and run, in their order, once a runner starts.
async fn accepted_commands_run_after_a_restart(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let handle = queue
            .client()
            .submit("jobs", "job", named(name))
            .await
            .unwrap();
        ids.push(handle.id());
    }
    queue.restart().await;
    // In process, the store is read back at start; the lane stays paused meanwhile, so
    // the recovered commands can be looked at before they run.
    queue.client().pause_lane("jobs").await.unwrap();
    queue.start().await;
    for id in &ids {
        let status = queue.client().command(*id).await.unwrap();
        let status = status.unwrap_or_else(|| panic!("command {id} survived the restart"));
        assert_eq!(status.state, CommandState::Pending);
    }
    queue.client().resume_lane("jobs").await.unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(next_start(&mut starts).await);
    }
    assert_eq!(order, ["a", "b", "c"]);
}
