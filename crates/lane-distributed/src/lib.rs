//! Partitioning for a3s-lane: spread commands over partitions and run them on every core.
//!
//! Reached through the `a3s-lane` facade (feature `distributed`, on by default):
//! [`PartitionConfig`] spreads commands over partitions; [`LocalDistributedQueue`] and
//! [`PartitionWorkers`] run them on every core; [`DistributedQueue`] is the trait for
//! other transports. Rate limits and priority boosts live in `lane-core` (every engine
//! understands them); the multi-machine engine is `lane-redis` (facade feature `redis`).

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// Dependencies point one way, bottom up: hash <- envelope <- partition <- distributed.
mod distributed;
mod envelope;
mod hash;
mod partition;

pub use distributed::{
    CommandResult, DistributedQueue, LocalDistributedQueue, PartitionWorkers, WorkerId,
};
pub use envelope::CommandEnvelope;
pub use hash::stable_hash;
pub use partition::{
    PartitionConfig, PartitionId, PartitionRouter, PartitionStrategy, Partitioner, hash_partition,
};
