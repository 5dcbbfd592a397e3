//! Configuration of a Redis queue ([`RedisQueueConfig`], [`RedisLane`]) and of a worker
//! ([`RedisWorkerConfig`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lane_core::{DEFAULT_LANES, LaneError, Result, RetryStrategy};

use crate::connection::{Endpoint, Target};
use lane_core::PriorityBoostConfig;
use lane_core::RateLimitConfig;

/// A lane of a Redis queue. Its settings live in Redis and hold for every worker
/// together: at most `max_concurrency` of its commands run at once over all workers, its
/// rate limit counts starts over all workers, and its priority boost counts how long its
/// head command has waited by the Redis server's clock.
///
/// ```
/// use a3s_lane::{PriorityBoostConfig, RateLimitConfig, RedisLane};
/// use std::time::Duration;
///
/// let lane = RedisLane::new(2, 10)
///     .with_rate_limit(RateLimitConfig::per_second(50))
///     .with_priority_boost(PriorityBoostConfig::standard(Duration::from_secs(60)));
/// assert!(lane.validate("api").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RedisLane {
    /// Lower runs first.
    pub priority: u8,
    /// At most this many of the lane's commands run at once, over all workers.
    pub max_concurrency: usize,
    /// How fast the lane may start commands, over all workers.
    pub rate_limit: RateLimitConfig,
    /// How the lane's priority rises while its oldest pending command waits
    /// ([`PriorityBoostConfig::disabled`] by default).
    pub priority_boost: PriorityBoostConfig,
}

impl RedisLane {
    /// A lane with `priority` (lower runs first) and a cap of `max_concurrency` running
    /// commands over all workers.
    pub fn new(priority: u8, max_concurrency: usize) -> Self {
        Self {
            priority,
            max_concurrency,
            rate_limit: RateLimitConfig::Unlimited,
            priority_boost: PriorityBoostConfig::disabled(),
        }
    }

    /// Limits how fast the lane starts commands, over all workers.
    pub fn with_rate_limit(mut self, rate_limit: RateLimitConfig) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Raises the lane's priority while its oldest pending command waits, as in-process
    /// lanes do ([`LaneConfig::with_priority_boost`](lane_core::LaneConfig::with_priority_boost)):
    /// when a worker claims, the lane competes with priority
    /// `priority - boost_for(waited)`, where `waited` runs, on the Redis server's clock,
    /// from when the lane's head command became pending (its submit, or the moment its
    /// retry became due; a command handed back by a stopped or lost worker keeps its
    /// instant). Times are kept in whole microseconds, the Redis clock's resolution.
    pub fn with_priority_boost(mut self, boost: PriorityBoostConfig) -> Self {
        self.priority_boost = boost;
        self
    }

    /// Checks the values, naming the lane in the error.
    pub fn validate(&self, lane: &str) -> Result<()> {
        if lane.is_empty() || lane.contains('\n') {
            return Err(LaneError::ConfigError(format!(
                "lane id {lane:?} must be non-empty and hold no newline"
            )));
        }
        if self.max_concurrency == 0 {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_concurrency must be at least 1"
            )));
        }
        if self.max_concurrency > i64::MAX as usize {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_concurrency {} is larger than Redis counters hold",
                self.max_concurrency
            )));
        }
        self.rate_limit.validate().map_err(|error| match error {
            LaneError::ConfigError(reason) => {
                LaneError::ConfigError(format!("lane '{lane}': rate limit: {reason}"))
            }
            other => other,
        })?;
        let boost_error = |reason: String| {
            LaneError::ConfigError(format!("lane '{lane}': priority boost: {reason}"))
        };
        self.priority_boost
            .validate()
            .map_err(|error| match error {
                LaneError::ConfigError(reason) => boost_error(reason),
                other => other,
            })?;
        if let Some(deadline) = self.priority_boost.deadline()
            && deadline < Duration::from_micros(1)
        {
            return Err(boost_error(format!(
                "the deadline {deadline:?} is shorter than the Redis clock's resolution of 1µs; \
                 use at least 1µs"
            )));
        }
        Ok(())
    }
}

/// Where a Redis queue lives and which lanes it has.
///
/// Every key of the queue starts with the hash tag `{prefix}` (default `{a3s-lane}`):
/// different prefixes are separate queues on the same server (tenants, tests), and in
/// Redis Cluster all of a queue's keys share one slot, so its scripts run on one node.
///
/// ```
/// use a3s_lane::{RedisLane, RedisQueueConfig};
///
/// let config = RedisQueueConfig::new("redis://127.0.0.1:6379")
///     .with_key_prefix("orders")
///     .with_default_lanes()
///     .with_lane("bulk", RedisLane::new(9, 4));
/// assert!(config.validate().is_ok());
///
/// // A Redis Cluster: some of its nodes; the others are discovered from them.
/// let config = RedisQueueConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .with_key_prefix("orders")
///     .with_default_lanes();
/// assert!(config.validate().is_ok());
/// assert!(RedisQueueConfig::cluster(Vec::<String>::new()).validate().is_err());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisQueueConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) prefix: String,
    pub(crate) lanes: Vec<(String, RedisLane)>,
    pub(crate) result_ttl: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl RedisQueueConfig {
    /// A queue on the Redis server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` for TLS if the `redis` crate was built with TLS), prefix `a3s-lane`,
    /// no lanes declared.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_endpoint(Endpoint::Server(url.into()))
    }

    /// A queue on a Redis Cluster, reached through any of `nodes` (URLs as for
    /// [`RedisQueueConfig::new`], database 0 only); the other nodes are discovered from
    /// them. Commands go to the node holding the queue's slot and follow it when the
    /// cluster moves the slot (MOVED/ASK). An empty list or a bad URL fails
    /// [`validate`](RedisQueueConfig::validate) and [`RedisQueue::connect`](crate::RedisQueue::connect).
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_endpoint(Endpoint::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    fn with_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            prefix: "a3s-lane".into(),
            lanes: Vec::new(),
            result_ttl: Duration::from_secs(24 * 3600),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Keys start with `{prefix}`; the prefix must not contain `{` or `}`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Declares a lane when connecting (updating it if it exists).
    pub fn with_lane(mut self, id: impl Into<String>, lane: RedisLane) -> Self {
        self.lanes.push((id.into(), lane));
        self
    }

    /// Declares the six default lanes (`system` 0/5 … `prompt` 5/2, as priority/max).
    pub fn with_default_lanes(mut self) -> Self {
        for (id, priority, max) in DEFAULT_LANES {
            self.lanes
                .push((id.to_owned(), RedisLane::new(priority, max)));
        }
        self
    }

    /// How long finished commands and undelivered results stay in Redis (default 24 h).
    /// Dead letters stay until re-driven.
    pub fn with_result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// How long to wait for Redis to answer a command (default 5 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one attempt to open a connection may take (default 5 s).
    /// [`RedisQueue::connect`](crate::RedisQueue::connect) fails at once when the address
    /// refuses connections and after this long when the server does not answer, naming
    /// the address; on a cluster, the seed nodes and then the other masters are each given
    /// this long. Reconnects use it per attempt.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The key prefix including its hash tag braces, for example `{a3s-lane}`.
    pub fn key_prefix(&self) -> String {
        format!("{{{}}}", self.prefix)
    }

    /// Checks the values; the error says what is wrong and what to do instead.
    pub fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(LaneError::ConfigError(format!(
                "key prefix '{}' must be non-empty and without braces: it becomes the hash \
                 tag {{prefix}} that keeps a queue's keys in one Redis Cluster slot",
                self.prefix
            )));
        }
        if self.result_ttl < Duration::from_millis(1) {
            return Err(LaneError::ConfigError(
                "result_ttl must be at least 1 ms (results are deleted after it)".into(),
            ));
        }
        if self.response_timeout.is_zero() {
            return Err(LaneError::ConfigError(
                "response_timeout must be longer than zero".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(LaneError::ConfigError(
                "connect_timeout must be longer than zero".into(),
            ));
        }
        self.target()?;
        let mut seen = std::collections::HashSet::new();
        for (id, lane) in &self.lanes {
            lane.validate(id)?;
            if !seen.insert(id) {
                return Err(LaneError::ConfigError(format!(
                    "lane '{id}' is declared twice in this config"
                )));
            }
        }
        Ok(())
    }

    /// The checked addresses and timeouts to connect with.
    pub(crate) fn target(&self) -> Result<Target> {
        self.endpoint.open(self.connect_timeout)
    }
}

/// How a [`RedisWorker`](crate::RedisWorker) runs commands.
///
/// A worker has no address of its own: it talks to the Redis (server or cluster) of the
/// [`RedisQueue`](crate::RedisQueue) it is started on, over that queue's connection plus
/// one of its own for its wake list.
///
/// Lane priorities, caps and rate limits live in Redis ([`RedisLane`]); what stays with
/// the worker is how it runs a command: how many at once (`slots`), timeouts, retry
/// policies and the cancel grace period. Workers serving the same queue should agree on
/// timeouts and retry policies.
///
/// ```
/// use a3s_lane::RedisWorkerConfig;
/// use std::time::Duration;
///
/// let config = RedisWorkerConfig::new(64)
///     .with_lease_ttl(Duration::from_secs(10))
///     .with_lane_timeout("prompt", Duration::from_secs(120));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisWorkerConfig {
    pub(crate) slots: usize,
    pub(crate) worker_id: Option<String>,
    pub(crate) lease_ttl: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) block_timeout: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) lane_timeouts: HashMap<String, Duration>,
    pub(crate) default_retry: Option<Arc<dyn RetryStrategy>>,
    pub(crate) lane_retries: HashMap<String, Arc<dyn RetryStrategy>>,
}

impl fmt::Debug for RedisWorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWorkerConfig")
            .field("slots", &self.slots)
            .field("worker_id", &self.worker_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("heartbeat_interval", &self.heartbeat_interval())
            .field("block_timeout", &self.block_timeout)
            .field("cancel_grace", &self.cancel_grace)
            .field("default_timeout", &self.default_timeout)
            .field("lane_timeouts", &self.lane_timeouts)
            .field("default_retry", &self.default_retry)
            .field("lane_retries", &self.lane_retries)
            .finish()
    }
}

impl Default for RedisWorkerConfig {
    fn default() -> Self {
        Self::new(16)
    }
}

impl RedisWorkerConfig {
    /// A worker running at most `slots` commands at once; lease 15 s, heartbeat every 5 s.
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            worker_id: None,
            lease_ttl: Duration::from_secs(15),
            heartbeat_interval: None,
            block_timeout: Duration::from_secs(30),
            cancel_grace: lane_core::DEFAULT_CANCEL_GRACE,
            default_timeout: None,
            lane_timeouts: HashMap::new(),
            default_retry: None,
            lane_retries: HashMap::new(),
        }
    }

    /// Names the worker (default: host name, process id and a random suffix). Two live
    /// workers must never share an id.
    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How long the worker's commands stay its own without a heartbeat. A worker that
    /// dies loses them after this long, and they run again elsewhere.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often the worker renews its lease when it has nothing else to say to Redis
    /// (default a third of the lease).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// The longest the idle worker blocks on Redis before checking its connection
    /// (default 30 s). It wakes earlier when work arrives or housekeeping is due.
    pub fn with_block_timeout(mut self, timeout: Duration) -> Self {
        self.block_timeout = timeout;
        self
    }

    /// After a cancel request, a running command has this long to stop by itself before
    /// its future is dropped (default 1 s).
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Fails runs that take longer than `timeout`, in every lane without its own timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Fails runs of `lane` that take longer than `timeout`.
    pub fn with_lane_timeout(mut self, lane: impl Into<String>, timeout: Duration) -> Self {
        self.lane_timeouts.insert(lane.into(), timeout);
        self
    }

    /// Retries failed commands as `policy` decides, in every lane without its own policy.
    /// The retry waits in Redis (delayed set) and may run on any worker.
    pub fn with_retry_policy(mut self, policy: impl RetryStrategy) -> Self {
        self.default_retry = Some(Arc::new(policy));
        self
    }

    /// Retries failed commands of `lane` as `policy` decides.
    pub fn with_lane_retry_policy(
        mut self,
        lane: impl Into<String>,
        policy: impl RetryStrategy,
    ) -> Self {
        self.lane_retries.insert(lane.into(), Arc::new(policy));
        self
    }

    /// The heartbeat interval in effect.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval.unwrap_or(self.lease_ttl / 3)
    }

    pub(crate) fn timeout_for(&self, lane: &str) -> Option<Duration> {
        self.lane_timeouts
            .get(lane)
            .copied()
            .or(self.default_timeout)
    }

    pub(crate) fn retry_for(&self, lane: &str) -> Option<&Arc<dyn RetryStrategy>> {
        self.lane_retries.get(lane).or(self.default_retry.as_ref())
    }

    /// Checks the values; the error says what is wrong and what to do instead.
    pub fn validate(&self) -> Result<()> {
        let error = |message: String| Err(LaneError::ConfigError(message));
        if self.slots == 0 {
            return error(
                "slots must be at least 1 (how many commands the worker runs at once)".into(),
            );
        }
        if self
            .worker_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.contains(char::is_whitespace))
        {
            return error("worker_id must be non-empty and without whitespace".into());
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return error(format!(
                "lease_ttl {:?} is too short to renew reliably; use at least 100ms (seconds in production)",
                self.lease_ttl
            ));
        }
        let heartbeat = self.heartbeat_interval();
        if heartbeat.is_zero() || heartbeat >= self.lease_ttl {
            return error(format!(
                "heartbeat_interval {heartbeat:?} must be above zero and below lease_ttl {:?} \
                 (a third of it is a good choice), or the lease expires between heartbeats",
                self.lease_ttl
            ));
        }
        if self.block_timeout < Duration::from_millis(10) {
            return error("block_timeout must be at least 10ms".into());
        }
        for (lane, timeout) in self
            .lane_timeouts
            .iter()
            .map(|(lane, t)| (lane.as_str(), t))
            .chain(self.default_timeout.iter().map(|t| ("(all lanes)", t)))
        {
            if timeout.is_zero() {
                return error(format!(
                    "timeout for {lane} must be longer than zero (leave it unset for no timeout)"
                ));
            }
        }
        Ok(())
    }
}
