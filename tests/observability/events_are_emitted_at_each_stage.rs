//! Lifecycle events: keys, payloads, order, filtering, lag reporting, Stream support.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    EventEmitter, LaneConfig, LaneError, LaneEvent, QueueManagerBuilder, RetryStrategy, event_keys,
};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::support::{self, Log, Probe, settle, started};

#[derive(Debug)]
struct RetryOnce;

impl RetryStrategy for RetryOnce {
    fn retry_delay(&self, failures: u32, _: &LaneError) -> Option<Duration> {
        (failures < 2).then_some(Duration::from_millis(1))
    }
}

fn keys(events: &[LaneEvent]) -> Vec<&str> {
    events.iter().map(|e| e.key.as_str()).collect()
}

#[tokio::test]
async fn a_successful_command_emits_submitted_started_completed() {
    let log = Log::default();
    let manager = started(&[("q", LaneConfig::new(1, 1), 0)]).await;
    let mut stream = manager.subscribe();
    let handle = manager
        .submit_with_handle("q", Probe::new("x", &log))
        .await
        .unwrap();
    let id = handle.id();
    handle.await.unwrap();
    let events: Vec<LaneEvent> = stream.by_ref().take(3).collect().await;
    assert_eq!(
        keys(&events),
        [
            event_keys::COMMAND_SUBMITTED,
            event_keys::COMMAND_STARTED,
            event_keys::COMMAND_COMPLETED
        ]
    );
    for event in &events {
        assert_eq!(event.lane_id(), Some("q"));
        assert_eq!(event.command_id(), Some(id));
        assert!(event.timestamp > 0);
    }
    assert_eq!(events[1].payload["command_type"], "probe");
    assert_eq!(events[1].payload["attempt"], 1);
}

#[tokio::test]
async fn a_failing_command_emits_retry_then_failed_then_dead_lettered() {
    let manager = support::builder(&[("q", LaneConfig::new(1, 1).with_retry_policy(RetryOnce), 0)])
        .with_dlq(10)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut stream = manager.subscribe();
    let handle = manager
        .submit_fn("q", "flaky", |_| async {
            Err(LaneError::CommandError("nope".into()))
        })
        .await
        .unwrap();
    assert!(handle.await.is_err());
    let events: Vec<LaneEvent> = stream.by_ref().take(6).collect().await;
    assert_eq!(
        keys(&events),
        [
            event_keys::COMMAND_SUBMITTED,
            event_keys::COMMAND_STARTED,
            event_keys::COMMAND_RETRY,
            event_keys::COMMAND_STARTED,
            event_keys::COMMAND_FAILED,
            event_keys::COMMAND_DEAD_LETTERED,
        ]
    );
    assert_eq!(events[2].payload["attempt"], 2);
    assert_eq!(events[3].payload["attempt"], 2);
    let letters = manager.dead_letters().unwrap().list().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].attempts, letters[0].command_type.as_str()),
        (2, "flaky")
    );
}

#[tokio::test]
async fn pressure_and_idle_fire_once_per_crossing() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let manager = started(&[("busy", LaneConfig::new(1, 1).with_pressure_threshold(3), 0)]).await;
    let mut lane_events = manager.subscribe_filtered(|e| {
        e.key == event_keys::LANE_PRESSURE || e.key == event_keys::LANE_IDLE
    });
    let mut receivers = Vec::new();
    for i in 0..6 {
        receivers.push(
            manager
                .submit("busy", Probe::gated(format!("b{i}"), &log, &gate))
                .await
                .unwrap(),
        );
    }
    gate.add_permits(100);
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    let pressure = lane_events.recv().await.unwrap();
    assert_eq!(pressure.key, event_keys::LANE_PRESSURE);
    assert_eq!(pressure.payload["pending"], 3);
    assert_eq!(lane_events.recv().await.unwrap().key, event_keys::LANE_IDLE);
    settle().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(20), lane_events.recv())
            .await
            .is_err(),
        "no storm"
    );
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_how_many_events_it_missed() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(4))
        .with_lane("q", LaneConfig::new(1, 1), 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut slow = manager.subscribe();
    for _ in 0..10 {
        manager
            .submit_fn("q", "n", |_| async { Ok(Value::Null) })
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // 10 commands × 3 events = 30 emitted; the buffer keeps 4.
    let first = slow.recv().await.unwrap();
    assert_eq!(first.key, event_keys::EVENTS_LAGGED);
    assert_eq!(first.payload["missed"], 26);
    assert_eq!(slow.missed(), 26);
    let rest: Vec<LaneEvent> = slow.take(4).collect().await;
    assert_eq!(rest.len(), 4);
}

#[tokio::test]
async fn shutdown_emits_started_and_complete() {
    let manager = started(&[("q", LaneConfig::new(1, 1), 0)]).await;
    let mut stream = manager.subscribe();
    manager.shutdown().await;
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        stream.recv().await.unwrap().key,
        event_keys::SHUTDOWN_STARTED
    );
    assert_eq!(
        stream.recv().await.unwrap().key,
        event_keys::SHUTDOWN_COMPLETE
    );
}

#[tokio::test]
async fn progress_reports_reach_subscribers() {
    let manager = started(&[("q", LaneConfig::new(1, 1), 0)]).await;
    let mut progress = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_PROGRESS);
    let handle = manager
        .submit_fn("q", "steps", |ctx| async move {
            for step in 1..=3 {
                ctx.report_progress(serde_json::json!({ "step": step }));
            }
            Ok(Value::Null)
        })
        .await
        .unwrap();
    handle.await.unwrap();
    for step in 1..=3 {
        assert_eq!(
            progress.recv().await.unwrap().payload["progress"]["step"],
            step
        );
    }
}
