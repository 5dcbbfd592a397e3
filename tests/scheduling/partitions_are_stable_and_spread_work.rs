//! Partitioning: the hash strategy is a pure function of the key (stable across
//! processes, machines and versions), stays in range, moves few keys when partitions
//! are added; the local distributed queue spreads work over partitions without polling.
#![cfg(feature = "distributed")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandEnvelope, DistributedQueue, HandlerRegistry, LaneError, LocalDistributedQueue,
    PartitionConfig, PartitionWorkers, handler_fn, hash_partition,
};
use proptest::prelude::*;
use serde_json::json;

fn envelope_with_key(key: &str) -> CommandEnvelope {
    CommandEnvelope::new("query", "fetch", json!(null)).with_partition_key(key)
}

proptest! {
    #[test]
    fn the_same_key_always_lands_on_the_same_partition(key in ".{0,40}", n in 1usize..64) {
        let first = PartitionConfig::hash(n).router().unwrap();
        let second = PartitionConfig::hash(n).router().unwrap();
        let a = first.route(&envelope_with_key(&key)).unwrap();
        // Different routers (think: different processes), routed twice, other traffic between.
        let _ = second.route(&envelope_with_key("something else"));
        let b = second.route(&envelope_with_key(&key)).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(a, hash_partition(&key, n));
        prop_assert!(a < n);
    }

    #[test]
    fn adding_a_partition_moves_keys_only_to_the_new_one(key in ".{0,40}", n in 1usize..64) {
        let before = hash_partition(&key, n);
        let after = hash_partition(&key, n + 1);
        prop_assert!(after == before || after == n, "{} -> {} with {} -> {} partitions", before, after, n, n + 1);
    }

    #[test]
    fn without_a_key_the_command_type_is_hashed(command_type in "[a-z_]{1,20}", n in 1usize..16) {
        let router = PartitionConfig::hash(n).router().unwrap();
        let envelope = CommandEnvelope::new("query", command_type.clone(), json!(1));
        prop_assert_eq!(router.route(&envelope).unwrap(), hash_partition(&command_type, n));
    }

    #[test]
    fn round_robin_visits_every_partition_evenly(n in 1usize..32, rounds in 1usize..5) {
        let router = PartitionConfig::round_robin(n).router().unwrap();
        let envelope = CommandEnvelope::new("q", "t", json!(null));
        let mut counts = vec![0usize; n];
        for _ in 0..n * rounds {
            counts[router.route(&envelope).unwrap()] += 1;
        }
        prop_assert!(counts.iter().all(|&c| c == rounds));
    }
}

#[test]
fn hashing_spreads_many_keys_over_all_partitions() {
    let mut counts = [0usize; 8];
    for user in 0..8000 {
        counts[hash_partition(&format!("user:{user}"), 8)] += 1;
    }
    // Each partition gets its share within 15% (expected 1000).
    assert!(
        counts.iter().all(|&c| (850..=1150).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn zero_partitions_is_a_config_error() {
    let error = LocalDistributedQueue::new(PartitionConfig::round_robin(0)).unwrap_err();
    assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}");
    assert!(error.to_string().contains("at least 1"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_workers_run_every_command_once_and_keep_a_key_in_order() {
    let queue = Arc::new(LocalDistributedQueue::new(PartitionConfig::hash(4)).unwrap());
    let handlers = HandlerRegistry::default();
    handlers.register(
        "echo",
        handler_fn(|payload, _ctx| async move { Ok(payload) }),
    );
    let workers = PartitionWorkers::spawn(queue.clone(), handlers);
    let mut receivers = Vec::new();
    for i in 0..400 {
        let key = format!("user:{}", i % 10);
        let envelope = CommandEnvelope::new("query", "echo", json!({"i": i, "key": key}))
            .with_partition_key(key);
        receivers.push(queue.submit(envelope).await.unwrap());
    }
    let mut workers_seen = HashSet::new();
    let mut per_key: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for receiver in receivers {
        let result = tokio::time::timeout(Duration::from_secs(10), receiver)
            .await
            .expect("every command finishes")
            .unwrap();
        let value = result.result.unwrap();
        workers_seen.insert(result.worker_id);
        per_key
            .entry(value["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(value["i"].as_i64().unwrap());
    }
    assert_eq!(per_key.values().map(Vec::len).sum::<usize>(), 400);
    for (key, order) in &per_key {
        // One key lives on one partition, which one task runs in FIFO order.
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{key}: {order:?}");
    }
    queue.close();
    tokio::time::timeout(Duration::from_secs(10), workers.join())
        .await
        .expect("workers stop once the queue is closed and drained");
    assert!(
        queue
            .enqueue(CommandEnvelope::new("q", "echo", json!(0)))
            .await
            .unwrap_err()
            .is_shutdown()
    );
}

#[tokio::test]
async fn results_nobody_waits_for_are_kept_for_next_result() {
    let queue = LocalDistributedQueue::new(PartitionConfig::none()).unwrap();
    queue
        .enqueue(CommandEnvelope::new("q", "t", json!(1)).with_id("a"))
        .await
        .unwrap();
    let envelope = queue.dequeue(0).await.unwrap().unwrap();
    assert_eq!(envelope.id, "a");
    queue
        .complete(a3s_lane::CommandResult {
            command_id: "a".into(),
            result: Ok(json!(2)),
            worker_id: "w".into(),
            duration_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(queue.next_result().await.result, Ok(json!(2)));
    assert!(
        queue
            .dequeue(7)
            .await
            .unwrap_err()
            .to_string()
            .contains("partition 7 does not exist")
    );
}
