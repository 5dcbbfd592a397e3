//! Submitting: [`RedisQueue::submit`] hands each command to one task per queue, which
//! sends the waiting ones to Redis in batches.

use std::sync::Arc;
use std::time::Duration;

use lane_core::{LaneError, Result};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::control::lane_not_found;
use super::{RedisCommandHandle, RedisQueue};
use crate::connection::{Conn, Target};
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, redis_error};

/// Commands per submit script call when many submits are waiting.
const MAX_SUBMIT_BATCH: usize = 512;

pub(super) struct SubmitRequest {
    reference: u64,
    lane: String,
    command_type: String,
    payload: String,
    /// Until when it may wait for Redis to answer.
    deadline: Instant,
    /// A call carrying it failed after it may have reached Redis (a timeout, a
    /// connection that broke with the call on it): Redis may hold it.
    in_doubt: bool,
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
        if command_type.trim().is_empty() || command_type.contains('\n') {
            return Err(LaneError::InvalidInput(format!(
                "command type {command_type:?} must not be blank or hold a newline; give the \
                 command the name its handler is registered under"
            )));
        }
        // The payload rule every engine shares: what is accepted can be read back.
        lane_core::check_payload(&payload)?;
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
                deadline: Instant::now() + self.inner.target.reconnect_wait,
                in_doubt: false,
                reply: id_tx,
            })
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))?;
        let id = id_rx
            .await
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))??;
        handle.id = id;
        if self.inner.waiters.set_id(handle.reference, id) {
            // The result listener reconnected while this submit was on its way.
            self.spawn_recovery(Some(handle.reference));
        }
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
///
/// A batch whose call fails while Redis is away (a broken connection, a timeout, a
/// server still loading) is sent again, with the same references, until Redis answers
/// or the queue's reconnect wait has passed: Redis recognises a reference it already
/// accepted, so each command is accepted once. A batch given up on is reported as failed
/// and its references are withdrawn with the next call that reaches Redis.
pub(super) async fn run_submitter(
    mut requests: mpsc::UnboundedReceiver<SubmitRequest>,
    mut conn: Conn,
    target: Arc<Target>,
    prefix: String,
    client_id: String,
    result_ttl_ms: u64,
    response_timeout: Duration,
) {
    let mut submitter = Submitter {
        acked: Vec::new(),
        void: Vec::new(),
        link_down: false,
    };
    let mut batch = Vec::with_capacity(MAX_SUBMIT_BATCH);
    loop {
        let received = if submitter.void.is_empty() {
            requests.recv_many(&mut batch, MAX_SUBMIT_BATCH).await
        } else {
            // Withdraw the references given up on as soon as Redis answers, even if no
            // further submit comes.
            tokio::select! {
                received = requests.recv_many(&mut batch, MAX_SUBMIT_BATCH) => received,
                () = tokio::time::sleep(target.backoff.max) => usize::MAX,
            }
        };
        if received == 0 {
            if !submitter.void.is_empty() {
                let _ = submitter
                    .call(
                        &mut conn,
                        &prefix,
                        &client_id,
                        result_ttl_ms,
                        &[],
                        response_timeout,
                    )
                    .await;
            }
            return;
        }
        if batch.is_empty() {
            // The timer: only references to withdraw. Sent alone; on failure they stay
            // for the next call.
            let _ = submitter
                .call(
                    &mut conn,
                    &prefix,
                    &client_id,
                    result_ttl_ms,
                    &[],
                    response_timeout,
                )
                .await;
            continue;
        }
        let mut backoff = target.backoff.min;
        while !batch.is_empty() {
            let outcome = submitter
                .call(
                    &mut conn,
                    &prefix,
                    &client_id,
                    result_ttl_ms,
                    &batch,
                    response_timeout,
                )
                .await;
            match outcome {
                Ok((ids, known)) => {
                    if submitter.link_down {
                        submitter.link_down = false;
                        tracing::info!("submits reach Redis again");
                    }
                    for (request, id) in batch.drain(..).zip(ids) {
                        let result = match id {
                            0 => Err(lane_not_found(&request.lane, known.clone())),
                            // Given up on before: it cannot be here (references are new).
                            ..0 => Err(wire::protocol("submit")),
                            id => Ok(id as u64),
                        };
                        submitter.acked.push(request.reference);
                        let _ = request.reply.send(result);
                    }
                }
                Err(error) if !error.transient => {
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(error.error.clone()));
                    }
                }
                Err(error) => {
                    if !submitter.link_down {
                        submitter.link_down = true;
                        tracing::warn!(error = %error.message, "submits cannot reach Redis; retrying until it answers");
                    }
                    // Requests whose wait is over fail; Redis may have accepted them, so
                    // they are withdrawn when it answers. The others are sent again,
                    // with what arrived meanwhile.
                    let now = Instant::now();
                    for request in &mut batch {
                        request.in_doubt |= error.reached;
                    }
                    let (expired, waiting): (Vec<_>, Vec<_>) =
                        batch.drain(..).partition(|request| request.deadline <= now);
                    batch = waiting;
                    for request in expired {
                        let address = target.describe();
                        let waited = target.reconnect_wait;
                        let message = if request.in_doubt {
                            submitter.void.push(request.reference);
                            format!(
                                "Redis at {address} did not answer the submit within \
                                 {waited:?} ({}), and it may have received it before the \
                                 connection broke: the command is withdrawn as soon as Redis \
                                 answers again (cancelled, and a worker that already started \
                                 it is told to stop); submit it again once Redis is back",
                                error.message
                            )
                        } else {
                            format!(
                                "Redis at {address} could not be reached for {waited:?} \
                                 ({}); the command was not accepted: submit it again once \
                                 Redis is back",
                                error.message
                            )
                        };
                        let _ = request.reply.send(Err(LaneError::Storage(message)));
                    }
                    while batch.len() < MAX_SUBMIT_BATCH {
                        match requests.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    if let Some(first) = batch.iter().map(|request| request.deadline).min() {
                        let pause = backoff.min(first.saturating_duration_since(Instant::now()));
                        tokio::time::sleep(pause).await;
                        backoff = target.backoff.next(backoff);
                    }
                }
            }
        }
    }
}

/// What the submit task remembers between calls.
struct Submitter {
    /// References whose ids reached their callers: Redis may forget them.
    acked: Vec<u64>,
    /// References given up on: Redis withdraws them.
    void: Vec<u64>,
    /// Whether the last call failed to reach Redis (logged once per outage).
    link_down: bool,
}

/// A failed submit call: whether Redis may have received it, and the error.
struct CallError {
    transient: bool,
    /// The call may have reached Redis (it may have acted on it).
    reached: bool,
    message: String,
    error: LaneError,
}

impl Submitter {
    /// One submit script call with `batch`, carrying the acknowledged and withdrawn
    /// references; they are cleared once Redis answered.
    async fn call(
        &mut self,
        conn: &mut Conn,
        prefix: &str,
        client_id: &str,
        result_ttl_ms: u64,
        batch: &[SubmitRequest],
        response_timeout: Duration,
    ) -> std::result::Result<(Vec<i64>, Vec<String>), CallError> {
        let mut invocation = SCRIPTS.submit.key(prefix);
        invocation.arg(client_id).arg(result_ttl_ms);
        invocation.arg(self.acked.len());
        for reference in &self.acked {
            invocation.arg(*reference);
        }
        invocation.arg(self.void.len());
        for reference in &self.void {
            invocation.arg(*reference);
        }
        for request in batch {
            invocation
                .arg(request.reference)
                .arg(&request.lane)
                .arg(&request.command_type)
                .arg(&request.payload);
        }
        let reply = tokio::time::timeout(
            response_timeout,
            invocation.run::<(Vec<i64>, Vec<String>)>(conn),
        )
        .await;
        match reply {
            Ok(Ok((ids, known))) if ids.len() == batch.len() => {
                self.acked.clear();
                self.void.clear();
                Ok((ids, known))
            }
            Ok(Ok(_)) => Err(CallError {
                transient: false,
                reached: true,
                message: "unexpected reply".into(),
                error: wire::protocol("submit"),
            }),
            Ok(Err(error)) => Err(CallError {
                transient: wire::is_transient(&error),
                reached: wire::may_have_reached(&error),
                message: error.to_string(),
                error: redis_error(&error),
            }),
            Err(_) => Err(CallError {
                transient: true,
                reached: true,
                message: format!("no answer within the response timeout ({response_timeout:?})"),
                error: LaneError::Timeout(response_timeout),
            }),
        }
    }
}
