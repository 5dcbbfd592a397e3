//! [`Lane`]: the in-process queue as JavaScript sees it. It holds the core
//! `QueueManager` (through `state::LaneCore`), converts arguments, maps errors, and
//! leaves the rest to the core and to the bridge in `runtime.rs`. Submitting is in
//! [`submit`], durable storage in `durable`; the operations it shares with a
//! `RedisQueue` (cancel, command, pause and resume, dead letters, events) are the client
//! surface's, in `crate::client`.
//!
//! No method blocks the event loop: submitting, cancelling and reading stats take a
//! short lock in the core; everything that waits (a command's result, opening durable
//! storage, draining) happens on tokio tasks and settles a promise through the mailbox.

mod durable;
mod state;
pub mod submit;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{LaneError, QueueManager, WhenFull};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use napi::Env;
use napi::bindgen_prelude::Unknown;
use napi_derive::napi;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use self::durable::AcceptJob;
use self::state::{LaneCore, shut_down};
use crate::client::{Client, client_methods};
use crate::config::lane::LaneMap;
use crate::config::queue::{QueueOptions, QueueSetup};
use crate::convert::{At, Js, function};
use crate::error::{JsFailure, throw};
use crate::runtime::{Bridge, JsRuntime, Mailbox, Settle, spawn};
use crate::stats::count;

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
    client: Rc<Client>,
    core: Arc<LaneCore>,
    /// Durable lanes only: hands submits to the acceptor task.
    jobs: Option<mpsc::UnboundedSender<AcceptJob>>,
    /// Whether `start()` was called (a second call is an error).
    started: std::cell::Cell<bool>,
    /// Whether a lane waits for room when full (`whenFull: 'wait'`): then a submit may
    /// not be accepted at once, and no submit takes the plain path.
    waits_for_room: bool,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("lanes", &self.core.setup.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Lane {
    fn client(&self) -> &Client {
        &self.client
    }

    fn runtime(&self) -> &JsRuntime {
        self.client.runtime()
    }

    fn manager_or_throw(&self, env: &Env) -> napi::Result<QueueManager> {
        self.core.manager().ok_or_else(|| {
            if self.core.is_closed() {
                shut_down().throw(env)
            } else {
                JsFailure::error(
                    "QUEUE",
                    "the lane is still opening its durable storage; await lane.start() first",
                )
                .throw(env)
            }
        })
    }

    /// Runs `work` on tokio once the queue exists and settles a new promise with it.
    fn settle_later<'env, F>(&self, env: &'env Env, work: F) -> napi::Result<Unknown<'env>>
    where
        F: FnOnce(QueueManager, Arc<LaneCore>) -> BoxFuture<'static, Settle> + Send + 'static,
    {
        let token = self.runtime().next_token();
        let promise = self.runtime().promise(env, token)?;
        let core = self.core.clone();
        spawn(async move {
            let settle = match core.ready().await {
                Ok(manager) => work(manager, core.clone()).await,
                Err(error) => Settle::Failed(error),
            };
            core.bridge.settle(token, settle);
        });
        Ok(promise)
    }

    /// The queue's metrics, when the lane was created with `{ metrics: true }`.
    pub(crate) fn queue_metrics(&self) -> Option<&a3s_lane::QueueMetrics> {
        self.core.setup.metrics.as_ref()
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
        lanes: Option<Js<LaneMap>>,
        options: Option<Js<QueueOptions>>,
    ) -> napi::Result<Self> {
        let setup = QueueSetup::new(lanes, options).map_err(|failure| failure.throw(&env))?;
        let runtime = JsRuntime::create(&env)?;
        let mailbox = Mailbox::create(&env, runtime.clone())?;
        let timeouts = Arc::new(RwLock::new(setup.timeouts().collect()));
        let bridge = Arc::new(Bridge::new(mailbox, timeouts));
        let durable = setup.storage.is_some();
        let waits_for_room = setup
            .lanes
            .iter()
            .any(|lane| matches!(lane.config.when_full, WhenFull::Wait { .. }));
        let core = Arc::new(LaneCore::new(bridge, setup));
        // Building checks the lanes against each other and the global budget; without
        // storage it takes no await, and this manager is the lane's queue.
        let built = match core.builder(&[]) {
            Ok(builder) => builder.build().now_or_never(),
            Err(error) => Some(Err(error)),
        };
        let manager = match built {
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
            spawn(durable::acceptor(core.clone(), receiver));
            Some(sender)
        } else {
            core.state.lock().manager = Some(manager);
            None
        };
        // Until `start()`, its commands cannot finish: they do not hold the process.
        runtime.set_started(&env, false)?;
        let client = Client::new(runtime, core.bridge.clone(), core.clone());
        Ok(Self {
            client,
            core,
            jobs,
            started: std::cell::Cell::new(false),
            waits_for_room,
        })
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
        command_type: Js<String>,
        handler: Unknown<'_>,
    ) -> napi::Result<()> {
        let command_type = At::argument("commandType")
            .name(command_type)
            .map_err(|failure| failure.throw(&env))?;
        function(&env, &format!("the handler of '{command_type}'"), &handler)?;
        self.runtime().handle(&env, &command_type, handler)?;
        self.core.register_handler(&command_type);
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
        let core = self.core.clone();
        if core.is_closed() || self.is_shutting_down() {
            rt.reject_with(env, token, &LaneError::ShutdownInProgress)?;
            return Ok(promise);
        }
        if self.started.replace(true) {
            let failure = JsFailure::error(
                "QUEUE",
                "the lane is started already: call start() once (await the first call's promise)",
            );
            rt.reject_with(env, token, &failure)?;
            return Ok(promise);
        }
        // From now on its unsettled commands keep the process alive.
        rt.set_started(env, true)?;
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
                durable::open(&core, storage).await
            } else {
                core.ready().await.map(drop)
            };
            let settle = match outcome {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Failed(error),
            };
            core.bridge.settle(token, settle);
        });
        Ok(promise)
    }

    /// Submits a command and resolves with its result (`T`, unchecked: say what the
    /// handler returns): what the handler of `commandType` returned for `payload`, a
    /// JSON value (a string is a string). Rejects with the handler's own (thrown) value,
    /// or an error with code `NOT_JSON` (at once, naming where the payload is not JSON),
    /// `LANE_NOT_FOUND`, `HANDLER_NOT_FOUND`, `INVALID_ARGUMENT`, `TIMEOUT`,
    /// `CANCELLED`, `SHUTDOWN`, `EXPIRED` (not started by `options.startBy` /
    /// `startWithinMs`) or `LANE_FULL` (the lane holds `maxWaiting` commands, or waited
    /// for room longer than `fullWaitTimeoutMs`). `options.signal` cancels the command
    /// when it aborts; `options.delayMs` / `runAt` hold it back (shown as delayed) until
    /// then; `options.key` (an idempotency key) settles with the result of the live
    /// command holding that key, if one does, instead of queueing another;
    /// `options.group` puts it in a group of its lane (groups take turns, and may have
    /// caps and rate limits: `groupMaxConcurrency`, `groupRateLimit`, `groupOverrides`).
    #[napi(
        ts_generic_types = "T = unknown",
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<T>"
    )]
    pub fn submit<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        self.submit_inner(env, lane, command_type, payload, options, false)
    }

    /// Like `submit`, but resolves as soon as the command is accepted (durable, with
    /// storage) with its `CommandHandle`: `id`, `cancel()`, the `result` promise, and
    /// `isDuplicate` (true when `options.key` was held by that live command: nothing was
    /// queued).
    #[napi(
        ts_generic_types = "T = unknown",
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<CommandHandle<T>>"
    )]
    pub fn submit_with_handle<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        self.submit_inner(env, lane, command_type, payload, options, true)
    }

    /// Cancels every pending and running command of a lane; returns how many.
    #[napi(ts_args_type = "laneId: string")]
    pub fn cancel_lane(&self, env: Env, lane_id: Js<String>) -> napi::Result<u32> {
        let lane = At::argument("laneId")
            .name(lane_id)
            .map_err(|failure| failure.throw(&env))?;
        let manager = self.manager_or_throw(&env)?;
        manager
            .cancel_lane(&lane)
            .map(count)
            .map_err(|error| throw(&env, &error))
    }

    /// Counts for the whole queue and each lane.
    #[napi(ts_return_type = "Promise<QueueStats>")]
    pub fn stats<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.client.stats(env)
    }

    /// Deletes every dead letter, as `purgeDeadLetters()` does.
    ///
    /// @deprecated Use `purgeDeadLetters()`.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn clear_dead_letters<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.client.purge_dead_letters(env)
    }

    /// Stops accepting commands (new submits reject with code `SHUTDOWN`) and resolves
    /// once every accepted command has finished. Afterwards nothing of the lane keeps the
    /// process alive. Closes the lane's dashboards.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let dashboards = self.client.close_dashboards();
        if self.core.is_closed() {
            return self.runtime().settled(env, None);
        }
        self.settle_later(env, |manager, core| {
            async move {
                dashboards.await;
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
    /// cancelled, once none is left running. Closes the lane's dashboards.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn shutdown_now<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let dashboards = self.client.close_dashboards();
        if self.core.is_closed() {
            return self.runtime().settled(env, Some("0".into()));
        }
        self.settle_later(env, |manager, core| {
            async move {
                dashboards.await;
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
    /// store is written); rejects with code `TIMEOUT` after `timeoutMs`. After
    /// `shutdown()` it resolves at once: nothing is left to drain.
    #[napi(ts_args_type = "timeoutMs: number", ts_return_type = "Promise<void>")]
    pub fn drain<'env>(&self, env: &'env Env, timeout_ms: Js<f64>) -> napi::Result<Unknown<'env>> {
        let at = At::argument("timeoutMs");
        let timeout = match timeout_ms.get(&at).and_then(|ms| at.millis(ms)) {
            Ok(timeout) => timeout,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        if self.core.is_closed() {
            return self.runtime().settled(env, None);
        }
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

    /// Resolves when no command is pending, delayed or running (at once if none is now,
    /// and after `shutdown()`). Like `drain()` without a time limit.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn on_idle<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        if self.core.is_closed() {
            return self.runtime().settled(env, None);
        }
        self.settle_later(env, |manager, _| {
            async move {
                manager.queue().wait_idle().await;
                Settle::Done
            }
            .boxed()
        })
    }

    /// Resolves when no command waits to start (none pending or delayed for a retry;
    /// some may still run), at once if none does now.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn on_empty<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        if self.core.is_closed() {
            return self.runtime().settled(env, None);
        }
        self.settle_later(env, |manager, _| {
            async move {
                // The core's wait, woken by every change of the waiting count (a start,
                // a cancel, an expiry), events or not.
                match manager.wait_waiting_below(1, None).await {
                    Ok(()) => Settle::Done,
                    Err(error) => Settle::Failed(error),
                }
            }
            .boxed()
        })
    }

    /// Commands waiting to start, over all lanes (pending, and delayed for a retry); 0
    /// after shutdown. A plain read.
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        self.core.manager().map_or(0, |manager| {
            let stats = manager.queue().stats_now();
            count(stats.total_pending + stats.total_delayed)
        })
    }

    /// Commands running now, over all lanes (a run answered while its handler goes on
    /// counts until the handler returns: it holds its slot). A plain read.
    #[napi(getter)]
    pub fn running(&self) -> u32 {
        self.core
            .manager()
            .map_or(0, |manager| count(manager.queue().stats_now().total_active))
    }

    /// Pauses every lane: no command starts until `resume()`; running ones go on and
    /// submits are still accepted.
    #[napi]
    pub fn pause(&self, env: Env) -> napi::Result<()> {
        let manager = self.manager_or_throw(&env)?;
        for lane in &self.core.setup.lanes {
            manager
                .pause_lane(&lane.id)
                .map_err(|error| throw(&env, &error))?;
        }
        Ok(())
    }

    /// Resumes every lane (also a lane paused on its own with `pauseLane`).
    #[napi]
    pub fn resume(&self, env: Env) -> napi::Result<()> {
        let manager = self.manager_or_throw(&env)?;
        for lane in &self.core.setup.lanes {
            manager
                .resume_lane(&lane.id)
                .map_err(|error| throw(&env, &error))?;
        }
        Ok(())
    }

    /// Whether `shutdown()` or `shutdownNow()` was called.
    #[napi(getter)]
    pub fn is_shutting_down(&self) -> bool {
        let core = &self.core;
        core.is_closed()
            || core
                .manager()
                .is_some_and(|manager| manager.is_shutting_down())
    }

    /// The lane ids, in the order they were configured.
    #[napi(getter)]
    pub fn lane_ids(&self) -> Vec<String> {
        self.core
            .setup
            .lanes
            .iter()
            .map(|lane| lane.id.clone())
            .collect()
    }
}

// The client surface, the same on `Lane` and `RedisQueue`: `crate::client`.
client_methods!(Lane);
