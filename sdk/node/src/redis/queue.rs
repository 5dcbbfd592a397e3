//! [`RedisQueue`]: a queue kept in Redis, as JavaScript sees it. It submits commands
//! (lane, type, JSON payload) and hands back their results from whichever worker ran
//! them; it cancels, pauses lanes, reads stats and dead letters.
//!
//! Every method returns a promise settled through the object's own mailbox (see
//! `runtime.rs`); only pending promises keep the process alive.

use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use a3s_lane::{
    CommandId, DEFAULT_EVENT_CAPACITY, LaneError, RedisCommandHandle as CoreHandle,
    RedisQueue as CoreQueue, RedisQueueConfig,
};
use napi::bindgen_prelude::{Either, JavaScriptClassExt, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;

use super::stats::{dead_letters_json, outcome_json, stats_json};
use crate::config::lane::{LaneOptions, LaneSetup};
use crate::config::redis::{NodeUrls, QueueSetup, RedisQueueOptions, ServerUrl};
use crate::convert::{At, Js, MAX_SAFE_INTEGER, command_id as to_command_id, number_text};
use crate::error::{JsFailure, ToJsError, argument_failure};
use crate::events::EventKeys;
use crate::lane::submit::submit_arguments;
use crate::runtime::{
    Bridge, JsRuntime, LaneTimeouts, Mail, Mailbox, NativeCallbacks, Settle, in_runtime, spawn,
    unknown_static,
};

/// What tokio tasks of a queue share.
pub(crate) struct QueueShared {
    /// Set by `connect` before the queue object is handed out.
    queue: OnceLock<CoreQueue>,
    bridge: Arc<Bridge>,
}

/// Remembers the timeout of each lane this queue object declares, so that the workers
/// started on it can name it when they abandon a handler.
fn remember_timeouts(timeouts: &LaneTimeouts, lanes: &[LaneSetup]) {
    let mut timeouts = timeouts.write();
    for lane in lanes {
        match lane.config.timeout {
            Some(timeout) => timeouts.insert(lane.id.clone(), timeout),
            None => timeouts.remove(&lane.id),
        };
    }
}

/// The JavaScript-thread side of a queue.
struct QueueInner {
    runtime: Rc<JsRuntime>,
    shared: Arc<QueueShared>,
}

impl QueueShared {
    fn queue(&self) -> Result<CoreQueue, LaneError> {
        self.queue
            .get()
            .cloned()
            .ok_or_else(|| LaneError::Other("internal: the Redis queue is not connected".into()))
    }

    fn settle(&self, token: u64, settle: Settle) {
        self.bridge.mailbox.send(Mail::Settle { token, settle });
    }
}

impl NativeCallbacks for QueueInner {
    /// A submit's `AbortSignal` fired: sends the cancel request (its outcome shows in the
    /// command's result).
    fn cancel(&self, id: CommandId) -> bool {
        let Ok(queue) = self.shared.queue() else {
            return false;
        };
        spawn(async move {
            let _ = queue.cancel(id).await;
        });
        true
    }

    fn cancel_from_handle(
        &self,
        env: &Env,
        id: CommandId,
    ) -> napi::Result<Either<bool, Unknown<'static>>> {
        let promise = later(&self.runtime, &self.shared, env, move |queue| async move {
            match queue.cancel(id).await {
                Ok(outcome) => Settle::Json(outcome_json(outcome)),
                Err(error) => Settle::Failed(error),
            }
        })?;
        Ok(Either::B(unknown_static(promise)))
    }

    /// Reads the queue's events while `events()` iterators exist.
    fn events_wanted(&self, env: &Env, wanted: bool) {
        let shared = self.shared.clone();
        self.runtime.set_events_wanted(env, wanted, || {
            // Subscribing may start the queue's event reader: a tokio task.
            shared
                .queue()
                .ok()
                .map(|queue| in_runtime(|| queue.subscribe()))
        });
    }
}

/// Runs `work` with the queue on tokio and settles a new promise with its outcome.
fn later<'env, F, Fut>(
    runtime: &JsRuntime,
    shared: &Arc<QueueShared>,
    env: &'env Env,
    work: F,
) -> napi::Result<Unknown<'env>>
where
    F: FnOnce(CoreQueue) -> Fut + Send + 'static,
    Fut: Future<Output = Settle> + Send + 'static,
{
    let token = runtime.next_token();
    let promise = runtime.promise(env, token)?;
    let shared = shared.clone();
    spawn(async move {
        let settle = match shared.queue() {
            Ok(queue) => work(queue).await,
            Err(error) => Settle::Failed(error),
        };
        shared.settle(token, settle);
    });
    Ok(promise)
}

/// Settles a submit: its handle once Redis accepted it, then its result.
async fn deliver(
    shared: &QueueShared,
    returned: u64,
    result: u64,
    accepted: a3s_lane::Result<CoreHandle>,
) {
    match accepted {
        Ok(handle) => {
            let id = handle.id();
            shared.settle(
                returned,
                Settle::Accepted {
                    id,
                    result_token: Some(result),
                },
            );
            let outcome = handle
                .await
                .and_then(|value| serde_json::to_string(&value).map_err(LaneError::from));
            shared.settle(
                result,
                Settle::Result {
                    id,
                    result: outcome,
                },
            );
        }
        Err(error) => {
            for token in [returned, result] {
                shared.settle(token, Settle::Failed(error.clone()));
            }
        }
    }
}

/// A queue kept in Redis, shared by any number of producer and worker processes.
///
/// ```js
/// const queue = await RedisQueue.connect('redis://127.0.0.1:6379', {
///   lanes: { api: { priority: 0, maxConcurrency: 10, rateLimit: { perSecond: 50 } } },
/// });
/// const handle = await queue.submit('api', 'fetch', { url: 'https://example.com' });
/// console.log(await handle.result); // run by a RedisWorker, in any process
/// ```
#[napi]
pub struct RedisQueue {
    inner: Rc<QueueInner>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// `connect` and `connectCluster`: `config` says where Redis is.
    fn connect_to<'env>(
        env: &'env Env,
        config: Result<RedisQueueConfig, JsFailure>,
        options: Option<Js<RedisQueueOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let runtime = JsRuntime::create(env)?;
        let setup = match config.and_then(|config| QueueSetup::new(config, options)) {
            Ok(setup) => setup,
            Err(failure) => return runtime.rejected(env, &failure),
        };
        let mailbox = Mailbox::create(env, runtime.clone())?;
        let timeouts = LaneTimeouts::default();
        remember_timeouts(&timeouts, &setup.lanes);
        let shared = Arc::new(QueueShared {
            queue: OnceLock::new(),
            bridge: Arc::new(Bridge::new(mailbox, timeouts)),
        });
        let inner = Rc::new(QueueInner {
            runtime: runtime.clone(),
            shared: shared.clone(),
        });
        let callbacks: Rc<dyn NativeCallbacks> = inner.clone();
        let weak: Weak<dyn NativeCallbacks> = Rc::downgrade(&callbacks);
        runtime.set_callbacks(weak, shared.bridge.clone());
        // The object exists now but is handed out only once connected.
        let instance = Self { inner }.into_instance(env)?;
        let token = runtime.next_token();
        let promise = runtime.value_promise(env, token, instance.as_object(env).to_unknown())?;
        spawn(async move {
            let settle = match CoreQueue::connect(setup.config).await {
                Ok(queue) => {
                    let _ = shared.queue.set(queue);
                    Settle::Done
                }
                Err(error) => Settle::Failed(error),
            };
            shared.settle(token, settle);
        });
        Ok(promise)
    }

    fn runtime(&self) -> &JsRuntime {
        &self.inner.runtime
    }

    /// The Rust queue, for workers started on it.
    pub(crate) fn core(&self) -> Result<CoreQueue, LaneError> {
        self.inner.shared.queue()
    }

    /// The timeouts of the lanes this queue object declared, for workers started on it.
    pub(crate) fn timeouts(&self) -> LaneTimeouts {
        self.inner.shared.bridge.timeouts.clone()
    }

    fn later<'env, F, Fut>(&self, env: &'env Env, work: F) -> napi::Result<Unknown<'env>>
    where
        F: FnOnce(CoreQueue) -> Fut + Send + 'static,
        Fut: Future<Output = Settle> + Send + 'static,
    {
        later(&self.inner.runtime, &self.inner.shared, env, work)
    }

    /// Rejects a submit's two promises.
    fn reject_both(
        &self,
        env: &Env,
        returned: u64,
        result: u64,
        error: Unknown<'_>,
    ) -> napi::Result<()> {
        self.runtime().reject(env, result, None, error, false)?;
        self.runtime().reject(env, returned, None, error, false)
    }
}

#[napi]
impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://host:port/db`), checks that it
    /// answers, and declares `options.lanes`. Rejects with code `CONFIG` for invalid
    /// options and `STORAGE` (naming the address) when Redis cannot be reached.
    #[napi(
        ts_args_type = "url: string, options?: RedisQueueOptions",
        ts_return_type = "Promise<RedisQueue>"
    )]
    pub fn connect<'env>(
        env: &'env Env,
        url: Js<ServerUrl>,
        options: Option<Js<RedisQueueOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let config = url
            .get(&At::option("url"))
            .map(|url| RedisQueueConfig::new(url.0));
        Self::connect_to(env, config, options)
    }

    /// Connects to a Redis Cluster through `nodes`, the URLs of some of its nodes
    /// (`['redis://10.0.0.1:7000', ...]`, database 0; the others are discovered), with
    /// the options of `connect`. The queue lives on the node holding its `{keyPrefix}`
    /// hash slot; its calls and its workers follow the slot there. Rejects with code
    /// `CONFIG` for an empty list or a bad URL and `STORAGE` when no node can be reached.
    #[napi(
        ts_args_type = "nodes: string[], options?: RedisQueueOptions",
        ts_return_type = "Promise<RedisQueue>"
    )]
    pub fn connect_cluster<'env>(
        env: &'env Env,
        nodes: Js<NodeUrls>,
        options: Option<Js<RedisQueueOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let config = nodes
            .get(&At::option("nodes"))
            .map(|nodes| RedisQueueConfig::cluster(nodes.0.into_iter().map(|url| url.0)));
        Self::connect_to(env, config, options)
    }

    /// Submits a command to the end of `lane` and resolves, once Redis holds it, with its
    /// handle: `id`, `result` (a promise of what the handler returned) and `cancel()`.
    /// Commands enter their lanes in call order. Rejects with code `LANE_NOT_FOUND` for a
    /// lane not declared in Redis. `options.signal` cancels the command when it aborts.
    #[napi(
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<RedisCommandHandle>"
    )]
    pub fn submit<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        let result = rt.next_token();
        rt.detached_promise(env, result)?;
        let returned = rt.next_token();
        let promise = rt.promise(env, returned)?;
        let (lane, command_type, payload) =
            match submit_arguments(rt, env, result, lane, command_type, payload, options)? {
                Ok(arguments) => arguments,
                Err(error) => {
                    self.reject_both(env, returned, result, error)?;
                    return Ok(promise);
                }
            };
        let queue = match self.core() {
            Ok(queue) => queue,
            Err(error) => {
                self.reject_both(env, returned, result, error.to_js_failure().to_js(env))?;
                return Ok(promise);
            }
        };
        let mut submitting =
            Box::pin(async move { queue.submit(&lane, &command_type, payload).await });
        // The first poll hands the command to the queue's submit task, here on the
        // JavaScript thread: so commands reach Redis in call order.
        let first = in_runtime(|| {
            submitting
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        });
        let shared = self.inner.shared.clone();
        spawn(async move {
            let accepted = match first {
                Poll::Ready(accepted) => accepted,
                Poll::Pending => submitting.await,
            };
            deliver(&shared, returned, result, accepted).await;
        });
        Ok(promise)
    }

    /// Cancels a command by id: a pending or delayed one ends at once; a running one has
    /// its handler's `ctx.signal` aborted on its worker. Resolves with `'cancelled'`,
    /// `'signalled'`, `'finished'` (it already ended) or `'unknown'`.
    #[napi(
        ts_args_type = "commandId: number",
        ts_return_type = "Promise<'cancelled' | 'signalled' | 'finished' | 'unknown'>"
    )]
    pub fn cancel<'env>(&self, env: &'env Env, command_id: Js<f64>) -> napi::Result<Unknown<'env>> {
        let id = match to_command_id(command_id) {
            Ok(id) => id,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.cancel(id).await {
                Ok(outcome) => Settle::Json(outcome_json(outcome)),
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// Counts per lane and for the queue, over all producers and workers.
    #[napi(ts_return_type = "Promise<RedisQueueStats>")]
    pub fn stats<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.later(env, |queue| async move {
            match queue.stats().await {
                Ok(stats) => Settle::Json(stats_json(stats)),
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// The dead letters (commands that failed for good), oldest first; at most `limit`
    /// of them (all when absent).
    #[napi(
        ts_args_type = "limit?: number",
        ts_return_type = "Promise<Array<DeadLetter>>"
    )]
    pub fn dead_letters<'env>(
        &self,
        env: &'env Env,
        limit: Option<Js<f64>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("limit");
        let limit = match limit.map(|limit| limit.get(&at)) {
            // All of them: the largest count a Redis range takes.
            None => i64::MAX as usize,
            Some(Ok(n)) if n >= 1.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER as f64 => {
                n as usize
            }
            Some(Ok(n)) => {
                let failure = at.range_error(format!(
                    "limit must be a whole number of 1 or more, got {}",
                    number_text(n)
                ));
                return self.runtime().rejected(env, &failure);
            }
            Some(Err(failure)) => return self.runtime().rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.dead_letters(limit).await {
                Ok(letters) => Settle::Json(dead_letters_json(letters)),
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// Sends a dead letter back to the end of its lane as a fresh command (attempts
    /// reset) and resolves with its handle.
    #[napi(
        ts_args_type = "commandId: number",
        ts_return_type = "Promise<RedisCommandHandle>"
    )]
    pub fn redrive<'env>(
        &self,
        env: &'env Env,
        command_id: Js<f64>,
    ) -> napi::Result<Unknown<'env>> {
        let id = match to_command_id(command_id) {
            Ok(id) => id,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        let rt = self.runtime();
        let result = rt.next_token();
        rt.detached_promise(env, result)?;
        let returned = rt.next_token();
        let promise = rt.promise(env, returned)?;
        let shared = self.inner.shared.clone();
        spawn(async move {
            let accepted = match shared.queue() {
                Ok(queue) => queue.redrive(id).await,
                Err(error) => Err(error),
            };
            deliver(&shared, returned, result, accepted).await;
        });
        Ok(promise)
    }

    /// Declares a lane, or updates one, with the same options as a `Lane`'s lanes: its
    /// priority, cap, rate limit and priority boost apply to the next claims of every
    /// worker (a boost added now counts the wait of commands already pending from now),
    /// its timeout, cancel grace and retry policy to the next runs. Options the Redis
    /// engine cannot honour (`pressureThreshold`) reject with code `CONFIG`.
    #[napi(
        ts_args_type = "laneId: string, options: LaneOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn declare_lane<'env>(
        &self,
        env: &'env Env,
        lane_id: Js<String>,
        options: Option<Js<LaneOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let lane = At::argument("laneId").name(lane_id).and_then(|id| {
            let at = At::option("options");
            options
                .map_or(Ok(LaneOptions::default()), |options| options.get(&at))?
                .into_lane(&id, &at)
        });
        let lane = match lane {
            Ok(lane) => lane,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        let timeouts = self.timeouts();
        self.later(env, move |queue| async move {
            match queue
                .declare_lane(&lane.id, lane.config.clone(), lane.priority)
                .await
            {
                Ok(()) => {
                    remember_timeouts(&timeouts, std::slice::from_ref(&lane));
                    Settle::Done
                }
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// Stops claims from a lane on every worker (running commands go on); with
    /// `durationMs` the lane resumes by itself after that long (for example after an HTTP
    /// 429 with `Retry-After`; a shorter pause never cuts a longer one short).
    #[napi(
        ts_args_type = "laneId: string, durationMs?: number",
        ts_return_type = "Promise<void>"
    )]
    pub fn pause_lane<'env>(
        &self,
        env: &'env Env,
        lane_id: Js<String>,
        duration_ms: Option<Js<f64>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("durationMs");
        let arguments = At::argument("laneId").name(lane_id).and_then(|lane| {
            let duration = duration_ms
                .map(|ms| ms.get(&at).and_then(|ms| at.millis(ms)))
                .transpose()?;
            Ok((lane, duration))
        });
        let (lane, duration) = match arguments {
            Ok(arguments) => arguments,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            let paused = match duration {
                None => queue.pause_lane(&lane).await,
                Some(duration) => queue.pause_lane_for(&lane, duration).await,
            };
            match paused {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Rejected(argument_failure(&error, "durationMs")),
            }
        })
    }

    /// Ends a pause (timed or not) of a lane.
    #[napi(ts_args_type = "laneId: string", ts_return_type = "Promise<void>")]
    pub fn resume_lane<'env>(
        &self,
        env: &'env Env,
        lane_id: Js<String>,
    ) -> napi::Result<Unknown<'env>> {
        let lane = match At::argument("laneId").name(lane_id) {
            Ok(lane) => lane,
            Err(failure) => return self.runtime().rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.resume_lane(&lane).await {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// The events of `keys` (all when absent) of every command of the queue, whichever
    /// process submitted it and whichever worker runs it, from now on, as an async
    /// iterator: the keys and payloads of `Lane.events()` (`queue.command.submitted`,
    /// `.started`, `.completed`, `.retry`, `.failed`, `.dead_lettered`, `.cancelled`,
    /// `.progress` with `{ laneId, commandId, progress }` for each `ctx.reportProgress`,
    /// …), read from the queue's event stream in Redis. An iterator more than
    /// `DEFAULTS.redis_queue.event_capacity` events behind loses the oldest and gets one
    /// `queue.events.lagged` event saying how many. `return()` (or `break` in
    /// `for await`) ends it; it does not keep the process alive.
    #[napi(
        ts_args_type = "keys?: string | string[]",
        ts_return_type = "AsyncIterableIterator<LaneEvent>"
    )]
    pub fn events<'env>(
        &self,
        env: &'env Env,
        keys: Option<Js<EventKeys>>,
    ) -> napi::Result<Unknown<'env>> {
        let keys = keys
            .map(|keys| keys.get(&At::argument("event keys"))?.checked())
            .transpose()
            .map_err(|failure| failure.throw(env))?;
        let capacity = u32::try_from(DEFAULT_EVENT_CAPACITY).unwrap_or(u32::MAX);
        self.runtime().iterate(env, keys, capacity, false)
    }

    /// Deletes every key of this queue (lanes, commands, results, dead letters) and
    /// resolves with how many keys went. For tests and retiring a tenant: running workers
    /// of the queue lose their leases.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn clear<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.later(env, |queue| async move {
            match queue.clear().await {
                Ok(deleted) => Settle::Count(deleted),
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// The key prefix with its hash tag, for example `{a3s-lane}`.
    #[napi(getter)]
    pub fn key_prefix(&self, env: Env) -> napi::Result<String> {
        self.core()
            .map(|queue| queue.key_prefix().to_owned())
            .map_err(|error| crate::error::throw(&env, &error))
    }
}
