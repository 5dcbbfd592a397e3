//! The journal task: writes [`StorageOp`]s to the configured [`Storage`] in order, in
//! batches, so concurrent submits share one durable commit.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{LaneError, Result};
use crate::event::{EventEmitter, keys};
use crate::storage::{Storage, StorageOp};

/// Most writes committed in one batch.
const MAX_BATCH: usize = 4096;

type Ack = oneshot::Sender<Result<()>>;

#[derive(Debug, Clone)]
pub(crate) struct Journal {
    tx: mpsc::UnboundedSender<(Option<StorageOp>, Option<Ack>)>,
}

impl Journal {
    /// Spawns the writer on the current runtime.
    pub(crate) fn spawn(storage: Arc<dyn Storage>, events: EventEmitter) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Option<StorageOp>, Option<Ack>)>();
        let writer = storage;
        tokio::spawn(async move {
            let mut ops = Vec::new();
            let mut acks = Vec::new();
            while let Some((op, ack)) = rx.recv().await {
                ops.extend(op);
                acks.extend(ack);
                while ops.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((op, ack)) => {
                            ops.extend(op);
                            acks.extend(ack);
                        }
                        Err(_) => break,
                    }
                }
                let result = if ops.is_empty() {
                    Ok(())
                } else {
                    writer.apply(std::mem::take(&mut ops)).await
                };
                if let Err(error) = &result {
                    events.emit_with(
                        keys::STORAGE_FAILED,
                        || serde_json::json!({ "error": error.to_string() }),
                    );
                }
                for ack in acks.drain(..) {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Writes `op` and waits until it is durable.
    pub(crate) async fn write_durably(&self, op: StorageOp) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx.send((Some(op), Some(ack))).map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    /// Queues `op` behind every earlier write, without waiting.
    pub(crate) fn write(&self, op: StorageOp) {
        let _ = self.tx.send((Some(op), None));
    }

    /// Waits until every write queued so far is durable.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        // No op: a barrier, acknowledged after everything queued before it.
        self.tx.send((None, Some(ack))).map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }
}

fn closed() -> LaneError {
    LaneError::Storage("the journal writer has stopped".into())
}
