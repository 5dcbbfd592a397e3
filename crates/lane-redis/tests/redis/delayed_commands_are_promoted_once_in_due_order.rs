//! Delayed commands from two producers, run by two workers: each is promoted to its lane
//! once, when due, and they start in the order of their due times, whoever submitted
//! them and whichever worker's housekeeping promoted them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use a3s_lane::{
    HandlerRegistry, LaneConfig, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
    RemoteState, SubmitOptions, handler_fn,
};
use parking_lot::Mutex;
use serde_json::json;

use crate::support::{TestQueue, eventually, redis_url};

/// Submits command `k` of `part` due at `base + k * step`, from producer `k % 2`, in the
/// order of `order`, all at once; returns (k, id) pairs.
async fn submit_due(
    producers: &[RedisQueue; 2],
    part: u64,
    order: &[u64],
    base: SystemTime,
    step: Duration,
) -> Vec<(u64, u64)> {
    let submits = order.iter().map(|&k| {
        let producer = &producers[(k % 2) as usize];
        let at = base + step * u32::try_from(k).unwrap();
        async move {
            let handle = producer
                .submit_with(
                    "jobs",
                    "job",
                    json!({ "part": part, "k": k }),
                    SubmitOptions::new().with_run_at(at),
                )
                .await
                .unwrap();
            (k, handle.id())
        }
    });
    futures_util::future::join_all(submits).await
}

/// The commands' `k`s in the order workers claimed them (fencing tokens order claims
/// over all workers); each ran exactly once.
async fn claim_order(queue: &RedisQueue, ids: &[(u64, u64)]) -> Vec<u64> {
    let mut claims = Vec::new();
    for &(k, id) in ids {
        let record = queue.command(id).await.unwrap().unwrap();
        assert_eq!(record.state, RemoteState::Done, "command {k}");
        assert_eq!(record.attempts, 1, "command {k} ran more than once");
        claims.push((record.fencing_token.unwrap(), k));
    }
    claims.sort_unstable();
    claims.into_iter().map(|(_, k)| k).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_producers_and_two_workers_see_each_delayed_command_promoted_once_in_due_order() {
    // A cap of one: the lane starts its commands one at a time, in the lane's order.
    let test = TestQueue::connect("delayed-order", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 1), 0)
    })
    .await;
    let second =
        RedisQueue::connect(RedisQueueConfig::new(redis_url()).with_key_prefix(&test.prefix))
            .await
            .unwrap();
    let producers = [test.queue.clone(), second];
    let runs: Arc<Mutex<HashMap<(u64, u64), usize>>> = Arc::default();
    let handlers = HandlerRegistry::default();
    let seen = runs.clone();
    handlers.register(
        "job",
        handler_fn(move |payload, _| {
            let seen = seen.clone();
            async move {
                let key = (
                    payload["part"].as_u64().unwrap(),
                    payload["k"].as_u64().unwrap(),
                );
                *seen.lock().entry(key).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(payload)
            }
        }),
    );
    let config = || {
        RedisWorkerConfig::new(2)
            .with_lease_ttl(Duration::from_secs(3))
            .with_block_timeout(Duration::from_secs(1))
    };
    let workers = [
        RedisWorker::start(&producers[0], handlers.clone(), config())
            .await
            .unwrap(),
        RedisWorker::start(&producers[1], handlers.clone(), config())
            .await
            .unwrap(),
    ];

    // 1. Due one after another while the workers are idle: each due time wakes them.
    let order = [5, 0, 3, 1, 4, 2, 7, 6];
    let base = SystemTime::now() + Duration::from_millis(300);
    let staggered = submit_due(&producers, 1, &order, base, Duration::from_millis(60)).await;
    for &(k, id) in &staggered {
        let record = producers[1].command(id).await.unwrap().unwrap();
        assert_eq!(
            record.state,
            RemoteState::Delayed,
            "command {k} before its time"
        );
    }
    let lane = &producers[0].stats().await.unwrap().queue.lanes["jobs"];
    assert_eq!((lane.delayed, lane.pending), (order.len(), 0));
    eventually(
        "the staggered commands to finish",
        Duration::from_secs(10),
        || async {
            let stats = producers[0].stats().await.unwrap();
            stats.counter("completed") == order.len() as u64
        },
    )
    .await;
    assert_eq!(
        claim_order(&producers[0], &staggered).await,
        (0..order.len() as u64).collect::<Vec<_>>()
    );

    // 2. Many due together while the lane is paused: promoted in one housekeeping pass or
    // several, they wait in the lane in the order of their due times.
    producers[0].pause_lane("jobs").await.unwrap();
    let order: Vec<u64> = (0..24).rev().collect();
    let base = SystemTime::now() + Duration::from_millis(200);
    let together = submit_due(&producers, 2, &order, base, Duration::from_millis(3)).await;
    eventually(
        "every command to be promoted",
        Duration::from_secs(10),
        || async {
            let lane = producers[1].stats().await.unwrap().queue.lanes["jobs"].clone();
            lane.delayed == 0 && lane.pending == order.len()
        },
    )
    .await;
    producers[1].resume_lane("jobs").await.unwrap();
    eventually(
        "the paused commands to finish",
        Duration::from_secs(10),
        || async {
            let stats = producers[0].stats().await.unwrap();
            stats.counter("completed") == (8 + order.len()) as u64
        },
    )
    .await;
    assert_eq!(
        claim_order(&producers[0], &together).await,
        (0..order.len() as u64).collect::<Vec<_>>()
    );

    let runs = runs.lock().clone();
    assert_eq!(runs.len(), 32, "every command ran: {runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "a command ran twice: {runs:?}"
    );
    let stats = producers[0].stats().await.unwrap();
    assert_eq!(stats.queue.total_delayed, 0);
    assert_eq!(stats.counter("submitted"), 32);
    assert_eq!(stats.counter("completed"), 32);
    for worker in workers {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}
