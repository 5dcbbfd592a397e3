//! Cancelling pending and running commands, and what cancel says it did.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, CommandContext, CommandState, Handler, LaneConfig, LaneError, Result, handler_fn,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::{Engine, Harness, Spec};
use crate::{conformance, failed, registry, within};

conformance!(cancel_ends_a_pending_command_and_signals_a_running_one);
conformance!(a_run_that_ignores_cancel_is_dropped_after_the_lane_grace);
conformance!(a_handler_that_outlives_its_cancel_keeps_its_lane_slot);

/// A handler that reports its start, then waits for its cancel and stops.
fn cooperative() -> (impl a3s_lane::Handler, mpsc::UnboundedReceiver<u64>) {
    let (started, rx) = mpsc::unbounded_channel();
    let handler = handler_fn(move |_payload: Value, ctx: CommandContext| {
        let started = started.clone();
        async move {
            let _ = started.send(ctx.id());
            ctx.cancelled().await;
            Err(LaneError::Cancelled("stopped on request".into()))
        }
    });
    (handler, rx)
}

async fn cancel_ends_a_pending_command_and_signals_a_running_one(engine: Engine) {
    let (handler, mut started) = cooperative();
    let spec = Spec::new(registry("wait", handler)).lane("one", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let running = client.submit("one", "wait", json!({})).await.unwrap();
    let pending = client.submit("one", "wait", json!({})).await.unwrap();
    let running_id = within("the first start", started.recv()).await.unwrap();
    assert_eq!(running_id, running.id());
    let status = client.command(running.id()).await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (CommandState::Running, 1));
    let status = client.command(pending.id()).await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (CommandState::Pending, 0));

    assert_eq!(
        client.cancel(pending.id()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert!(failed(within("the pending result", pending).await).is_cancelled());
    let running_id = running.id();
    assert_eq!(
        client.cancel(running_id).await.unwrap(),
        CancelOutcome::Signalled
    );
    // A second cancel finds it signalled or already ended, never anything else.
    let again = client.cancel(running_id).await.unwrap();
    assert!(
        matches!(
            again,
            CancelOutcome::Signalled | CancelOutcome::AlreadyFinished
        ),
        "{again:?}"
    );
    assert!(failed(within("the running result", running).await).is_cancelled());

    assert_eq!(
        client.cancel(running_id).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    assert_eq!(
        client.cancel(u64::MAX / 2).await.unwrap(),
        CancelOutcome::Unknown
    );
    // The slot came back: the lane runs again.
    let next = client.submit("one", "wait", json!({})).await.unwrap();
    within("the next start", started.recv()).await.unwrap();
    assert_eq!(
        client.cancel(next.id()).await.unwrap(),
        CancelOutcome::Signalled
    );
    assert!(failed(within("the next result", next).await).is_cancelled());
}

async fn a_run_that_ignores_cancel_is_dropped_after_the_lane_grace(engine: Engine) {
    let (started, mut starts) = mpsc::unbounded_channel();
    let stubborn = handler_fn(move |_payload: Value, _ctx: CommandContext| {
        let started = started.clone();
        async move {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        }
    });
    let spec = Spec::new(registry("stubborn", stubborn)).lane(
        "one",
        LaneConfig::new(1, 1).with_cancel_grace(Duration::from_millis(100)),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let handle = queue
        .client()
        .submit("one", "stubborn", json!({}))
        .await
        .unwrap();
    within("the start", starts.recv()).await.unwrap();
    assert_eq!(
        queue.client().cancel(handle.id()).await.unwrap(),
        CancelOutcome::Signalled
    );
    let error = failed(within("the drop after the grace", handle).await);
    assert!(
        matches!(&error, LaneError::Cancelled(reason) if reason.contains("dropped after the grace period")),
        "{error:?}"
    );
}

/// Like a Python coroutine that swallows `CancelledError` or a JavaScript handler that
/// ignores its `AbortSignal`: its work goes on after its future would be dropped
/// (`stops_when_dropped` false), for `work_ms` of its payload.
struct Unstoppable {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    started: mpsc::UnboundedSender<u64>,
}

#[async_trait]
impl Handler for Unstoppable {
    async fn handle(&self, payload: Value, ctx: CommandContext) -> Result<Value> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _ = self.started.send(ctx.id());
        let work = payload["work_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(work)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(payload)
    }

    fn stops_when_dropped(&self) -> bool {
        false
    }
}

/// The cancelled command is answered after the grace, but the next command of its lane
/// (cap 1) starts only once the handler really returned: never two at once.
async fn a_handler_that_outlives_its_cancel_keeps_its_lane_slot(engine: Engine) {
    let (started, mut starts) = mpsc::unbounded_channel();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = Unstoppable {
        now: now.clone(),
        peak: peak.clone(),
        started,
    };
    let spec = Spec::new(registry("unstoppable", handler)).lane(
        "one",
        LaneConfig::new(1, 1).with_cancel_grace(Duration::from_millis(50)),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let first = client
        .submit("one", "unstoppable", json!({"work_ms": 700}))
        .await
        .unwrap();
    within("the first start", starts.recv()).await.unwrap();
    assert_eq!(
        client.cancel(first.id()).await.unwrap(),
        CancelOutcome::Signalled
    );
    assert!(failed(within("the answer after the grace", first).await).is_cancelled());
    assert_eq!(now.load(Ordering::SeqCst), 1, "its work goes on");

    let second = client
        .submit("one", "unstoppable", json!({"work_ms": 1}))
        .await
        .unwrap();
    let second_id = within("the second start", starts.recv()).await.unwrap();
    assert_eq!(second_id, second.id());
    assert_eq!(
        peak.load(Ordering::SeqCst),
        1,
        "the second command started while the first handler still ran"
    );
    within("the second result", second).await.unwrap();
}
