//! [`RedisWorker`]: runs the commands of a Redis queue with JavaScript handlers, with the
//! same semantics as a `Lane`'s (the same `JsHandler` bridge from `runtime.rs`): plain and
//! async functions, `ctx.signal` aborted on cancel and timeout, the thrown error as the
//! command's error.
//!
//! A started worker keeps the process alive, as a listening server does, until
//! `shutdown()` or `shutdownNow()` has finished; after that nothing of it does. It also
//! keeps running when its JavaScript object is no longer referenced (a worker script
//! rarely keeps one): only a shutdown stops it.

use std::rc::{Rc, Weak};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use a3s_lane::{
    CommandId, HandlerRegistry, LaneError, RedisQueue as CoreQueue, RedisWorker as CoreWorker,
};
use napi::bindgen_prelude::{Either, JavaScriptClassExt, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::queue::RedisQueue;
use crate::config::redis::{RedisWorkerOptions, WorkerSetup};
use crate::convert::{At, Given, Js, function};
use crate::error::{JsFailure, ToJsError};
use crate::runtime::{
    Bridge, JsHandler, JsRuntime, Mail, Mailbox, NativeCallbacks, Settle, ToJs, spawn,
};

enum WorkerState {
    /// `RedisWorker.start` is registering the worker.
    Starting,
    /// Claiming and running commands. `keeper` ends the task that keeps this state (and
    /// so the worker) alive without the JavaScript object.
    Running {
        worker: CoreWorker,
        keeper: oneshot::Sender<()>,
    },
    /// A shutdown is under way.
    Stopping,
    /// Shut down (or it never started).
    Stopped,
}

/// What the tokio side of a worker shares.
struct WorkerShared {
    bridge: Arc<Bridge>,
    registry: HandlerRegistry,
    state: Mutex<WorkerState>,
    /// True once a shutdown finished.
    stopped: watch::Sender<bool>,
    id: OnceLock<String>,
}

impl WorkerShared {
    fn settle(&self, token: u64, settle: Settle) {
        self.bridge.settle(token, settle);
    }

    /// Takes the running worker out for a shutdown; `None` when another shutdown has it.
    fn take(&self) -> Option<(CoreWorker, oneshot::Sender<()>)> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, WorkerState::Stopping) {
            WorkerState::Running { worker, keeper } => Some((worker, keeper)),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Marks the worker stopped and lets the process exit (when nothing else holds it).
    fn finish(&self) {
        *self.state.lock() = WorkerState::Stopped;
        self.stopped.send_replace(true);
        self.bridge.mailbox.send(Mail::Release);
    }

    /// Waits for a shutdown started by another call.
    async fn wait_stopped(&self) {
        let mut stopped = self.stopped.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

/// The JavaScript-thread side of a worker.
struct WorkerInner {
    runtime: Rc<JsRuntime>,
    shared: Arc<WorkerShared>,
}

/// A worker submits nothing and has no events of its own: no signal, handle or listener
/// of it exists.
impl NativeCallbacks for WorkerInner {
    fn cancel(&self, _id: CommandId) {}

    fn cancel_from_handle<'env>(
        &self,
        env: &'env Env,
        _id: CommandId,
    ) -> napi::Result<Unknown<'env>> {
        ToJs::new(()).into_js(env)
    }

    fn events_wanted(&self, _env: &Env, _wanted: bool) {}

    /// A worker's commands stay in Redis for other workers: none is dropped at exit.
    fn unfinished(&self) -> usize {
        0
    }
}

/// Runs the commands of a `RedisQueue` with JavaScript handlers, in this process; start
/// as many as you like, in as many processes and machines. Lane priorities, caps and rate
/// limits hold over all of them; a worker that dies loses its commands to the others
/// after its lease (`leaseTtlMs`), so delivery is at least once.
///
/// ```js
/// const queue = await RedisQueue.connect('redis://127.0.0.1:6379');
/// const worker = await RedisWorker.start(queue, {
///   slots: 8,
///   handlers: { fetch: async ({ url }, ctx) => (await fetch(url, { signal: ctx.signal })).status },
/// });
/// // ... until it is time to stop:
/// await worker.shutdown(30_000);
/// ```
#[napi]
pub struct RedisWorker {
    inner: Rc<WorkerInner>,
}

impl std::fmt::Debug for RedisWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWorker")
            .field("id", &self.inner.shared.id.get())
            .finish_non_exhaustive()
    }
}

impl RedisWorker {
    fn runtime(&self) -> &JsRuntime {
        &self.inner.runtime
    }

    /// The queue argument of `start` (with the lane timeouts it knows), or what is
    /// wrong with it.
    fn queue_argument(
        env: &Env,
        queue: Either<&RedisQueue, Unknown<'_>>,
    ) -> napi::Result<Result<(CoreQueue, crate::runtime::LaneTimeouts), JsFailure>> {
        Ok(match queue {
            Either::A(queue) => queue
                .core()
                .map(|core| (core, queue.timeouts()))
                .map_err(|error| error.to_js_failure()),
            Either::B(other) => {
                let described = Given::of(env, &other).describe()?;
                Err(JsFailure::type_error(
                    "INVALID_ARGUMENT",
                    format!(
                        "queue must be a RedisQueue (from await RedisQueue.connect(url)), got {described}"
                    ),
                ))
            }
        })
    }
}

#[napi]
impl RedisWorker {
    /// Registers a worker with the queue and starts claiming commands, with the handlers
    /// of `options.handlers`; resolves with the running worker. Rejects with code
    /// `CONFIG` for invalid options and `STORAGE` when Redis cannot be reached. A command
    /// whose type has no handler on the worker that claims it fails with code
    /// `HANDLER_NOT_FOUND`, so give every handler here.
    #[napi(
        ts_args_type = "queue: RedisQueue, options?: RedisWorkerOptions",
        ts_return_type = "Promise<RedisWorker>"
    )]
    pub fn start<'env>(
        env: &'env Env,
        queue: Either<&RedisQueue, Unknown<'_>>,
        options: Option<Js<RedisWorkerOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let runtime = JsRuntime::create(env)?;
        let (queue, timeouts) = match Self::queue_argument(env, queue)? {
            Ok(queue) => queue,
            Err(failure) => return runtime.rejected(env, &failure),
        };
        let setup = match WorkerSetup::new(options) {
            Ok(setup) => setup,
            Err(failure) => return runtime.rejected(env, &failure),
        };
        let mailbox = Mailbox::create(env, runtime.clone())?;
        let bridge = Bridge::new(mailbox, timeouts);
        // Nobody in this process awaits the worker's commands: their handlers' errors are
        // not kept for a submitter.
        bridge
            .recovered_up_to
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        let bridge = Arc::new(bridge);
        let registry = HandlerRegistry::default();
        if let Some(handlers) = &setup.handlers {
            for command_type in &handlers.types {
                registry.register(
                    command_type.clone(),
                    JsHandler::new(command_type, bridge.clone()),
                );
            }
            runtime.handle_all(env, handlers.object)?;
        }
        let shared = Arc::new(WorkerShared {
            bridge,
            registry,
            state: Mutex::new(WorkerState::Starting),
            stopped: watch::Sender::new(false),
            id: OnceLock::new(),
        });
        let inner = Rc::new(WorkerInner {
            runtime: runtime.clone(),
            shared: shared.clone(),
        });
        let callbacks: Rc<dyn NativeCallbacks> = inner.clone();
        let weak: Weak<dyn NativeCallbacks> = Rc::downgrade(&callbacks);
        runtime.set_callbacks(weak, shared.bridge.clone());
        let instance = Self { inner }.into_instance(env)?;
        let token = runtime.next_token();
        let promise = runtime.value_promise(env, token, instance.as_object(env).to_unknown())?;
        let config = setup.config;
        spawn(async move {
            match CoreWorker::start(&queue, shared.registry.clone(), config).await {
                Ok(worker) => {
                    let _ = shared.id.set(worker.id().to_owned());
                    let (keeper, kept) = oneshot::channel::<()>();
                    *shared.state.lock() = WorkerState::Running { worker, keeper };
                    let holder = shared.clone();
                    spawn(async move {
                        // Ends when a shutdown drops the sender; until then `holder` keeps
                        // the worker alive even if its JavaScript object is collected.
                        let _ = kept.await;
                        drop(holder);
                    });
                    // Held before the start promise settles: no moment with nothing
                    // keeping the process alive.
                    shared.bridge.mailbox.send(Mail::Hold);
                    shared.settle(token, Settle::Done);
                }
                Err(error) => {
                    *shared.state.lock() = WorkerState::Stopped;
                    shared.stopped.send_replace(true);
                    shared.settle(token, Settle::Failed(error));
                }
            }
        });
        Ok(promise)
    }

    /// Registers (or replaces) the handler of a command type, as `Lane.handle` does. Give
    /// the handlers to `RedisWorker.start` instead when commands may already wait: the
    /// worker claims work as soon as it starts.
    #[napi(
        ts_args_type = "commandType: string, handler: (payload: any, ctx: CommandContext) => unknown"
    )]
    pub fn handle(
        &self,
        env: Env,
        command_type: Js<String>,
        handler: Unknown<'_>,
    ) -> napi::Result<()> {
        let command_type = At::argument("commandType")
            .name(command_type)
            .map_err(|failure| failure.throw(&env))?;
        function(&env, &format!("the handler of '{command_type}'"), &handler)?;
        self.runtime().handle(&env, &command_type, handler)?;
        let shared = &self.inner.shared;
        shared.registry.register(
            command_type.clone(),
            JsHandler::new(&command_type, shared.bridge.clone()),
        );
        Ok(())
    }

    /// Stops claiming, lets running commands finish and report, and leaves the queue.
    /// After `timeoutMs` (no limit when absent) what still runs is cancelled (its
    /// `ctx.signal` aborts) and handed back to the queue for other workers, and the
    /// promise rejects with code `TIMEOUT`. Afterwards nothing of the worker keeps the
    /// process alive.
    #[napi(ts_args_type = "timeoutMs?: number", ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(
        &self,
        env: &'env Env,
        timeout_ms: Option<Js<f64>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("timeoutMs");
        let timeout = match timeout_ms.map(|ms| ms.get(&at).and_then(|ms| at.millis(ms))) {
            None => Duration::MAX,
            Some(Ok(timeout)) => timeout,
            Some(Err(failure)) => return self.runtime().rejected(env, &failure),
        };
        let stop = move |worker: CoreWorker| async move {
            match worker.shutdown(timeout).await {
                Ok(()) => Settle::Done,
                Err(LaneError::Timeout(_)) => Settle::Rejected(JsFailure::error(
                    "TIMEOUT",
                    format!(
                        "the worker's running commands did not finish within {timeout:?}; they \
                         were cancelled and handed back to the queue"
                    ),
                )),
                Err(error) => Settle::Failed(error),
            }
        };
        self.stop(env, stop, || Settle::Done)
    }

    /// Stops at once: running commands have their `ctx.signal` aborted and are handed
    /// back to the queue for other workers (without counting an attempt). Resolves with
    /// how many were handed back. Afterwards nothing of the worker keeps the process
    /// alive.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn shutdown_now<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let stop = |worker: CoreWorker| async move { Settle::Count(worker.shutdown_now().await) };
        self.stop(env, stop, || Settle::Count(0))
    }

    /// The worker's id, as Redis and the queue's command records name it.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.shared.id.get().cloned().unwrap_or_default()
    }

    /// How many commands this worker runs now.
    #[napi(getter)]
    pub fn running(&self) -> u32 {
        match &*self.inner.shared.state.lock() {
            WorkerState::Running { worker, .. } => {
                u32::try_from(worker.running()).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    /// Whether the worker claims and runs commands (false once a shutdown began).
    #[napi(getter)]
    pub fn is_running(&self) -> bool {
        matches!(
            &*self.inner.shared.state.lock(),
            WorkerState::Running { .. }
        )
    }
}

impl RedisWorker {
    /// Runs a shutdown with `stop`, or waits for the one already under way and settles
    /// with `already`.
    fn stop<'env, F, Fut>(
        &self,
        env: &'env Env,
        stop: F,
        already: fn() -> Settle,
    ) -> napi::Result<Unknown<'env>>
    where
        F: FnOnce(CoreWorker) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Settle> + Send + 'static,
    {
        let rt = self.runtime();
        let token = rt.next_token();
        let promise = rt.promise(env, token)?;
        let shared = self.inner.shared.clone();
        match shared.take() {
            Some((worker, keeper)) => {
                spawn(async move {
                    let settle = stop(worker).await;
                    drop(keeper);
                    shared.finish();
                    shared.settle(token, settle);
                });
            }
            None => {
                spawn(async move {
                    shared.wait_stopped().await;
                    shared.settle(token, already());
                });
            }
        }
        Ok(promise)
    }
}
