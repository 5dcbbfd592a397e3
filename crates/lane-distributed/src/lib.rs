//! Scalability for a3s-lane: rate limiting, priority boosting, partitioning, and a
//! multi-machine queue on Redis.
//!
//! Most users reach these through the `a3s-lane` facade (feature `distributed`, on by
//! default):
//! - [`RateLimitConfig`] (token bucket, sliding window) limits how fast a lane starts
//!   commands; it implements [`lane_core::AdmissionPolicy`].
//! - [`PriorityBoostConfig`] raises a waiting lane's priority as its deadline nears; it
//!   implements [`lane_core::PriorityBoost`].
//! - [`PartitionConfig`] spreads commands over partitions; [`LocalDistributedQueue`] and
//!   [`PartitionWorkers`] run them on every core; [`DistributedQueue`] is the trait for
//!   other transports.
#![cfg_attr(
    feature = "redis",
    doc = "- With the `redis` feature (on by default): [`RedisQueue`] (submit, cancel, \
           inspect) and [`RedisWorker`] (run handlers) share lanes, priorities, concurrency \
           caps and rate limits across processes and machines, with leases, fencing, \
           retries and dead letters kept in Redis."
)]
#![cfg_attr(
    not(feature = "redis"),
    doc = "- With the `redis` feature (off in this build): `RedisQueue` and `RedisWorker`, \
           the multi-machine backend on Redis."
)]
#![forbid(unsafe_code)]

mod boost;
mod distributed;
mod partition;
mod rate_limit;
#[cfg(feature = "redis")]
mod redis;

pub use boost::PriorityBoostConfig;
pub use distributed::{
    CommandEnvelope, CommandResult, DistributedQueue, LocalDistributedQueue, PartitionWorkers,
    WorkerId,
};
pub use partition::{
    PartitionConfig, PartitionId, PartitionRouter, PartitionStrategy, Partitioner, hash_partition,
    stable_hash,
};
pub use rate_limit::RateLimitConfig;
#[cfg(feature = "redis")]
pub use redis::{
    CancelOutcome, RedisCommandHandle, RedisLane, RedisQueue, RedisQueueConfig, RedisQueueStats,
    RedisWorker, RedisWorkerConfig, RemoteCommand, RemoteState,
};
