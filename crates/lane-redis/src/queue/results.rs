//! Awaiting results: each submit registers a waiter, one listener task per queue drains
//! this client's result list in Redis, and [`RedisCommandHandle`] resolves from it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use lane_core::{CancelOutcome, LaneError, Result};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::RedisQueue;
use crate::connection::{Conn, Target, connect_listener};
use crate::wire::decode_error;

/// Results taken per round trip by the result listener.
const RESULT_BATCH: usize = 512;
/// How long the result listener blocks before checking its connection.
const LISTEN_BLOCK: Duration = Duration::from_secs(30);

/// A command this process awaits: where its result and its progress go.
pub(super) struct Waiter {
    result: oneshot::Sender<Result<Value>>,
    progress: watch::Sender<Option<Value>>,
}

pub(super) type Waiters = Mutex<HashMap<u64, Waiter>>;

impl RedisQueue {
    /// Registers a waiter under a fresh reference; the handle forgets it when dropped.
    pub(super) fn await_result(&self, id: u64) -> RedisCommandHandle {
        let reference = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        let (result, result_rx) = oneshot::channel();
        let (progress, progress_rx) = watch::channel(None);
        self.inner
            .waiters
            .lock()
            .insert(reference, Waiter { result, progress });
        RedisCommandHandle {
            id,
            reference,
            result: result_rx,
            progress: progress_rx,
            queue: self.clone(),
        }
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
    key: String,
    waiters: Arc<Waiters>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let current = match &mut conn {
            Some(conn) => conn,
            None => {
                match connect_listener(&target, LISTEN_BLOCK, &mut stop, "result listener", || {})
                    .await
                {
                    Some(connected) => conn.insert(connected),
                    None => return,
                }
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
                    break;
                }
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
    pub(super) reference: u64,
    result: oneshot::Receiver<Result<Value>>,
    progress: watch::Receiver<Option<Value>>,
    queue: RedisQueue,
}

impl std::fmt::Debug for RedisCommandHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCommandHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RedisCommandHandle {
    /// The command's id in the queue.
    pub fn id(&self) -> u64 {
        self.id
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
        Pin::new(&mut self.result).poll(cx).map(|received| {
            received.unwrap_or_else(|_| {
                Err(LaneError::QueueError(
                    "the queue's result listener stopped before the result arrived".into(),
                ))
            })
        })
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
        waiters
            .lock()
            .insert(reference, Waiter { result, progress });
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
