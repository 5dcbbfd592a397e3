//! [`Lane`]: the queue as JavaScript sees it. It holds the core `QueueManager`, checks
//! and converts arguments, maps errors, and leaves the rest to the core and to the
//! bridge in `runtime.rs`.
//!
//! No method blocks the event loop: submitting, cancelling and reading stats take a
//! short lock in the core; everything that waits (a command's result, opening durable
//! storage, draining) happens on tokio tasks and settles a promise through the mailbox.

use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandHandle as CoreHandle, CommandId, EventEmitter, LaneError, LocalStorage,
    LocalStorageConfig, QueueManager, QueueManagerBuilder, Storage,
};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use napi::Env;
use napi::bindgen_prelude::{Either, Unknown};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::args;
use crate::config::{Input, QueueSetup, parse_queue};
use crate::error::{JsFailure, ToJsError, throw};
use crate::events::check_key;
use crate::runtime::{Bridge, JsHandler, JsRuntime, Mail, Mailbox, NativeCallbacks, Settle, spawn};

/// Options of one submit.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Cancels the command when it aborts (before or while it runs); the promise then
    /// rejects with code `CANCELLED` and the signal's reason as `cause`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Value>,
}

/// Counts for the whole queue and each lane.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct QueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: u32,
    /// Commands running, over all lanes.
    pub total_active: u32,
    /// Failed commands waiting for their retry delay.
    pub total_delayed: u32,
    /// Each lane's status by lane id.
    pub lanes: HashMap<String, LaneStatus>,
}

/// One lane's counts and settings.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct LaneStatus {
    /// The lane id.
    pub id: String,
    /// Its priority (lower runs first).
    pub priority: u32,
    /// Commands waiting to start.
    pub pending: u32,
    /// Commands running.
    pub active: u32,
    /// Slots reserved for it under a global `maxConcurrency`.
    pub min_concurrency: u32,
    /// Most of its commands that run at once.
    pub max_concurrency: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Its priority now: `priority` lowered by its `priorityBoost` as its oldest pending
    /// command waits (equal to `priority` without a boost or pending commands).
    pub effective_priority: u32,
    /// Whether its `rateLimit` holds it back now (it starts again when a permit is due).
    pub throttled: bool,
}

/// A command that failed for good.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The command's id (pass it to `redrive`).
    pub command_id: f64,
    /// Its type.
    pub command_type: String,
    /// The lane it ran in.
    pub lane_id: String,
    /// Its last error (for a handler's error: the error's stack).
    pub error: String,
    /// How many times it ran.
    pub attempts: u32,
    /// When it failed for good, in milliseconds since the Unix epoch.
    pub failed_at: f64,
    /// Its payload.
    #[napi(ts_type = "unknown")]
    pub payload: Value,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The part of a lane that tokio tasks share: the manager once it exists, and what is
/// needed to build it.
struct LaneCore {
    state: Mutex<CoreState>,
    ready: Notify,
    bridge: Arc<Bridge>,
    setup: QueueSetup,
}

#[derive(Default)]
struct CoreState {
    manager: Option<QueueManager>,
    /// Set once `shutdown()` or `shutdownNow()` finished: the queue (and its store) is
    /// released, so the same store can be opened again.
    closed: bool,
    failed: Option<LaneError>,
    starting: bool,
    handler_types: Vec<String>,
    events_wanted: bool,
}

impl LaneCore {
    fn manager(&self) -> Option<QueueManager> {
        self.state.lock().manager.clone()
    }

    fn builder(&self, handler_types: &[String]) -> QueueManagerBuilder {
        let setup = &self.setup;
        let mut builder = QueueManagerBuilder::new(EventEmitter::new(setup.event_capacity));
        for lane in &setup.lanes {
            builder = builder.with_lane(&lane.id, lane.config.clone(), lane.priority);
        }
        if let Some(max) = setup.max_concurrency {
            builder = builder.with_max_concurrency(max);
        }
        if let Some(capacity) = setup.dead_letter_capacity {
            builder = builder.with_dlq(capacity);
        }
        if let Some(metrics) = &setup.metrics {
            builder = builder.with_metrics(metrics.clone());
        }
        for command_type in handler_types {
            builder = builder.with_handler(
                command_type,
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
        builder
    }

    /// Waits until the manager exists (durable lanes: until `start()` opened the store).
    async fn ready(&self) -> Result<QueueManager, LaneError> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state.lock();
                if let Some(manager) = &state.manager {
                    return Ok(manager.clone());
                }
                if state.closed {
                    return Err(LaneError::ShutdownInProgress);
                }
                if let Some(error) = &state.failed {
                    return Err(error.clone());
                }
            }
            notified.await;
        }
    }

    /// Publishes the manager (registering the handlers added meanwhile) and hands the
    /// JavaScript thread its event subscription if someone listens.
    fn publish(self: &Arc<Self>, manager: QueueManager) {
        let mut state = self.state.lock();
        for command_type in &state.handler_types {
            manager.register_handler(
                command_type.clone(),
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
        if state.events_wanted {
            // Subscribed before the queue starts, so no event is missed.
            self.bridge
                .mailbox
                .send(Mail::Subscribe(manager.subscribe()));
        }
        state.manager = Some(manager);
        drop(state);
        self.ready.notify_waiters();
    }

    /// Releases the queue after a shutdown; its store closes once its last task ends.
    fn close(&self) {
        let mut state = self.state.lock();
        state.manager = None;
        state.closed = true;
        drop(state);
        self.ready.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    fn fail(&self, error: LaneError) {
        let mut state = self.state.lock();
        state.failed = Some(error);
        state.starting = false;
        drop(state);
        self.ready.notify_waiters();
    }

    fn register_handler(&self, command_type: &str) {
        let mut state = self.state.lock();
        if !state.handler_types.iter().any(|t| t == command_type) {
            state.handler_types.push(command_type.to_owned());
        }
        if let Some(manager) = &state.manager {
            manager.register_handler(
                command_type.to_owned(),
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
    }

    /// Records whether events are wanted; returns the queue to subscribe to, if it exists.
    fn set_events_wanted(&self, wanted: bool) -> Option<QueueManager> {
        let mut state = self.state.lock();
        state.events_wanted = wanted;
        state.manager.clone()
    }
}

/// A durable submit on its way into the store.
struct AcceptJob {
    lane: String,
    command_type: String,
    payload: Value,
    /// The promise returned by the submit.
    token: u64,
    /// For `submitWithHandle`: the handle's result promise.
    result_token: Option<u64>,
}

/// Accepts durable submits in the order they were made: each job's first poll (which
/// queues its journal write) happens before the next job is taken, and the journal
/// acknowledges its writes in order, so commands enter their lanes in call order. Jobs
/// that arrive before `start()` has opened the store wait for it.
async fn acceptor(core: Arc<LaneCore>, mut jobs: mpsc::UnboundedReceiver<AcceptJob>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            job = jobs.recv() => match job {
                None => break,
                Some(job) => match core.ready().await {
                    Ok(manager) => running.push(accept(manager, core.bridge.clone(), job)),
                    Err(error) => reject_job(&core.bridge, &job, &error),
                },
            },
        }
    }
    while running.next().await.is_some() {}
}

fn reject_job(bridge: &Bridge, job: &AcceptJob, error: &LaneError) {
    for token in std::iter::once(job.token).chain(job.result_token) {
        bridge.mailbox.send(Mail::Settle {
            token,
            settle: Settle::Failed(error.clone()),
        });
    }
}

async fn accept(manager: QueueManager, bridge: Arc<Bridge>, job: AcceptJob) {
    match manager
        .submit_replayable(&job.lane, &job.command_type, job.payload.clone())
        .await
    {
        Ok(handle) => {
            bridge.mailbox.send(Mail::Settle {
                token: job.token,
                settle: Settle::Accepted {
                    id: handle.id(),
                    result_token: job.result_token,
                },
            });
            settle_result(&bridge, job.result_token.unwrap_or(job.token), handle).await;
        }
        Err(error) => reject_job(&bridge, &job, &error),
    }
}

async fn settle_result(bridge: &Bridge, token: u64, handle: CoreHandle) {
    let id = handle.id();
    let result = handle
        .await
        .and_then(|value| serde_json::to_string(&value).map_err(LaneError::from));
    bridge.mailbox.send(Mail::Settle {
        token,
        settle: Settle::Result { id, result },
    });
}

/// The JavaScript-thread side of a lane.
struct LaneInner {
    runtime: Rc<JsRuntime>,
    core: Arc<LaneCore>,
    /// Durable lanes only: hands submits to the acceptor task.
    jobs: Option<mpsc::UnboundedSender<AcceptJob>>,
}

impl NativeCallbacks for LaneInner {
    fn cancel(&self, id: CommandId) -> bool {
        self.core
            .manager()
            .is_some_and(|manager| manager.cancel(id))
    }

    fn events_wanted(&self, env: &Env, wanted: bool) {
        let manager = self.core.set_events_wanted(wanted);
        self.runtime
            .set_events_wanted(env, wanted, || manager.map(|manager| manager.subscribe()));
    }
}

/// A lane-based priority command queue running JavaScript handlers.
///
/// ```js
/// const lane = new Lane({ query: { priority: 2, minConcurrency: 1, maxConcurrency: 10 } });
/// lane.handle('fetch_data', async (payload, ctx) => ({ ok: true }));
/// lane.start();
/// const result = await lane.submit('query', 'fetch_data', { url: 'https://example.com' });
/// await lane.shutdown();
/// ```
#[napi]
pub struct Lane {
    inner: Rc<LaneInner>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("lanes", &self.inner.core.setup.lanes.len())
            .finish_non_exhaustive()
    }
}

/// A submit's promises: the one returned, and (for handles) the result's.
#[derive(Clone, Copy)]
struct Tokens {
    returned: u64,
    result: u64,
    handle: bool,
}

impl Lane {
    fn runtime(&self) -> &JsRuntime {
        &self.inner.runtime
    }

    fn inspect(
        &self,
        env: &Env,
        value: Option<Unknown<'_>>,
    ) -> napi::Result<Result<Input, JsFailure>> {
        args::inspect(self.runtime(), env, value)
    }

    /// A string argument, or the error describing what was passed instead.
    fn name(
        &self,
        env: &Env,
        what: &str,
        value: Either<String, Unknown<'_>>,
    ) -> napi::Result<Result<String, JsFailure>> {
        args::name(self.runtime(), env, what, value)
    }

    fn manager_or_throw(&self, env: &Env) -> napi::Result<QueueManager> {
        self.inner.core.manager().ok_or_else(|| {
            if self.inner.core.is_closed() {
                JsFailure::error(
                    "SHUTDOWN",
                    "the lane was shut down; create a new Lane to go on",
                )
                .throw(env)
            } else {
                JsFailure::error(
                    "QUEUE",
                    "the lane is still opening its durable storage; await lane.start() first",
                )
                .throw(env)
            }
        })
    }

    fn reject_tokens(&self, env: &Env, tokens: Tokens, error: Unknown<'_>) -> napi::Result<()> {
        self.runtime()
            .reject(env, tokens.result, None, error, false)?;
        if tokens.handle {
            self.runtime()
                .reject(env, tokens.returned, None, error, false)?;
        }
        Ok(())
    }

    fn submit_inner<'env>(
        &self,
        env: &'env Env,
        lane: Either<String, Unknown<'_>>,
        command_type: Either<String, Unknown<'_>>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
        handle: bool,
    ) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        let result = rt.next_token();
        let (returned, promise) = if handle {
            rt.detached_promise(env, result)?;
            let token = rt.next_token();
            (token, rt.promise(env, token)?)
        } else {
            (result, rt.promise(env, result)?)
        };
        let tokens = Tokens {
            returned,
            result,
            handle,
        };
        let checked = (|| -> napi::Result<Result<(String, String), JsFailure>> {
            let lane = match self.name(env, "lane", lane)? {
                Ok(lane) => lane,
                Err(failure) => return Ok(Err(failure)),
            };
            Ok(self
                .name(env, "commandType", command_type)?
                .map(|t| (lane, t)))
        })()?;
        let (lane, command_type) = match checked {
            Ok(names) => names,
            Err(failure) => {
                self.reject_tokens(env, tokens, failure.to_js(env))?;
                return Ok(promise);
            }
        };
        let payload = match payload {
            None => Value::Null,
            Some(payload) => match rt.payload_json(env, payload)? {
                Either::A(json) => match serde_json::from_str(&json) {
                    Ok(value) => value,
                    Err(error) => {
                        let failure = JsFailure::type_error(
                            "INVALID_ARGUMENT",
                            format!(
                                "payload is a string but not valid JSON ({error}); pass an object, \
                                 or JSON.stringify(value) for a string payload"
                            ),
                        );
                        self.reject_tokens(env, tokens, failure.to_js(env))?;
                        return Ok(promise);
                    }
                },
                Either::B(error) => {
                    self.reject_tokens(env, tokens, error)?;
                    return Ok(promise);
                }
            },
        };
        let watched = options.is_some();
        if let Some(options) = options {
            match rt.submit_options(env, result, options)? {
                Ok(false) => {}
                Ok(true) => {
                    let failure = JsFailure::error(
                        "CANCELLED",
                        "command cancelled: its AbortSignal was already aborted, so it was not submitted",
                    );
                    self.reject_tokens(env, tokens, failure.to_js(env))?;
                    return Ok(promise);
                }
                Err(error) => {
                    self.reject_tokens(env, tokens, error)?;
                    return Ok(promise);
                }
            }
        }
        if let Some(jobs) = &self.inner.jobs {
            let job = AcceptJob {
                lane,
                command_type,
                payload,
                token: tokens.returned,
                result_token: handle.then_some(tokens.result),
            };
            if jobs.send(job).is_err() {
                let failure =
                    JsFailure::error("QUEUE", "the lane's acceptor stopped; the lane is unusable");
                self.reject_tokens(env, tokens, failure.to_js(env))?;
            }
            return Ok(promise);
        }
        let Some(manager) = self.inner.core.manager() else {
            // Only a lane that was shut down has no queue (a lane without storage builds
            // its queue in the constructor).
            self.reject_tokens(
                env,
                tokens,
                LaneError::ShutdownInProgress.to_js_failure().to_js(env),
            )?;
            return Ok(promise);
        };
        // Without storage, accepting takes no await: the command is in its lane (in call
        // order) when this returns.
        match manager
            .submit_replayable(&lane, &command_type, payload)
            .now_or_never()
        {
            Some(Ok(core_handle)) => {
                let id = core_handle.id();
                if watched {
                    rt.bind(env, tokens.result, id)?;
                }
                if handle {
                    let object = rt.make_handle(env, tokens.result, id)?;
                    rt.resolve_with(env, tokens.returned, object)?;
                }
                rt.await_result(env, result, core_handle, self.inner.core.bridge.clone())?;
            }
            Some(Err(error)) => {
                self.reject_tokens(env, tokens, error.to_js_failure().to_js(env))?;
            }
            None => {
                let failure = JsFailure::error(
                    "QUEUE",
                    "internal: a submit without storage did not complete at once",
                );
                self.reject_tokens(env, tokens, failure.to_js(env))?;
            }
        }
        Ok(promise)
    }

    /// Runs `work` on tokio and settles a new promise with its outcome.
    fn settle_later<'env, F>(&self, env: &'env Env, work: F) -> napi::Result<Unknown<'env>>
    where
        F: FnOnce(QueueManager, Arc<LaneCore>) -> futures_util::future::BoxFuture<'static, Settle>
            + Send
            + 'static,
    {
        let token = self.runtime().next_token();
        let promise = self.runtime().promise(env, token)?;
        let core = self.inner.core.clone();
        spawn(async move {
            let settle = match core.ready().await {
                Ok(manager) => work(manager, core.clone()).await,
                Err(error) => Settle::Failed(error),
            };
            core.bridge.mailbox.send(Mail::Settle { token, settle });
        });
        Ok(promise)
    }

    /// A promise already rejected with `error`.
    fn rejected<'env>(
        &self,
        env: &'env Env,
        error: &impl ToJsError,
    ) -> napi::Result<Unknown<'env>> {
        args::rejected(self.runtime(), env, error)
    }

    /// A promise already resolved with the JSON value `json` (`None`: `undefined`).
    fn settled<'env>(&self, env: &'env Env, json: Option<String>) -> napi::Result<Unknown<'env>> {
        args::settled(self.runtime(), env, json)
    }

    fn id_argument(&self, env: &Env, value: Unknown<'_>) -> napi::Result<CommandId> {
        self.command_id(env, value)?.map_err(|f| f.throw(env))
    }

    /// A command id argument, or what is wrong with it.
    fn command_id(
        &self,
        env: &Env,
        value: Unknown<'_>,
    ) -> napi::Result<Result<CommandId, JsFailure>> {
        args::command_id(self.runtime(), env, value)
    }

    fn lane_argument(&self, env: &Env, value: Either<String, Unknown<'_>>) -> napi::Result<String> {
        self.name(env, "laneId", value)?.map_err(|f| f.throw(env))
    }
}

#[napi]
impl Lane {
    /// Creates a queue. `lanes` maps lane ids to their options (leave it out for the six
    /// default lanes); `options` sets the global budget, events, dead letters and storage.
    /// Invalid options throw a `TypeError` or `RangeError` with code `CONFIG`.
    #[napi(
        constructor,
        ts_args_type = "lanes?: Record<string, LaneOptions> | null, options?: QueueOptions"
    )]
    pub fn new(
        env: Env,
        lanes: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Self> {
        let runtime = JsRuntime::create(&env)?;
        let inspect = |value: Option<Unknown<'_>>| -> napi::Result<Result<Input, JsFailure>> {
            Ok(match value {
                None => Ok(Input::Undefined),
                Some(value) => Input::from_inspected(&runtime.inspect(&env, value)?),
            })
        };
        let lanes = inspect(lanes)?.map_err(|f| f.throw(&env))?;
        let options = inspect(options)?.map_err(|f| f.throw(&env))?;
        let setup = parse_queue(&lanes, &options).map_err(|f| f.throw(&env))?;

        let mailbox = Mailbox::create(&env, runtime.clone())?;
        let bridge = Arc::new(Bridge::new(mailbox, setup.timeouts.clone()));
        let durable = setup.storage.is_some();
        let core = Arc::new(LaneCore {
            state: Mutex::new(CoreState::default()),
            ready: Notify::new(),
            bridge,
            setup,
        });
        // Building checks the lanes against each other and the global budget; without
        // storage it takes no await, and this manager is the lane's queue.
        let manager = match core.builder(&[]).build().now_or_never() {
            Some(Ok(manager)) => manager,
            Some(Err(error)) => return Err(throw(&env, &error)),
            None => {
                return Err(JsFailure::error(
                    "QUEUE",
                    "internal: building the queue did not complete at once",
                )
                .throw(&env));
            }
        };
        let jobs = if durable {
            let (sender, receiver) = mpsc::unbounded_channel();
            spawn(acceptor(core.clone(), receiver));
            Some(sender)
        } else {
            core.state.lock().manager = Some(manager);
            None
        };
        let inner = Rc::new(LaneInner {
            runtime,
            core,
            jobs,
        });
        let callbacks: Rc<dyn NativeCallbacks> = inner.clone();
        let weak: Weak<dyn NativeCallbacks> = Rc::downgrade(&callbacks);
        inner.runtime.set_callbacks(weak, inner.core.bridge.clone());
        Ok(Self { inner })
    }

    /// Registers (or replaces) the handler of a command type. The handler gets the
    /// payload and a `CommandContext`; what it returns (or resolves with) is the command's
    /// result, what it throws (or rejects with) its error. Register the handlers of a
    /// durable lane before `start()`, so recovered commands find them.
    #[napi(
        ts_args_type = "commandType: string, handler: (payload: any, ctx: CommandContext) => unknown"
    )]
    pub fn handle(
        &self,
        env: Env,
        command_type: Either<String, Unknown<'_>>,
        handler: Unknown<'_>,
    ) -> napi::Result<()> {
        let command_type = self
            .name(&env, "commandType", command_type)?
            .map_err(|f| f.throw(&env))?;
        args::function(
            self.runtime(),
            &env,
            &format!("the handler of '{command_type}'"),
            handler,
        )?;
        self.runtime().handle(&env, &command_type, handler)?;
        self.inner.core.register_handler(&command_type);
        Ok(())
    }

    /// Starts running commands (those submitted before wait in their lanes). With durable
    /// storage it first opens the store and puts the commands recovered from it back at
    /// the front of their lanes; the promise settles when the lane runs.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn start<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        let token = rt.next_token();
        let promise = rt.promise(env, token)?;
        let core = self.inner.core.clone();
        let Some(storage) = core.setup.storage.clone() else {
            // A lane without storage has its queue from the constructor until shutdown.
            let Some(manager) = core.manager() else {
                rt.reject_with(env, token, &LaneError::ShutdownInProgress)?;
                return Ok(promise);
            };
            match crate::runtime::in_runtime(|| manager.start().now_or_never()) {
                Some(Ok(())) => rt.resolve(env, token, None, None)?,
                Some(Err(error)) => rt.reject_with(env, token, &error)?,
                None => rt.reject_with(
                    env,
                    token,
                    &JsFailure::error("QUEUE", "internal: start did not complete at once"),
                )?,
            }
            return Ok(promise);
        };
        let first = {
            let mut state = core.state.lock();
            let first = !state.starting && state.manager.is_none();
            state.starting = true;
            first
        };
        spawn(async move {
            let outcome = if first {
                open_durable(&core, storage).await
            } else {
                core.ready().await.map(drop)
            };
            let settle = match outcome {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Failed(error),
            };
            core.bridge.mailbox.send(Mail::Settle { token, settle });
        });
        Ok(promise)
    }

    /// Submits a command and resolves with its result: what the handler of
    /// `commandType` returned for `payload` (a JSON value, or a JSON string). Rejects
    /// with the handler's own error, or an error with code `LANE_NOT_FOUND`,
    /// `HANDLER_NOT_FOUND`, `INVALID_ARGUMENT`, `TIMEOUT`, `CANCELLED` or `SHUTDOWN`.
    /// `options.signal` cancels the command when it aborts.
    #[napi(
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<any>"
    )]
    pub fn submit<'env>(
        &self,
        env: &'env Env,
        lane: Either<String, Unknown<'_>>,
        command_type: Either<String, Unknown<'_>>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        self.submit_inner(env, lane, command_type, payload, options, false)
    }

    /// Like `submit`, but resolves as soon as the command is accepted (durable, with
    /// storage) with its `CommandHandle`: `id`, `cancel()` and the `result` promise.
    #[napi(
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<CommandHandle>"
    )]
    pub fn submit_with_handle<'env>(
        &self,
        env: &'env Env,
        lane: Either<String, Unknown<'_>>,
        command_type: Either<String, Unknown<'_>>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        self.submit_inner(env, lane, command_type, payload, options, true)
    }

    /// Cancels a command by id: a pending one is removed at once (its promise rejects
    /// with code `CANCELLED`); a running one has its `ctx.signal` aborted and is
    /// abandoned after its lane's `cancelGraceMs`. Returns false when no such command is
    /// pending or running.
    #[napi(ts_args_type = "commandId: number")]
    pub fn cancel(&self, env: Env, command_id: Unknown<'_>) -> napi::Result<bool> {
        let id = self.id_argument(&env, command_id)?;
        Ok(self
            .inner
            .core
            .manager()
            .is_some_and(|manager| manager.cancel(id)))
    }

    /// Cancels every pending and running command of a lane; returns how many.
    #[napi(ts_args_type = "laneId: string")]
    pub fn cancel_lane(&self, env: Env, lane_id: Either<String, Unknown<'_>>) -> napi::Result<u32> {
        let lane = self.lane_argument(&env, lane_id)?;
        let manager = self.manager_or_throw(&env)?;
        manager
            .cancel_lane(&lane)
            .map(count)
            .map_err(|error| throw(&env, &error))
    }

    /// Stops starting commands from a lane (running ones go on); with `durationMs`, the
    /// lane resumes by itself after that long (for example after an HTTP 429).
    #[napi(ts_args_type = "laneId: string, durationMs?: number")]
    pub fn pause_lane(
        &self,
        env: Env,
        lane_id: Either<String, Unknown<'_>>,
        duration_ms: Option<Unknown<'_>>,
    ) -> napi::Result<()> {
        let lane = self.lane_argument(&env, lane_id)?;
        let duration = match self.inspect(&env, duration_ms)? {
            Ok(Input::Undefined) => None,
            Ok(input) => Some(args::millis("durationMs", &input, true).map_err(|f| f.throw(&env))?),
            Err(failure) => return Err(failure.throw(&env)),
        };
        let manager = self.manager_or_throw(&env)?;
        let result = match duration {
            None => manager.pause_lane(&lane),
            Some(duration) => {
                crate::runtime::in_runtime(|| manager.pause_lane_for(&lane, duration))
            }
        };
        result.map_err(|error| throw(&env, &error))
    }

    /// Resumes a paused lane and starts what now fits.
    #[napi(ts_args_type = "laneId: string")]
    pub fn resume_lane(&self, env: Env, lane_id: Either<String, Unknown<'_>>) -> napi::Result<()> {
        let lane = self.lane_argument(&env, lane_id)?;
        let manager = self.manager_or_throw(&env)?;
        manager
            .resume_lane(&lane)
            .map_err(|error| throw(&env, &error))
    }

    /// Counts for the whole queue and each lane.
    #[napi]
    pub fn stats(&self, env: Env) -> napi::Result<QueueStats> {
        let stats = self.manager_or_throw(&env)?.queue().stats_now();
        Ok(QueueStats {
            total_pending: count(stats.total_pending),
            total_active: count(stats.total_active),
            total_delayed: count(stats.total_delayed),
            lanes: stats
                .lanes
                .into_iter()
                .map(|(id, lane)| {
                    let status = LaneStatus {
                        id: lane.id,
                        priority: lane.priority.into(),
                        pending: count(lane.pending),
                        active: count(lane.active),
                        min_concurrency: count(lane.min),
                        max_concurrency: count(lane.max),
                        paused: lane.paused,
                        effective_priority: lane.effective_priority.into(),
                        throttled: lane.throttled,
                    };
                    (id, status)
                })
                .collect(),
        })
    }

    /// The dead letters, oldest first. Throws (code `CONFIG`) when the lane was created
    /// without `deadLetterCapacity`.
    #[napi]
    pub fn dead_letters(&self, env: Env) -> napi::Result<Vec<DeadLetter>> {
        let dlq = self.dead_letter_queue(&env)?;
        let letters = dlq.list().now_or_never().unwrap_or_default();
        Ok(letters
            .into_iter()
            .map(|letter| DeadLetter {
                command_id: letter.command_id as f64,
                command_type: letter.command_type,
                lane_id: letter.lane_id,
                error: letter.error,
                attempts: letter.attempts,
                failed_at: letter.failed_at as f64,
                payload: letter.payload.unwrap_or(Value::Null),
            })
            .collect())
    }

    /// Removes every dead letter (from the store too, with durable storage).
    #[napi]
    pub fn clear_dead_letters(&self, env: Env) -> napi::Result<()> {
        let dlq = self.dead_letter_queue(&env)?;
        let _ = dlq.clear().now_or_never();
        Ok(())
    }

    /// Submits a dead letter again, under a new id with a fresh attempt count; it leaves
    /// the dead letters once the new command is accepted. Resolves with its handle.
    #[napi(
        ts_args_type = "commandId: number",
        ts_return_type = "Promise<CommandHandle>"
    )]
    pub fn redrive<'env>(
        &self,
        env: &'env Env,
        command_id: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        let id = match self.command_id(env, command_id)? {
            Ok(id) => id,
            Err(failure) => return self.rejected(env, &failure),
        };
        if self
            .inner
            .core
            .manager()
            .is_some_and(|manager| manager.dead_letters().is_none())
        {
            let failure = JsFailure::error(
                "CONFIG",
                "this lane keeps no dead letters; create it with { deadLetterCapacity: n }",
            );
            return self.rejected(env, &failure);
        }
        let rt = self.runtime();
        let result = rt.next_token();
        rt.detached_promise(env, result)?;
        let token = rt.next_token();
        let promise = rt.promise(env, token)?;
        let core = self.inner.core.clone();
        spawn(async move {
            let bridge = core.bridge.clone();
            let redriven = match core.ready().await {
                Ok(manager) => manager.redrive(id).await,
                Err(error) => Err(error),
            };
            match redriven {
                Ok(handle) => {
                    bridge.mailbox.send(Mail::Settle {
                        token,
                        settle: Settle::Accepted {
                            id: handle.id(),
                            result_token: Some(result),
                        },
                    });
                    settle_result(&bridge, result, handle).await;
                }
                Err(error) => {
                    for token in [token, result] {
                        bridge.mailbox.send(Mail::Settle {
                            token,
                            settle: Settle::Failed(error.clone()),
                        });
                    }
                }
            }
        });
        Ok(promise)
    }

    /// Calls `listener` with every event of `key` (`'*'`: every event). Keys:
    /// `queue.command.submitted`, `.started`, `.completed`, `.retry`, `.dead_lettered`,
    /// `.failed`, `.timeout`, `.cancelled`, `.progress`, `queue.shutdown.started`,
    /// `queue.shutdown.complete`, `queue.lane.pressure`, `queue.lane.idle`,
    /// `queue.storage.failed`, `queue.events.lagged`. Listeners do not keep the process
    /// alive; an error thrown by one is reported as an uncaught exception.
    #[napi(ts_args_type = "key: string, listener: (event: LaneEvent) => void")]
    pub fn on(
        &self,
        env: Env,
        key: Either<String, Unknown<'_>>,
        listener: Unknown<'_>,
    ) -> napi::Result<()> {
        let key = self.event_key(&env, key)?;
        self.listener_argument(&env, listener)?;
        self.runtime().on(&env, key, listener)
    }

    /// Removes a listener added with `on`.
    #[napi(ts_args_type = "key: string, listener: (event: LaneEvent) => void")]
    pub fn off(
        &self,
        env: Env,
        key: Either<String, Unknown<'_>>,
        listener: Unknown<'_>,
    ) -> napi::Result<()> {
        let key = self.event_key(&env, key)?;
        self.listener_argument(&env, listener)?;
        self.runtime().off(&env, key, listener)
    }

    /// The events of `keys` (all when absent) as an async iterator, from now on. It ends
    /// after `queue.shutdown.complete`, or when the loop is left. A reader that falls more
    /// than `eventCapacity` events behind loses the oldest and gets one
    /// `queue.events.lagged` event saying how many. It does not keep the process alive.
    #[napi(
        ts_args_type = "keys?: string | string[]",
        ts_return_type = "AsyncIterableIterator<LaneEvent>"
    )]
    pub fn events<'env>(
        &self,
        env: &'env Env,
        keys: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let input = self.inspect(env, keys)?.map_err(|f| f.throw(env))?;
        let keys = match input {
            Input::Undefined | Input::Null => None,
            Input::String(key) => Some(vec![key]),
            Input::Array(items) => Some(
                items
                    .into_iter()
                    .map(|item| match item {
                        Input::String(key) => Ok(key),
                        other => Err(JsFailure::type_error(
                            "INVALID_ARGUMENT",
                            format!("event keys must be strings, got {}", other.describe()),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|f| f.throw(env))?,
            ),
            other => {
                return Err(JsFailure::type_error(
                    "INVALID_ARGUMENT",
                    format!(
                        "keys must be a string or an array of strings, got {}",
                        other.describe()
                    ),
                )
                .throw(env));
            }
        };
        if let Some(keys) = &keys {
            for key in keys {
                check_key(key, false).map_err(|message| {
                    JsFailure::range_error("INVALID_ARGUMENT", message).throw(env)
                })?;
            }
        }
        let capacity = count(self.inner.core.setup.event_capacity);
        // After a shutdown no event will come: the iterator is over at once.
        let ended = self.inner.core.is_closed();
        self.runtime().iterate(env, keys, capacity, ended)
    }

    /// Stops accepting commands (new submits reject with code `SHUTDOWN`) and resolves
    /// once every accepted command has finished. Afterwards nothing of the lane keeps the
    /// process alive.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        if self.inner.core.is_closed() {
            return self.settled(env, None);
        }
        self.settle_later(env, |manager, core| {
            async move {
                manager.shutdown().await;
                let drained = manager.drain(Duration::MAX).await;
                drop(manager);
                core.close();
                match drained {
                    Ok(()) => Settle::Done,
                    Err(error) => Settle::Failed(error),
                }
            }
            .boxed()
        })
    }

    /// Stops at once: pending commands are cancelled, running ones have their
    /// `ctx.signal` aborted and are abandoned after their grace period; durable commands
    /// stay in the store for the next start. Resolves with how many commands were
    /// cancelled, once none is left running.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn shutdown_now<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        if self.inner.core.is_closed() {
            return self.settled(env, Some("0".into()));
        }
        self.settle_later(env, |manager, core| {
            async move {
                let cancelled = manager.shutdown_now().await;
                let drained = manager.drain(Duration::MAX).await;
                drop(manager);
                core.close();
                match drained {
                    Ok(()) => Settle::Count(cancelled),
                    Err(error) => Settle::Failed(error),
                }
            }
            .boxed()
        })
    }

    /// Resolves once no command is pending, delayed or running (and, with storage, the
    /// store is written); rejects with code `TIMEOUT` after `timeoutMs`.
    #[napi(ts_args_type = "timeoutMs: number", ts_return_type = "Promise<void>")]
    pub fn drain<'env>(
        &self,
        env: &'env Env,
        timeout_ms: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        let input = match self.inspect(env, Some(timeout_ms))? {
            Ok(input) => input,
            Err(failure) => return self.rejected(env, &failure),
        };
        let timeout = match args::millis("timeoutMs", &input, false) {
            Ok(timeout) => timeout,
            Err(failure) => return self.rejected(env, &failure),
        };
        self.settle_later(env, move |manager, _| {
            async move {
                match manager.drain(timeout).await {
                    Ok(()) => Settle::Done,
                    Err(error) => Settle::Failed(error),
                }
            }
            .boxed()
        })
    }

    /// Whether `shutdown()` or `shutdownNow()` was called.
    #[napi(getter)]
    pub fn is_shutting_down(&self) -> bool {
        let core = &self.inner.core;
        core.is_closed()
            || core
                .manager()
                .is_some_and(|manager| manager.is_shutting_down())
    }

    /// The lane ids, in the order they were configured.
    #[napi(getter)]
    pub fn lane_ids(&self) -> Vec<String> {
        self.inner
            .core
            .setup
            .lanes
            .iter()
            .map(|lane| lane.id.clone())
            .collect()
    }
}

impl Lane {
    /// The queue's metrics, when the lane was created with `{ metrics: true }`.
    pub(crate) fn queue_metrics(&self) -> Option<&a3s_lane::QueueMetrics> {
        self.inner.core.setup.metrics.as_ref()
    }

    fn event_key(&self, env: &Env, key: Either<String, Unknown<'_>>) -> napi::Result<String> {
        let key = self.name(env, "key", key)?.map_err(|f| f.throw(env))?;
        check_key(&key, true)
            .map_err(|message| JsFailure::range_error("INVALID_ARGUMENT", message).throw(env))?;
        Ok(key)
    }

    fn listener_argument(&self, env: &Env, listener: Unknown<'_>) -> napi::Result<()> {
        args::function(self.runtime(), env, "listener", listener)
    }

    fn dead_letter_queue(&self, env: &Env) -> napi::Result<a3s_lane::DeadLetterQueue> {
        let manager = self.manager_or_throw(env)?;
        manager.dead_letters().ok_or_else(|| {
            JsFailure::error(
                "CONFIG",
                "this lane keeps no dead letters; create it with { deadLetterCapacity: n }",
            )
            .throw(env)
        })
    }
}

/// Opens the store, builds the queue around it and starts it (recovering what the store
/// holds).
async fn open_durable(
    core: &Arc<LaneCore>,
    storage: crate::config::StorageSetup,
) -> Result<(), LaneError> {
    let opened = async {
        let config = LocalStorageConfig::new().with_sync(storage.sync);
        let store = LocalStorage::open(&storage.path, config).await?;
        let recovered_up_to = store.max_command_id().await?;
        core.bridge
            .recovered_up_to
            .store(recovered_up_to, std::sync::atomic::Ordering::Relaxed);
        let handler_types = core.state.lock().handler_types.clone();
        let manager = core
            .builder(&handler_types)
            .with_storage(Arc::new(store))
            .build()
            .await?;
        Ok::<_, LaneError>(manager)
    };
    let manager = match opened.await {
        Ok(manager) => manager,
        Err(error) => {
            core.fail(error.clone());
            return Err(error);
        }
    };
    core.publish(manager.clone());
    manager.start().await?;
    // Recovered commands have no submitter whose promise keeps the process alive: the
    // lane does, until the queue has run them. (Sent before start() settles, so the
    // process never sees a moment with nothing holding it.)
    let queue = manager.queue();
    let stats = queue.stats_now();
    if stats.total_pending + stats.total_active + stats.total_delayed > 0 {
        core.bridge.mailbox.send(Mail::Hold);
        let bridge = core.bridge.clone();
        spawn(async move {
            queue.wait_idle().await;
            bridge.mailbox.send(Mail::Release);
        });
    }
    Ok(())
}
