//! Where a queue lives (one Redis server or a Redis Cluster) and the connections to it:
//! the shared connection that runs the scripts, and the dedicated connections of the
//! blocking listeners (BLPOP loops of the producer and the worker).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::sync::oneshot;

use lane_core::{LaneError, Result};

use crate::config::RedisTls;
use crate::sentinel::{SentinelConn, SentinelTarget};

/// Where the queue's Redis is, as configured. Its `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// One server (or a proxy in front of several).
    Server(String),
    /// Seed nodes of a Redis Cluster; the others are discovered from them.
    Cluster(Vec<String>),
    /// A master found through Redis Sentinel: the master's URL with its name as the host
    /// (`redis://user:password@mymaster/0`), and the sentinels' URLs.
    Sentinel {
        master: String,
        sentinels: Vec<String>,
    },
}

/// How to open connections to the queue's Redis: checked addresses and timeouts.
pub(crate) struct Target {
    kind: Kind,
    connect_timeout: Duration,
    /// Pauses between reconnect attempts.
    pub(crate) backoff: Backoff,
    /// How long a submit waits for Redis to come back.
    pub(crate) reconnect_wait: Duration,
}

/// Pauses between reconnect attempts: `min`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The pause after `current`.
    pub(crate) fn next(&self, current: Duration) -> Duration {
        current.saturating_mul(2).clamp(self.min, self.max)
    }
}

/// A Redis URL as it may be shown: without its password.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            let hidden = if credentials.contains(':') {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

enum Kind {
    Server {
        client: redis::Client,
        addr: String,
    },
    Cluster {
        nodes: Vec<ConnectionInfo>,
        addrs: Vec<String>,
        tls: Option<TlsCertificates>,
    },
    Sentinel(Arc<SentinelTarget>),
}

/// The redis crate's form of the configured certificates.
fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.clone(),
        }),
        root_cert: tls.ca_pem.clone(),
    }
}

/// Certificates only make sense with encryption: a `redis://` URL would ignore them.
fn check_tls_url(url: &str, info: &ConnectionInfo, tls: Option<&RedisTls>) -> Result<()> {
    if tls.is_some() && !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(LaneError::ConfigError(format!(
            "TLS certificates are configured but '{}' does not use TLS: write rediss:// \
             instead of redis:// (or drop with_tls)",
            redact_url(url)
        )));
    }
    Ok(())
}

/// rustls needs a process-wide crypto provider; installed once, unless the application
/// installed its own.
fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(url) => f.debug_tuple("Server").field(&redact_url(url)).finish(),
            Self::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>())
                .finish(),
            Self::Sentinel { master, sentinels } => f
                .debug_struct("Sentinel")
                .field("master", &redact_url(master))
                .field(
                    "sentinels",
                    &sentinels
                        .iter()
                        .map(|url| redact_url(url))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

impl Endpoint {
    /// Checks the addresses; the error names the bad one and says what is expected.
    pub(crate) fn open(
        &self,
        connect_timeout: Duration,
        backoff: Backoff,
        reconnect_wait: Duration,
        tls: Option<&RedisTls>,
    ) -> Result<Target> {
        install_crypto_provider();
        let kind = match self {
            Self::Server(url) => {
                let info = parse_url(url)?;
                check_tls_url(url, &info, tls)?;
                let addr = info.addr().to_string();
                let client = match tls {
                    Some(tls) => redis::Client::build_with_tls(info, certificates(tls)),
                    None => redis::Client::open(info),
                };
                let client = client.map_err(|error| {
                    LaneError::ConfigError(format!(
                        "invalid Redis URL '{}': {error}",
                        redact_url(url)
                    ))
                })?;
                Kind::Server { client, addr }
            }
            Self::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(LaneError::ConfigError(
                        "a Redis Cluster needs the URL of at least one of its nodes \
                         (redis://host:port); the others are discovered from it"
                            .into(),
                    ));
                }
                let mut nodes = Vec::with_capacity(urls.len());
                for url in urls {
                    let info = parse_url(url)?;
                    if matches!(info.addr(), ConnectionAddr::Unix(_)) {
                        return Err(LaneError::ConfigError(format!(
                            "cluster node '{}' is a Unix socket; Redis Cluster nodes are \
                             reached over TCP: use redis://host:port",
                            redact_url(url)
                        )));
                    }
                    if info.redis_settings().db() != 0 {
                        return Err(LaneError::ConfigError(format!(
                            "cluster node '{}' selects database {}; Redis Cluster has only \
                             database 0: drop the /{} from the URL",
                            redact_url(url),
                            info.redis_settings().db(),
                            info.redis_settings().db()
                        )));
                    }
                    check_tls_url(url, &info, tls)?;
                    nodes.push(info);
                }
                let tls = tls.map(certificates);
                // Mixed credentials, protocols or TLS modes among the nodes.
                let mut builder = ClusterClientBuilder::new(nodes.clone());
                if let Some(tls) = &tls {
                    builder = builder.certs(tls.clone());
                }
                builder.build().map_err(|error| {
                    LaneError::ConfigError(format!(
                        "the Redis Cluster node URLs do not agree: {error}"
                    ))
                })?;
                let addrs = nodes.iter().map(|info| info.addr().to_string()).collect();
                Kind::Cluster { nodes, addrs, tls }
            }
            Self::Sentinel { master, sentinels } => {
                let template = parse_url(master)?;
                check_tls_url(master, &template, tls)?;
                let name = match template.addr() {
                    ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => {
                        host.clone()
                    }
                    _ => {
                        return Err(LaneError::ConfigError(format!(
                            "the master URL '{}' is a Unix socket; a Sentinel master is named \
                             by its host part: redis://[user:password@]MASTER_NAME[/db]",
                            redact_url(master)
                        )));
                    }
                };
                if sentinels.is_empty() {
                    return Err(LaneError::ConfigError(
                        "Redis Sentinel needs the URL of at least one sentinel \
                         (redis://host:26379)"
                            .into(),
                    ));
                }
                let sentinels = sentinels
                    .iter()
                    .map(|url| parse_url(url))
                    .collect::<Result<Vec<_>>>()?;
                Kind::Sentinel(Arc::new(SentinelTarget {
                    sentinels,
                    master: name,
                    template,
                    tls: tls.map(certificates),
                    connect_timeout,
                }))
            }
        };
        Ok(Target {
            kind,
            connect_timeout,
            backoff,
            reconnect_wait,
        })
    }
}

fn parse_url(url: &str) -> Result<ConnectionInfo> {
    url.into_connection_info().map_err(|error| {
        LaneError::ConfigError(format!(
            "invalid Redis URL '{}': {error}; expected redis://[user:password@]host:port[/db] \
             (rediss:// for TLS)",
            redact_url(url)
        ))
    })
}

impl Target {
    /// Opens the shared connection that runs scripts and commands. A server that cannot
    /// be reached fails within the connect timeout, naming its address.
    pub(crate) async fn connect(&self, response_timeout: Duration) -> Result<Conn> {
        let unreachable = |error: &dyn std::fmt::Display| self.unreachable(error);
        match &self.kind {
            Kind::Server { client, .. } => {
                // One attempt first: the manager retries a failed connect for seconds.
                let probe = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                let attempt = tokio::time::timeout(
                    self.connect_timeout,
                    client.get_multiplexed_async_connection_with_config(&probe),
                )
                .await;
                match attempt {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(unreachable(&error)),
                    Err(_) => return Err(unreachable(&"no answer within the connect timeout")),
                }
                // A lost connection is reopened at the next call, one quick retry at most:
                // a call while Redis is down fails at once with the connect error (so it
                // is known not to have reached Redis), and callers wait with the queue's
                // backoff (Target::backoff, Target::reconnect_wait).
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_min_delay(self.backoff.min)
                    .set_max_delay(self.backoff.max)
                    .set_exponent_base(2.0)
                    .set_number_of_retries(1);
                let manager = tokio::time::timeout(
                    self.connect_timeout,
                    ConnectionManager::new_with_config(client.clone(), config),
                )
                .await;
                match manager {
                    Ok(Ok(manager)) => Ok(Conn::Managed(manager)),
                    Ok(Err(error)) => Err(unreachable(&error)),
                    Err(_) => Err(unreachable(&"no answer within the connect timeout")),
                }
            }
            Kind::Cluster { .. } => {
                // The seeds, then the topology (a response), then the other masters, each
                // step bounded by the client; a master that cannot be reached is skipped.
                let connected = tokio::time::timeout(
                    self.connect_timeout * 2 + response_timeout,
                    self.connect_cluster(response_timeout),
                )
                .await;
                match connected {
                    Ok(Ok(conn)) => Ok(Conn::Cluster(conn)),
                    Ok(Err(error)) => Err(unreachable(&error)),
                    Err(_) => Err(unreachable(&"no answer within the connect timeout")),
                }
            }
            Kind::Sentinel(target) => {
                // Find the master once now, so a wrong address fails here.
                let found = tokio::time::timeout(
                    self.connect_timeout * 2 + response_timeout,
                    target.connect_master(response_timeout),
                )
                .await;
                match found {
                    Ok(Ok(_)) => Ok(Conn::Sentinel(SentinelConn::new(
                        target.clone(),
                        response_timeout,
                    ))),
                    Ok(Err(error)) => Err(unreachable(&error)),
                    Err(_) => Err(unreachable(&"no answer within the connect timeout")),
                }
            }
        }
    }

    /// Opens a dedicated connection whose response timeout outlasts a `block`-long BLPOP
    /// (a blocked command would hold up everything else on a shared connection). On a
    /// cluster it is a cluster connection of its own, so the BLPOP goes to the node that
    /// holds the queue's slot and follows it when the slot moves.
    async fn connect_blocking(&self, block: Duration) -> RedisResult<Conn> {
        let response_timeout = block + Duration::from_secs(5);
        match &self.kind {
            Kind::Server { client, .. } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Direct)
            }
            Kind::Cluster { .. } => self
                .connect_cluster(response_timeout)
                .await
                .map(Conn::Cluster),
            Kind::Sentinel(target) => target
                .connect_master(response_timeout)
                .await
                .map(Conn::Direct),
        }
    }

    async fn connect_cluster(&self, response_timeout: Duration) -> RedisResult<ClusterConnection> {
        let Kind::Cluster { nodes, tls, .. } = &self.kind else {
            unreachable!("only cluster targets connect as a cluster")
        };
        let mut builder = ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(self.connect_timeout)
            .response_timeout(response_timeout);
        if let Some(tls) = tls {
            builder = builder.certs(tls.clone());
        }
        builder.build()?.get_async_connection().await
    }

    /// The address (or the cluster's seed addresses), without credentials.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Server { addr, .. } => addr.clone(),
            Kind::Cluster { addrs, .. } => addrs.join(", "),
            Kind::Sentinel(target) => target.describe(),
        }
    }

    fn unreachable(&self, error: &dyn std::fmt::Display) -> LaneError {
        let text = error.to_string();
        let lower = text.to_lowercase();
        // Reached, but refused: the network hints below would mislead.
        if lower.contains("certificate") || lower.contains("tls") {
            return LaneError::Storage(format!(
                "cannot connect to Redis at {}: {text}; the TLS handshake failed: check that \
                 the server's certificate is signed by a CA this process trusts \
                 (RedisTls::with_ca_pem for a private CA) and names the host in the URL, and \
                 that a client certificate is given (RedisTls::with_client_cert_pem) if the \
                 server asks for one",
                self.describe()
            ));
        }
        if lower.contains("wrongpass") || lower.contains("auth") || lower.contains("noperm") {
            return LaneError::Storage(format!(
                "cannot connect to Redis at {}: {text}; Redis refused the credentials: check \
                 the user name and password in the URL (redis://USER:PASSWORD@HOST:PORT) and \
                 that the ACL user may run scripts and the queue's keys",
                self.describe()
            ));
        }
        LaneError::Storage(match &self.kind {
            Kind::Server { addr, .. } => format!(
                "cannot connect to Redis at {addr}: {error}; check that a Redis server listens \
                 there and is reachable from this machine (redis-cli -h HOST -p PORT ping), \
                 or raise the connect timeout ({:?}) for a slow network",
                self.connect_timeout
            ),
            Kind::Cluster { addrs, .. } => format!(
                "cannot connect to the Redis Cluster at {}: {error}; check that the nodes run \
                 with cluster-enabled yes, that `redis-cli -h HOST -p PORT cluster info` shows \
                 cluster_state:ok, and that every node is reachable from this machine at the \
                 address the cluster announces, or raise the connect timeout ({:?})",
                addrs.join(", "),
                self.connect_timeout
            ),
            Kind::Sentinel(target) => format!(
                "cannot connect to the {}: {error}; check that the sentinels run and monitor \
                 that master name (redis-cli -h HOST -p PORT sentinel get-master-addr-by-name \
                 NAME), and that the master they name is reachable from this machine, or \
                 raise the connect timeout ({:?})",
                target.describe(),
                self.connect_timeout
            ),
        })
    }
}

/// A connection to the queue's Redis: the shared one of a single server (reconnects by
/// itself), a dedicated one to a single server (for blocking commands), or a cluster
/// connection (routes each command to the node holding its key's slot and follows
/// MOVED and ASK redirections). Scripts run on any of them: EVALSHA goes to the node of
/// its first key, and a NOSCRIPT reply makes `redis::Script` load the script on every
/// node and try again.
#[derive(Clone)]
pub(crate) enum Conn {
    Managed(ConnectionManager),
    Direct(MultiplexedConnection),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Managed(conn) => conn.req_packed_command(cmd),
            Self::Direct(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Managed(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Direct(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Sentinel(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(conn) => conn.get_db(),
            Self::Direct(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
            Self::Sentinel(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    /// Runs a command that names no key (SCAN) on the node holding `key`'s slot; a
    /// cluster connection would otherwise pick any node.
    pub(crate) async fn query_at<T: FromRedisValue>(
        &mut self,
        key: &str,
        cmd: Cmd,
    ) -> RedisResult<T> {
        match self {
            Self::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = conn.route_command(cmd, routing).await?;
                Ok(T::from_redis_value(value)?)
            }
            _ => cmd.query_async(self).await,
        }
    }
}

/// Opens a blocking listener's connection, retrying with the queue's backoff until it
/// succeeds, or `None` once `stop` fires. `on_retry` runs after each failed attempt;
/// `what` names the listener in logs (one line when Redis cannot be reached, one when
/// it can again).
pub(super) async fn connect_listener(
    target: &Target,
    block: Duration,
    stop: &mut oneshot::Receiver<()>,
    what: &str,
    mut on_retry: impl FnMut(),
) -> Option<Conn> {
    let mut backoff = target.backoff.min;
    let mut failed = false;
    loop {
        let connected = tokio::select! {
            _ = &mut *stop => return None,
            connected = target.connect_blocking(block) => connected,
        };
        match connected {
            Ok(connection) => {
                if failed {
                    tracing::info!("{what} reaches Redis again");
                }
                return Some(connection);
            }
            Err(error) => {
                if !failed {
                    failed = true;
                    tracing::warn!(%error, "{what} cannot reach Redis; retrying until it answers");
                }
                tokio::select! {
                    _ = &mut *stop => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = target.backoff.next(backoff);
                on_retry();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_appear_in_shown_urls() {
        assert_eq!(
            redact_url("redis://app:s3cret@cache:6379/2"),
            "redis://app:***@cache:6379/2"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@cache:6380"),
            "rediss://:***@cache:6380"
        );
        assert_eq!(redact_url("redis://app@cache"), "redis://app@cache");
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
