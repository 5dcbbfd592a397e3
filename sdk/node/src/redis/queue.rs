//! [`RedisQueue`]: a queue kept in Redis, as JavaScript sees it. It submits commands
//! (lane, type, JSON payload) and hands back their results from whichever worker ran
//! them, declares lanes and reads its stats; the operations it shares with a `Lane`
//! (cancel, command, pause and resume, dead letters, events) are the client surface's,
//! in `crate::client`.
//!
//! Every method returns a promise settled through the object's own mailbox (see
//! `runtime.rs`); only pending promises keep the process alive.

use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use a3s_lane::{
    DEFAULT_EVENT_CAPACITY, LaneError, QueueClient, RedisQueue as CoreQueue, RedisQueueConfig,
};
use async_trait::async_trait;
use napi::bindgen_prelude::{JavaScriptClassExt, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;

use super::stats::RedisQueueStats;
use crate::client::{Client, ClientSource, client_methods};
use crate::config::lane::{LaneOptions, LaneSetup};
use crate::config::redis::{NodeUrls, QueueSetup, RedisQueueOptions, ServerUrl};
use crate::convert::{At, Js};
use crate::error::JsFailure;
use crate::lane::submit::submit_arguments;
use crate::runtime::{Bridge, JsRuntime, LaneTimeouts, Mailbox, Settle, spawn};
use crate::stats::count;

/// What tokio tasks of a queue share.
pub(crate) struct QueueShared {
    /// Set by `connect` before the queue object is handed out.
    queue: OnceLock<CoreQueue>,
    bridge: Arc<Bridge>,
}

impl QueueShared {
    fn queue(&self) -> Result<CoreQueue, LaneError> {
        self.queue
            .get()
            .cloned()
            .ok_or_else(|| LaneError::Other("internal: the Redis queue is not connected".into()))
    }
}

#[async_trait]
impl ClientSource for QueueShared {
    fn now(&self) -> Option<Arc<dyn QueueClient>> {
        self.queue
            .get()
            .map(|queue| Arc::new(queue.clone()) as Arc<dyn QueueClient>)
    }

    async fn client(&self) -> Result<Arc<dyn QueueClient>, JsFailure> {
        Ok(Arc::new(self.queue()?))
    }

    fn event_capacity(&self) -> u32 {
        count(DEFAULT_EVENT_CAPACITY)
    }
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
    client: Rc<Client>,
    shared: Arc<QueueShared>,
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
        let client = Client::new(runtime.clone(), shared.bridge.clone(), shared.clone());
        // The object exists now but is handed out only once connected.
        let instance = Self {
            client,
            shared: shared.clone(),
        }
        .into_instance(env)?;
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
            shared.bridge.settle(token, settle);
        });
        Ok(promise)
    }

    fn client(&self) -> &Client {
        &self.client
    }

    /// The Rust queue, for workers started on it.
    pub(crate) fn core(&self) -> Result<CoreQueue, LaneError> {
        self.shared.queue()
    }

    /// The timeouts of the lanes this queue object declared, for workers started on it.
    pub(crate) fn timeouts(&self) -> LaneTimeouts {
        self.shared.bridge.timeouts.clone()
    }

    /// A new promise settled with what `work` does with the queue.
    fn later<'env, T, F, Fut>(&self, env: &'env Env, work: F) -> napi::Result<Unknown<'env>>
    where
        T: napi::bindgen_prelude::ToNapiValue + Send + 'static,
        F: FnOnce(CoreQueue) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LaneError>> + Send + 'static,
    {
        let shared = self.shared.clone();
        self.client
            .run(env, async move { Ok(work(shared.queue()?).await?) })
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

    /// Connects to the master that Redis Sentinel names and follows it through failovers:
    /// `master` is the master's URL with its Sentinel name as the host
    /// (`'redis://user:password@mymaster/0'`, `rediss://` for TLS), `sentinels` the
    /// sentinels' URLs (`['redis://10.0.0.5:26379']`), with the options of `connect`.
    /// Rejects with code `CONFIG` for an empty list or a bad URL and `STORAGE` when no
    /// sentinel names a reachable master.
    #[napi(
        ts_args_type = "master: string, sentinels: string[], options?: RedisQueueOptions",
        ts_return_type = "Promise<RedisQueue>"
    )]
    pub fn connect_sentinel<'env>(
        env: &'env Env,
        master: Js<ServerUrl>,
        sentinels: Js<NodeUrls>,
        options: Option<Js<RedisQueueOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let config = master.get(&At::option("master")).and_then(|master| {
            sentinels.get(&At::option("sentinels")).map(|sentinels| {
                RedisQueueConfig::sentinel(master.0, sentinels.0.into_iter().map(|url| url.0))
            })
        });
        Self::connect_to(env, config, options)
    }

    /// Submits a command to the end of `lane` and resolves, once Redis holds it, with its
    /// `CommandHandle`: `id`, `result` (a promise of what the handler returned, on
    /// whichever worker ran it) and `cancel()`. Commands enter their lanes in call order.
    /// Rejects with code `LANE_NOT_FOUND` for a lane not declared in Redis, `LANE_FULL`
    /// for a full lane that rejects (or waited longer than its `fullWaitTimeoutMs`).
    /// `options.signal` cancels the command when it aborts; `options.delayMs` / `runAt`
    /// hold it back in Redis (shown as delayed) until then, and one no worker started by
    /// `options.startBy` / `startWithinMs` never runs: its result rejects with code
    /// `EXPIRED`. With `options.key` (an idempotency key) held by a live command of the
    /// queue (from any producer), nothing is queued: the handle is that command's, with
    /// `isDuplicate: true`. `options.group` puts it in a group of its lane: the groups
    /// take turns, with their caps and rate limits, over all workers.
    #[napi(
        ts_generic_types = "T = unknown",
        ts_args_type = "lane: string, commandType: string, payload?: unknown, options?: SubmitOptions",
        ts_return_type = "Promise<CommandHandle<T>>"
    )]
    pub fn submit<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let client = &self.client;
        let (returned, result, promise) = client.handle_promises(env)?;
        let rt = client.runtime();
        let (lane, command_type, payload, timing) =
            match submit_arguments(rt, env, result, lane, command_type, payload, options)? {
                Ok(arguments) => arguments,
                Err(error) => {
                    rt.reject(env, result, None, error, false)?;
                    rt.reject(env, returned, None, error, false)?;
                    return Ok(promise);
                }
            };
        let shared = self.shared.clone();
        // Its first poll hands the command to the queue's submit task, here on the
        // JavaScript thread: so commands reach Redis in call order.
        client.hand_out(env, returned, result, async move {
            let queue = shared.queue()?;
            Ok(match timing {
                None => QueueClient::submit(&queue, &lane, &command_type, payload).await?,
                Some(timing) => {
                    QueueClient::submit_with(&queue, &lane, &command_type, payload, timing).await?
                }
            })
        })?;
        Ok(promise)
    }

    /// Counts for the whole queue and each lane (a `QueueStats`, over all producers and
    /// workers), with the queue's workers and lifetime counters. A lane paused for a
    /// duration shows as `throttled` (like a rate limit, it ends by itself).
    #[napi(ts_return_type = "Promise<RedisQueueStats>")]
    pub fn stats<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.later(env, |queue| async move {
            queue.stats().await.map(RedisQueueStats::from)
        })
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
            Err(failure) => return self.client.runtime().rejected(env, &failure),
        };
        let timeouts = self.timeouts();
        self.later(env, move |queue| async move {
            queue
                .declare_lane(&lane.id, lane.config.clone(), lane.priority)
                .await?;
            remember_timeouts(&timeouts, std::slice::from_ref(&lane));
            Ok(())
        })
    }

    /// Deletes every key of this queue (lanes, commands, results, dead letters) and
    /// resolves with how many keys went. For tests and retiring a tenant: running workers
    /// of the queue lose their leases.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn clear<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.later(env, |queue| async move { queue.clear().await.map(count) })
    }

    /// The key prefix with its hash tag, for example `{a3s-lane}`.
    #[napi(getter)]
    pub fn key_prefix(&self, env: Env) -> napi::Result<String> {
        self.core()
            .map(|queue| queue.key_prefix().to_owned())
            .map_err(|error| crate::error::throw(&env, &error))
    }
}

// The client surface, the same on `Lane` and `RedisQueue`: `crate::client`.
client_methods!(RedisQueue);
