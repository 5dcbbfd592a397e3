//! The objects JavaScript code receives from a queue: a submitted command's
//! A running handler's [`CommandContext`] (and `CommandHandle`, in the header). Both are plain frozen
//! JavaScript objects made by `runtime.js`; the structs here only describe them in the
//! generated `index.d.ts`.

use napi_derive::napi;
use serde_json::Value;

// `CommandHandle<T>` is written in `index.d.ts.header` (napi-rs objects are not generic).

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
    /// Publishes a `queue.command.progress` event with `progress` (a JSON value: throws
    /// `NOT_JSON` otherwise); on a `RedisWorker`, to the queue's event stream (every
    /// `RedisQueue.events()` sees it).
    #[napi(readonly, ts_type = "(progress: unknown) => void")]
    pub report_progress: Value,
}
