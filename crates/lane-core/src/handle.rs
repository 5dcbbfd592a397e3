//! [`CommandHandle`]: the id of a submitted command, a way to cancel it, and its result.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::command::CommandId;
use crate::error::{LaneError, Result};
use crate::queue::CommandQueue;

/// A submitted command. Await it for the result; dropping it does not cancel the command.
#[derive(Debug)]
#[must_use = "a handle does nothing unless awaited or used to cancel; drop it to detach"]
pub struct CommandHandle {
    id: CommandId,
    queue: Weak<CommandQueue>,
    result: oneshot::Receiver<Result<Value>>,
    duplicate: bool,
}

impl CommandHandle {
    pub(crate) fn new(
        id: CommandId,
        queue: Weak<CommandQueue>,
        result: oneshot::Receiver<Result<Value>>,
    ) -> Self {
        Self {
            id,
            queue,
            result,
            duplicate: false,
        }
    }

    /// The handle of an earlier command, returned for a submit with its idempotency key.
    pub(crate) fn duplicate(
        id: CommandId,
        queue: Weak<CommandQueue>,
        result: oneshot::Receiver<Result<Value>>,
    ) -> Self {
        Self {
            duplicate: true,
            ..Self::new(id, queue, result)
        }
    }

    /// The command's id, usable with `cancel(id)` on the queue or manager.
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// True when the submit queued nothing: its idempotency key
    /// ([`SubmitOptions::with_key`](crate::SubmitOptions::with_key)) belonged to a
    /// command still waiting or running, and this handle is that command's.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Cancels the command: a pending one is removed at once; a running one is signalled
    /// and dropped after its lane's grace period. Returns false if it already finished.
    pub fn cancel(&self) -> bool {
        self.queue
            .upgrade()
            .is_some_and(|queue| queue.cancel(self.id))
    }

    /// The result, without waiting: `None` while the command has not finished.
    pub fn try_result(&mut self) -> Option<Result<Value>> {
        match self.result.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped())),
        }
    }

    /// The underlying receiver (the 0.3 API's `submit` return type).
    pub fn into_receiver(self) -> oneshot::Receiver<Result<Value>> {
        self.result
    }
}

fn dropped() -> LaneError {
    LaneError::QueueError("the queue was dropped before the command finished".into())
}

impl Future for CommandHandle {
    type Output = Result<Value>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|received| received.unwrap_or_else(|_| Err(dropped())))
    }
}
