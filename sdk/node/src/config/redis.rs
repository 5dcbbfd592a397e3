//! What `RedisQueue.connect(url, options)`, `RedisQueue.connectCluster(nodes, options)`
//! and `RedisWorker.start(queue, options)` take, turned into the core's
//! [`RedisQueueConfig`] and [`RedisWorkerConfig`]. A Redis queue's lanes take the same
//! [`LaneOptions`](crate::config::lane::LaneOptions) as a `Lane`'s: how a lane runs
//! (timeout, cancel grace, retry policy) is kept in Redis with the lane, so a worker's own
//! options only say how much it takes on and how it keeps its claims.

use a3s_lane::{LaneError, RedisQueueConfig, RedisTls, RedisWorkerConfig};
use napi::ValueType;
use napi::bindgen_prelude::Unknown;
use napi_derive::napi;

use crate::config::lane::{LaneMap, LaneSetup};
use crate::convert::{At, FromJs, Given, Js, Read, options_object};
use crate::error::{JsFailure, ToJsError};

/// Options of `RedisQueue.connect(url, options)` and
/// `RedisQueue.connectCluster(nodes, options)`. Defaults are the core's
/// (`DEFAULTS.redis_queue`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct RedisQueueOptions {
    /// Lanes to declare (or update) in Redis when connecting, by id, with the same
    /// options as a `Lane`'s lanes. Leave it out to use the lanes already declared there
    /// (a worker process usually does).
    #[napi(ts_type = "Record<string, LaneOptions>")]
    pub lanes: Option<Js<LaneMap>>,
    /// Every key of the queue starts with `{keyPrefix}` (default `a3s-lane`): different
    /// prefixes are separate queues on one server. No `{` or `}`.
    #[napi(ts_type = "string")]
    pub key_prefix: Option<Js<String>>,
    /// How long finished commands and undelivered results stay in Redis (default one
    /// day). Dead letters stay until re-driven or cleared.
    #[napi(ts_type = "number")]
    pub result_ttl_ms: Option<Js<f64>>,
    /// How long to wait for Redis to answer (default 5000).
    #[napi(ts_type = "number")]
    pub response_timeout_ms: Option<Js<f64>>,
    /// How long one attempt to open a connection may take (default 5000). An address
    /// nothing listens on fails at once, with an error naming it.
    #[napi(ts_type = "number")]
    pub connect_timeout_ms: Option<Js<f64>>,
    /// `false` turns the queue's event stream off for every process (no command writes
    /// events; `events()` then yields nothing), `true` on again; left out, the setting
    /// kept in Redis stays as it is (on unless turned off).
    #[napi(ts_type = "boolean")]
    pub events: Option<Js<bool>>,
    /// How long a submit waits for Redis to come back when it is unreachable,
    /// restarting or loading (default 5000); a submit sent again meanwhile is accepted
    /// once. After it the submit rejects with code `STORAGE`.
    #[napi(ts_type = "number")]
    pub reconnect_wait_ms: Option<Js<f64>>,
    /// The first pause between reconnect attempts (default 50), doubling up to
    /// `reconnectMaxDelayMs`.
    #[napi(ts_type = "number")]
    pub reconnect_min_delay_ms: Option<Js<f64>>,
    /// The longest pause between reconnect attempts (default 1000): Redis coming back is
    /// noticed within about this long.
    #[napi(ts_type = "number")]
    pub reconnect_max_delay_ms: Option<Js<f64>>,
    /// For a `rediss://` URL: the PEM text of a private certificate authority to trust
    /// instead of the system's roots.
    #[napi(ts_type = "string")]
    pub tls_ca: Option<Js<String>>,
    /// For a `rediss://` URL: a client certificate (PEM text), with `tlsKey`.
    #[napi(ts_type = "string")]
    pub tls_cert: Option<Js<String>>,
    /// The private key (PEM text) of `tlsCert`.
    #[napi(ts_type = "string")]
    pub tls_key: Option<Js<String>>,
}

options_object!(
    RedisQueueOptions,
    "an object like { lanes, keyPrefix }",
    [
        "lanes",
        "keyPrefix",
        "resultTtlMs",
        "responseTimeoutMs",
        "connectTimeoutMs",
        "events",
        "reconnectWaitMs",
        "reconnectMinDelayMs",
        "reconnectMaxDelayMs",
        "tlsCa",
        "tlsCert",
        "tlsKey"
    ]
);

/// Options of `RedisWorker.start(queue, options)`. Defaults are the core's
/// (`DEFAULTS.redis_worker`); how a lane's commands run (timeout, retries, cancel grace)
/// is the lane's, declared with its `LaneOptions`.
#[napi(object, object_to_js = false)]
#[derive(Debug, Default)]
pub struct RedisWorkerOptions {
    /// The handlers, by command type, registered before the worker claims anything
    /// (`worker.handle()` adds more later). Same semantics as `Lane.handle`.
    #[napi(ts_type = "Record<string, (payload: any, ctx: CommandContext) => unknown>")]
    pub handlers: Option<Js<Handlers>>,
    /// At most this many commands run at once on this worker (default 16).
    #[napi(ts_type = "number")]
    pub slots: Option<Js<f64>>,
    /// The worker's id in Redis (default: host name, process id and a random suffix).
    /// Two live workers must never share one.
    #[napi(ts_type = "string")]
    pub worker_id: Option<Js<String>>,
    /// How long the worker's commands stay its own without a heartbeat (default 15000):
    /// a worker that dies loses them after this long and they run again elsewhere.
    #[napi(ts_type = "number")]
    pub lease_ttl_ms: Option<Js<f64>>,
    /// How often an idle worker renews its lease (default a third of `leaseTtlMs`).
    #[napi(ts_type = "number")]
    pub heartbeat_interval_ms: Option<Js<f64>>,
    /// The longest an idle worker blocks on Redis before checking its connection
    /// (default 30000); work wakes it at once.
    #[napi(ts_type = "number")]
    pub block_timeout_ms: Option<Js<f64>>,
}

options_object!(
    RedisWorkerOptions,
    "an object like { slots: 16, handlers: { type: fn } }",
    [
        "handlers",
        "slots",
        "workerId",
        "leaseTtlMs",
        "heartbeatIntervalMs",
        "blockTimeoutMs"
    ]
);

/// The `{ type: handler }` object of a worker's options: its command types, checked to
/// be functions, and the object itself for the JavaScript side.
pub struct Handlers {
    /// The command types, in order.
    pub types: Vec<String>,
    /// The object; only used during the call that passed it.
    pub object: Unknown<'static>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("types", &self.types)
            .finish_non_exhaustive()
    }
}

impl FromJs for Handlers {
    const EXPECTED: &'static str = "an object mapping command types to functions";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_object()? {
            return value.unexpected();
        }
        let types = value.keys()?;
        for command_type in &types {
            let handler = value.get(command_type)?;
            if handler.kind()? != ValueType::Function {
                return Ok(handler
                    .wrong("a function")?
                    .map_err(|invalid| invalid.below(&format!(".{command_type}"))));
            }
        }
        Ok(Ok(Self {
            types,
            object: value.to()?,
        }))
    }
}

/// The `url` of `RedisQueue.connect`: one server.
#[derive(Debug, Clone)]
pub struct ServerUrl(pub String);

impl FromJs for ServerUrl {
    const EXPECTED: &'static str = "a string like 'redis://127.0.0.1:6379'";

    fn from_js(value: Given) -> Read<Self> {
        match value.kind()? {
            ValueType::String => Ok(Ok(Self(value.to()?))),
            _ => value.unexpected(),
        }
    }
}

/// One node URL of `RedisQueue.connectCluster`.
#[derive(Debug, Clone)]
pub struct NodeUrl(pub String);

impl FromJs for NodeUrl {
    const EXPECTED: &'static str = "a URL string like 'redis://10.0.0.1:7000'";

    fn from_js(value: Given) -> Read<Self> {
        match value.kind()? {
            ValueType::String => Ok(Ok(Self(value.to()?))),
            _ => value.unexpected(),
        }
    }
}

/// The `nodes` of `RedisQueue.connectCluster`: URLs of some of a cluster's nodes.
#[derive(Debug, Clone)]
pub struct NodeUrls(pub Vec<NodeUrl>);

impl FromJs for NodeUrls {
    const EXPECTED: &'static str = "an array of node URLs like ['redis://10.0.0.1:7000']";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_array()? {
            return value.unexpected();
        }
        Ok(value.array()?.map(Self))
    }
}

/// A Redis queue's configuration, checked by the core, with the lanes it declares.
#[derive(Debug)]
pub struct QueueSetup {
    /// The configuration.
    pub config: RedisQueueConfig,
    /// The lanes declared when connecting.
    pub lanes: Vec<LaneSetup>,
}

impl QueueSetup {
    /// Applies `options` to `config` (where Redis is) and checks the whole configuration.
    pub fn new(
        mut config: RedisQueueConfig,
        options: Option<Js<RedisQueueOptions>>,
    ) -> Result<Self, JsFailure> {
        let mut lanes = Vec::new();
        if let Some(options) = options {
            let at = At::option("options");
            let options = options.get(&at)?;
            if let Some(prefix) = at.field("keyPrefix", options.key_prefix, |_, p| Ok(p))? {
                config = config.with_key_prefix(prefix);
            }
            if let Some(ttl) = at.field("resultTtlMs", options.result_ttl_ms, At::millis)? {
                config = config.with_result_ttl(ttl);
            }
            if let Some(timeout) =
                at.field("responseTimeoutMs", options.response_timeout_ms, At::millis)?
            {
                config = config.with_response_timeout(timeout);
            }
            if let Some(timeout) =
                at.field("connectTimeoutMs", options.connect_timeout_ms, At::millis)?
            {
                config = config.with_connect_timeout(timeout);
            }
            if let Some(enabled) = at.field("events", options.events, |_, on| Ok(on))? {
                config = config.with_events(enabled);
            }
            if let Some(wait) =
                at.field("reconnectWaitMs", options.reconnect_wait_ms, At::millis)?
            {
                config = config.with_reconnect_wait(wait);
            }
            let min = at.field(
                "reconnectMinDelayMs",
                options.reconnect_min_delay_ms,
                At::millis,
            )?;
            let max = at.field(
                "reconnectMaxDelayMs",
                options.reconnect_max_delay_ms,
                At::millis,
            )?;
            if min.is_some() || max.is_some() {
                let (first, longest) = config.reconnect_backoff();
                config =
                    config.with_reconnect_backoff(min.unwrap_or(first), max.unwrap_or(longest));
            }
            let ca = at.field("tlsCa", options.tls_ca, |_, pem| Ok(pem))?;
            let cert = at.field("tlsCert", options.tls_cert, |_, pem| Ok(pem))?;
            let key = at.field("tlsKey", options.tls_key, |_, pem| Ok(pem))?;
            if ca.is_some() || cert.is_some() || key.is_some() {
                let mut tls = RedisTls::new();
                if let Some(ca) = ca {
                    tls = tls.with_ca_pem(ca);
                }
                match (cert, key) {
                    (Some(cert), Some(key)) => tls = tls.with_client_cert_pem(cert, key),
                    (None, None) => {}
                    _ => {
                        return Err(LaneError::ConfigError(
                            "options.tlsCert and options.tlsKey go together: a client \
                             certificate needs its key"
                                .into(),
                        )
                        .to_js_failure());
                    }
                }
                config = config.with_tls(tls);
            }
            if let Some(declared) =
                at.field("lanes", options.lanes, |at, lanes| lanes.into_lanes(at))?
            {
                lanes = declared;
            }
            for lane in &lanes {
                config = config.with_lane(lane.id.clone(), lane.config.clone(), lane.priority);
            }
        }
        config.validate().map_err(|error| error.to_js_failure())?;
        Ok(Self { config, lanes })
    }
}

/// A worker's configuration, checked by the core, and its handlers.
#[derive(Debug)]
pub struct WorkerSetup {
    /// The configuration.
    pub config: RedisWorkerConfig,
    /// The handlers of `options.handlers`.
    pub handlers: Option<Handlers>,
}

impl WorkerSetup {
    /// Converts `RedisWorker.start(queue, options)` (without the queue).
    pub fn new(options: Option<Js<RedisWorkerOptions>>) -> Result<Self, JsFailure> {
        let Some(options) = options else {
            return Ok(Self {
                config: RedisWorkerConfig::default(),
                handlers: None,
            });
        };
        let at = At::option("options");
        let options = options.get(&at)?;
        let handlers = at.field("handlers", options.handlers, |_, handlers| Ok(handlers))?;
        let slots = at
            .field("slots", options.slots, At::count)?
            .unwrap_or(RedisWorkerConfig::DEFAULT_SLOTS);
        let mut config = RedisWorkerConfig::new(slots);
        if let Some(id) = at.field("workerId", options.worker_id, |_, id| Ok(id))? {
            config = config.with_worker_id(id);
        }
        if let Some(ttl) = at.field("leaseTtlMs", options.lease_ttl_ms, At::millis)? {
            config = config.with_lease_ttl(ttl);
        }
        if let Some(interval) = at.field(
            "heartbeatIntervalMs",
            options.heartbeat_interval_ms,
            At::millis,
        )? {
            config = config.with_heartbeat_interval(interval);
        }
        if let Some(timeout) = at.field("blockTimeoutMs", options.block_timeout_ms, At::millis)? {
            config = config.with_block_timeout(timeout);
        }
        config.validate().map_err(|error| error.to_js_failure())?;
        Ok(Self { config, handlers })
    }
}
