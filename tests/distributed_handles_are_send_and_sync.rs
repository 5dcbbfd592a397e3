//! Compile-time checks that the scalability types can cross threads.
#![cfg(feature = "redis")]

use a3s_lane::{
    CommandEnvelope, CommandResult, DistributedQueue, LocalDistributedQueue, PartitionConfig,
    PartitionRouter, PartitionWorkers, PriorityBoostConfig, RateLimitConfig, RedisCommandHandle,
    RedisQueue, RedisQueueConfig, RedisQueueStats, RedisWorker, RedisWorkerConfig, RemoteCommand,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn scalability_types_are_send_and_sync() {
    send_sync::<RateLimitConfig>();
    send_sync::<PriorityBoostConfig>();
    send_sync::<PartitionConfig>();
    send_sync::<PartitionRouter>();
    send_sync::<CommandEnvelope>();
    send_sync::<CommandResult>();
    send_sync::<LocalDistributedQueue>();
    send_sync::<std::sync::Arc<dyn DistributedQueue>>();
    send_sync::<RedisQueue>();
    send_sync::<RedisQueueConfig>();
    send_sync::<RedisWorkerConfig>();
    send_sync::<RedisWorker>();
    send_sync::<RedisQueueStats>();
    send_sync::<RemoteCommand>();
    send::<RedisCommandHandle>();
    send::<PartitionWorkers>();
}
