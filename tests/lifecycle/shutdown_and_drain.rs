//! shutdown() stops admission, drain() waits with a deadline, shutdown_now() cancels.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{LaneConfig, LaneError};
use tokio::sync::Semaphore;

use crate::support::{self, Log, Probe, Sleep, settle, started};

#[tokio::test(start_paused = true)]
async fn shutdown_rejects_new_commands_and_drain_waits_for_running_ones() {
    let manager = started(&[("work", LaneConfig::new(1, 2), 0)]).await;
    let mut receivers = Vec::new();
    for _ in 0..4 {
        receivers.push(
            manager
                .submit("work", Box::new(Sleep(Duration::from_secs(1))))
                .await
                .unwrap(),
        );
    }
    manager.shutdown().await;
    assert!(manager.is_shutting_down());
    let error = manager
        .submit("work", Box::new(Sleep(Duration::from_secs(1))))
        .await
        .unwrap_err();
    assert_eq!(error, LaneError::ShutdownInProgress);
    let begin = tokio::time::Instant::now();
    manager.drain(Duration::from_secs(10)).await.unwrap();
    assert_eq!(begin.elapsed(), Duration::from_secs(2), "two waves of two");
    for rx in receivers {
        assert_eq!(rx.await.unwrap().unwrap(), "slept");
    }
}

#[tokio::test(start_paused = true)]
async fn drain_fails_with_timeout_when_work_outlasts_the_deadline() {
    let manager = started(&[("work", LaneConfig::new(1, 1), 0)]).await;
    let _rx = manager
        .submit("work", Box::new(Sleep(Duration::from_secs(60))))
        .await
        .unwrap();
    manager.shutdown().await;
    assert_eq!(
        manager.drain(Duration::from_secs(5)).await,
        Err(LaneError::Timeout(Duration::from_secs(5)))
    );
}

#[tokio::test]
async fn shutdown_now_cancels_pending_and_running_commands() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let manager = started(&[(
        "work",
        LaneConfig::new(1, 1).with_cancel_grace(Duration::from_millis(1)),
        0,
    )])
    .await;
    let running = manager
        .submit_with_handle("work", Probe::gated("running", &log, &gate))
        .await
        .unwrap();
    let pending = manager
        .submit_with_handle("work", Probe::new("pending", &log))
        .await
        .unwrap();
    settle().await;
    assert_eq!(manager.shutdown_now().await, 2);
    assert!(pending.await.unwrap_err().is_cancelled());
    assert!(running.await.unwrap_err().is_cancelled());
    manager.drain(Duration::from_secs(5)).await.unwrap();
    assert_eq!(log.entries(), ["running"]);
}

#[tokio::test]
async fn commands_submitted_before_start_run_after_start() {
    let log = Log::default();
    let manager = support::builder(&[("work", LaneConfig::new(1, 1), 0)])
        .build()
        .await
        .unwrap();
    let rx = manager
        .submit("work", Probe::new("early", &log))
        .await
        .unwrap();
    settle().await;
    assert!(log.entries().is_empty());
    manager.start().await.unwrap();
    assert_eq!(rx.await.unwrap().unwrap(), "early");
}
