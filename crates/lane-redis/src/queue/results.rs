//! Awaiting results: each submit registers a waiter, one listener task per queue drains
//! this client's result list in Redis, and [`RedisCommandHandle`] resolves from it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lane_core::{CancelOutcome, LaneError, Result};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::{RedisQueue, RemoteCommand};
use crate::connection::{Backoff, Conn, Target, connect_listener};
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::decode_error;

/// Results taken per round trip by the result listener.
const RESULT_BATCH: usize = 512;
/// How long the result listener blocks before checking its connection.
const LISTEN_BLOCK: Duration = Duration::from_secs(30);

/// A command this process awaits: where its result and its progress go.
pub(super) struct Waiter {
    result: oneshot::Sender<Result<Value>>,
    progress: watch::Sender<Option<Value>>,
    /// The command's id once its submit returned (0 before).
    id: u64,
    /// The listener's reconnect count when the waiter was registered.
    epoch: u64,
}

/// The commands this process awaits, by submit reference.
#[derive(Default)]
pub(super) struct Waiters {
    map: Mutex<HashMap<u64, Waiter>>,
    /// How many times the result listener reconnected: a result popped from the list
    /// just before a connection broke is lost with it, so every reconnect reads again
    /// how the awaited commands ended.
    epoch: AtomicU64,
}

impl Waiters {
    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.map.lock()
    }

    /// Records the id of the command awaited under `reference`. True when the listener
    /// reconnected since the waiter was registered: its recovery could not know the id,
    /// so the caller must look the command up itself.
    pub(super) fn set_id(&self, reference: u64, id: u64) -> bool {
        let mut map = self.map.lock();
        let Some(waiter) = map.get_mut(&reference) else {
            return false;
        };
        waiter.id = id;
        waiter.epoch != self.epoch.load(Ordering::Acquire)
    }
}

impl RedisQueue {
    /// Registers a waiter under a fresh reference; the handle forgets it when dropped.
    pub(super) fn await_result(&self, id: u64) -> RedisCommandHandle {
        let reference = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        let (result, result_rx) = oneshot::channel();
        let (progress, progress_rx) = watch::channel(None);
        let epoch = self.inner.waiters.epoch.load(Ordering::Acquire);
        self.inner.waiters.lock().insert(
            reference,
            Waiter {
                result,
                progress,
                id,
                epoch,
            },
        );
        RedisCommandHandle {
            id,
            duplicate: false,
            reference,
            result: result_rx,
            taken: false,
            progress: progress_rx,
            queue: self.clone(),
        }
    }

    /// Reads again how the commands awaited under `references` ended (all awaited
    /// commands with a known id when `None`) and resolves those that finished.
    pub(super) fn spawn_recovery(&self, only: Option<u64>) {
        let waiters = self.inner.waiters.clone();
        let conn = self.conn();
        let prefix = self.inner.prefix.clone();
        let backoff = self.inner.target.backoff;
        self.inner.runtime.spawn(async move {
            recover(&waiters, conn, &prefix, only, backoff).await;
        });
    }

    /// Starts the task that reads this client's result list, once.
    pub(super) fn ensure_listener(&self) {
        let mut listener = self.inner.listener.lock();
        if listener.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        *listener = Some(stop_tx);
        self.inner.runtime.spawn(run_listener(
            self.inner.target.clone(),
            self.conn(),
            self.inner.prefix.clone(),
            format!("{}:results:{}", self.inner.prefix, self.inner.client_id),
            self.inner.waiters.clone(),
            stop_rx,
        ));
    }
}

/// Reads this client's result list (a durable list: results wait there while the
/// connection is down) and resolves the waiting handles.
async fn run_listener(
    target: Arc<Target>,
    shared: Conn,
    prefix: String,
    key: String,
    waiters: Arc<Waiters>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conn: Option<Conn> = None;
    let mut broken = false;
    loop {
        let current = match &mut conn {
            Some(conn) => conn,
            None => {
                let connected =
                    connect_listener(&target, LISTEN_BLOCK, &mut stop, "result listener", || {})
                        .await;
                let Some(connected) = connected else {
                    return;
                };
                if broken {
                    // Submits registering from now on are covered by this recovery or
                    // check for themselves (Waiters::set_id).
                    waiters.epoch.fetch_add(1, Ordering::AcqRel);
                    let waiters = waiters.clone();
                    let (shared, prefix) = (shared.clone(), prefix.clone());
                    let backoff = target.backoff;
                    tokio::spawn(async move {
                        recover(&waiters, shared, &prefix, None, backoff).await;
                    });
                }
                conn.insert(connected)
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&key).arg(LISTEN_BLOCK.as_secs());
        let popped = tokio::select! {
            _ = &mut stop => return,
            popped = blpop.query_async::<Option<(String, String)>>(current) => popped,
        };
        let first = match popped {
            Ok(Some((_, message))) => message,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, "result listener lost its Redis connection; reconnecting");
                conn = None;
                broken = true;
                continue;
            }
        };
        deliver(&waiters, &first);
        // Drain what else is waiting, a batch per round trip.
        loop {
            let more = redis::cmd("LPOP")
                .arg(&key)
                .arg(RESULT_BATCH)
                .query_async::<Option<Vec<String>>>(current)
                .await;
            match more {
                Ok(Some(messages)) => {
                    for message in &messages {
                        deliver(&waiters, message);
                    }
                    if messages.len() < RESULT_BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "result listener lost its Redis connection; reconnecting");
                    conn = None;
                    broken = true;
                    break;
                }
            }
        }
    }
}

/// Commands looked up per round trip by a recovery.
const RECOVERY_BATCH: usize = 512;

/// Reads how awaited commands ended (those under `only`, or all with a known id) and
/// resolves the finished ones; a command Redis no longer knows resolves with an error.
/// While Redis cannot be reached it tries again, with the queue's backoff.
async fn recover(
    waiters: &Waiters,
    mut conn: Conn,
    prefix: &str,
    only: Option<u64>,
    backoff: Backoff,
) {
    let awaited: Vec<(u64, u64)> = {
        let map = waiters.lock();
        match only {
            Some(reference) => map
                .get(&reference)
                .map(|waiter| (reference, waiter.id))
                .into_iter()
                .collect(),
            None => map
                .iter()
                .map(|(reference, waiter)| (*reference, waiter.id))
                .collect(),
        }
    };
    let awaited: Vec<(u64, u64)> = awaited.into_iter().filter(|(_, id)| *id != 0).collect();
    for chunk in awaited.chunks(RECOVERY_BATCH) {
        let mut invocation = SCRIPTS.outcomes.key(prefix);
        for (_, id) in chunk {
            invocation.arg(*id);
        }
        let mut pause = backoff.min;
        let outcomes = loop {
            match invocation.run::<Vec<String>>(&mut conn).await {
                Ok(outcomes) if outcomes.len() == chunk.len() => break outcomes,
                Ok(_) => {
                    tracing::warn!("unexpected reply reading how awaited commands ended");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, "reading how awaited commands ended; retrying");
                    tokio::time::sleep(pause).await;
                    pause = backoff.next(pause);
                }
            }
        };
        for ((reference, id), outcome) in chunk.iter().zip(outcomes) {
            let result = match outcome.split_once('\n') {
                Some(("ok", data)) => serde_json::from_str(data).map_err(Into::into),
                Some((_, data)) => Err(decode_error(data)),
                None if outcome == "gone" => Err(LaneError::QueueError(format!(
                    "command {id} is no longer known to Redis (its lane's retention let its \
                     record go, or the queue was cleared); its outcome is lost"
                ))),
                None => continue,
            };
            if let Some(waiter) = waiters.lock().remove(reference) {
                let _ = waiter.result.send(result);
            }
        }
    }
}

/// A result message is `reference \n id \n outcome \n data`; a progress message
/// (outcome `progress`, sent by the worker while the command runs) has `lane \n JSON`
/// as its data.
fn deliver(waiters: &Waiters, message: &str) {
    let mut parts = message.splitn(4, '\n');
    let (Some(reference), Some(id), Some(outcome), Some(data)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        tracing::warn!(message, "ignoring a malformed result message");
        return;
    };
    let Ok(reference) = reference.parse::<u64>() else {
        return;
    };
    if outcome == "progress" {
        // `lane \n JSON`. Subscribers get progress from the event stream; here it only
        // updates the handle.
        let (true, Some((_lane, json))) = (id.parse::<u64>().is_ok(), data.split_once('\n')) else {
            tracing::warn!(message, "ignoring a malformed progress message");
            return;
        };
        let Ok(progress) = serde_json::from_str::<Value>(json) else {
            tracing::warn!(message, "ignoring a progress message that is not JSON");
            return;
        };
        let waiters = waiters.lock();
        // Not awaited (handle dropped) or already finished: nobody follows it.
        if let Some(waiter) = waiters.get(&reference) {
            waiter.progress.send_replace(Some(progress));
        }
        return;
    }
    let Some(waiter) = waiters.lock().remove(&reference) else {
        return; // the handle was dropped; the result stays readable with command()
    };
    let result = match outcome {
        "ok" => serde_json::from_str(data).map_err(Into::into),
        _ => Err(decode_error(data)),
    };
    let _ = waiter.result.send(result);
}

/// A command submitted to a [`RedisQueue`]: await it for the result (from whichever
/// worker ran it). Dropping it does not cancel the command.
#[must_use = "a handle does nothing unless awaited or used to cancel; drop it to detach"]
pub struct RedisCommandHandle {
    pub(super) id: u64,
    /// The submit's idempotency key was held by this live command: nothing was queued.
    pub(super) duplicate: bool,
    pub(super) reference: u64,
    result: oneshot::Receiver<Result<Value>>,
    /// The result was returned: the handle is spent.
    taken: bool,
    progress: watch::Receiver<Option<Value>>,
    queue: RedisQueue,
}

impl std::fmt::Debug for RedisCommandHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCommandHandle")
            .field("id", &self.id)
            .field("duplicate", &self.duplicate)
            .finish_non_exhaustive()
    }
}

impl RedisCommandHandle {
    /// The command's id in the queue.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True when the submit queued nothing: its idempotency key
    /// ([`SubmitOptions::with_key`](lane_core::SubmitOptions::with_key)) was held by a
    /// command still delayed, pending or running (submitted by any producer), and this
    /// handle is that command's: awaiting it gives that command's result, cancelling it
    /// cancels it for every submitter.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Waits at most `timeout` for the result. [`LaneError::Timeout`] leaves the handle
    /// as it was (await it or call this again); the command goes on either way.
    pub async fn result_within(&mut self, timeout: Duration) -> Result<Value> {
        match tokio::time::timeout(timeout, &mut *self).await {
            Ok(result) => result,
            Err(_) => Err(LaneError::Timeout(timeout)),
        }
    }

    /// The command's record in Redis now (state, attempts, worker, result once
    /// finished); `None` once its lane no longer keeps it. Asks Redis, whatever the
    /// handle saw.
    pub async fn state(&self) -> Result<Option<RemoteCommand>> {
        self.queue.command(self.id).await
    }

    /// Cancels the command; see [`RedisQueue::cancel`].
    pub async fn cancel(&self) -> Result<CancelOutcome> {
        self.queue.cancel(self.id).await
    }

    /// The latest progress the command's handler reported
    /// ([`CommandContext::report_progress`](lane_core::CommandContext::report_progress)),
    /// `None` before the first report. Reports come in order; a report replaced before
    /// it left the worker is skipped, and the last one arrives before the result. Once
    /// the result arrived (or the handle was dropped), the value stays as it is and
    /// [`watch::Receiver::changed`] fails.
    pub fn progress(&self) -> watch::Receiver<Option<Value>> {
        self.progress.clone()
    }
}

impl Future for RedisCommandHandle {
    type Output = Result<Value>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.taken {
            return Poll::Ready(Err(LaneError::QueueError(format!(
                "the result of command {} was already returned by this handle; read it again \
                 with RedisQueue::command({})",
                self.id, self.id
            ))));
        }
        let polled = Pin::new(&mut self.result).poll(cx).map(|received| {
            received.unwrap_or_else(|_| {
                Err(LaneError::QueueError(
                    "the queue's result listener stopped before the result arrived".into(),
                ))
            })
        });
        if polled.is_ready() {
            self.taken = true;
        }
        polled
    }
}

impl Drop for RedisCommandHandle {
    fn drop(&mut self) {
        self.queue.inner.waiters.lock().remove(&self.reference);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn waiter(
        waiters: &Waiters,
        reference: u64,
    ) -> (
        oneshot::Receiver<Result<Value>>,
        watch::Receiver<Option<Value>>,
    ) {
        let (result, result_rx) = oneshot::channel();
        let (progress, progress_rx) = watch::channel(None);
        waiters.lock().insert(
            reference,
            Waiter {
                result,
                progress,
                id: 0,
                epoch: 0,
            },
        );
        (result_rx, progress_rx)
    }

    #[test]
    fn progress_reaches_the_handle_until_the_result_then_is_dropped() {
        let waiters = Waiters::default();
        let (mut result, progress) = waiter(&waiters, 1);
        let (_other, other_progress) = waiter(&waiters, 2);

        deliver(&waiters, "1\n41\nprogress\njobs\n{\"done\":1}");
        assert_eq!(*progress.borrow(), Some(json!({"done": 1})));

        deliver(&waiters, "1\n41\nok\n\"finished\"");
        assert_eq!(result.try_recv().unwrap().unwrap(), json!("finished"));
        // Late progress of the finished command, then progress of another one: only the
        // second is delivered.
        deliver(&waiters, "1\n41\nprogress\njobs\n{\"done\":2}");
        deliver(&waiters, "2\n42\nprogress\njobs\n7");
        assert_eq!(*other_progress.borrow(), Some(json!(7)));
        assert_eq!(*progress.borrow(), Some(json!({"done": 1})));
    }

    #[test]
    fn malformed_progress_is_ignored_without_resolving_the_handle() {
        let waiters = Waiters::default();
        let (mut result, progress) = waiter(&waiters, 1);
        deliver(&waiters, "1\n41\nprogress\nno-newline");
        deliver(&waiters, "1\n41\nprogress\njobs\nnot json");
        assert!(result.try_recv().is_err(), "still waiting for the result");
        assert_eq!(*progress.borrow(), None);
    }
}
