//! The supervision of one run, shared by every engine: the in-process queue, the Redis
//! worker and the partition workers all run a command through [`supervise`].
//!
//! What it guarantees, whoever calls it:
//! - a panic in the command becomes [`LaneError::CommandError`] ("command panicked: …")
//!   and never unwinds into the engine;
//! - a run longer than its timeout ends as [`LaneError::Timeout`] and its future is
//!   dropped;
//! - a cancel request is cooperative first ([`CommandContext::cancelled`] resolves), and
//!   after the grace period the future is dropped; a run that ends after a cancel
//!   request, by itself or dropped, ends as [`RunEnd::Cancelled`], never as completed or
//!   failed, so it is neither retried nor dead-lettered.
//!
//! A command whose work goes on after its future is dropped (a host-language handler,
//! [`Command::stops_when_dropped`](crate::Command::stops_when_dropped) false) is run
//! through [`supervise_keeping_slot`] instead: the caller is answered at the same moment,
//! but the future is handed back as an [`AbandonedRun`] for the engine to finish before
//! it gives the lane slot to another command.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;

use crate::command::{CancelSignal, CommandContext};
use crate::error::{LaneError, Result};

/// How a supervised run ended, before any retry policy is asked.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The command returned a value.
    Ok(Value),
    /// The command returned an error, panicked or timed out.
    Err(LaneError),
    /// The run was cancelled; the reason says when and how it stopped.
    Cancelled(&'static str),
}

impl RunEnd {
    /// The run as a `Result`, a cancellation as [`LaneError::Cancelled`].
    pub fn into_result(self) -> Result<Value> {
        match self {
            Self::Ok(value) => Ok(value),
            Self::Err(error) => Err(error),
            Self::Cancelled(reason) => Err(LaneError::Cancelled(reason.into())),
        }
    }
}

/// The limits a lane puts on each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// A run that takes longer fails with [`LaneError::Timeout`].
    pub timeout: Option<Duration>,
    /// After a cancel request, how long the command may take to stop by itself.
    pub cancel_grace: Duration,
}

/// The reason of a run that was cancelled before it started.
pub const CANCELLED_BEFORE_START: &str = "cancelled before it started";
/// The reason of a cancelled run that returned by itself within the grace period.
pub const CANCELLED_WITHIN_GRACE: &str =
    "cancelled while running; it stopped within the grace period";
/// The reason of a cancelled run whose future was dropped after the grace period.
pub const CANCELLED_AFTER_GRACE: &str = "cancelled while running; dropped after the grace period";

/// Runs `run`, the command's future for the run described by `ctx`, under `limits`.
/// Cancellation is read from `ctx` (a [`CancelTrigger`](crate::CancelTrigger) from
/// [`CommandContext::with_cancel_trigger`], or the queue's own cancel).
///
/// ```
/// use a3s_lane::{CommandContext, RunEnd, RunLimits, supervise};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, _trigger) = CommandContext::with_cancel_trigger(1, "query", 1);
/// let limits = RunLimits { timeout: Some(Duration::from_millis(10)), cancel_grace: Duration::ZERO };
/// let end = supervise(&ctx, limits, async {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     Ok(serde_json::Value::Null)
/// })
/// .await;
/// assert!(matches!(end, RunEnd::Err(error) if error.is_timeout()));
/// # }
/// ```
pub async fn supervise<F>(ctx: &CommandContext, limits: RunLimits, run: F) -> RunEnd
where
    F: Future<Output = Result<Value>>,
{
    supervise_with(ctx.cancel_signal(), limits, run).await
}

/// [`supervise`] for the queue, which holds the cancel signal itself.
pub(crate) async fn supervise_with<F>(cancel: &CancelSignal, limits: RunLimits, run: F) -> RunEnd
where
    F: Future<Output = Result<Value>>,
{
    if cancel.is_requested() {
        return RunEnd::Cancelled(CANCELLED_BEFORE_START);
    }
    let run = AssertUnwindSafe(run).catch_unwind();
    let timeout = limits.timeout;
    let run = async move {
        let outcome = match timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(LaneError::Timeout(limit)),
            },
            None => run.await,
        };
        outcome.unwrap_or_else(|panic| {
            Err(LaneError::CommandError(format!(
                "command panicked: {}",
                panic_message(panic.as_ref())
            )))
        })
    };
    tokio::pin!(run);
    tokio::select! {
        biased;
        result = &mut run => match result {
            // A command that returns (Ok or Err) after a cancel request was cut short by
            // it: cancelled, not completed or failed.
            _ if cancel.is_requested() => RunEnd::Cancelled(CANCELLED_WITHIN_GRACE),
            Ok(value) => RunEnd::Ok(value),
            Err(error) => RunEnd::Err(error),
        },
        () = cancel.requested() => {
            // Cooperative first: the command may notice and return within the grace period.
            match tokio::time::timeout(limits.cancel_grace, &mut run).await {
                Ok(_) => RunEnd::Cancelled(CANCELLED_WITHIN_GRACE),
                Err(_) => RunEnd::Cancelled(CANCELLED_AFTER_GRACE),
            }
        }
    }
}

/// A run answered while its work goes on (see [`supervise_keeping_slot`]): a future that
/// resolves when the command's future really completes. Its result is discarded (the
/// caller was already answered); a panic in it is caught.
#[must_use = "the lane slot stays taken until this completes; await it, then release the slot"]
pub struct AbandonedRun<F: Future> {
    run: Pin<Box<Catching<F>>>,
}

impl<F: Future> fmt::Debug for AbandonedRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AbandonedRun")
    }
}

impl<F: Future> Future for AbandonedRun<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.run.as_mut().poll(cx).map(|_| ())
    }
}

/// [`supervise`] for a command that does not stop when its future is dropped
/// ([`Command::stops_when_dropped`](crate::Command::stops_when_dropped) false).
///
/// It returns the [`RunEnd`] at the moment [`supervise`] would (the cancel grace or the
/// timeout ended), with the same value, and, when the future had not completed by then,
/// that future as an [`AbandonedRun`] instead of dropping it. The engine answers the
/// caller with the `RunEnd` at once, then awaits the `AbandonedRun` before it releases
/// the lane slot (and counts the run as abandoned meanwhile), so a handler that ignores
/// cancellation never lets more commands run than the lane's cap. A run that times out
/// is told to stop as a cancelled one is: `ctx`'s cancellation is requested (give each
/// attempt its own context, as [`CommandContext::with_cancel_trigger`] does).
///
/// ```
/// use a3s_lane::{CommandContext, RunEnd, RunLimits, supervise_keeping_slot};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, _trigger) = CommandContext::with_cancel_trigger(1, "query", 1);
/// let limits = RunLimits { timeout: Some(Duration::from_millis(10)), cancel_grace: Duration::ZERO };
/// let (end, still_running) = supervise_keeping_slot(&ctx, limits, async {
///     tokio::time::sleep(Duration::from_millis(50)).await;
///     Ok(serde_json::Value::Null)
/// })
/// .await;
/// assert!(matches!(end, RunEnd::Err(error) if error.is_timeout())); // answer the caller now
/// if let Some(run) = still_running {
///     run.await; // the slot is free only now
/// }
/// # }
/// ```
pub async fn supervise_keeping_slot<F>(
    ctx: &CommandContext,
    limits: RunLimits,
    run: F,
) -> (RunEnd, Option<AbandonedRun<F>>)
where
    F: Future<Output = Result<Value>>,
{
    let cancel = ctx.cancel_signal();
    if cancel.is_requested() {
        return (RunEnd::Cancelled(CANCELLED_BEFORE_START), None);
    }
    // Boxed so that it can be handed back still running.
    let mut run = Box::pin(catching(run));
    let (end, running) = supervise_keeping_pinned(cancel, cancel, limits, run.as_mut()).await;
    (end, running.then(|| AbandonedRun { run }))
}

/// A run with its panics caught, as [`supervise_keeping_pinned`] takes it.
pub(crate) type Catching<F> = futures_util::future::CatchUnwind<AssertUnwindSafe<F>>;

pub(crate) fn catching<F: Future>(run: F) -> Catching<F> {
    AssertUnwindSafe(run).catch_unwind()
}

/// [`supervise_keeping_slot`] for the queue, which watches the command's cancel signal
/// (`cancel`, kept across attempts) and tells the run through this attempt's (`tell`).
/// The caller holds the run pinned (no allocation) and, when this returns true (still
/// running, abandoned), awaits it before it frees the slot.
pub(crate) async fn supervise_keeping_pinned<F>(
    cancel: &CancelSignal,
    tell: &CancelSignal,
    limits: RunLimits,
    mut run: Pin<&mut Catching<F>>,
) -> (RunEnd, bool)
where
    F: Future<Output = Result<Value>>,
{
    let deadline = limits
        .timeout
        .and_then(|limit| tokio::time::Instant::now().checked_add(limit));
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    tokio::select! {
        biased;
        outcome = run.as_mut() => {
            let end = match ended(outcome) {
                _ if cancel.is_requested() => RunEnd::Cancelled(CANCELLED_WITHIN_GRACE),
                Ok(value) => RunEnd::Ok(value),
                Err(error) => RunEnd::Err(error),
            };
            (end, false)
        }
        () = &mut expired => {
            // Where `supervise` would drop it: tell it to stop (it sees the request when
            // next polled, as an `AbandonedRun`).
            tell.request();
            let limit = limits.timeout.unwrap_or_default();
            (RunEnd::Err(LaneError::Timeout(limit)), true)
        }
        () = cancel.requested() => {
            tell.request();
            // As in `supervise`, the timeout still ends the grace early.
            tokio::select! {
                biased;
                _ = run.as_mut() => (RunEnd::Cancelled(CANCELLED_WITHIN_GRACE), false),
                () = tokio::time::sleep(limits.cancel_grace) => {
                    (RunEnd::Cancelled(CANCELLED_AFTER_GRACE), true)
                }
                () = &mut expired => (RunEnd::Cancelled(CANCELLED_AFTER_GRACE), true),
            }
        }
    }
}

type Caught = std::thread::Result<Result<Value>>;

fn ended(outcome: Caught) -> Result<Value> {
    outcome.unwrap_or_else(|panic| {
        Err(LaneError::CommandError(format!(
            "command panicked: {}",
            panic_message(panic.as_ref())
        )))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout: Option<u64>, grace: u64) -> RunLimits {
        RunLimits {
            timeout: timeout.map(Duration::from_millis),
            cancel_grace: Duration::from_millis(grace),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_becomes_a_command_error() {
        let (ctx, _trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let end = supervise(&ctx, limits(None, 0), async {
            panic!("boom");
        })
        .await;
        assert_eq!(
            end,
            RunEnd::Err(LaneError::CommandError("command panicked: boom".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_times_out_at_its_limit() {
        let (ctx, _trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let started = tokio::time::Instant::now();
        let end = supervise(&ctx, limits(Some(250), 0), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        })
        .await;
        assert_eq!(
            end,
            RunEnd::Err(LaneError::Timeout(Duration::from_millis(250)))
        );
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_waits_the_grace_then_drops_the_run() {
        let (ctx, trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let started = tokio::time::Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let end = supervise(&ctx, limits(None, 400), async {
            // Ignores the cancel request.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        })
        .await;
        canceller.await.unwrap();
        assert_eq!(end, RunEnd::Cancelled(CANCELLED_AFTER_GRACE));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cooperative_run_stops_within_the_grace() {
        let (ctx, trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let run_ctx = ctx.clone();
        trigger.cancel();
        // Cancelled before it started: the run never begins.
        let end = supervise(&ctx, limits(None, 400), async { Ok(Value::Null) }).await;
        assert_eq!(end, RunEnd::Cancelled(CANCELLED_BEFORE_START));

        let (ctx, trigger) = CommandContext::with_cancel_trigger(2, "l", 1);
        let run_ctx2 = ctx.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            trigger.cancel();
        });
        let end = supervise(&ctx, limits(None, 400), async move {
            run_ctx2.cancelled().await;
            Ok(Value::from("stopped"))
        })
        .await;
        canceller.await.unwrap();
        assert_eq!(end, RunEnd::Cancelled(CANCELLED_WITHIN_GRACE));
        drop(run_ctx);
    }

    #[tokio::test(start_paused = true)]
    async fn keeping_the_slot_answers_at_the_grace_and_hands_back_the_run() {
        let (ctx, trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let started = tokio::time::Instant::now();
        trigger.cancel();
        let (end, rest) =
            supervise_keeping_slot(&ctx, limits(None, 0), async { Ok(Value::Null) }).await;
        assert_eq!(end, RunEnd::Cancelled(CANCELLED_BEFORE_START));
        assert!(rest.is_none());

        let (ctx, trigger) = CommandContext::with_cancel_trigger(2, "l", 1);
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let (end, rest) = supervise_keeping_slot(&ctx, limits(Some(10_000), 400), async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            panic!("a panic after the answer is caught");
        })
        .await;
        canceller.await.unwrap();
        assert_eq!(end, RunEnd::Cancelled(CANCELLED_AFTER_GRACE));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        rest.expect("still running").await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn keeping_the_slot_answers_a_timeout_and_a_quick_run_as_supervise_does() {
        let (ctx, _trigger) = CommandContext::with_cancel_trigger(1, "l", 1);
        let (end, rest) = supervise_keeping_slot(&ctx, limits(Some(250), 0), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Value::Null)
        })
        .await;
        assert_eq!(
            end,
            RunEnd::Err(LaneError::Timeout(Duration::from_millis(250)))
        );
        assert!(ctx.is_cancelled(), "a timed-out run is told to stop");
        let started = tokio::time::Instant::now();
        rest.expect("still running").await;
        assert_eq!(started.elapsed(), Duration::from_millis(750));

        let (ctx, _trigger) = CommandContext::with_cancel_trigger(2, "l", 1);
        let (end, rest) =
            supervise_keeping_slot(&ctx, limits(Some(250), 0), async { Ok(Value::from(7)) }).await;
        assert_eq!(end, RunEnd::Ok(Value::from(7)));
        assert!(rest.is_none());
    }
}
