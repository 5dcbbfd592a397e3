//! The [`DistributedQueue`] trait, the [`CommandEnvelope`] it carries and the
//! [`CommandResult`] a worker reports, plus [`LocalDistributedQueue`] (partitions in one
//! process, one worker task per core) and [`PartitionWorkers`] (run handlers over any
//! `DistributedQueue`).
//!
//! For several processes or machines, use the Redis engine (`RedisQueue` and
//! `RedisWorker`, crate `lane-redis`), which adds priorities across lanes, lane caps over
//! all workers, leases and cancellation.

mod local;
mod workers;

use async_trait::async_trait;
use lane_core::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::CommandEnvelope;
use crate::partition::PartitionId;

pub use local::LocalDistributedQueue;
pub use workers::PartitionWorkers;

/// Identifies a worker (a process or task that runs commands).
pub type WorkerId = String;

/// What a worker reports for one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The envelope's id.
    pub command_id: String,
    /// The handler's value, or its error message.
    pub result: std::result::Result<Value, String>,
    /// The worker that ran it.
    pub worker_id: WorkerId,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
}

/// A queue that hands envelopes to workers, partition by partition.
///
/// `dequeue` waits for work (it never returns `Ok(None)` just because a partition is
/// empty; `None` means the queue is closed and drained), so workers need no polling.
///
/// ```
/// use a3s_lane::{CommandEnvelope, CommandResult, DistributedQueue, PartitionId, Result};
/// use async_trait::async_trait;
/// use parking_lot::Mutex;
/// use std::collections::VecDeque;
///
/// /// One partition, no waiting: a minimal in-memory implementation.
/// #[derive(Debug, Default)]
/// struct Fifo {
///     items: Mutex<VecDeque<CommandEnvelope>>,
///     results: Mutex<Vec<CommandResult>>,
/// }
///
/// #[async_trait]
/// impl DistributedQueue for Fifo {
///     async fn enqueue(&self, envelope: CommandEnvelope) -> Result<()> {
///         self.items.lock().push_back(envelope);
///         Ok(())
///     }
///     async fn dequeue(&self, _partition: PartitionId) -> Result<Option<CommandEnvelope>> {
///         Ok(self.items.lock().pop_front()) // None: closed (this toy closes when empty)
///     }
///     async fn complete(&self, result: CommandResult) -> Result<()> {
///         self.results.lock().push(result);
///         Ok(())
///     }
///     fn num_partitions(&self) -> usize {
///         1
///     }
///     fn worker_id(&self) -> &str {
///         "fifo"
///     }
/// }
/// ```
#[async_trait]
pub trait DistributedQueue: Send + Sync + std::fmt::Debug {
    /// Accepts an envelope for processing.
    async fn enqueue(&self, envelope: CommandEnvelope) -> Result<()>;

    /// The next envelope of `partition_id`, waiting until there is one; `None` once the
    /// queue is closed and the partition drained.
    async fn dequeue(&self, partition_id: PartitionId) -> Result<Option<CommandEnvelope>>;

    /// Reports a finished command.
    async fn complete(&self, result: CommandResult) -> Result<()>;

    /// How many partitions `dequeue` serves (`0..num_partitions()`).
    fn num_partitions(&self) -> usize;

    /// This instance's worker id.
    fn worker_id(&self) -> &str;
}

fn _distributed_queue_is_dyn_compatible(_: std::sync::Arc<dyn DistributedQueue>) {}
