//! User code the scheduler calls while it dispatches (a custom rate limit, priority boost
//! or retry strategy, an observer, a spawner) may panic. The panic ends the command it
//! was about with an error that says so, and the queue goes on dispatching: other lanes,
//! later commands of the same lane, and `drain`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    Admission, AdmissionPolicy, CommandInfo, CommandRunner, EventEmitter, LaneConfig, LaneError,
    Observer, PriorityBoost, QueueManager, QueueManagerBuilder, RetryStrategy, RunOutcome, Spawner,
};
use serde_json::{Value, json};

/// Panics on the first `panics` calls, then does its job.
#[derive(Debug, Clone, Default)]
struct PanicsFirst {
    panics: usize,
    calls: Arc<AtomicUsize>,
}

impl PanicsFirst {
    fn new(panics: usize) -> Self {
        Self {
            panics,
            calls: Arc::default(),
        }
    }

    fn call(&self, what: &str) {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.panics {
            panic!("{what} exploded");
        }
    }
}

impl AdmissionPolicy for PanicsFirst {
    fn admission(&self) -> Option<Box<dyn Admission>> {
        Some(Box::new(self.clone()))
    }
}

impl Admission for PanicsFirst {
    fn try_acquire(&mut self, _now: tokio::time::Instant) -> Result<(), tokio::time::Instant> {
        self.call("the admission");
        Ok(())
    }
}

impl PriorityBoost for PanicsFirst {
    fn boost(&self, _waited: Duration) -> u8 {
        self.call("the boost");
        0
    }
}

impl RetryStrategy for PanicsFirst {
    fn retry_delay(&self, _failures: u32, _error: &LaneError) -> Option<Duration> {
        self.call("the retry strategy");
        Some(Duration::ZERO)
    }
}

impl Observer for PanicsFirst {
    fn on_submit(&self, _: &CommandInfo<'_>) {
        self.call("on_submit");
    }
    fn on_start(&self, _: &CommandInfo<'_>, _: Duration) {
        self.call("on_start");
    }
    fn on_finish(&self, _: &CommandInfo<'_>, _: RunOutcome<'_>, _: Duration) {
        self.call("on_finish");
    }
    fn wants_lane_depth(&self) -> bool {
        true
    }
    fn on_lane_depth(&self, _: &str, _: usize, _: usize) {
        self.call("on_lane_depth");
    }
}

async fn ok(manager: &QueueManager, lane: &str) -> Result<Value, LaneError> {
    manager
        .submit_fn(lane, "fine", |_| async { Ok(json!("ran")) })
        .await?
        .await
}

async fn started(builder: QueueManagerBuilder) -> QueueManager {
    let manager = builder
        .with_lane("plain", LaneConfig::new(1, 1), 1)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

#[tokio::test]
async fn a_panicking_rate_limit_fails_the_command_it_was_asked_about_and_the_lane_goes_on() {
    let policy = PanicsFirst::new(1);
    let manager = started(QueueManagerBuilder::new(EventEmitter::new(64)).with_lane(
        "limited",
        LaneConfig::new(1, 1).with_rate_limit(policy),
        0,
    ))
    .await;
    let error = ok(&manager, "limited").await.unwrap_err();
    assert!(matches!(error, LaneError::NonRetryable(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("rate limit panicked") && message.contains("the admission exploded"),
        "{message}"
    );
    assert_eq!(ok(&manager, "limited").await.unwrap(), json!("ran"));
    assert_eq!(ok(&manager, "plain").await.unwrap(), json!("ran"));
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert_eq!(manager.stats().await.total_active, 0);
}

#[tokio::test]
async fn a_rate_limit_that_always_panics_fails_each_command_and_other_lanes_still_run() {
    let manager = started(QueueManagerBuilder::new(EventEmitter::new(64)).with_lane(
        "broken",
        LaneConfig::new(1, 2).with_rate_limit(PanicsFirst::new(usize::MAX)),
        0,
    ))
    .await;
    for _ in 0..5 {
        assert!(ok(&manager, "broken").await.is_err());
        assert_eq!(ok(&manager, "plain").await.unwrap(), json!("ran"));
    }
    manager.drain(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_panicking_priority_boost_fails_the_head_command_and_dispatch_goes_on() {
    let manager = started(QueueManagerBuilder::new(EventEmitter::new(64)).with_lane(
        "boosted",
        LaneConfig::new(1, 1).with_priority_boost(PanicsFirst::new(1)),
        2,
    ))
    .await;
    let error = ok(&manager, "boosted").await.unwrap_err().to_string();
    assert!(error.contains("priority boost panicked"), "{error}");
    assert_eq!(ok(&manager, "boosted").await.unwrap(), json!("ran"));
    assert_eq!(ok(&manager, "plain").await.unwrap(), json!("ran"));
}

#[tokio::test]
async fn stats_show_the_lane_priority_when_its_boost_panics() {
    let manager = started(QueueManagerBuilder::new(EventEmitter::new(64)).with_lane(
        "always",
        LaneConfig::new(1, 1).with_priority_boost(PanicsFirst::new(usize::MAX)),
        3,
    ))
    .await;
    manager.pause_lane("always").unwrap();
    let waiting = manager
        .submit_fn("always", "waits", |_| async { Ok(Value::Null) })
        .await
        .unwrap();
    let stats = manager.stats().await;
    assert_eq!(stats.lanes["always"].pending, 1);
    assert_eq!(stats.lanes["always"].effective_priority, 3);
    manager.resume_lane("always").unwrap();
    let error = waiting.await.unwrap_err().to_string();
    assert!(error.contains("priority boost panicked"), "{error}");
    assert_eq!(ok(&manager, "plain").await.unwrap(), json!("ran"));
    manager.drain(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_panicking_retry_strategy_ends_the_command_with_both_reasons() {
    let manager = started(QueueManagerBuilder::new(EventEmitter::new(64)).with_lane(
        "retrying",
        LaneConfig::new(1, 1).with_retry_policy(PanicsFirst::new(1)),
        0,
    ))
    .await;
    let error = manager
        .submit_fn("retrying", "fails", |_| async {
            Err(LaneError::CommandError("upstream said no".into()))
        })
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::NonRetryable(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("upstream said no") && message.contains("retry strategy panicked"),
        "{message}"
    );
    // The strategy works again: a failure is retried (at once) and the retry succeeds.
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let value = manager
        .submit_fn("retrying", "flaky", move |_| {
            let attempt = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    Err(LaneError::CommandError("first try".into()))
                } else {
                    Ok(json!("second try"))
                }
            }
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(value, json!("second try"));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    manager.drain(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_panicking_observer_is_skipped_and_every_command_still_runs() {
    let observer = PanicsFirst::new(usize::MAX);
    let manager = started(
        QueueManagerBuilder::new(EventEmitter::new(64))
            .with_observer(observer.clone())
            .with_lane("observed", LaneConfig::new(1, 2), 0),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(ok(&manager, "observed").await.unwrap(), json!("ran"));
    }
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert!(observer.calls.load(Ordering::SeqCst) >= 30);
    assert_eq!(manager.stats().await.total_active, 0);
}

/// Panics on its first `panics` calls, then runs the command on tokio.
#[derive(Debug)]
struct PanickingSpawner(PanicsFirst);

impl Spawner for PanickingSpawner {
    fn spawn(&self, runner: CommandRunner) {
        self.0.call("the spawner");
        tokio::spawn(runner);
    }
}

#[tokio::test]
async fn a_panicking_spawner_fails_the_command_it_dropped_and_the_slot_comes_back() {
    let manager = started(
        QueueManagerBuilder::new(EventEmitter::new(64))
            .with_spawner(PanickingSpawner(PanicsFirst::new(1)))
            .with_lane("spawned", LaneConfig::new(1, 1), 0),
    )
    .await;
    let error = ok(&manager, "spawned").await.unwrap_err().to_string();
    assert!(
        error.contains("Spawner panicked") && error.contains("the spawner exploded"),
        "{error}"
    );
    assert_eq!(ok(&manager, "spawned").await.unwrap(), json!("ran"));
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert_eq!(manager.stats().await.total_active, 0);
}
