//! Priority boosting on a Redis queue: a low-priority lane whose head command has waited
//! long enough is claimed before a busier, more urgent lane, by whichever worker claims
//! next; without a boost the order stays strict. The wait is counted on the Redis clock.

use std::time::Duration;

use a3s_lane::{
    CancelOutcome, HandlerRegistry, LaneConfig, LaneError, PriorityBoostConfig, RedisQueue,
    RedisQueueConfig, RedisWorker, RedisWorkerConfig, RemoteState, RetryPolicy, handler_fn,
};
use serde_json::{Value, json};

use crate::support::{TestQueue, eventually, redis_url};

const HOUR: Duration = Duration::from_secs(3600);
const WAIT_LIMIT: Duration = Duration::from_secs(60);

fn handlers() -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    // Sleeps for the payload's milliseconds: urgent commands hold the slots a while.
    handlers.register(
        "work",
        handler_fn(|payload, _| async move {
            let ms = payload.as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Value::Null)
        }),
    );
    handlers
}

/// `urgent` (priority 1, cap `workers`) holds `urgent_count` commands of `urgent_ms`
/// each; `batch` (priority 5, cap 1, boosted by `boost`) holds one command, submitted
/// after them. Both are submitted before `workers` workers of one slot each start.
/// Returns the lanes in claim order (fencing tokens order claims over all workers).
async fn claim_order(
    test: &str,
    boost: PriorityBoostConfig,
    urgent_count: usize,
    urgent_ms: u64,
    workers: usize,
) -> Vec<String> {
    let test = TestQueue::connect(test, |c| {
        c.with_lane("urgent", LaneConfig::new(1, workers), 1)
            .with_lane("batch", LaneConfig::new(1, 1).with_priority_boost(boost), 5)
    })
    .await;
    let mut handles = Vec::new();
    for _ in 0..urgent_count {
        handles.push(
            test.queue
                .submit("urgent", "work", json!(urgent_ms))
                .await
                .unwrap(),
        );
    }
    handles.push(test.queue.submit("batch", "work", json!(0)).await.unwrap());
    let ids: Vec<u64> = handles.iter().map(|h| h.id()).collect();
    let mut running = Vec::new();
    for _ in 0..workers {
        running.push(
            RedisWorker::start(
                &test.queue,
                handlers(),
                RedisWorkerConfig::new(1)
                    .with_lease_ttl(Duration::from_secs(10))
                    .with_block_timeout(Duration::from_secs(1)),
            )
            .await
            .unwrap(),
        );
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut order = Vec::new();
    for id in ids {
        let record = test.queue.command(id).await.unwrap().unwrap();
        order.push((record.fencing_token.unwrap(), record.lane_id));
    }
    order.sort();
    for worker in running {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
    // Finished commands leave no pending instant behind.
    let since: usize = redis::cmd("HLEN")
        .arg(format!("{}:since", test.queue.key_prefix()))
        .query_async(&mut redis_connection().await)
        .await
        .unwrap();
    assert_eq!(
        since, 0,
        "pending instants of finished commands are removed"
    );
    order.into_iter().map(|(_, lane)| lane).collect()
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// How many `urgent` claims came after the `batch` one.
fn urgent_after_batch(order: &[String]) -> usize {
    let at = order.iter().position(|lane| lane == "batch").unwrap();
    order[at + 1..].len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_boost_the_batch_command_waits_for_every_urgent_one() {
    let order = claim_order("boost-off", PriorityBoostConfig::disabled(), 30, 20, 1).await;
    assert_eq!(order.last().unwrap(), "batch", "{order:?}");
    assert_eq!(urgent_after_batch(&order), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_deadline_the_batch_command_overtakes_a_busy_urgent_lane() {
    // 60 urgent commands of at least 20 ms each keep the one slot busy for 1.2 s or more,
    // well past the 300 ms deadline: once the batch command's wait passes it, the batch
    // lane is at priority 0 and the next claim is its.
    let order = claim_order(
        "boost-deadline",
        PriorityBoostConfig::new(Duration::from_millis(300)),
        60,
        20,
        1,
    )
    .await;
    let after = urgent_after_batch(&order);
    assert!(
        after > 0,
        "the batch command was claimed before the urgent lane ran dry: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boost_holds_across_workers() {
    // Two workers share the urgent lane (cap 2); whichever claims after the deadline
    // takes the batch command.
    let order = claim_order(
        "boost-workers",
        PriorityBoostConfig::new(Duration::from_millis(300)),
        120,
        20,
        2,
    )
    .await;
    assert!(urgent_after_batch(&order) > 0, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boost_that_only_ties_the_urgent_lane_leaves_it_its_turns() {
    // A step active from the moment of queueing (for an hour): 5 - 4 = 1 ties the urgent
    // lane's priority, and a tie goes to the lane configured as more urgent, as in process.
    let order = claim_order(
        "boost-tie",
        PriorityBoostConfig::new(HOUR).with_boost(HOUR, 4),
        10,
        1,
        1,
    )
    .await;
    assert_eq!(order.last().unwrap(), "batch", "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boost_past_the_urgent_priority_wins_the_first_claim() {
    // 5 - 255 saturates at 0, ahead of the urgent lane's 1 from the first claim on.
    let order = claim_order(
        "boost-full",
        PriorityBoostConfig::new(HOUR).with_boost(HOUR, 255),
        10,
        1,
        1,
    )
    .await;
    assert_eq!(order.first().unwrap(), "batch", "{order:?}");
}

async fn effective_priority(queue: &RedisQueue, lane: &str) -> u8 {
    queue.stats().await.unwrap().queue.lanes[lane].effective_priority
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_the_boost_the_head_command_has_earned() {
    let test = TestQueue::connect("boost-stats", |c| {
        c.with_lane(
            "slow",
            LaneConfig::new(1, 1).with_priority_boost(PriorityBoostConfig::standard(HOUR)),
            5,
        )
        .with_lane(
            "stepped",
            LaneConfig::new(1, 1).with_priority_boost(
                PriorityBoostConfig::new(HOUR).with_boost(HOUR - Duration::from_millis(200), 2),
            ),
            5,
        )
        .with_lane(
            "short",
            LaneConfig::new(1, 1)
                .with_priority_boost(PriorityBoostConfig::new(Duration::from_millis(200))),
            5,
        )
    })
    .await;
    for lane in ["slow", "stepped", "short"] {
        test.queue.pause_lane(lane).await.unwrap();
        assert_eq!(
            effective_priority(&test.queue, lane).await,
            5,
            "{lane} is empty"
        );
    }
    for lane in ["slow", "stepped", "short"] {
        let _pending = test.queue.submit(lane, "work", json!(0)).await.unwrap();
    }
    eventually("the stepped lane's boost of 2", WAIT_LIMIT, || async {
        effective_priority(&test.queue, "stepped").await == 3
    })
    .await;
    eventually("the short lane past its deadline", WAIT_LIMIT, || async {
        effective_priority(&test.queue, "short").await == 0
    })
    .await;
    // The first step of a one-hour standard boost is 15 minutes away.
    assert_eq!(effective_priority(&test.queue, "slow").await, 5);
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.queue.lanes["short"].priority, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boost_declared_later_counts_pending_commands_from_then_and_can_be_removed() {
    let test = TestQueue::connect("boost-redeclare", |c| {
        c.with_lane("batch", LaneConfig::new(1, 1), 5)
    })
    .await;
    test.queue.pause_lane("batch").await.unwrap();
    let _pending = test.queue.submit("batch", "work", json!(0)).await.unwrap();
    assert_eq!(effective_priority(&test.queue, "batch").await, 5);
    test.queue
        .declare_lane(
            "batch",
            LaneConfig::new(1, 1)
                .with_priority_boost(PriorityBoostConfig::new(Duration::from_millis(200))),
            5,
        )
        .await
        .unwrap();
    eventually("the boost past its deadline", WAIT_LIMIT, || async {
        effective_priority(&test.queue, "batch").await == 0
    })
    .await;
    test.queue
        .declare_lane("batch", LaneConfig::new(1, 1), 5)
        .await
        .unwrap();
    assert_eq!(effective_priority(&test.queue, "batch").await, 5);
    let since: usize = redis::cmd("HLEN")
        .arg(format!("{}:since", test.queue.key_prefix()))
        .query_async(&mut redis_connection().await)
        .await
        .unwrap();
    assert_eq!(since, 0, "a lane without a boost keeps no pending instants");
}

/// The instant (Redis clock, us) the command became pending, as kept for boosted lanes.
async fn pending_since(queue: &RedisQueue, id: u64) -> Option<u64> {
    redis::cmd("HGET")
        .arg(format!("{}:since", queue.key_prefix()))
        .arg(id)
        .query_async(&mut redis_connection().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_from_when_it_is_due_and_a_handed_back_command_keeps_its_instant() {
    let test = TestQueue::connect("boost-instants", |c| {
        c.with_lane(
            "jobs",
            LaneConfig::new(1, 4)
                .with_priority_boost(PriorityBoostConfig::standard(HOUR))
                .with_retry_policy(RetryPolicy::fixed(3, Duration::from_millis(50))),
            5,
        )
    })
    .await;
    let handlers = HandlerRegistry::default();
    // Fails its first attempt; the retry runs until the worker stops it.
    handlers.register(
        "flaky",
        handler_fn(|_, ctx| async move {
            if ctx.attempt() == 1 {
                return Err(LaneError::CommandError("first attempt fails".into()));
            }
            ctx.cancelled().await;
            Err(LaneError::Cancelled("stopping".into()))
        }),
    );
    let handle = test.queue.submit("jobs", "flaky", json!({})).await.unwrap();
    let id = handle.id();
    let submitted = pending_since(&test.queue, id)
        .await
        .expect("a command of a boosted lane has a pending instant");
    let worker = RedisWorker::start(
        &test.queue,
        handlers,
        RedisWorkerConfig::new(4).with_block_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    eventually("the retry runs", WAIT_LIMIT, || async {
        let record = test.queue.command(id).await.unwrap().unwrap();
        record.state == RemoteState::Running && record.attempts == 2
    })
    .await;
    let retried = pending_since(&test.queue, id).await.unwrap();
    assert!(
        retried > submitted,
        "the retry became pending after the submit: {retried} <= {submitted}"
    );
    // Stopping the worker hands the running command back: it has been waiting since
    // its retry became due, and keeps that instant.
    assert_eq!(worker.shutdown_now().await, 1);
    assert_eq!(
        test.queue.command(id).await.unwrap().unwrap().state,
        RemoteState::Pending
    );
    assert_eq!(pending_since(&test.queue, id).await, Some(retried));
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(
        pending_since(&test.queue, id).await,
        None,
        "removed once finished"
    );
}

#[test]
fn a_bad_boost_is_rejected_naming_the_lane() {
    let redis_lane =
        |lane: LaneConfig| RedisQueueConfig::new("redis://127.0.0.1:1").with_lane("batch", lane, 5);
    let steps_without_deadline = redis_lane(
        LaneConfig::new(1, 1)
            .with_priority_boost(PriorityBoostConfig::disabled().with_boost(HOUR, 1)),
    );
    let error = steps_without_deadline.validate().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("lane 'batch': priority boost: with_boost needs a deadline"),
        "{error}"
    );
    let below_a_microsecond = redis_lane(
        LaneConfig::new(1, 1)
            .with_priority_boost(PriorityBoostConfig::new(Duration::from_nanos(500))),
    );
    let error = below_a_microsecond.validate().unwrap_err();
    assert!(
        matches!(&error, LaneError::ConfigError(reason)
            if reason.contains("lane 'batch': priority boost") && reason.contains("1µs")),
        "{error}"
    );
    let config = RedisQueueConfig::new("redis://127.0.0.1:1").with_lane(
        "batch",
        LaneConfig::new(1, 1).with_priority_boost(PriorityBoostConfig::new(Duration::ZERO)),
        5,
    );
    let error = config.validate().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("lane 'batch': priority boost: the deadline must be longer than zero"),
        "{error}"
    );
}
