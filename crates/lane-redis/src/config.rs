//! Configuration of a Redis queue ([`RedisQueueConfig`]) and of a worker
//! ([`RedisWorkerConfig`]). Lanes are the one lane model, [`LaneConfig`], checked for this
//! engine by [`RedisLaneSpec::from_config`].

use std::time::Duration;

use lane_core::{
    DEFAULT_LANES, LaneConfig, LaneError, MAX_DURATION, PriorityBoostConfig, RateLimitConfig,
    Result, Retention, RetryJitter, RetryPolicy, WhenFull,
};
use serde::{Deserialize, Serialize};

use crate::connection::{Backoff, Endpoint, Target};

/// What Redis keeps of a lane's [`LaneConfig`]: the lane's one model, checked for this
/// engine and put in the form its scripts and workers read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RedisLaneSpec {
    pub(crate) priority: u8,
    pub(crate) max_concurrency: usize,
    pub(crate) rate_limit: RateLimitConfig,
    pub(crate) priority_boost: PriorityBoostConfig,
    pub(crate) run: LaneRunSpec,
    /// At most this many commands wait in the lane (pending and delayed).
    pub(crate) max_waiting: Option<usize>,
    /// What a submit to a full lane does (its producer waits, kept in Redis with the lane
    /// so that every producer of the queue does alike).
    pub(crate) when_full: WhenFull,
    /// What the lane keeps of its finished commands, kept in Redis with the lane (the
    /// scripts that finish commands trim by it).
    pub(crate) retention: Retention,
    /// The limits of the lane's groups, kept in Redis with the lane (every worker's claims
    /// apply them).
    pub(crate) groups: lane_core::GroupRules,
}

/// How workers run a lane's commands, as kept in Redis with the lane (so every worker of
/// the queue runs them alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LaneRunSpec {
    /// Run timeout in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_us: Option<u64>,
    /// Cancel grace in microseconds.
    grace_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<RetrySpec>,
}

/// A [`RetryPolicy`] as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RetrySpec {
    max_retries: u32,
    initial_us: u64,
    multiplier: f64,
    max_us: u64,
    jitter: u8,
}

impl LaneRunSpec {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How a worker runs a lane's commands, read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LaneRun {
    pub(crate) limits: lane_core::RunLimits,
    pub(crate) retry: Option<RetryPolicy>,
}

impl LaneRun {
    /// Parses what [`RedisQueue::declare_lane`](crate::RedisQueue::declare_lane) stored.
    /// A lane declared before lanes kept run settings has none and runs with the
    /// defaults of [`LaneConfig`] until it is declared again.
    pub(crate) fn parse(lane: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Ok(Self {
                limits: lane_core::RunLimits {
                    timeout: None,
                    cancel_grace: lane_core::DEFAULT_CANCEL_GRACE,
                },
                retry: None,
            });
        }
        let damaged = |why: String| {
            LaneError::Storage(format!(
                "lane '{lane}': its run settings in Redis are unreadable ({why}); declare the \
                 lane again"
            ))
        };
        let spec: LaneRunSpec =
            serde_json::from_str(raw).map_err(|error| damaged(error.to_string()))?;
        let retry = match spec.retry {
            None => None,
            Some(retry) => Some(
                RetryPolicy::builder()
                    .max_retries(retry.max_retries)
                    .initial_delay(Duration::from_micros(retry.initial_us))
                    .multiplier(retry.multiplier)
                    .max_delay(Duration::from_micros(retry.max_us))
                    .jitter(match retry.jitter {
                        1 => RetryJitter::Full,
                        2 => RetryJitter::Equal,
                        _ => RetryJitter::None,
                    })
                    .build()
                    .map_err(|error| damaged(error.to_string()))?,
            ),
        };
        Ok(Self {
            limits: lane_core::RunLimits {
                timeout: spec.timeout_us.map(Duration::from_micros),
                cancel_grace: Duration::from_micros(spec.grace_us),
            },
            retry,
        })
    }
}

/// `d` in whole microseconds, if that fits Redis' integers.
fn micros(d: Duration) -> Option<u64> {
    u64::try_from(d.as_micros())
        .ok()
        .filter(|us| *us <= i64::MAX as u64)
}

impl RedisLaneSpec {
    /// The retention as the scripts read it: commands kept per final state, and for how
    /// long in microseconds (checked by [`Retention::validate`]: at most a year).
    /// The group limits for declare.lua: '' for none, else JSON `{"d": limits, "o":
    /// {group: limits}}`, each limits `{"m": max concurrency (0: none), "i": the rate
    /// limit's interval (us, 0: none), "t": its tolerance (us)}` (see [`lane_core::group::Gcra`]).
    pub(crate) fn groups_arg(&self) -> String {
        if self.groups.is_unlimited() {
            return String::new();
        }
        let limits = |limits: &lane_core::GroupLimits| {
            let (interval, tolerance) =
                lane_core::group::Gcra::of(&limits.rate_limit).map_or((0.0, 0.0), |gcra| {
                    (
                        (gcra.interval.as_secs_f64() * 1e6).max(f64::MIN_POSITIVE),
                        gcra.tolerance.as_secs_f64() * 1e6,
                    )
                });
            serde_json::json!({
                "m": limits.max_concurrency.unwrap_or(0),
                "i": interval,
                "t": tolerance,
            })
        };
        let overrides: serde_json::Map<String, serde_json::Value> = self
            .groups
            .overrides
            .iter()
            .map(|(group, l)| (group.clone(), limits(l)))
            .collect();
        serde_json::json!({"d": limits(&self.groups.default), "o": overrides}).to_string()
    }

    pub(crate) fn retention_args(&self) -> (usize, u64) {
        (
            self.retention.keep_last(),
            micros(self.retention.keep_for()).unwrap_or(i64::MAX as u64),
        )
    }

    /// Checks `config` for the Redis engine: every option of the one lane model that
    /// Redis honours is taken; one it cannot honour is a [`LaneError::ConfigError`]
    /// naming the option and the engine, never silently dropped.
    pub(crate) fn from_config(lane: &str, config: &LaneConfig, priority: u8) -> Result<Self> {
        if lane.is_empty() || lane.contains('\n') {
            return Err(LaneError::ConfigError(format!(
                "lane id {lane:?} must be non-empty and hold no newline"
            )));
        }
        config.validate(lane)?;
        let unsupported = |option: &str, why: &str| {
            LaneError::ConfigError(format!(
                "lane '{lane}': {option} is not supported by the Redis engine: {why}"
            ))
        };
        if config.pressure_threshold.is_some() {
            return Err(unsupported(
                "pressure_threshold",
                "lane pressure events are emitted by the in-process queue only; leave it unset \
                 and watch the lane's pending count in RedisQueue::stats",
            ));
        }
        if config.budget().is_some() {
            return Err(unsupported(
                "a shared budget",
                "a SharedBudget is shared by the queues of one process; a Redis lane's caps, \
                 rate limit and group limits already hold across every worker, so give the \
                 lane (or its groups) the budget's limits instead",
            ));
        }
        if config.max_concurrency > i64::MAX as usize {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_concurrency {} is larger than Redis counters hold",
                config.max_concurrency
            )));
        }
        let rate_limit = match config.admission_policy() {
            None => RateLimitConfig::Unlimited,
            Some(policy) => policy.as_rate_limit().cloned().ok_or_else(|| {
                unsupported(
                    "a custom rate limit (AdmissionPolicy)",
                    "workers in other processes cannot run it; use RateLimitConfig",
                )
            })?,
        };
        let priority_boost = match config.priority_boost() {
            None => PriorityBoostConfig::disabled(),
            Some(boost) => boost.as_boost_config().cloned().ok_or_else(|| {
                unsupported(
                    "a custom priority boost (PriorityBoost)",
                    "Redis cannot run it; use PriorityBoostConfig",
                )
            })?,
        };
        if let Some(deadline) = priority_boost.deadline()
            && deadline < Duration::from_micros(1)
        {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': priority boost: the deadline {deadline:?} is shorter than the \
                 Redis clock's resolution of 1µs; use at least 1µs"
            )));
        }
        let too_long = |option: &str, d: Duration| {
            LaneError::ConfigError(format!(
                "lane '{lane}': {option} {d:?} is longer than the Redis engine can keep \
                 (2^63 microseconds); use a shorter one, or none"
            ))
        };
        let timeout_us = match config.timeout {
            None => None,
            Some(timeout) => Some(micros(timeout).ok_or_else(|| too_long("timeout", timeout))?),
        };
        if timeout_us == Some(0) {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': timeout {:?} is shorter than the Redis engine's resolution of 1µs",
                config.timeout.unwrap_or_default()
            )));
        }
        let grace_us = micros(config.cancel_grace)
            .ok_or_else(|| too_long("cancel_grace", config.cancel_grace))?;
        let retry = match config.retry_strategy() {
            None => None,
            Some(strategy) => {
                let policy = strategy.as_retry_policy().ok_or_else(|| {
                    unsupported(
                        "a custom retry strategy (RetryStrategy)",
                        "workers in other processes cannot run it; use RetryPolicy",
                    )
                })?;
                let initial_us = micros(policy.initial_delay())
                    .ok_or_else(|| too_long("retry initial_delay", policy.initial_delay()))?;
                let max_us = micros(policy.max_delay())
                    .ok_or_else(|| too_long("retry max_delay", policy.max_delay()))?;
                Some(RetrySpec {
                    max_retries: policy.max_retries(),
                    initial_us,
                    multiplier: policy.multiplier(),
                    max_us,
                    jitter: match policy.jitter() {
                        RetryJitter::None => 0,
                        RetryJitter::Full => 1,
                        RetryJitter::Equal => 2,
                    },
                })
            }
        };
        if config
            .max_waiting
            .is_some_and(|max| max > i64::MAX as usize)
        {
            return Err(LaneError::ConfigError(format!(
                "lane '{lane}': max_waiting {} is larger than Redis counters hold",
                config.max_waiting.unwrap_or_default()
            )));
        }
        Ok(Self {
            priority,
            max_concurrency: config.max_concurrency,
            rate_limit,
            priority_boost,
            run: LaneRunSpec {
                timeout_us,
                grace_us,
                retry,
            },
            max_waiting: config.max_waiting,
            groups: config.group_rules().as_ref().clone(),
            when_full: config.when_full,
            retention: config.retention,
        })
    }
}

/// Where a Redis queue lives and which lanes it has.
///
/// Every key of the queue starts with the hash tag `{prefix}` (default `{a3s-lane}`):
/// different prefixes are separate queues on the same server (tenants, tests), and in
/// Redis Cluster all of a queue's keys share one slot, so its scripts run on one node.
///
/// ```
/// use a3s_lane::{LaneConfig, RateLimitConfig, RedisQueueConfig, RetryPolicy};
/// use std::time::Duration;
///
/// let config = RedisQueueConfig::new("redis://127.0.0.1:6379")
///     .with_key_prefix("orders")
///     .with_default_lanes()
///     .with_lane("bulk", LaneConfig::new(1, 4), 9)
///     .with_lane(
///         "api",
///         LaneConfig::new(1, 10)
///             .with_timeout(Duration::from_secs(30))
///             .with_retry_policy(RetryPolicy::exponential(3))
///             .with_rate_limit(RateLimitConfig::per_second(50)),
///         2,
///     );
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
    pub(crate) lanes: Vec<(String, LaneConfig, u8)>,
    pub(crate) result_ttl: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_wait: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) tls: Option<RedisTls>,
    pub(crate) events: Option<bool>,
}

/// Certificates for encrypted connections (`rediss://` URLs) beyond what the system
/// trusts: the certificate authority that signed the server's certificate (a managed
/// Redis with a private CA, or a test server), and a client certificate when the server
/// asks for one (mutual TLS). Without it, `rediss://` checks the server against the
/// system's trusted roots. Its `Debug` shows no key.
///
/// ```
/// use a3s_lane::{RedisQueueConfig, RedisTls};
///
/// # let (ca, cert, key) = (Vec::new(), Vec::new(), Vec::new());
/// let config = RedisQueueConfig::new("rediss://app:secret@redis.internal:6380")
///     .with_tls(RedisTls::new().with_ca_pem(ca).with_client_cert_pem(cert, key));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RedisTls {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    /// No certificates yet: the server is checked against the system's trusted roots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the certificate authority (or authorities) in this PEM text instead of the
    /// system's roots.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate and its private key (both PEM) to a server that
    /// authenticates clients by certificate.
    pub fn with_client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client = Some((cert_pem.into(), key_pem.into()));
        self
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl RedisQueueConfig {
    /// The key prefix unless told otherwise (keys start with `{a3s-lane}`).
    pub const DEFAULT_KEY_PREFIX: &'static str = "a3s-lane";
    /// How long undelivered results stay, unless told otherwise.
    pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 3600);
    /// How long to wait for Redis to answer, unless told otherwise.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long one attempt to open a connection may take, unless told otherwise.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long a submit waits for Redis to come back, unless told otherwise.
    pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(5);
    /// The first pause between reconnect attempts, unless told otherwise.
    pub const DEFAULT_RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
    /// The longest pause between reconnect attempts, unless told otherwise: Redis coming
    /// back is noticed within about this long.
    pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

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

    /// A queue on the master that Redis Sentinel names, following it through failovers:
    /// `master` is the master's URL with its Sentinel name as the host
    /// (`redis://[user:password@]mymaster[/db]`, `rediss://` for TLS, with
    /// [`with_tls`](Self::with_tls) certificates), `sentinels` the sentinels' URLs
    /// (`redis://[user:password@]host:26379`). The master is looked up when connecting
    /// and again whenever a connection to it fails or it answers as a replica.
    pub fn sentinel<I, S>(master: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_endpoint(Endpoint::Sentinel {
            master: master.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
        })
    }

    fn with_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            prefix: Self::DEFAULT_KEY_PREFIX.into(),
            lanes: Vec::new(),
            result_ttl: Self::DEFAULT_RESULT_TTL,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            reconnect_wait: Self::DEFAULT_RECONNECT_WAIT,
            backoff: Backoff {
                min: Self::DEFAULT_RECONNECT_MIN_DELAY,
                max: Self::DEFAULT_RECONNECT_MAX_DELAY,
            },
            tls: None,
            events: None,
        }
    }

    /// Keys start with `{prefix}`; the prefix must not contain `{` or `}`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Declares a lane when connecting (updating it if it exists), as
    /// [`QueueManagerBuilder::with_lane`](lane_core::QueueManagerBuilder::with_lane) does
    /// in process: the same [`LaneConfig`], the same priority (lower runs first). Its cap,
    /// rate limit and priority boost hold over all workers; its timeout, cancel grace and
    /// retry policy are kept in Redis and every worker runs its commands with them. An
    /// option the Redis engine cannot honour fails [`validate`](Self::validate) with a
    /// `ConfigError` naming it.
    pub fn with_lane(mut self, id: impl Into<String>, config: LaneConfig, priority: u8) -> Self {
        self.lanes.push((id.into(), config, priority));
        self
    }

    /// Declares the six default lanes, as
    /// [`QueueManagerBuilder::with_default_lanes`](lane_core::QueueManagerBuilder::with_default_lanes)
    /// does (`system` 0/5 … `prompt` 5/2, as priority/max).
    pub fn with_default_lanes(mut self) -> Self {
        for (id, priority, max) in DEFAULT_LANES {
            self.lanes
                .push((id.to_owned(), LaneConfig::new(1, max), priority));
        }
        self
    }

    /// How long an undelivered result waits in its submitter's result list in Redis
    /// (default 24 h): the transport of results, not their record. What is kept of
    /// finished commands for [`command`](lane_core::QueueClient::command) and
    /// [`list_commands`](lane_core::QueueClient::list_commands) is each lane's
    /// [`Retention`](lane_core::Retention); dead letters stay until redriven or purged. A
    /// lane that keeps nothing ([`Retention::none`](lane_core::Retention::none)) still
    /// leaves each outcome in Redis, hidden from lookups, for this long, so that a
    /// producer whose connection broke as it took a result reads it again.
    pub fn with_result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// How long to wait for Redis to answer a command (default 5 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Whether the queue writes every command's lifecycle events and progress to its
    /// event stream in Redis, for [`RedisQueue::subscribe`](crate::RedisQueue::subscribe)
    /// in any process (on unless turned off). The setting is kept in Redis for the whole
    /// queue: connecting with `with_events(false)` turns it off for every producer and
    /// worker (workers read it when they start), `with_events(true)` on again; a config
    /// that does not call it leaves the setting as it is. Off saves the scripts their
    /// event writes (see the README's Redis benchmark rows); subscribers then see nothing.
    pub fn with_events(mut self, enabled: bool) -> Self {
        self.events = Some(enabled);
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

    /// How long a submit waits for Redis when it cannot be reached, restarts, fails over
    /// or is still loading its data (default 5 s). Within it, the submit is sent again
    /// with the same reference, which Redis recognises, so it is accepted once; after it,
    /// the submit fails with an error saying Redis is unreachable, and if Redis did
    /// receive it, it is withdrawn as soon as Redis answers again (cancelled, never run
    /// unannounced). Zero means one attempt.
    pub fn with_reconnect_wait(mut self, wait: Duration) -> Self {
        self.reconnect_wait = wait;
        self
    }

    /// The pauses between reconnect attempts: `first`, doubling up to `max` (default
    /// 50 ms up to 1 s). Producers and workers notice Redis is back within about `max`.
    pub fn with_reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = Backoff { min: first, max };
        self
    }

    /// Certificates for `rediss://` connections: a private certificate authority, a
    /// client certificate (see [`RedisTls`]). Refused with a `redis://` URL, which would
    /// not encrypt.
    pub fn with_tls(mut self, tls: RedisTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long a submit waits for Redis to come back.
    pub fn reconnect_wait(&self) -> Duration {
        self.reconnect_wait
    }

    /// The first and the longest pause between reconnect attempts.
    pub fn reconnect_backoff(&self) -> (Duration, Duration) {
        (self.backoff.min, self.backoff.max)
    }

    /// How long undelivered results stay in Redis (see
    /// [`with_result_ttl`](Self::with_result_ttl)).
    pub fn result_ttl(&self) -> Duration {
        self.result_ttl
    }

    /// How long to wait for Redis to answer a command.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// How long one attempt to open a connection may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
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
        for (name, value) in [
            ("result_ttl", self.result_ttl),
            ("response_timeout", self.response_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_wait", self.reconnect_wait),
            ("reconnect backoff max", self.backoff.max),
        ] {
            if value > MAX_DURATION {
                return Err(LaneError::ConfigError(format!(
                    "{name} of {value:?} is longer than the longest duration a queue \
                     accepts ({MAX_DURATION:?}, about 100 years)"
                )));
            }
        }
        if self.backoff.min.is_zero() || self.backoff.min > self.backoff.max {
            return Err(LaneError::ConfigError(format!(
                "reconnect backoff from {:?} to {:?}: the first pause must be longer than \
                 zero and no longer than the longest (for example 50 ms up to 1 s)",
                self.backoff.min, self.backoff.max
            )));
        }
        self.target()?;
        let mut seen = std::collections::HashSet::new();
        for (id, lane, priority) in &self.lanes {
            RedisLaneSpec::from_config(id, lane, *priority)?;
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
        self.endpoint.open(
            self.connect_timeout,
            self.backoff,
            self.reconnect_wait,
            self.tls.as_ref(),
        )
    }
}

/// How a [`RedisWorker`](crate::RedisWorker) takes part in a queue.
///
/// A worker has no address of its own: it talks to the Redis (server or cluster) of the
/// [`RedisQueue`](crate::RedisQueue) it is started on, over that queue's connection plus
/// one of its own for its wake list.
///
/// Everything about how a lane runs — priority, cap, rate limit, boost, timeout, cancel
/// grace, retry policy — is the lane's [`LaneConfig`], kept in Redis: every worker runs a
/// lane's commands alike. What stays with the worker is how much it takes on (`slots`)
/// and how it keeps its claims (lease, heartbeat).
///
/// ```
/// use a3s_lane::RedisWorkerConfig;
/// use std::time::Duration;
///
/// let config = RedisWorkerConfig::new(64).with_lease_ttl(Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert_eq!(RedisWorkerConfig::default().slots(), RedisWorkerConfig::DEFAULT_SLOTS);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RedisWorkerConfig {
    pub(crate) slots: usize,
    pub(crate) worker_id: Option<String>,
    pub(crate) lease_ttl: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) block_timeout: Duration,
}

impl Default for RedisWorkerConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SLOTS)
    }
}

impl RedisWorkerConfig {
    /// How many commands a worker runs at once unless told otherwise.
    pub const DEFAULT_SLOTS: usize = 16;
    /// How long a worker's claims stay its own without a heartbeat, unless told otherwise.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
    /// The longest an idle worker blocks on Redis before checking its connection.
    pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(30);

    /// A worker running at most `slots` commands at once; lease 15 s, heartbeat every 5 s.
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            worker_id: None,
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            heartbeat_interval: None,
            block_timeout: Self::DEFAULT_BLOCK_TIMEOUT,
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

    /// How many commands the worker runs at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The lease in effect.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// The block timeout in effect.
    pub fn block_timeout(&self) -> Duration {
        self.block_timeout
    }

    /// The heartbeat interval in effect.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval.unwrap_or(self.lease_ttl / 3)
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
        if micros(self.lease_ttl).is_none() {
            return error(format!(
                "lease_ttl {:?} is longer than Redis can keep; use seconds to minutes",
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lanes_retention_reaches_redis_and_is_checked() {
        let keep = LaneConfig::new(1, 2).with_retention(Retention::new(5, Duration::from_secs(2)));
        let spec = RedisLaneSpec::from_config("jobs", &keep, 0).unwrap();
        assert_eq!(spec.retention_args(), (5, 2_000_000));
        let default = RedisLaneSpec::from_config("jobs", &LaneConfig::new(1, 2), 0).unwrap();
        assert_eq!(
            default.retention_args(),
            (
                Retention::DEFAULT_KEEP_LAST,
                Retention::DEFAULT_KEEP_FOR.as_micros() as u64
            )
        );
        let none = LaneConfig::new(1, 2).with_retention(Retention::none());
        assert_eq!(
            RedisLaneSpec::from_config("jobs", &none, 0)
                .unwrap()
                .retention_args()
                .0,
            0
        );
        let bad = LaneConfig::new(1, 2).with_retention(Retention::new(1, Duration::ZERO));
        let error = RedisLaneSpec::from_config("jobs", &bad, 0).unwrap_err();
        assert!(error.to_string().contains("keep_for"), "{error}");
    }

    #[test]
    fn a_shared_budget_is_refused_saying_what_holds_instead() {
        let budget = lane_core::SharedBudget::new("llm", 4).unwrap().shared();
        let lane = LaneConfig::new(1, 2).with_budget(budget);
        let error = RedisLaneSpec::from_config("prompt", &lane, 0).unwrap_err();
        assert!(
            matches!(&error, LaneError::ConfigError(m) if m.contains("shared budget") && m.contains("every worker")),
            "{error}"
        );
    }

    #[test]
    fn the_scripts_default_retention_is_the_cores() {
        // For lanes declared before lanes kept a retention.
        let prelude = include_str!("lua/prelude.lua");
        for line in [
            format!(
                "local KEEP_LAST_DEFAULT = {}\n",
                Retention::DEFAULT_KEEP_LAST
            ),
            format!(
                "local KEEP_FOR_DEFAULT = {}\n",
                Retention::DEFAULT_KEEP_FOR.as_micros()
            ),
        ] {
            assert!(prelude.contains(&line), "{line}");
        }
    }
}
