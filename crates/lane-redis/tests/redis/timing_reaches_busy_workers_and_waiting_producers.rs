//! Deadlines and bounded lanes without polling: a start-by deadline expires on time
//! even when every worker is busy (a submit that sets the earliest timer wakes one), and
//! a producer waiting for room in a full lane is let in by another producer's cancel
//! (the lane's events), not by a timer.

use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
    RemoteState, SubmitOptions, WhenFull, handler_fn,
};
use serde_json::json;
use tokio::time::Instant;

use crate::support::{TestQueue, eventually, redis_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_expires_on_time_while_every_worker_is_busy() {
    let test = TestQueue::connect("deadline-busy", |c| {
        c.with_lane("busy", LaneConfig::new(1, 1), 0)
            .with_lane("jobs", LaneConfig::new(1, 1), 1)
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "block",
        handler_fn(|_, _| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(json!(null))
        }),
    );
    // One slot, and a heartbeat far off: only a wake-up makes the worker look in time.
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        RedisWorkerConfig::new(1).with_lease_ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let blocker = test.queue.submit("busy", "block", json!(0)).await.unwrap();
    let blocker_id = blocker.id();
    eventually("the worker to be busy", Duration::from_secs(5), || async {
        worker.running() == 1
    })
    .await;
    let submitted = Instant::now();
    let late = test
        .queue
        .submit_with(
            "jobs",
            "block",
            json!(1),
            SubmitOptions::new().with_start_within(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    let id = late.id();
    let error = tokio::time::timeout(Duration::from_secs(5), late)
        .await
        .expect("the deadline passed while the worker was busy, and nothing expired it")
        .unwrap_err();
    assert!(error.is_expired(), "{error:?}");
    assert!(
        submitted.elapsed() < Duration::from_secs(2),
        "expired {:?} after its submit, long after its deadline",
        submitted.elapsed()
    );
    let record = test.queue.command(id).await.unwrap().unwrap();
    assert_eq!(record.state, RemoteState::Expired);
    assert_eq!(record.attempts, 0);
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.queue.lanes["jobs"].expired, 1);
    assert_eq!(stats.counter("expired"), 1);
    test.queue.cancel(blocker_id).await.unwrap();
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_waiting_for_room_is_let_in_by_another_producers_cancel() {
    let test = TestQueue::connect("room-cancel", |c| {
        c.with_lane(
            "bounded",
            LaneConfig::new(1, 1)
                .with_max_waiting(1)
                .with_when_full(WhenFull::Wait { timeout: None }),
            0,
        )
    })
    .await;
    let other =
        RedisQueue::connect(RedisQueueConfig::new(redis_url()).with_key_prefix(&test.prefix))
            .await
            .unwrap();
    // No worker: the lane only empties by the cancel.
    let first = test.queue.submit("bounded", "job", json!(1)).await.unwrap();
    let mut waiting = Box::pin(other.submit("bounded", "job", json!(2)));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "a submit to a full lane that waits returned while the lane was full"
    );
    let cancelled = Instant::now();
    test.queue.cancel(first.id()).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting submit was let in")
        .unwrap();
    // Well before the waiting submit's safety-net look (after a second).
    assert!(
        cancelled.elapsed() < Duration::from_millis(600),
        "let in {:?} after the cancel",
        cancelled.elapsed()
    );
    let record = test.queue.command(second.id()).await.unwrap().unwrap();
    assert_eq!(record.state, RemoteState::Pending);
    let lane = &test.queue.stats().await.unwrap().queue.lanes["bounded"];
    assert_eq!(
        (lane.pending, lane.rejected_full, lane.max_waiting),
        (1, 0, Some(1))
    );
}
