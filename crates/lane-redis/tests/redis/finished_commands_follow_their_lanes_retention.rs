//! What Redis keeps of finished commands: each lane's retention, in Redis itself (the
//! behaviours every engine shares are in the conformance suite's `retention.rs`; these
//! look at the keys too).

use std::time::Duration;

use a3s_lane::{
    CommandState, HandlerRegistry, LaneConfig, LaneError, Page, QueueClient, RedisQueue,
    RedisWorker, RedisWorkerConfig, Retention, RetryPolicy, handler_fn,
};
use serde_json::json;

use crate::support::{TestQueue, eventually, redis_url};

fn worker_config() -> RedisWorkerConfig {
    RedisWorkerConfig::new(4)
        .with_lease_ttl(Duration::from_secs(2))
        .with_block_timeout(Duration::from_secs(1))
}

fn handlers() -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register("echo", handler_fn(|payload, _| async move { Ok(payload) }));
    handlers.register(
        "broken",
        handler_fn(|_, _| async { Err(LaneError::CommandError("out of paper".into())) }),
    );
    handlers
}

async fn query<T: redis::FromRedisValue>(command: &mut redis::Cmd) -> T {
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    command.query_async(&mut conn).await.unwrap()
}

async fn run(queue: &RedisQueue, lane: &str, value: i64) -> u64 {
    let handle = queue.submit(lane, "echo", json!(value)).await.unwrap();
    let id = handle.id();
    assert_eq!(handle.await.unwrap(), json!(value));
    id
}

fn ids(statuses: &[a3s_lane::CommandStatus]) -> Vec<u64> {
    statuses.iter().map(|s| s.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_keeps_its_last_n_records_in_redis_and_a_smaller_n_applies_at_once() {
    let keep_three =
        LaneConfig::new(1, 1).with_retention(Retention::new(3, Duration::from_secs(3600)));
    let test = TestQueue::connect("keep-last", |c| c.with_lane("jobs", keep_three, 0)).await;
    let worker = RedisWorker::start(&test.queue, handlers(), worker_config())
        .await
        .unwrap();
    let mut done = Vec::new();
    for n in 0..5 {
        done.push(run(&test.queue, "jobs", n).await);
    }
    let prefix = test.queue.key_prefix().to_owned();
    let records: usize = query(redis::cmd("HLEN").arg(format!("{prefix}:done"))).await;
    assert_eq!(
        records, 3,
        "the older records were deleted as commands finished"
    );
    let expiries: usize = query(redis::cmd("ZCARD").arg(format!("{prefix}:finished"))).await;
    assert_eq!(expiries, 3);

    // Declared again keeping one: lookups and listings show only the newest at once.
    let keep_one =
        LaneConfig::new(1, 1).with_retention(Retention::new(1, Duration::from_secs(3600)));
    test.queue.declare_lane("jobs", keep_one, 0).await.unwrap();
    let listed = test
        .queue
        .list_commands("jobs", CommandState::Completed, Page::default())
        .await
        .unwrap();
    assert_eq!(ids(&listed), [done[4]]);
    assert!(test.queue.command(done[3]).await.unwrap().is_none());
    // The next finish trims the rest.
    let last = run(&test.queue, "jobs", 5).await;
    let records: usize = query(redis::cmd("HLEN").arg(format!("{prefix}:done"))).await;
    assert_eq!(records, 1);
    let status = QueueClient::command(&test.queue, last)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.result, Some(json!(5)));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A lane that keeps nothing shows nothing, but Redis keeps each outcome hidden for the
/// result ttl: a producer whose connection broke as it took a result reads it again from
/// there (outcomes.lua).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_keeps_nothing_hides_its_outcomes_for_the_result_ttl() {
    let test = TestQueue::connect("keep-nothing", |c| {
        c.with_lane(
            "jobs",
            LaneConfig::new(1, 1).with_retention(Retention::none()),
            0,
        )
        .with_result_ttl(Duration::from_millis(300))
    })
    .await;
    let worker = RedisWorker::start(&test.queue, handlers(), worker_config())
        .await
        .unwrap();
    let id = run(&test.queue, "jobs", 1).await;
    assert!(test.queue.command(id).await.unwrap().is_none());
    let done_key = format!("{}:done", test.queue.key_prefix());
    let hidden: bool = query(redis::cmd("HEXISTS").arg(&done_key).arg(id)).await;
    assert!(
        hidden,
        "the outcome waits, hidden, for a producer that lost it"
    );
    let queue = test.queue.clone();
    eventually(
        "the hidden outcome goes after the result ttl",
        Duration::from_secs(20),
        || {
            let (queue, done_key) = (queue.clone(), done_key.clone());
            async move {
                // Round trips delete what expired.
                run(&queue, "jobs", 2).await;
                let kept: bool = query(redis::cmd("HEXISTS").arg(&done_key).arg(id)).await;
                !kept
            }
        },
    )
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_per_lane_until_redriven_or_purged() {
    let lane = || LaneConfig::new(1, 2).with_retry_policy(RetryPolicy::none());
    let test = TestQueue::connect("dead-listing", |c| {
        c.with_lane("jobs", lane(), 0).with_lane("other", lane(), 1)
    })
    .await;
    let worker = RedisWorker::start(&test.queue, handlers(), worker_config())
        .await
        .unwrap();
    let mut dead = Vec::new();
    for lane in ["jobs", "other", "jobs"] {
        let handle = test
            .queue
            .submit(lane, "broken", json!(null))
            .await
            .unwrap();
        dead.push(handle.id());
        assert!(handle.await.is_err());
    }
    let list = |lane: &'static str| {
        let queue = test.queue.clone();
        async move {
            queue
                .list_commands(lane, CommandState::DeadLettered, Page::default())
                .await
                .unwrap()
        }
    };
    let jobs = list("jobs").await;
    assert_eq!(
        ids(&jobs),
        [dead[2], dead[0]],
        "newest first, this lane's only"
    );
    let error = jobs[0].error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("failed", "out of paper")
    );
    assert_eq!(jobs[0].attempts, 1);
    assert!(jobs[0].started_at_ms.is_some() && jobs[0].finished_at_ms.is_some());
    let failed = test
        .queue
        .list_commands("jobs", CommandState::Failed, Page::default())
        .await
        .unwrap();
    assert!(
        failed.is_empty(),
        "a final failure is a dead letter on Redis"
    );

    let redriven = test.queue.redrive(dead[0]).await.unwrap();
    assert!(redriven.await.is_err());
    assert_eq!(
        ids(&list("jobs").await),
        [dead[0], dead[2]],
        "failed again, newest"
    );
    let (total, per_lane) = test.queue.dead_letter_counts().await.unwrap();
    assert_eq!(total, 3);
    assert_eq!((per_lane["jobs"], per_lane["other"]), (2, 1));
    // One, by id: its record goes from every listing; the others stay.
    assert!(test.queue.delete_dead_letter(dead[2]).await.unwrap());
    assert!(
        !test.queue.delete_dead_letter(dead[2]).await.unwrap(),
        "already gone"
    );
    assert_eq!(ids(&list("jobs").await), [dead[0]]);
    assert!(test.queue.command(dead[2]).await.unwrap().is_none());
    assert_eq!(test.queue.dead_letter_counts().await.unwrap().0, 2);
    assert_eq!(test.queue.purge_dead_letters().await.unwrap(), 2);
    assert!(list("jobs").await.is_empty());
    assert!(list("other").await.is_empty());
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}
