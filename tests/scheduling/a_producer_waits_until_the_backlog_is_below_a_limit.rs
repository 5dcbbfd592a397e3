//! `QueueManager::wait_waiting_below`: a producer's backpressure (p-queue's
//! `onSizeLessThan`). Paused time makes each start instant exact.

use std::time::Duration;

use a3s_lane::{
    EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, SubmitOptions, command_fn,
};
use serde_json::json;
use tokio::time::Instant;

async fn manager() -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("a", LaneConfig::new(1, 1), 0)
        .with_lane("b", LaneConfig::new(1, 1), 1)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

fn job(ms: u64) -> Box<dyn a3s_lane::Command> {
    Box::new(command_fn("job", move |_ctx| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!(null))
    }))
}

#[tokio::test(start_paused = true)]
async fn returns_once_enough_commands_started_in_the_lane() {
    let manager = manager().await;
    let origin = Instant::now();
    // One runs, four wait; each runs 10 ms.
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(manager.submit_with_handle("a", job(10)).await.unwrap());
    }
    assert_eq!(manager.stats().await.lanes["a"].pending, 4);
    manager.wait_waiting_below(2, Some("a")).await.unwrap();
    // Fewer than 2 waiting: the fourth command started, at 30 ms.
    assert_eq!(origin.elapsed(), Duration::from_millis(30));
    assert_eq!(manager.stats().await.lanes["a"].pending, 1);
    // Holds now: returns at once.
    manager.wait_waiting_below(2, Some("a")).await.unwrap();
    assert_eq!(origin.elapsed(), Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn counts_delayed_commands_and_every_lane_without_a_lane() {
    let manager = manager().await;
    let origin = Instant::now();
    let _first = manager.submit_with_handle("a", job(10)).await.unwrap();
    let _second = manager.submit_with_handle("a", job(10)).await.unwrap();
    let later = SubmitOptions::new().with_delay(Duration::from_millis(100));
    let _delayed = manager
        .submit_with_options("b", job(10), &later)
        .await
        .unwrap();
    // "a" has one waiting until 10 ms; "b" one delayed until 100 ms (then it starts).
    manager.wait_waiting_below(1, Some("a")).await.unwrap();
    assert_eq!(origin.elapsed(), Duration::from_millis(10));
    manager.wait_waiting_below(1, None).await.unwrap();
    assert_eq!(origin.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_wakes_the_waiting_producer() {
    let manager = manager().await;
    let _running = manager.submit_with_handle("a", job(60_000)).await.unwrap();
    let waiting = manager.submit_with_handle("a", job(10)).await.unwrap();
    let origin = Instant::now();
    let wait = manager.wait_waiting_below(1, Some("a"));
    tokio::pin!(wait);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut wait)
            .await
            .is_err(),
        "returned while a command still waited"
    );
    assert!(waiting.cancel());
    wait.await.unwrap();
    assert_eq!(origin.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn a_limit_of_zero_and_an_unknown_lane_are_refused() {
    let manager = manager().await;
    let error = manager.wait_waiting_below(0, None).await.unwrap_err();
    assert!(error.to_string().contains("limit of 1 or more"), "{error}");
    let error = manager
        .wait_waiting_below(3, Some("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, a3s_lane::LaneError::LaneNotFound { .. }),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_waits_of_producers() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "full",
            LaneConfig::new(1, 1)
                .with_max_waiting(1)
                .with_when_full(a3s_lane::WhenFull::Wait { timeout: None }),
            0,
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager.pause_lane("full").unwrap();
    let _queued = manager.submit_with_handle("full", job(10)).await.unwrap();
    let for_room = manager.submit_with_handle("full", job(10));
    let for_backlog = manager.wait_waiting_below(1, Some("full"));
    tokio::pin!(for_room, for_backlog);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut for_room)
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut for_backlog)
            .await
            .is_err()
    );
    manager.shutdown().await;
    let error = for_room.await.unwrap_err();
    assert!(
        matches!(error, a3s_lane::LaneError::ShutdownInProgress),
        "{error:?}"
    );
    let error = for_backlog.await.unwrap_err();
    assert!(
        matches!(error, a3s_lane::LaneError::ShutdownInProgress),
        "{error:?}"
    );
}
