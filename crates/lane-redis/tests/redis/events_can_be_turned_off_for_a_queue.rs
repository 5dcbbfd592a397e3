//! A queue's event stream can be turned off (and on again) for every process; while it is
//! off, the scripts write no events.

use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, RedisQueue, RedisWorker, RedisWorkerConfig, handler_fn,
};
use serde_json::json;

use crate::support::{TestQueue, redis_url};

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_events_off_the_queue_writes_none_until_turned_on_again() {
    let test = TestQueue::connect("events-off", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
            .with_events(false)
    })
    .await;
    assert!(!test.queue.events_enabled().await.unwrap());
    let handlers = HandlerRegistry::default();
    handlers.register(
        "echo",
        handler_fn(|payload, _ctx| async move { Ok(payload) }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, RedisWorkerConfig::new(2))
        .await
        .unwrap();
    let mut events = test.queue.subscribe();
    let quiet = test
        .queue
        .submit("jobs", "echo", json!("quiet"))
        .await
        .unwrap();
    let quiet_id = quiet.id();
    within("the quiet command", quiet).await.unwrap();

    // Another process turns them on again; a config that says nothing leaves it so.
    let other = RedisQueue::connect(
        a3s_lane::RedisQueueConfig::new(redis_url())
            .with_key_prefix(&test.prefix)
            .with_events(true),
    )
    .await
    .unwrap();
    let bystander = RedisQueue::connect(
        a3s_lane::RedisQueueConfig::new(redis_url()).with_key_prefix(&test.prefix),
    )
    .await
    .unwrap();
    assert!(bystander.events_enabled().await.unwrap());
    let loud = other.submit("jobs", "echo", json!("loud")).await.unwrap();
    let loud_id = loud.id();
    within("the loud command", loud).await.unwrap();

    // The first event the subscriber sees is the loud command's: the quiet one wrote none.
    let first = within("the first event", events.recv()).await.unwrap();
    assert_eq!(first.key, "queue.command.submitted");
    assert_eq!(first.command_id(), Some(loud_id));
    assert_ne!(first.command_id(), Some(quiet_id));
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}
