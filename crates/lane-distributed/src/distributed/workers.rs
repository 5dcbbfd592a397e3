//! [`PartitionWorkers`]: one task per partition running registered handlers.

use std::sync::Arc;
use std::time::Instant;

use lane_core::{CommandContext, DEFAULT_CANCEL_GRACE, HandlerRegistry, RunLimits, supervise};
use tokio::task::JoinSet;

use super::{CommandResult, DistributedQueue};
use crate::partition::PartitionId;

/// One task per partition of a [`DistributedQueue`], each taking envelopes in order and
/// running them with the handler registered for their type. On a multi-threaded tokio
/// runtime the partitions run on all cores. Results name their worker as
/// `{queue worker id}/{partition}`.
#[derive(Debug)]
pub struct PartitionWorkers {
    tasks: JoinSet<()>,
}

impl PartitionWorkers {
    /// Starts the tasks on the current tokio runtime.
    pub fn spawn(queue: Arc<dyn DistributedQueue>, handlers: HandlerRegistry) -> Self {
        let mut tasks = JoinSet::new();
        for partition in 0..queue.num_partitions() {
            tasks.spawn(work(queue.clone(), handlers.clone(), partition));
        }
        Self { tasks }
    }

    /// Waits until every partition's task ended (the queue was closed and drained).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the tasks at once (envelopes being run are dropped).
    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }
}

async fn work(queue: Arc<dyn DistributedQueue>, handlers: HandlerRegistry, partition: PartitionId) {
    let worker_id = format!("{}/{partition}", queue.worker_id());
    loop {
        let envelope = match queue.dequeue(partition).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(partition, %error, "dequeue failed; this partition's worker stops");
                return;
            }
        };
        let started = Instant::now();
        let result = match handlers.get(&envelope.command_type) {
            Ok(handler) => {
                let (ctx, _trigger) = CommandContext::with_cancel_trigger(
                    envelope.numeric_id(),
                    &envelope.lane_id,
                    envelope.attempt,
                );
                let run = ctx
                    .clone()
                    .scope(handler.handle(envelope.payload, ctx.clone()));
                // No timeout and nobody cancels: the shared runner contains panics.
                let limits = RunLimits {
                    timeout: None,
                    cancel_grace: DEFAULT_CANCEL_GRACE,
                };
                supervise(&ctx, limits, run)
                    .await
                    .into_result()
                    .map_err(|error| error.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        let report = CommandResult {
            command_id: envelope.id,
            result,
            worker_id: worker_id.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if let Err(error) = queue.complete(report).await {
            tracing::error!(partition, %error, "reporting a result failed");
        }
    }
}
