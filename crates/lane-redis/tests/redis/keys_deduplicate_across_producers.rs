//! Idempotency keys on Redis: while a command submitted with a key is delayed, pending or
//! running, a submit with the same key from any producer queues nothing and gets that
//! command (and its result); once it ended, the key is free again. Keys are Redis state:
//! the hashes holding them keep only live commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, HandlerRegistry, LaneConfig, LaneError, MAX_KEY_BYTES, QueueClient, RedisQueue,
    RedisQueueConfig, RedisWorker, RedisWorkerConfig, SubmitOptions, event_keys, handler_fn,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::support::{TestQueue, eventually, redis_url};

fn worker_config() -> RedisWorkerConfig {
    RedisWorkerConfig::new(4)
        .with_lease_ttl(Duration::from_secs(2))
        .with_block_timeout(Duration::from_secs(1))
}

fn keyed(key: &str) -> SubmitOptions {
    SubmitOptions::default().with_key(key)
}

/// A second producer (its own connections and result list) on the same queue.
async fn second_producer(prefix: &str) -> RedisQueue {
    RedisQueue::connect(RedisQueueConfig::new(redis_url()).with_key_prefix(prefix))
        .await
        .unwrap()
}

/// How many keys the queue's Redis hashes still hold (`{prefix}:keys`, `{prefix}:keyed`).
async fn held_keys(queue: &RedisQueue) -> (usize, usize) {
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = queue.key_prefix();
    let keys: usize = redis::cmd("HLEN")
        .arg(format!("{prefix}:keys"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let keyed: usize = redis::cmd("HLEN")
        .arg(format!("{prefix}:keyed"))
        .query_async(&mut conn)
        .await
        .unwrap();
    (keys, keyed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_producers_with_one_key_run_one_command_and_both_get_its_result() {
    let test = TestQueue::connect("keys-two-producers", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
            .with_lane("other", LaneConfig::new(1, 4), 1)
    })
    .await;
    let other = second_producer(&test.prefix).await;
    let mut events = test.queue.subscribe();

    let runs = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let handlers = HandlerRegistry::default();
    handlers.register("charge", {
        let runs = runs.clone();
        let release = release.clone();
        handler_fn(move |payload, _ctx| {
            let runs = runs.clone();
            let release = release.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Ok(json!({ "charged": payload["amount"] }))
            }
        })
    });
    let worker = RedisWorker::start(&test.queue, handlers, worker_config())
        .await
        .unwrap();

    // Both producers at once, one through the QueueClient surface; across lanes too.
    let (first, second) = tokio::join!(
        QueueClient::submit_with(
            &test.queue,
            "jobs",
            "charge",
            json!({"amount": 5}),
            keyed("order-7")
        ),
        QueueClient::submit_with(
            &other,
            "other",
            "charge",
            json!({"amount": 6}),
            keyed("order-7")
        ),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.id(), second.id(), "one command for the key");
    assert!(
        first.is_duplicate() != second.is_duplicate(),
        "exactly one of them is the duplicate: {first:?} {second:?}"
    );
    let (original, duplicate) = if first.is_duplicate() {
        (second, first)
    } else {
        (first, second)
    };
    let id = original.id();
    let amount = if original.is_duplicate() { 6 } else { 5 };
    // The same key again from the first producer while it runs (or waits).
    let third = test
        .queue
        .submit_with("jobs", "charge", json!({"amount": 9}), keyed("order-7"))
        .await
        .unwrap();
    assert_eq!(third.id(), id);
    assert!(third.is_duplicate());

    eventually("the command ran", Duration::from_secs(10), || {
        let runs = runs.clone();
        async move { runs.load(Ordering::SeqCst) == 1 }
    })
    .await;
    release.notify_waiters();
    let results = [original.await, duplicate.await, third.await];
    let charged = results[0].as_ref().unwrap()["charged"].clone();
    assert!(
        charged == json!(5) || charged == json!(6),
        "{charged} {amount}"
    );
    for result in &results {
        assert_eq!(result.as_ref().unwrap(), &json!({ "charged": charged }));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.counter("submitted"), 1);
    assert_eq!(stats.counter("deduplicated"), 2);

    // The event, with the existing command's id, lane, type and the key.
    let deduplicated = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.key == event_keys::COMMAND_DEDUPLICATED {
                return event;
            }
        }
    })
    .await
    .expect("a queue.command.deduplicated event");
    assert_eq!(deduplicated.payload["command_id"], json!(id));
    assert_eq!(deduplicated.payload["command_type"], json!("charge"));
    assert_eq!(deduplicated.payload["key"], json!("order-7"));
    assert!(
        ["jobs", "other"].contains(&deduplicated.payload["lane_id"].as_str().unwrap()),
        "{:?}",
        deduplicated.payload
    );

    // Finished: the key is free, and a submit with it creates a new command.
    assert_eq!(held_keys(&test.queue).await, (0, 0));
    let again = other
        .submit_with("jobs", "charge", json!({"amount": 1}), keyed("order-7"))
        .await
        .unwrap();
    assert_ne!(again.id(), id);
    assert!(!again.is_duplicate());
    eventually("the new command ran", Duration::from_secs(10), || {
        let runs = runs.clone();
        async move { runs.load(Ordering::SeqCst) == 2 }
    })
    .await;
    release.notify_waiters();
    assert_eq!(again.await.unwrap(), json!({"charged": 1}));
    assert_eq!(held_keys(&test.queue).await, (0, 0));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_expired_command_frees_its_key_and_its_duplicates_get_its_end() {
    let test = TestQueue::connect("keys-freed", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 1), 0)
    })
    .await;
    let other = second_producer(&test.prefix).await;

    // Cancelled while pending (no worker): the duplicate from the other producer gets the
    // cancellation, and the key is free.
    let first = test
        .queue
        .submit_with("jobs", "t", json!(1), keyed("k"))
        .await
        .unwrap();
    let duplicate = other
        .submit_with("jobs", "t", json!(2), keyed("k"))
        .await
        .unwrap();
    assert!(duplicate.is_duplicate() && !first.is_duplicate());
    assert_eq!(duplicate.id(), first.id());
    assert_eq!(held_keys(&test.queue).await, (1, 1));
    assert_eq!(
        other.cancel(duplicate.id()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert!(matches!(first.await, Err(LaneError::Cancelled(_))));
    assert!(matches!(duplicate.await, Err(LaneError::Cancelled(_))));
    assert_eq!(held_keys(&test.queue).await, (0, 0));

    // Delayed, then expired before it started: its key too is free afterwards.
    let delayed = test
        .queue
        .submit_with(
            "jobs",
            "t",
            json!(3),
            keyed("k")
                .with_delay(Duration::from_millis(200))
                .with_start_within(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert!(!delayed.is_duplicate());
    let waiting = other
        .submit_with("jobs", "t", json!(4), keyed("k"))
        .await
        .unwrap();
    assert!(waiting.is_duplicate(), "a delayed command holds its key");
    assert_eq!(waiting.id(), delayed.id());
    // Expiry happens on a worker's round trip: one after the deadline expires it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let worker = RedisWorker::start(&test.queue, HandlerRegistry::default(), worker_config())
        .await
        .unwrap();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap(),
        Err(LaneError::Expired(_))
    ));
    assert!(matches!(delayed.await, Err(LaneError::Expired(_))));
    assert_eq!(held_keys(&test.queue).await, (0, 0));
    let fresh = other
        .submit_with("jobs", "t", json!(5), keyed("k"))
        .await
        .unwrap();
    assert!(!fresh.is_duplicate());
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_one_batch_a_failed_command_and_bad_keys() {
    let test = TestQueue::connect("keys-batch", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 2), 0)
    })
    .await;
    // Concurrent submits of one producer share a round trip: the second of a batch
    // with the first's key is its duplicate. Keys may hold any character.
    let key = "line one\nline two 'x' \" \\ {} :";
    let submits: Vec<_> = (0..4)
        .map(|n| {
            test.queue
                .submit_with("jobs", "fails", json!(n), keyed(key))
        })
        .collect();
    let handles: Vec<_> = futures_util::future::join_all(submits)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(handles.iter().all(|h| h.id() == handles[0].id()));
    assert_eq!(handles.iter().filter(|h| !h.is_duplicate()).count(), 1);
    // A missing lane is reported as such, key or not.
    assert!(matches!(
        test.queue
            .submit_with("nope", "fails", json!(0), keyed(key))
            .await,
        Err(LaneError::LaneNotFound { .. })
    ));

    // A command that fails for good (dead letter) frees its key; every handle gets the
    // failure.
    let handlers = HandlerRegistry::default();
    handlers.register(
        "fails",
        handler_fn(|_, _| async { Err(LaneError::non_retryable("no")) }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, worker_config())
        .await
        .unwrap();
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap();
        assert!(result.is_err(), "{result:?}");
    }
    assert_eq!(held_keys(&test.queue).await, (0, 0));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();

    // Bad keys are refused before anything is sent.
    for bad in [String::new(), "k".repeat(MAX_KEY_BYTES + 1)] {
        let error = test
            .queue
            .submit_with("jobs", "t", json!(0), keyed(&bad))
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error}");
    }
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.counter("submitted"), 1);
    assert_eq!(stats.counter("deduplicated"), 3);
    let longest = test
        .queue
        .submit_with("jobs", "t", json!(0), keyed(&"k".repeat(MAX_KEY_BYTES)))
        .await
        .unwrap();
    assert!(!longest.is_duplicate());
}
