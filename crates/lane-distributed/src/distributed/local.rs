//! [`LocalDistributedQueue`]: partitions in one process, for spreading work over cores.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use lane_core::{LaneError, Result};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::{CommandResult, DistributedQueue, WorkerId};
use crate::envelope::{CommandEnvelope, unique_id};
use crate::partition::{PartitionConfig, PartitionId, PartitionRouter};

#[derive(Debug, Default)]
struct Partition {
    items: Mutex<VecDeque<CommandEnvelope>>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Results {
    /// Submitters waiting for one command's result ([`LocalDistributedQueue::submit`]).
    waiters: HashMap<String, oneshot::Sender<CommandResult>>,
    /// Results nobody waits for by id, read with [`LocalDistributedQueue::next_result`].
    unclaimed: VecDeque<CommandResult>,
}

/// Partitions in one process: envelopes are routed by a [`PartitionConfig`], each
/// partition is a FIFO, and `dequeue` waits on the partition's notifier (no polling).
///
/// ```
/// use a3s_lane::{CommandEnvelope, HandlerRegistry, LocalDistributedQueue, PartitionWorkers, handler_fn};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> a3s_lane::Result<()> {
/// let queue = Arc::new(LocalDistributedQueue::auto());
/// let handlers = HandlerRegistry::default();
/// handlers.register("double", handler_fn(|payload, _ctx| async move {
///     Ok(serde_json::json!(payload.as_i64().unwrap_or(0) * 2))
/// }));
/// let workers = PartitionWorkers::spawn(queue.clone(), handlers);
///
/// let result = queue.submit(CommandEnvelope::new("query", "double", serde_json::json!(21))).await?;
/// assert_eq!(result.await.unwrap().result, Ok(serde_json::json!(42)));
///
/// queue.close();
/// workers.join().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalDistributedQueue {
    worker_id: WorkerId,
    router: PartitionRouter,
    partitions: Vec<Partition>,
    results: Mutex<Results>,
    result_ready: Notify,
    closed: AtomicBool,
}

impl LocalDistributedQueue {
    /// A queue with the partitions `config` describes, or [`LaneError::ConfigError`]
    /// (zero partitions, for example).
    pub fn new(config: PartitionConfig) -> Result<Self> {
        let router = config.router()?;
        Ok(Self {
            worker_id: format!("local-{}", unique_id()),
            partitions: (0..router.num_partitions())
                .map(|_| Partition::default())
                .collect(),
            router,
            results: Mutex::default(),
            result_ready: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// One round-robin partition per CPU core ([`PartitionConfig::auto`]).
    pub fn auto() -> Self {
        Self::new(PartitionConfig::auto()).expect("auto() has at least one partition")
    }

    /// The partition config.
    pub fn partition_config(&self) -> &PartitionConfig {
        self.router.config()
    }

    /// Routes and enqueues `envelope`; the receiver yields its result.
    pub async fn submit(
        &self,
        envelope: CommandEnvelope,
    ) -> Result<oneshot::Receiver<CommandResult>> {
        let (tx, rx) = oneshot::channel();
        let id = envelope.id.clone();
        self.results.lock().waiters.insert(id.clone(), tx);
        if let Err(error) = self.enqueue(envelope).await {
            self.results.lock().waiters.remove(&id);
            return Err(error);
        }
        Ok(rx)
    }

    /// Takes an envelope without waiting; `None` when the partition is empty.
    pub fn try_dequeue(&self, partition_id: PartitionId) -> Result<Option<CommandEnvelope>> {
        Ok(self.partition(partition_id)?.items.lock().pop_front())
    }

    /// How many envelopes wait in `partition_id`.
    pub fn pending(&self, partition_id: PartitionId) -> Result<usize> {
        Ok(self.partition(partition_id)?.items.lock().len())
    }

    /// The next result that no [`LocalDistributedQueue::submit`] caller waits for.
    pub async fn next_result(&self) -> CommandResult {
        loop {
            let notified = self.result_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let result = self.results.lock().unclaimed.pop_front();
            if let Some(result) = result {
                return result;
            }
            notified.await;
        }
    }

    /// Stops accepting envelopes; workers drain what is queued, then `dequeue` returns `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for partition in &self.partitions {
            partition.ready.notify_waiters();
        }
    }

    /// Whether [`LocalDistributedQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn partition(&self, partition_id: PartitionId) -> Result<&Partition> {
        self.partitions.get(partition_id).ok_or_else(|| {
            LaneError::QueueError(format!(
                "partition {partition_id} does not exist; this queue has {} (0..{})",
                self.partitions.len(),
                self.partitions.len()
            ))
        })
    }
}

#[async_trait]
impl DistributedQueue for LocalDistributedQueue {
    async fn enqueue(&self, envelope: CommandEnvelope) -> Result<()> {
        if self.is_closed() {
            return Err(LaneError::ShutdownInProgress);
        }
        let partition = self.partition(self.router.route(&envelope)?)?;
        partition.items.lock().push_back(envelope);
        partition.ready.notify_one();
        Ok(())
    }

    async fn dequeue(&self, partition_id: PartitionId) -> Result<Option<CommandEnvelope>> {
        let partition = self.partition(partition_id)?;
        loop {
            let notified = partition.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (envelope, more) = {
                let mut items = partition.items.lock();
                let envelope = items.pop_front();
                (envelope, !items.is_empty())
            };
            if let Some(envelope) = envelope {
                if more {
                    // Another consumer of this partition may be waiting for the next one.
                    partition.ready.notify_one();
                }
                return Ok(Some(envelope));
            }
            if self.is_closed() {
                return Ok(None);
            }
            notified.await;
        }
    }

    async fn complete(&self, result: CommandResult) -> Result<()> {
        let mut results = self.results.lock();
        match results.waiters.remove(&result.command_id) {
            Some(waiter) => {
                if let Err(result) = waiter.send(result) {
                    // The submitter stopped waiting: keep the result for next_result().
                    results.unclaimed.push_back(result);
                    drop(results);
                    self.result_ready.notify_one();
                }
            }
            None => {
                results.unclaimed.push_back(result);
                drop(results);
                self.result_ready.notify_one();
            }
        }
        Ok(())
    }

    fn num_partitions(&self) -> usize {
        self.partitions.len()
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }
}
