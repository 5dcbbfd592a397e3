//! Several workers on one Redis queue: strict priority across lanes, FIFO inside a lane,
//! each lane's cap over all workers together, global rate limits and pauses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneConfig, RateLimitConfig, RedisQueue, RedisWorker, RedisWorkerConfig,
    handler_fn,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::TestQueue;

fn worker_config(slots: usize) -> RedisWorkerConfig {
    RedisWorkerConfig::new(slots)
        .with_lease_ttl(Duration::from_secs(3))
        .with_block_timeout(Duration::from_secs(1))
}

async fn start_workers(
    queue: &RedisQueue,
    handlers: &HandlerRegistry,
    count: usize,
    slots: usize,
) -> Vec<RedisWorker> {
    let mut workers = Vec::new();
    for _ in 0..count {
        workers.push(
            RedisWorker::start(queue, handlers.clone(), worker_config(slots))
                .await
                .unwrap(),
        );
    }
    workers
}

async fn stop(workers: Vec<RedisWorker>) {
    for worker in workers {
        worker.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}

/// The fencing token of each command's (only) run: tokens order claims over all workers.
async fn claim_order(queue: &RedisQueue, ids: &[(u64, &str)]) -> Vec<(u64, String)> {
    let mut order = Vec::new();
    for &(id, _) in ids {
        let record = queue.command(id).await.unwrap().unwrap();
        assert_eq!(record.attempts, 1);
        order.push((record.fencing_token.unwrap(), record.lane_id));
    }
    order.sort();
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_strict_priority_and_fifo_over_all_workers() {
    let test = TestQueue::connect("priority", |c| {
        c.with_lane("high", LaneConfig::new(1, 50), 0)
            .with_lane("mid", LaneConfig::new(1, 50), 1)
            .with_lane("low", LaneConfig::new(1, 50), 2)
    })
    .await;
    // Submitted before any worker exists, low first: the order of claims is then
    // decided by priority alone.
    let mut submitted = Vec::new();
    for lane in ["low", "mid", "high"] {
        for i in 0..8 {
            let handle = test
                .queue
                .submit(lane, "work", json!({"i": i}))
                .await
                .unwrap();
            submitted.push((handle.id(), lane, handle));
        }
    }
    let handlers = HandlerRegistry::default();
    handlers.register(
        "work",
        handler_fn(|payload, _| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(payload)
        }),
    );
    // Three workers with one slot each: slots are scarce, caps are not.
    let workers = start_workers(&test.queue, &handlers, 3, 1).await;
    let ids: Vec<(u64, &str)> = submitted.iter().map(|(id, lane, _)| (*id, *lane)).collect();
    for (_, _, handle) in submitted {
        handle.await.unwrap();
    }
    let order = claim_order(&test.queue, &ids).await;
    let lanes: Vec<&str> = order.iter().map(|(_, lane)| lane.as_str()).collect();
    let mut expected = vec!["high"; 8];
    expected.extend(vec!["mid"; 8]);
    expected.extend(vec!["low"; 8]);
    assert_eq!(lanes, expected, "claims in priority order");
    // FIFO inside each lane: ids (submit order) and tokens (claim order) agree.
    let mut by_lane: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for &(id, lane) in &ids {
        let token = test
            .queue
            .command(id)
            .await
            .unwrap()
            .unwrap()
            .fencing_token
            .unwrap();
        by_lane.entry(lane).or_default().push((id, token));
    }
    for (lane, mut runs) in by_lane {
        runs.sort();
        assert!(
            runs.windows(2).all(|w| w[0].1 < w[1].1),
            "{lane} is not FIFO: {runs:?}"
        );
    }
    stop(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lane_cap_holds_over_all_workers_together() {
    let test = TestQueue::connect("caps", |c| {
        c.with_lane("a", LaneConfig::new(1, 2), 0)
            .with_lane("b", LaneConfig::new(1, 3), 1)
    })
    .await;
    let running: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let handlers = HandlerRegistry::default();
    let seen = running.clone();
    handlers.register(
        "work",
        handler_fn(move |_, ctx| {
            let seen = seen.clone();
            async move {
                let lane = ctx.lane().to_owned();
                {
                    let mut map = seen.lock();
                    let entry = map.entry(lane.clone()).or_default();
                    entry.0 += 1;
                    entry.1 = entry.1.max(entry.0);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.lock().get_mut(&lane).unwrap().0 -= 1;
                Ok(Value::Null)
            }
        }),
    );
    // 4 workers x 4 slots = 16 slots, far more than the caps (2 + 3).
    let workers = start_workers(&test.queue, &handlers, 4, 4).await;
    let mut handles = Vec::new();
    for i in 0..60 {
        let lane = if i % 2 == 0 { "a" } else { "b" };
        handles.push(test.queue.submit(lane, "work", json!(i)).await.unwrap());
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let peaks = running.lock().clone();
    assert_eq!(
        peaks["a"].1, 2,
        "lane a reached its cap of 2 and never more"
    );
    assert_eq!(
        peaks["b"].1, 3,
        "lane b reached its cap of 3 and never more"
    );
    let stats = test.queue.stats().await.unwrap();
    assert_eq!(stats.queue.total_active, 0);
    assert_eq!(stats.counter("completed"), 60);
    stop(workers).await;
}

/// Claim instants (Redis clock, microseconds) of the given commands, sorted.
async fn claim_instants(queue: &RedisQueue, ids: &[u64]) -> Vec<u64> {
    let mut instants = Vec::new();
    for &id in ids {
        instants.push(
            queue
                .command(id)
                .await
                .unwrap()
                .unwrap()
                .started_at_us
                .unwrap(),
        );
    }
    instants.sort_unstable();
    instants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bucket_limits_starts_over_all_workers() {
    // 10 per second with a burst of 3, shared by three workers.
    let test = TestQueue::connect("rate-tb", |c| {
        c.with_lane(
            "api",
            LaneConfig::new(1, 100).with_rate_limit(RateLimitConfig::token_bucket(
                10,
                Duration::from_secs(1),
                3,
            )),
            0,
        )
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register("call", handler_fn(|p, _| async move { Ok(p) }));
    let workers = start_workers(&test.queue, &handlers, 3, 8).await;
    let mut handles = Vec::new();
    for i in 0..18 {
        handles.push(test.queue.submit("api", "call", json!(i)).await.unwrap());
    }
    let ids: Vec<u64> = handles.iter().map(|h| h.id()).collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let at = claim_instants(&test.queue, &ids).await;
    // In any span, at most burst + span / 100 ms claims: the (k + 3 + m)-th claim comes
    // at least m x 100 ms after the k-th (the Redis clock has microsecond precision).
    for k in 0..at.len() {
        for m in 1..at.len() {
            if let Some(later) = at.get(k + 3 + m - 1 + 1) {
                assert!(
                    later - at[k] >= m as u64 * 100_000 - 1,
                    "claims {k} and {} are {} us apart, less than {m} x 100 ms",
                    k + 3 + m,
                    later - at[k]
                );
            }
        }
    }
    // And the limit is not stricter than configured: 18 claims need about 1.5 s.
    assert!(at[17] - at[0] < 3_000_000, "{} us", at[17] - at[0]);
    stop(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_window_limits_starts_over_all_workers() {
    let test = TestQueue::connect("rate-sw", |c| {
        c.with_lane(
            "api",
            LaneConfig::new(1, 100).with_rate_limit(RateLimitConfig::sliding_window(
                4,
                Duration::from_millis(300),
            )),
            0,
        )
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register("call", handler_fn(|p, _| async move { Ok(p) }));
    let workers = start_workers(&test.queue, &handlers, 2, 8).await;
    let mut handles = Vec::new();
    for i in 0..12 {
        handles.push(test.queue.submit("api", "call", json!(i)).await.unwrap());
    }
    let ids: Vec<u64> = handles.iter().map(|h| h.id()).collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let at = claim_instants(&test.queue, &ids).await;
    for k in 0..at.len().saturating_sub(4) {
        assert!(
            at[k + 4] - at[k] >= 300_000,
            "5 claims within {} us",
            at[k + 4] - at[k]
        );
    }
    stop(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_lane_starts_nothing_on_any_worker_until_resumed_or_its_time_is_up() {
    let test = TestQueue::connect("pause", |c| {
        c.with_lane("api", LaneConfig::new(1, 10), 0)
            .with_lane("other", LaneConfig::new(1, 10), 1)
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register("call", handler_fn(|p, _| async move { Ok(p) }));
    let workers = start_workers(&test.queue, &handlers, 2, 4).await;

    test.queue.pause_lane("api").await.unwrap();
    let held = test.queue.submit("api", "call", json!(1)).await.unwrap();
    // Another lane keeps running meanwhile.
    test.queue
        .submit("other", "call", json!(2))
        .await
        .unwrap()
        .await
        .unwrap();
    let stats = test.queue.stats().await.unwrap();
    assert!(stats.queue.lanes["api"].paused);
    assert_eq!(stats.queue.lanes["api"].pending, 1);
    test.queue.resume_lane("api").await.unwrap();
    held.await.unwrap();

    // A timed pause (HTTP 429 with Retry-After): claims resume by themselves.
    test.queue
        .pause_lane_for("api", Duration::from_millis(400))
        .await
        .unwrap();
    let paused_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let handle = test.queue.submit("api", "call", json!(3)).await.unwrap();
    let id = handle.id();
    handle.await.unwrap();
    let started = test
        .queue
        .command(id)
        .await
        .unwrap()
        .unwrap()
        .started_at_us
        .unwrap();
    assert!(
        started + 50_000 >= paused_at + 400_000,
        "started {} us after the pause began",
        started.saturating_sub(paused_at)
    );
    assert!(
        test.queue
            .pause_lane("nope")
            .await
            .unwrap_err()
            .to_string()
            .contains("known lanes: api, other")
    );
    stop(workers).await;
}
