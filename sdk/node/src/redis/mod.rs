//! The Redis backend: [`queue::RedisQueue`] submits commands to a queue kept in Redis and
//! awaits their results; [`worker::RedisWorker`] runs them with JavaScript handlers, in
//! this process or any other. Both wrap the Rust crate's `RedisQueue` / `RedisWorker`;
//! handlers run through the same bridge as a `Lane`'s (`runtime.rs`).
//!
//! This file checks their options: `RedisQueue.connect(url, options)`,
//! `RedisQueue.connectCluster(nodes, options)` and `RedisWorker.start(queue, options)`. As for `Lane`, every value is checked at the
//! boundary (`TypeError` / `RangeError` with code `CONFIG`) and nothing is ignored.

pub mod queue;
pub mod worker;

use std::collections::HashMap;
use std::time::Duration;

use a3s_lane::{DEFAULT_LANES, RedisLane, RedisQueueConfig, RedisWorkerConfig};
use napi_derive::napi;
use serde_json::Value;

use crate::config::{Fields, Input, RetryOptions, integer, millis, parse_retry, string};
use crate::error::JsFailure;
use crate::limits::{parse_priority_boost, parse_rate_limit};

/// Options of `RedisQueue.connect(url, options)` and
/// `RedisQueue.connectCluster(nodes, options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RedisQueueOptions {
    /// Lanes to declare (or update) in Redis when connecting, by id. Leave it out to use
    /// the lanes already declared there (a worker process usually does).
    pub lanes: Option<HashMap<String, RedisLaneOptions>>,
    /// Every key of the queue starts with `{keyPrefix}` (default `a3s-lane`): different
    /// prefixes are separate queues on one server. No `{` or `}`.
    pub key_prefix: Option<String>,
    /// How long finished commands and undelivered results stay in Redis (default one
    /// day). Dead letters stay until re-driven or cleared.
    pub result_ttl_ms: Option<f64>,
    /// How long to wait for Redis to answer (default 5000).
    pub response_timeout_ms: Option<f64>,
    /// How long one attempt to open a connection may take (default 5000). An address
    /// nothing listens on fails at once, with an error naming it.
    pub connect_timeout_ms: Option<f64>,
}

/// A lane of a Redis queue. Its settings live in Redis and hold over all workers
/// together.
///
/// For the six default lane names (`system` … `prompt`) `priority` and
/// `maxConcurrency` default to those of `Lane`; other lanes must give both.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RedisLaneOptions {
    /// 0 (most urgent) to 255; lower numbers run first.
    pub priority: Option<u32>,
    /// At most this many of the lane's commands run at once, over all workers.
    pub max_concurrency: Option<u32>,
    /// How fast the lane may start commands, over all workers (same shapes as a `Lane`
    /// lane's `rateLimit`).
    #[napi(ts_type = "RateLimitOptions")]
    pub rate_limit: Option<Value>,
    /// Raises the lane's priority as its oldest pending command waits (same shapes as a
    /// `Lane` lane's `priorityBoost`), timed by the Redis server's clock in whole
    /// microseconds. The boosted priority shows in `stats().lanes[id].effectivePriority`.
    #[napi(ts_type = "PriorityBoostOptions")]
    pub priority_boost: Option<Value>,
}

/// Options of `RedisWorker.start(queue, options)`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RedisWorkerOptions {
    /// The handlers, by command type, registered before the worker claims anything
    /// (`worker.handle()` adds more later). Same semantics as `Lane.handle`.
    #[napi(ts_type = "Record<string, (payload: any, ctx: CommandContext) => unknown>")]
    pub handlers: Option<Value>,
    /// At most this many commands run at once on this worker (default 16).
    pub slots: Option<u32>,
    /// The worker's id in Redis (default: host name, process id and a random suffix).
    /// Two live workers must never share one.
    pub worker_id: Option<String>,
    /// How long the worker's commands stay its own without a heartbeat (default 15000):
    /// a worker that dies loses them after this long and they run again elsewhere.
    pub lease_ttl_ms: Option<f64>,
    /// How often an idle worker renews its lease (default a third of `leaseTtlMs`).
    pub heartbeat_interval_ms: Option<f64>,
    /// The longest an idle worker blocks on Redis before checking its connection
    /// (default 30000); work wakes it at once.
    pub block_timeout_ms: Option<f64>,
    /// After a cancel, a running handler has this long to settle by itself (its
    /// `ctx.signal` is aborted at once) before it is abandoned. Default 1000.
    pub cancel_grace_ms: Option<f64>,
    /// A run that takes longer fails with code `TIMEOUT` (and its `ctx.signal` aborts),
    /// in every lane without its own `timeoutMs`.
    pub timeout_ms: Option<f64>,
    /// How failed commands are retried (the retry waits in Redis and may run on any
    /// worker), in every lane without its own `retry`. No retries when absent.
    pub retry: Option<RetryOptions>,
    /// Per-lane `timeoutMs` and `retry`, by lane id.
    pub lanes: Option<HashMap<String, RedisWorkerLaneOptions>>,
}

/// How a worker runs the commands of one lane.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct RedisWorkerLaneOptions {
    /// A run that takes longer fails with code `TIMEOUT`.
    pub timeout_ms: Option<f64>,
    /// How failed commands of the lane are retried.
    pub retry: Option<RetryOptions>,
}

const QUEUE_KEYS: [&str; 5] = [
    "lanes",
    "keyPrefix",
    "resultTtlMs",
    "responseTimeoutMs",
    "connectTimeoutMs",
];
const LANE_KEYS: [&str; 4] = ["priority", "maxConcurrency", "rateLimit", "priorityBoost"];
const WORKER_KEYS: [&str; 10] = [
    "handlers",
    "slots",
    "workerId",
    "leaseTtlMs",
    "heartbeatIntervalMs",
    "blockTimeoutMs",
    "cancelGraceMs",
    "timeoutMs",
    "retry",
    "lanes",
];
const WORKER_LANE_KEYS: [&str; 2] = ["timeoutMs", "retry"];

/// The `url` of `RedisQueue.connect(url, options)`: one server.
pub fn parse_server(url: &Input) -> Result<RedisQueueConfig, JsFailure> {
    match url {
        Input::String(url) if !url.is_empty() => Ok(RedisQueueConfig::new(url.clone())),
        Input::String(_) => Err(JsFailure::range_error(
            "CONFIG",
            "url must not be empty; pass something like 'redis://127.0.0.1:6379'",
        )),
        other => Err(JsFailure::type_error(
            "CONFIG",
            format!(
                "url must be a string like 'redis://127.0.0.1:6379', got {}",
                other.describe()
            ),
        )),
    }
}

/// The `nodes` of `RedisQueue.connectCluster(nodes, options)`: URLs of some of a Redis
/// Cluster's nodes (the URLs themselves are checked with the rest of the config).
pub fn parse_cluster(nodes: &Input) -> Result<RedisQueueConfig, JsFailure> {
    let Input::Array(items) = nodes else {
        return Err(JsFailure::type_error(
            "CONFIG",
            format!(
                "nodes must be an array of node URLs like ['redis://10.0.0.1:7000'], got {}",
                nodes.describe()
            ),
        ));
    };
    let mut urls = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Input::String(url) => urls.push(url.clone()),
            other => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!(
                        "nodes[{i}] must be a URL string like 'redis://10.0.0.1:7000', got {}",
                        other.describe()
                    ),
                ));
            }
        }
    }
    Ok(RedisQueueConfig::cluster(urls))
}

/// Applies the options of `RedisQueue.connect` / `connectCluster` to `config` and checks
/// the whole configuration.
pub fn parse_queue(
    mut config: RedisQueueConfig,
    options: &Input,
) -> Result<RedisQueueConfig, JsFailure> {
    if !matches!(options, Input::Undefined | Input::Null) {
        let mut fields = Fields::new(
            "options",
            options,
            "an object like { lanes, keyPrefix }",
            &QUEUE_KEYS,
        )?;
        if let Some((path, value)) = fields.take("keyPrefix") {
            config = config.with_key_prefix(string(&path, value)?);
        }
        if let Some((path, value)) = fields.take("resultTtlMs") {
            config = config.with_result_ttl(millis(&path, value, true)?);
        }
        if let Some((path, value)) = fields.take("responseTimeoutMs") {
            config = config.with_response_timeout(millis(&path, value, true)?);
        }
        if let Some((path, value)) = fields.take("connectTimeoutMs") {
            config = config.with_connect_timeout(millis(&path, value, true)?);
        }
        if let Some((path, value)) = fields.take("lanes") {
            let Input::Object(lanes) = value else {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!(
                        "{path} must be an object mapping lane ids to lane options, got {}",
                        value.describe()
                    ),
                ));
            };
            for (id, lane) in lanes {
                if lane.is_undefined() {
                    continue;
                }
                config =
                    config.with_lane(id.clone(), parse_lane(&format!("{path}.{id}"), id, lane)?);
            }
        }
    }
    config
        .validate()
        .map_err(|error| JsFailure::range_error("CONFIG", error.to_string()))?;
    Ok(config)
}

/// Parses one lane's options (at `path`) for the lane `id`.
fn parse_lane(path: &str, id: &str, input: &Input) -> Result<RedisLane, JsFailure> {
    let mut fields = Fields::new(path, input, "an object of lane options", &LANE_KEYS)?;
    let default = DEFAULT_LANES.iter().find(|(name, _, _)| *name == id);
    let priority = match fields.take("priority") {
        Some((path, value)) => integer(&path, value, 0, 255)? as u8,
        None => match default {
            Some((_, priority, _)) => *priority,
            None => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!("{path}.priority is required (0 is the most urgent, 255 the least)"),
                ));
            }
        },
    };
    let max = match fields.take("maxConcurrency") {
        Some((path, value)) => integer(&path, value, 1, u32::MAX.into())? as usize,
        None => match default {
            Some((_, _, max)) => *max,
            None => {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!("{path}.maxConcurrency is required (at least 1)"),
                ));
            }
        },
    };
    let mut lane = RedisLane::new(priority, max);
    if let Some((path, value)) = fields.take("rateLimit") {
        lane = lane.with_rate_limit(parse_rate_limit(&path, value)?);
    }
    if let Some((path, value)) = fields.take("priorityBoost") {
        lane = lane.with_priority_boost(parse_priority_boost(&path, value)?);
    }
    Ok(lane)
}

/// A worker's checked options.
#[derive(Debug)]
pub struct WorkerSetup {
    /// The configuration.
    pub config: RedisWorkerConfig,
    /// The command types of `options.handlers`, in order.
    pub handler_types: Vec<String>,
    /// Each lane's timeout, to name it when a handler is abandoned.
    pub timeouts: HashMap<String, Duration>,
    /// The timeout of the other lanes.
    pub default_timeout: Option<Duration>,
}

/// Parses `RedisWorker.start(queue, options)` (without the queue).
pub fn parse_worker(options: &Input) -> Result<WorkerSetup, JsFailure> {
    let mut setup = WorkerSetup {
        config: RedisWorkerConfig::new(16),
        handler_types: Vec::new(),
        timeouts: HashMap::new(),
        default_timeout: None,
    };
    if matches!(options, Input::Undefined | Input::Null) {
        return Ok(setup);
    }
    let mut fields = Fields::new(
        "options",
        options,
        "an object like { slots: 16, handlers: { type: fn } }",
        &WORKER_KEYS,
    )?;
    if let Some((path, value)) = fields.take("handlers") {
        let Input::Object(handlers) = value else {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!(
                    "{path} must be an object mapping command types to functions, got {}",
                    value.describe()
                ),
            ));
        };
        for (command_type, handler) in handlers {
            if command_type.is_empty() {
                return Err(JsFailure::range_error(
                    "CONFIG",
                    format!("{path}: command types must not be empty"),
                ));
            }
            if !matches!(handler, Input::Other(what) if what == "a function") {
                return Err(JsFailure::type_error(
                    "CONFIG",
                    format!(
                        "{path}.{command_type} must be a function, got {}",
                        handler.describe()
                    ),
                ));
            }
            setup.handler_types.push(command_type.clone());
        }
    }
    let mut config = RedisWorkerConfig::new(match fields.take("slots") {
        Some((path, value)) => integer(&path, value, 1, u32::MAX.into())? as usize,
        None => 16,
    });
    if let Some((path, value)) = fields.take("workerId") {
        config = config.with_worker_id(string(&path, value)?);
    }
    if let Some((path, value)) = fields.take("leaseTtlMs") {
        config = config.with_lease_ttl(millis(&path, value, true)?);
    }
    if let Some((path, value)) = fields.take("heartbeatIntervalMs") {
        config = config.with_heartbeat_interval(millis(&path, value, true)?);
    }
    if let Some((path, value)) = fields.take("blockTimeoutMs") {
        config = config.with_block_timeout(millis(&path, value, true)?);
    }
    if let Some((path, value)) = fields.take("cancelGraceMs") {
        config = config.with_cancel_grace(millis(&path, value, false)?);
    }
    if let Some((path, value)) = fields.take("timeoutMs") {
        let timeout = millis(&path, value, true)?;
        setup.default_timeout = Some(timeout);
        config = config.with_timeout(timeout);
    }
    if let Some((path, value)) = fields.take("retry") {
        config = config.with_retry_policy(parse_retry(&path, value)?);
    }
    if let Some((path, value)) = fields.take("lanes") {
        let Input::Object(lanes) = value else {
            return Err(JsFailure::type_error(
                "CONFIG",
                format!(
                    "{path} must be an object mapping lane ids to {{ timeoutMs, retry }}, got {}",
                    value.describe()
                ),
            ));
        };
        for (id, lane) in lanes {
            if lane.is_undefined() {
                continue;
            }
            let lane_path = format!("{path}.{id}");
            let mut lane_fields = Fields::new(
                lane_path.as_str(),
                lane,
                "an object like { timeoutMs, retry }",
                &WORKER_LANE_KEYS,
            )?;
            if let Some((path, value)) = lane_fields.take("timeoutMs") {
                let timeout = millis(&path, value, true)?;
                setup.timeouts.insert(id.clone(), timeout);
                config = config.with_lane_timeout(id.clone(), timeout);
            }
            if let Some((path, value)) = lane_fields.take("retry") {
                config = config.with_lane_retry_policy(id.clone(), parse_retry(&path, value)?);
            }
        }
    }
    config
        .validate()
        .map_err(|error| JsFailure::range_error("CONFIG", error.to_string()))?;
    setup.config = config;
    Ok(setup)
}
