//! The objects JavaScript code receives from a lane: a submitted command's
//! [`CommandHandle`] and a running handler's [`CommandContext`]. Both are plain frozen
//! JavaScript objects made by `runtime.js`; the structs here only describe them in the
//! generated `index.d.ts`.

use napi_derive::napi;
use serde_json::Value;

/// A submitted command (from `submitWithHandle` and `redrive`).
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct CommandHandle {
    /// The command's id: `lane.cancel(id)` cancels it, events name it as `commandId`.
    #[napi(readonly)]
    pub id: f64,
    /// Settles like `submit()`'s promise: the handler's result, or its error. A rejection
    /// nobody awaits is not reported as an unhandled rejection.
    #[napi(readonly, ts_type = "Promise<unknown>")]
    pub result: Value,
    /// Cancels the command: a pending one is removed at once; a running one has its
    /// `ctx.signal` aborted and is abandoned after its lane's `cancelGraceMs`. Returns
    /// false when it already finished.
    #[napi(readonly, ts_type = "() => boolean")]
    pub cancel: Value,
}

/// What a handler knows about the run it is called for (its second argument).
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The command's id, the same across retries.
    #[napi(readonly)]
    pub id: f64,
    /// The lane it runs in.
    #[napi(readonly)]
    pub lane: String,
    /// Which attempt this is, starting at 1.
    #[napi(readonly)]
    pub attempt: u32,
    /// Aborted when the command is cancelled (reason: an `Error` with code `CANCELLED`)
    /// or its lane's `timeoutMs` passes (code `TIMEOUT`). A handler that stops when it
    /// fires — rejecting, or returning — ends as cancelled, not failed.
    #[napi(readonly, ts_type = "AbortSignal")]
    pub signal: Value,
    /// Publishes a `queue.command.progress` event with `progress` (a JSON value); on a
    /// `RedisWorker`, to the submitting process (its `RedisQueue.events()`).
    #[napi(readonly, ts_type = "(progress: unknown) => void")]
    pub report_progress: Value,
}
