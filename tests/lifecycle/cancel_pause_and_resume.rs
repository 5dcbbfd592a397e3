//! Cancelling pending, running and whole lanes; pausing and resuming lanes.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{CommandContext, LaneConfig, LaneError, event_keys};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::support::{self, Log, Probe, settle, started};

#[tokio::test]
async fn cancelling_a_pending_command_removes_it_and_tells_the_submitter() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let manager = started(&[("one", LaneConfig::new(1, 1), 0)]).await;
    let mut cancelled = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_CANCELLED);
    let first = manager
        .submit_with_handle("one", Probe::gated("first", &log, &gate))
        .await
        .unwrap();
    let second = manager
        .submit_with_handle("one", Probe::new("second", &log))
        .await
        .unwrap();
    let third = manager
        .submit_with_handle("one", Probe::new("third", &log))
        .await
        .unwrap();
    settle().await;
    assert!(second.cancel());
    assert!(
        !manager.cancel(second.id()),
        "a cancelled command is no longer live"
    );
    assert_eq!(manager.stats().await.lanes["one"].pending, 1);
    let event = cancelled.recv().await.unwrap();
    assert_eq!(event.command_id(), Some(second.id()));
    assert_eq!(event.payload["was_running"], false);
    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), "first");
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(third.await.unwrap(), "third");
    assert_eq!(log.entries(), ["first", "third"]);
}

#[tokio::test(start_paused = true)]
async fn a_cooperative_command_sees_the_signal_and_stops_before_the_grace_period() {
    let manager = started(&[(
        "work",
        LaneConfig::new(1, 1).with_cancel_grace(Duration::from_secs(30)),
        0,
    )])
    .await;
    let handle = manager
        .submit_fn("work", "cooperative", |ctx: CommandContext| async move {
            ctx.cancelled().await;
            Ok(Value::from("noticed"))
        })
        .await
        .unwrap();
    settle().await;
    let begin = tokio::time::Instant::now();
    assert!(manager.cancel(handle.id()));
    let error = handle.await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("stopped within the grace period"),
        "{error}"
    );
    assert_eq!(begin.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn cancel_lane_cancels_pending_and_running_commands_of_that_lane_only() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let manager = started(&[
        (
            "prompt",
            LaneConfig::new(1, 2).with_cancel_grace(Duration::ZERO),
            5,
        ),
        ("query", LaneConfig::new(1, 2), 2),
    ])
    .await;
    let mut prompts = Vec::new();
    for i in 0..5 {
        prompts.push(
            manager
                .submit_with_handle("prompt", Probe::gated(format!("p{i}"), &log, &gate))
                .await
                .unwrap(),
        );
    }
    let query = manager
        .submit_with_handle("query", Probe::gated("q", &log, &gate))
        .await
        .unwrap();
    settle().await;
    assert_eq!(manager.cancel_lane("prompt").unwrap(), 5);
    for handle in prompts {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    gate.add_permits(1);
    assert_eq!(query.await.unwrap(), "q");
    let stats = manager.stats().await;
    assert_eq!((stats.total_active, stats.total_pending), (0, 0));
    assert!(matches!(
        manager.cancel_lane("nope"),
        Err(LaneError::LaneNotFound { .. })
    ));
}

#[tokio::test]
async fn a_paused_lane_starts_nothing_until_resumed() {
    let log = Log::default();
    let manager = started(&[("jobs", LaneConfig::new(1, 4), 0)]).await;
    manager.pause_lane("jobs").unwrap();
    let handle = manager
        .submit_with_handle("jobs", Probe::new("job", &log))
        .await
        .unwrap();
    settle().await;
    assert!(log.entries().is_empty());
    assert!(manager.stats().await.lanes["jobs"].paused);
    manager.resume_lane("jobs").unwrap();
    assert_eq!(handle.await.unwrap(), "job");
}

#[tokio::test(start_paused = true)]
async fn pause_lane_for_resumes_by_itself_after_the_duration() {
    let log = Log::default();
    let manager = started(&[("api", LaneConfig::new(1, 4), 0)]).await;
    manager
        .pause_lane_for("api", Duration::from_secs(30))
        .unwrap();
    let begin = tokio::time::Instant::now();
    let handle = manager
        .submit_with_handle("api", Probe::new("call", &log))
        .await
        .unwrap();
    assert_eq!(handle.await.unwrap(), "call");
    assert_eq!(begin.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_timed_pause_set_before_start_still_ends() {
    let log = Log::default();
    let manager = support::builder(&[("api", LaneConfig::new(1, 4), 0)])
        .build()
        .await
        .unwrap();
    manager
        .pause_lane_for("api", Duration::from_secs(5))
        .unwrap();
    let handle = manager
        .submit_with_handle("api", Probe::new("call", &log))
        .await
        .unwrap();
    let begin = tokio::time::Instant::now();
    manager.start().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), handle).await;
    assert_eq!(result.expect("the pause never ended").unwrap(), "call");
    assert_eq!(begin.elapsed(), Duration::from_secs(5));
}
