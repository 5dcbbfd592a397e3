//! [`RedisQueue`]: a queue kept in Redis, as JavaScript sees it. It submits commands
//! (lane, type, JSON payload) and hands back their results from whichever worker ran
//! them; it cancels, pauses lanes, reads stats and dead letters.
//!
//! Every method returns a promise settled through the object's own mailbox (see
//! `runtime.rs`); only pending promises keep the process alive.

use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, CommandId, LaneError, RedisCommandHandle as CoreHandle, RedisQueue as CoreQueue,
    RedisQueueConfig, RedisQueueStats as CoreStats,
};
use napi::bindgen_prelude::{Either, JavaScriptClassExt, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use serde_json::{Value, json};

use crate::args;
use crate::config::Input;
use crate::error::{JsFailure, ToJsError};
use crate::runtime::{
    Bridge, JsRuntime, Mail, Mailbox, NativeCallbacks, Settle, in_runtime, spawn, unknown_static,
};

/// Counts of a Redis queue, over all its producers and workers.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisQueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: u32,
    /// Commands running on workers, over all lanes.
    pub total_active: u32,
    /// Failed commands waiting for their retry delay.
    pub total_delayed: u32,
    /// Each lane's status by lane id.
    pub lanes: HashMap<String, RedisLaneStatus>,
    /// Workers registered with the queue.
    pub workers: u32,
    /// Workers waiting for work.
    pub idle_workers: u32,
    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a dead worker), `released`, `stale` (results refused
    /// because the run's lease was taken over), `workers_lost`.
    pub counters: HashMap<String, f64>,
}

/// One lane of a Redis queue.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisLaneStatus {
    /// The lane id.
    pub id: String,
    /// Its priority (lower runs first).
    pub priority: u32,
    /// Its priority now, after the boost its oldest pending command has earned by
    /// waiting (equal to `priority` without a `priorityBoost`).
    pub effective_priority: u32,
    /// Commands waiting to start.
    pub pending: u32,
    /// Commands running on workers.
    pub active: u32,
    /// Most of its commands that run at once, over all workers.
    pub max_concurrency: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether its rate limit holds it back now.
    pub throttled: bool,
}

/// A command submitted to a `RedisQueue` (from `submit` and `redrive`).
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisCommandHandle {
    /// The command's id in the queue (the same in every process).
    #[napi(readonly)]
    pub id: f64,
    /// Settles with the result from whichever worker ran the command, or rejects with its
    /// error: code `COMMAND_FAILED` (the message holds the handler's error and stack),
    /// `TIMEOUT`, `CANCELLED` or `HANDLER_NOT_FOUND`. A rejection nobody awaits is not
    /// reported as an unhandled rejection.
    #[napi(readonly, ts_type = "Promise<unknown>")]
    pub result: Value,
    /// Cancels the command: a pending or delayed one ends at once (`'cancelled'`); a
    /// running one has its handler's `ctx.signal` aborted on its worker (`'signalled'`)
    /// and ends as cancelled; `'finished'` when it already ended, `'unknown'` for no such
    /// command.
    #[napi(
        readonly,
        ts_type = "() => Promise<'cancelled' | 'signalled' | 'finished' | 'unknown'>"
    )]
    pub cancel: Value,
}

/// What tokio tasks of a queue share.
pub(crate) struct QueueShared {
    /// Set by `connect` before the queue object is handed out.
    queue: OnceLock<CoreQueue>,
    bridge: Arc<Bridge>,
}

/// The JavaScript-thread side of a queue.
struct QueueInner {
    runtime: Rc<JsRuntime>,
    shared: Arc<QueueShared>,
}

fn outcome_json(outcome: CancelOutcome) -> String {
    let name = match outcome {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Signalled => "signalled",
        CancelOutcome::AlreadyFinished => "finished",
        CancelOutcome::Unknown => "unknown",
    };
    format!("\"{name}\"")
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
            shared.queue().ok().map(|queue| queue.subscribe())
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

fn stats_json(stats: CoreStats) -> Value {
    let lanes: serde_json::Map<String, Value> = stats
        .queue
        .lanes
        .into_values()
        .map(|lane| {
            let status = json!({
                "id": lane.id,
                "priority": lane.priority,
                "effectivePriority": lane.effective_priority,
                "pending": lane.pending,
                "active": lane.active,
                "maxConcurrency": lane.max,
                "paused": lane.paused,
                "throttled": lane.throttled,
            });
            (lane.id, status)
        })
        .collect();
    json!({
        "totalPending": stats.queue.total_pending,
        "totalActive": stats.queue.total_active,
        "totalDelayed": stats.queue.total_delayed,
        "lanes": lanes,
        "workers": stats.workers,
        "idleWorkers": stats.idle_workers,
        "counters": stats.counters,
    })
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
    /// `connect` and `connectCluster`: `endpoint` reads where Redis is from `address`.
    fn connect_to<'env>(
        env: &'env Env,
        address: Unknown<'_>,
        options: Option<Unknown<'_>>,
        endpoint: fn(&Input) -> Result<RedisQueueConfig, JsFailure>,
    ) -> napi::Result<Unknown<'env>> {
        let runtime = JsRuntime::create(env)?;
        let checked = (|| -> napi::Result<Result<_, JsFailure>> {
            let address = match args::inspect(&runtime, env, Some(address))? {
                Ok(address) => address,
                Err(failure) => return Ok(Err(failure)),
            };
            let options = match args::inspect(&runtime, env, options)? {
                Ok(options) => options,
                Err(failure) => return Ok(Err(failure)),
            };
            Ok(endpoint(&address).and_then(|config| super::parse_queue(config, &options)))
        })()?;
        let config = match checked {
            Ok(config) => config,
            Err(failure) => return args::rejected(&runtime, env, &failure),
        };
        let mailbox = Mailbox::create(env, runtime.clone())?;
        let shared = Arc::new(QueueShared {
            queue: OnceLock::new(),
            bridge: Arc::new(Bridge::new(mailbox, HashMap::new())),
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
            let settle = match CoreQueue::connect(config).await {
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

    fn later<'env, F, Fut>(&self, env: &'env Env, work: F) -> napi::Result<Unknown<'env>>
    where
        F: FnOnce(CoreQueue) -> Fut + Send + 'static,
        Fut: Future<Output = Settle> + Send + 'static,
    {
        later(&self.inner.runtime, &self.inner.shared, env, work)
    }

    fn rejected<'env>(
        &self,
        env: &'env Env,
        error: &impl ToJsError,
    ) -> napi::Result<Unknown<'env>> {
        args::rejected(self.runtime(), env, error)
    }

    fn lane_argument(
        &self,
        env: &Env,
        value: Either<String, Unknown<'_>>,
    ) -> napi::Result<Result<String, JsFailure>> {
        args::name(self.runtime(), env, "laneId", value)
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
        url: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        Self::connect_to(env, url, options, super::parse_server)
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
        nodes: Unknown<'_>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        Self::connect_to(env, nodes, options, super::parse_cluster)
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
        lane: Either<String, Unknown<'_>>,
        command_type: Either<String, Unknown<'_>>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        let result = rt.next_token();
        rt.detached_promise(env, result)?;
        let returned = rt.next_token();
        let promise = rt.promise(env, returned)?;
        let names = (|| -> napi::Result<Result<(String, String), JsFailure>> {
            let lane = match args::name(rt, env, "lane", lane)? {
                Ok(lane) => lane,
                Err(failure) => return Ok(Err(failure)),
            };
            Ok(args::name(rt, env, "commandType", command_type)?.map(|t| (lane, t)))
        })()?;
        let (lane, command_type) = match names {
            Ok(names) => names,
            Err(failure) => {
                self.reject_both(env, returned, result, failure.to_js(env))?;
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
                        self.reject_both(env, returned, result, failure.to_js(env))?;
                        return Ok(promise);
                    }
                },
                Either::B(error) => {
                    self.reject_both(env, returned, result, error)?;
                    return Ok(promise);
                }
            },
        };
        if let Some(options) = options {
            match rt.submit_options(env, result, options)? {
                Ok(false) => {}
                Ok(true) => {
                    let failure = JsFailure::error(
                        "CANCELLED",
                        "command cancelled: its AbortSignal was already aborted, so it was not submitted",
                    );
                    self.reject_both(env, returned, result, failure.to_js(env))?;
                    return Ok(promise);
                }
                Err(error) => {
                    self.reject_both(env, returned, result, error)?;
                    return Ok(promise);
                }
            }
        }
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
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
        command_id: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        let id = match args::command_id(self.runtime(), env, command_id)? {
            Ok(id) => id,
            Err(failure) => return self.rejected(env, &failure),
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
                Ok(stats) => Settle::Json(stats_json(stats).to_string()),
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
        limit: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let limit = match args::inspect(self.runtime(), env, limit)? {
            Ok(Input::Undefined) => i64::MAX as usize,
            Ok(Input::Number(n))
                if n >= 1.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 =>
            {
                n as usize
            }
            Ok(Input::Number(n)) => {
                let failure = JsFailure::range_error(
                    "INVALID_ARGUMENT",
                    format!("limit must be a whole number of 1 or more, got {n}"),
                );
                return self.rejected(env, &failure);
            }
            Ok(other) => {
                let failure = JsFailure::type_error(
                    "INVALID_ARGUMENT",
                    format!("limit must be a number, got {}", other.describe()),
                );
                return self.rejected(env, &failure);
            }
            Err(failure) => return self.rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.dead_letters(limit).await {
                Ok(letters) => {
                    let letters: Vec<Value> = letters
                        .into_iter()
                        .map(|letter| {
                            json!({
                                "commandId": letter.command_id,
                                "commandType": letter.command_type,
                                "laneId": letter.lane_id,
                                "error": letter.error,
                                "attempts": letter.attempts,
                                "failedAt": letter.failed_at,
                                "payload": letter.payload.unwrap_or(Value::Null),
                            })
                        })
                        .collect();
                    Settle::Json(Value::Array(letters).to_string())
                }
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
        command_id: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        let id = match args::command_id(self.runtime(), env, command_id)? {
            Ok(id) => id,
            Err(failure) => return self.rejected(env, &failure),
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

    /// Declares a lane, or updates one (priority, cap, rate limit and priority boost apply
    /// to the next claims of every worker; a boost added now counts the wait of commands
    /// already pending from now).
    #[napi(
        ts_args_type = "laneId: string, options: RedisLaneOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn declare_lane<'env>(
        &self,
        env: &'env Env,
        lane_id: Either<String, Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let id = match self.lane_argument(env, lane_id)? {
            Ok(id) => id,
            Err(failure) => return self.rejected(env, &failure),
        };
        let lane = match args::inspect(self.runtime(), env, options)? {
            Ok(options) => super::parse_lane("options", &id, &options),
            Err(failure) => Err(failure),
        };
        let lane = match lane.and_then(|lane| {
            lane.validate(&id)
                .map(|()| lane)
                .map_err(|error| JsFailure::range_error("CONFIG", error.to_string()))
        }) {
            Ok(lane) => lane,
            Err(failure) => return self.rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.declare_lane(&id, lane).await {
                Ok(()) => Settle::Done,
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
        lane_id: Either<String, Unknown<'_>>,
        duration_ms: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let lane = match self.lane_argument(env, lane_id)? {
            Ok(lane) => lane,
            Err(failure) => return self.rejected(env, &failure),
        };
        let duration: Option<Duration> = match args::inspect(self.runtime(), env, duration_ms)? {
            Ok(Input::Undefined) => None,
            Ok(input) => match args::millis("durationMs", &input, true) {
                Ok(duration) => Some(duration),
                Err(failure) => return self.rejected(env, &failure),
            },
            Err(failure) => return self.rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            let paused = match duration {
                None => queue.pause_lane(&lane).await,
                Some(duration) => queue.pause_lane_for(&lane, duration).await,
            };
            match paused {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// Ends a pause (timed or not) of a lane.
    #[napi(ts_args_type = "laneId: string", ts_return_type = "Promise<void>")]
    pub fn resume_lane<'env>(
        &self,
        env: &'env Env,
        lane_id: Either<String, Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let lane = match self.lane_argument(env, lane_id)? {
            Ok(lane) => lane,
            Err(failure) => return self.rejected(env, &failure),
        };
        self.later(env, move |queue| async move {
            match queue.resume_lane(&lane).await {
                Ok(()) => Settle::Done,
                Err(error) => Settle::Failed(error),
            }
        })
    }

    /// An async iterator of the events of the commands this process submitted and still
    /// awaits: `queue.command.progress` (`{ laneId, commandId, progress }`) for each
    /// `ctx.reportProgress(value)` of their handlers, on whichever worker they run. Progress
    /// of a command whose result arrived, or whose handle is gone, is not delivered. An
    /// iterator more than 1024 events behind loses the oldest and gets one
    /// `queue.events.lagged` event saying how many. `return()` (or `break` in
    /// `for await`) ends it; it does not keep the process alive.
    #[napi(ts_return_type = "AsyncIterableIterator<LaneEvent>")]
    pub fn events<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.runtime().iterate(env, None, 1024, false)
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
