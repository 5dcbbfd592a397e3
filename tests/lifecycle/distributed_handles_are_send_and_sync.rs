//! Compile-time checks that the scalability types can cross threads (the Redis engine's
//! are checked in `crates/lane-redis/tests/redis/handles_are_send_and_sync.rs`).
#![cfg(feature = "distributed")]

use a3s_lane::{
    CommandEnvelope, CommandResult, DistributedQueue, LocalDistributedQueue, PartitionConfig,
    PartitionRouter, PartitionWorkers, PriorityBoostConfig, RateLimitConfig,
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
    send::<PartitionWorkers>();
}
