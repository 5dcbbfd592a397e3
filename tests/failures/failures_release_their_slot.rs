//! A command that panics, fails or times out releases its slot, reports to the submitter
//! and the event stream, and never wedges its lane.

use std::time::Duration;

use a3s_lane::{LaneConfig, LaneError, event_keys};
use serde_json::Value;

use crate::support::{self, Sleep, started};

#[tokio::test]
async fn a_panicking_command_fails_and_the_lane_keeps_running() {
    let manager = started(&[("one", LaneConfig::new(1, 1), 0)]).await;
    let mut failed = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_FAILED);
    let boom = manager
        .submit_fn("one", "boom", |_| async { panic!("kaboom") })
        .await
        .unwrap();
    let after = manager
        .submit_fn("one", "fine", |_| async { Ok(Value::from(7)) })
        .await
        .unwrap();
    let error = boom.await.unwrap_err();
    assert_eq!(
        error,
        LaneError::CommandError("command panicked: kaboom".into())
    );
    assert_eq!(after.await.unwrap(), Value::from(7));
    let event = failed.recv().await.unwrap();
    assert_eq!(event.lane_id(), Some("one"));
    assert!(event.payload["error"].as_str().unwrap().contains("kaboom"));
    assert_eq!(manager.stats().await.total_active, 0);
}

#[tokio::test]
async fn a_failing_command_reports_its_error() {
    let manager = started(&[("one", LaneConfig::new(1, 1), 0)]).await;
    let handle = manager
        .submit_fn("one", "fails", |_| async {
            Err(LaneError::CommandError("upstream said no".into()))
        })
        .await
        .unwrap();
    assert_eq!(
        handle.await.unwrap_err(),
        LaneError::CommandError("upstream said no".into())
    );
    let next = manager
        .submit_fn("one", "fine", |_| async { Ok(Value::Null) })
        .await
        .unwrap();
    assert_eq!(next.await.unwrap(), Value::Null);
}

#[tokio::test(start_paused = true)]
async fn a_command_past_its_lane_timeout_times_out_and_frees_the_slot() {
    let manager = started(&[(
        "api",
        LaneConfig::new(1, 1).with_timeout(Duration::from_secs(2)),
        0,
    )])
    .await;
    let mut timeouts = manager.subscribe_filtered(|e| e.key == event_keys::COMMAND_TIMEOUT);
    let slow = manager
        .submit_with_handle("api", Box::new(Sleep(Duration::from_secs(10))))
        .await
        .unwrap();
    let quick = manager
        .submit_with_handle("api", Box::new(Sleep(Duration::from_secs(1))))
        .await
        .unwrap();
    let begin = tokio::time::Instant::now();
    assert_eq!(
        slow.await.unwrap_err(),
        LaneError::Timeout(Duration::from_secs(2))
    );
    assert_eq!(begin.elapsed(), Duration::from_secs(2));
    assert_eq!(quick.await.unwrap(), "slept");
    assert_eq!(begin.elapsed(), Duration::from_secs(3));
    assert_eq!(
        timeouts.recv().await.unwrap().key,
        event_keys::COMMAND_TIMEOUT
    );
}

#[tokio::test]
async fn a_zero_timeout_is_rejected_with_a_reason() {
    let error = support::builder(&[("api", LaneConfig::new(1, 1).with_timeout(Duration::ZERO), 0)])
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration: lane 'api': timeout must be greater than zero (leave it unset for no timeout)"
    );
}
