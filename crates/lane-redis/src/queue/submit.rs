//! Submitting: [`RedisQueue::submit`] hands each command to one task per queue, which
//! sends the waiting ones to Redis in batches. A submit to a full lane that waits for
//! room ([`WhenFull::Wait`](lane_core::WhenFull::Wait)) waits for the lane's events that
//! free room (a start, a cancel, an expiry) and sends the command again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lane_core::event::keys;
use lane_core::{EventStream, LaneError, Result, SubmitOptions, Timing};
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

/// How often a submit waiting for room looks again without an event that freed room: a
/// safety net for what sends no event (a lane declared again with a larger bound, a
/// queue whose event stream is turned off).
const ROOM_RECHECK: Duration = Duration::from_secs(1);

pub(super) struct SubmitRequest {
    reference: u64,
    lane: String,
    command_type: String,
    payload: String,
    /// The command's timing for submit.lua: '' or 'not before|deadline|start-by|last'.
    timing: String,
    /// The idempotency key, '' for none.
    key: String,
    /// The command's group inside its lane, '' for none.
    group: String,
    /// Until when it may wait for Redis to answer.
    deadline: Instant,
    /// A call carrying it failed after it may have reached Redis (a timeout, a
    /// connection that broke with the call on it): Redis may hold it.
    in_doubt: bool,
    reply: oneshot::Sender<Result<Submitted>>,
}

/// What Redis made of one submitted command.
pub(super) enum Submitted {
    /// Accepted under this id, or (`duplicate`) this live command held the submit's
    /// idempotency key: nothing was queued, and its result comes to this submit too.
    Id { id: u64, duplicate: bool },
    /// Refused: its lane holds `limit` waiting commands. `wait` is what the lane's
    /// `when_full` says: `None` to fail, else wait for room at most this long (`None`:
    /// as long as it takes).
    Full {
        limit: usize,
        wait: Option<Option<Duration>>,
    },
}

impl RedisQueue {
    /// Submits a replayable command to the end of `lane`; the handle awaits its result.
    /// Fails with [`LaneError::LaneNotFound`] for a lane not declared in Redis, and with
    /// [`LaneError::LaneFull`] for a lane at its `max_waiting` that refuses (or, for one
    /// that waits for room, when its wait is over).
    pub async fn submit(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<RedisCommandHandle> {
        self.submit_with(lane, command_type, payload, SubmitOptions::default())
            .await
    }

    /// [`submit`](Self::submit) with [`SubmitOptions`]: a command with a delay or start
    /// time waits in Redis (shown as delayed) and then takes its place at the back of its
    /// lane; one with a start-by deadline that no worker started by then never runs and
    /// ends with [`LaneError::Expired`]. Times are the caller's clock; a clock found
    /// off from the Redis server's at connect is corrected by the measured offset.
    pub async fn submit_with(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> Result<RedisCommandHandle> {
        // Checks the idempotency key too, before anything is sent.
        let timing = options.resolve(SystemTime::now())?;
        let key = options.key().unwrap_or_default().to_owned();
        let group = options.group().unwrap_or_default().to_owned();
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
        let mut room: Option<RoomWait> = None;
        let mut last = false;
        let (id, duplicate) = loop {
            let (id_tx, id_rx) = oneshot::channel();
            self.inner
                .submits
                .send(SubmitRequest {
                    reference: handle.reference,
                    lane: lane.to_owned(),
                    command_type: command_type.to_owned(),
                    payload: payload.clone(),
                    timing: self.timing_arg(&timing, last),
                    key: key.clone(),
                    group: group.clone(),
                    deadline: Instant::now() + self.inner.target.reconnect_wait,
                    in_doubt: false,
                    reply: id_tx,
                })
                .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))?;
            let submitted = id_rx
                .await
                .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))??;
            match submitted {
                Submitted::Id { id, duplicate } => break (id, duplicate),
                Submitted::Full { limit, wait } => {
                    let full = LaneError::LaneFull {
                        lane: lane.to_owned(),
                        limit,
                    };
                    let Some(timeout) = wait else {
                        return Err(full);
                    };
                    if last {
                        return Err(full);
                    }
                    match &mut room {
                        // Room made before the subscription sent no event it sees: look
                        // again at once.
                        None => room = Some(self.wait_for_room(lane, timeout)),
                        Some(room) => last = !room.wait().await,
                    }
                }
            }
        };
        handle.id = id;
        handle.duplicate = duplicate;
        if self.inner.waiters.set_id(handle.reference, id) {
            // The result listener reconnected while this submit was on its way.
            self.spawn_recovery(Some(handle.reference));
        }
        Ok(handle)
    }

    /// The timing field of a submit: '' for a plain command, else the start time and
    /// deadline on the Redis clock (µs), the deadline as given (ms), and whether a refusal
    /// for a full lane is the last word.
    ///
    /// The caller's clock is taken as the Redis clock unless the offset measured at
    /// connect exceeds its uncertainty (the round trip it was measured over): clocks kept
    /// in step then agree exactly, so commands of several producers keep the order of
    /// their times, and a clock that is really off is corrected, its start times moved
    /// later by the uncertainty so that a command never starts before its time.
    fn timing_arg(&self, timing: &Timing, last: bool) -> String {
        if timing.is_plain() && !last {
            return String::new();
        }
        let uncertainty = self.inner.clock_uncertainty_ms.max(0);
        let (offset, margin) = if self.inner.clock_offset_ms.abs() > uncertainty {
            (self.inner.clock_offset_ms, uncertainty)
        } else {
            (0, 0)
        };
        let on_redis = |ms: u64, margin: i64| {
            i64::try_from(ms)
                .unwrap_or(i64::MAX)
                .saturating_add(offset)
                .saturating_add(margin)
                .saturating_mul(1000)
                .to_string()
        };
        let not_before = timing
            .not_before_ms
            .map(|ms| on_redis(ms, margin))
            .unwrap_or_default();
        let deadline = timing
            .start_by_ms
            .map(|ms| on_redis(ms, 0))
            .unwrap_or_default();
        let start_by = timing
            .start_by_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        format!(
            "{not_before}|{deadline}|{start_by}|{}",
            if last { "1" } else { "" }
        )
    }

    /// Starts waiting for room in `lane`: its events that free room from now on.
    fn wait_for_room(&self, lane: &str, timeout: Option<Duration>) -> RoomWait {
        let lane = lane.to_owned();
        RoomWait {
            events: self.subscribe_filtered(move |event| {
                event.lane_id() == Some(lane.as_str())
                    && matches!(
                        event.key.as_str(),
                        keys::COMMAND_STARTED | keys::COMMAND_CANCELLED | keys::COMMAND_EXPIRED
                    )
            }),
            until: timeout.and_then(|timeout| Instant::now().checked_add(timeout)),
        }
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

/// A submit waiting for room in a full lane: the lane's events that free room, and the
/// end of its wait.
struct RoomWait {
    events: EventStream,
    until: Option<Instant>,
}

impl RoomWait {
    /// Waits until room may have been made (or [`ROOM_RECHECK`] passed); false once the
    /// wait is over.
    async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if self.until.is_some_and(|until| until <= now) {
            return false;
        }
        let recheck = now + ROOM_RECHECK;
        let wake = self.until.map_or(recheck, |until| until.min(recheck));
        tokio::select! {
            _ = self.events.recv() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
        self.until.is_none_or(|until| until > Instant::now())
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
                Ok((ids, known, full, duplicates)) => {
                    if submitter.link_down {
                        submitter.link_down = false;
                        tracing::info!("submits reach Redis again");
                    }
                    for (position, (request, id)) in batch.drain(..).zip(ids).enumerate() {
                        let result = match id {
                            0 => Err(lane_not_found(&request.lane, known.clone())),
                            -2 => full_lane(&full, &request.lane),
                            // Given up on before: it cannot be here (references are new).
                            ..0 => Err(wire::protocol("submit")),
                            id => {
                                // Only an accepted command (or a duplicate) left a
                                // reference to forget.
                                submitter.acked.push(request.reference);
                                Ok(Submitted::Id {
                                    id: id as u64,
                                    duplicate: duplicates.contains(&(position as i64 + 1)),
                                })
                            }
                        };
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

/// The refusal of a command for its full lane, from the lanes submit.lua reported full
/// (lane, max_waiting, wait: '' refuse, '-1' as long as it takes, else ms).
fn full_lane(full: &[String], lane: &str) -> Result<Submitted> {
    let [_, limit, wait] = full
        .chunks(3)
        .find(|chunk| chunk.first().is_some_and(|name| name == lane))
        .ok_or_else(|| wire::protocol("submit"))?
    else {
        return Err(wire::protocol("submit"));
    };
    let limit = limit.parse().map_err(|_| wire::protocol("submit"))?;
    let wait = match wait.as_str() {
        "" => None,
        "-1" => Some(None),
        ms => Some(Some(Duration::from_millis(
            ms.parse().map_err(|_| wire::protocol("submit"))?,
        ))),
    };
    Ok(Submitted::Full { limit, wait })
}

/// What submit.lua answers: an id per command (or 0, -1, -2), the declared lanes (when
/// a lane was missing), the full lanes, and the positions (from 1) of duplicates.
type SubmitReply = (Vec<i64>, Vec<String>, Vec<String>, Vec<i64>);

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
    ) -> std::result::Result<SubmitReply, CallError> {
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
                .arg(&request.payload)
                .arg(&request.timing)
                .arg(&request.key)
                .arg(&request.group);
        }
        let reply =
            tokio::time::timeout(response_timeout, invocation.run::<SubmitReply>(conn)).await;
        match reply {
            Ok(Ok((ids, known, full, duplicates))) if ids.len() == batch.len() => {
                self.acked.clear();
                self.void.clear();
                Ok((ids, known, full, duplicates))
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
