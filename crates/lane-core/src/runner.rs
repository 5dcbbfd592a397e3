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

use std::future::Future;
use std::panic::AssertUnwindSafe;
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
}
