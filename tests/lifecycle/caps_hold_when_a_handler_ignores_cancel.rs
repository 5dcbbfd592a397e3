//! A command whose work goes on after its future is dropped (a host-language handler,
//! `Command::stops_when_dropped` false) is answered at the cancel grace or the timeout
//! as any other, but keeps its lane slot until the work really ends: the lane's cap
//! holds even when a handler ignores cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{Command, CommandContext, LaneConfig, Result, event_keys};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{settle, started};

/// How many runs of the work are going on now, and the most ever at once.
#[derive(Clone, Default)]
struct Running {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Running {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Like a Python coroutine that swallows `CancelledError`: the work runs on its own task
/// for `work`, whatever happens to the future that waits for it.
struct Stubborn {
    work: Duration,
    running: Running,
    /// What `stops_when_dropped` answers.
    stops_when_dropped: bool,
}

impl Stubborn {
    fn new(work: Duration, running: &Running, stops_when_dropped: bool) -> Box<Self> {
        Box::new(Self {
            work,
            running: running.clone(),
            stops_when_dropped,
        })
    }
}

#[async_trait]
impl Command for Stubborn {
    async fn execute(&self) -> Result<Value> {
        let running = self.running.clone();
        let work = self.work;
        running.enter();
        let done = tokio::spawn(async move {
            tokio::time::sleep(work).await;
            running.leave();
        });
        let _ = done.await;
        Ok(json!("done"))
    }
    fn command_type(&self) -> &str {
        "stubborn"
    }
    fn stops_when_dropped(&self) -> bool {
        self.stops_when_dropped
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_handler_that_goes_on_keeps_its_slot_until_it_returns() {
    let grace = Duration::from_millis(100);
    let manager = started(&[("one", LaneConfig::new(1, 1).with_cancel_grace(grace), 0)]).await;
    let mut abandoned = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_ABANDONED);
    let running = Running::default();
    let begin = Instant::now();
    let first = manager
        .submit_with_handle(
            "one",
            Stubborn::new(Duration::from_secs(1), &running, false),
        )
        .await
        .unwrap();
    let second = manager
        .submit_with_handle(
            "one",
            Stubborn::new(Duration::from_millis(10), &running, false),
        )
        .await
        .unwrap();
    settle().await;
    assert!(manager.cancel(first.id()));

    // Answered when the grace ends, as before ...
    let error = first.await.unwrap_err();
    assert!(error.is_cancelled(), "{error}");
    assert_eq!(begin.elapsed(), grace);
    let event = abandoned.recv().await.unwrap();
    assert_eq!(event.command_id(), Some(1));
    assert_eq!(event.payload["lane_id"], "one");

    // ... but the slot stays taken while the work goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running.now(), 1, "the second command must not start yet");
    let lane = manager.stats().await.lanes["one"].clone();
    assert_eq!(
        (
            lane.active,
            lane.pending,
            lane.abandoned,
            lane.abandoned_running
        ),
        (1, 1, 1, 1)
    );

    assert_eq!(second.await.unwrap(), "done");
    assert_eq!(begin.elapsed(), Duration::from_millis(1010));
    assert_eq!(running.peak(), 1);
    manager.queue().wait_idle().await;
    let lane = manager.stats().await.lanes["one"].clone();
    assert_eq!(
        (lane.active, lane.abandoned, lane.abandoned_running),
        (0, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn timed_out_handlers_that_go_on_never_exceed_the_cap() {
    let config = LaneConfig::new(1, 2).with_timeout(Duration::from_millis(100));
    let manager = started(&[("two", config, 0)]).await;
    let running = Running::default();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let command = Stubborn::new(Duration::from_millis(300), &running, false);
        handles.push(manager.submit_with_handle("two", command).await.unwrap());
    }
    let begin = Instant::now();
    let mut answered = Vec::new();
    for handle in handles {
        let error = handle.await.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        answered.push(begin.elapsed());
        assert!(running.peak() <= 2, "peak {}", running.peak());
    }
    // Two at a time, each pair answered at its timeout but starting after the last pair's
    // work ended.
    let ms = |ms| Duration::from_millis(ms);
    assert_eq!(
        answered,
        [ms(100), ms(100), ms(400), ms(400), ms(700), ms(700)]
    );
    manager.queue().wait_idle().await;
    assert_eq!(running.peak(), 2);
    let lane = manager.stats().await.lanes["two"].clone();
    assert_eq!((lane.abandoned, lane.abandoned_running), (6, 0));
}

#[tokio::test(start_paused = true)]
async fn a_command_that_stops_when_dropped_frees_its_slot_at_the_grace() {
    // The default: dropping the future is the end of the run, so the next one starts at
    // once (this command's spawned task is the test's way of seeing the difference).
    let grace = Duration::from_millis(100);
    let manager = started(&[("one", LaneConfig::new(1, 1).with_cancel_grace(grace), 0)]).await;
    let running = Running::default();
    let first = manager
        .submit_with_handle("one", Stubborn::new(Duration::from_secs(1), &running, true))
        .await
        .unwrap();
    let second = manager
        .submit_with_handle(
            "one",
            Stubborn::new(Duration::from_millis(10), &running, true),
        )
        .await
        .unwrap();
    settle().await;
    let begin = Instant::now();
    assert!(manager.cancel(first.id()));
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(second.await.unwrap(), "done");
    assert_eq!(begin.elapsed(), grace + Duration::from_millis(10));
    assert_eq!(running.peak(), 2);
    assert_eq!(manager.stats().await.lanes["one"].abandoned, 0);
}

/// Stops 50 ms after it is told to (like a handler with slow cleanup).
struct SlowToStop(Running);

#[async_trait]
impl Command for SlowToStop {
    async fn execute(&self) -> Result<Value> {
        let ctx = CommandContext::current().expect("run by the queue");
        self.0.enter();
        ctx.cancelled().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.leave();
        Ok(json!("stopped"))
    }
    fn command_type(&self) -> &str {
        "slow_to_stop"
    }
    fn stops_when_dropped(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_handler_is_told_to_stop_and_its_slot_frees_when_it_does() {
    let config = LaneConfig::new(1, 1).with_timeout(Duration::from_millis(100));
    let manager = started(&[("one", config, 0)]).await;
    let running = Running::default();
    let first = manager
        .submit_with_handle("one", Box::new(SlowToStop(running.clone())))
        .await
        .unwrap();
    let second = manager
        .submit_with_handle(
            "one",
            Stubborn::new(Duration::from_millis(10), &running, false),
        )
        .await
        .unwrap();
    let begin = Instant::now();
    assert!(first.await.unwrap_err().is_timeout());
    assert_eq!(begin.elapsed(), Duration::from_millis(100));
    assert_eq!(second.await.unwrap(), "done");
    assert_eq!(begin.elapsed(), Duration::from_millis(160));
    assert_eq!(running.peak(), 1);
}
