//! Submitting: [`RedisQueue::submit`] hands each command to one task per queue, which
//! sends the waiting ones to Redis in batches.

use lane_core::{LaneError, Result};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::control::lane_not_found;
use super::{RedisCommandHandle, RedisQueue};
use crate::connection::Conn;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, redis_error};

/// Commands per submit script call when many submits are waiting.
const MAX_SUBMIT_BATCH: usize = 512;

pub(super) struct SubmitRequest {
    reference: u64,
    lane: String,
    command_type: String,
    payload: String,
    reply: oneshot::Sender<Result<u64>>,
}

impl RedisQueue {
    /// Submits a replayable command to the end of `lane`; the handle awaits its result.
    /// Fails with [`LaneError::LaneNotFound`] for a lane not declared in Redis.
    pub async fn submit(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<RedisCommandHandle> {
        if command_type.is_empty() || command_type.contains('\n') {
            return Err(LaneError::QueueError(format!(
                "command type {command_type:?} must be non-empty and hold no newline"
            )));
        }
        let payload = serde_json::to_string(&payload)?;
        self.ensure_listener();
        // Created before sending: if anything below fails, dropping it forgets the waiter.
        let mut handle = self.await_result(0);
        let (id_tx, id_rx) = oneshot::channel();
        self.inner
            .submits
            .send(SubmitRequest {
                reference: handle.reference,
                lane: lane.to_owned(),
                command_type: command_type.to_owned(),
                payload,
                reply: id_tx,
            })
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))?;
        let id = id_rx
            .await
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))??;
        handle.id = id;
        Ok(handle)
    }

    /// Submits several commands; concurrent calls share round trips either way, this
    /// only saves the caller from spawning. Commands keep their order within a lane.
    pub async fn submit_batch<I, L, T>(&self, commands: I) -> Result<Vec<RedisCommandHandle>>
    where
        I: IntoIterator<Item = (L, T, Value)>,
        L: AsRef<str>,
        T: AsRef<str>,
    {
        let commands: Vec<(L, T, Value)> = commands.into_iter().collect();
        let pending: Vec<_> = commands
            .iter()
            .map(|(lane, command_type, payload)| {
                self.submit(lane.as_ref(), command_type.as_ref(), payload.clone())
            })
            .collect();
        // Each submit enqueues when first polled, and join_all polls them in order.
        futures_util::future::join_all(pending)
            .await
            .into_iter()
            .collect()
    }
}

/// Sends queued submits in batches: one script call in flight, the next batch gathering
/// meanwhile, so throughput grows with load while a lone submit costs one round trip.
pub(super) async fn run_submitter(
    mut requests: mpsc::UnboundedReceiver<SubmitRequest>,
    mut conn: Conn,
    prefix: String,
    client_id: String,
    result_ttl_ms: u64,
) {
    let mut batch = Vec::with_capacity(MAX_SUBMIT_BATCH);
    while requests.recv_many(&mut batch, MAX_SUBMIT_BATCH).await > 0 {
        let mut invocation = SCRIPTS.submit.key(&prefix);
        invocation.arg(&client_id).arg(result_ttl_ms);
        for request in &batch {
            invocation
                .arg(request.reference)
                .arg(&request.lane)
                .arg(&request.command_type)
                .arg(&request.payload);
        }
        match invocation.run::<(Vec<u64>, Vec<String>)>(&mut conn).await {
            Ok((ids, known)) if ids.len() == batch.len() => {
                for (request, id) in batch.drain(..).zip(ids) {
                    let result = if id == 0 {
                        Err(lane_not_found(&request.lane, known.clone()))
                    } else {
                        Ok(id)
                    };
                    let _ = request.reply.send(result);
                }
            }
            Ok(_) => {
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(wire::protocol("submit")));
                }
            }
            Err(error) => {
                let error = redis_error(&error);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
