//! Redis Sentinel: the queue's master is looked up from the sentinels (`SENTINEL
//! GET-MASTER-ADDR-BY-NAME`), checked with `ROLE`, and looked up again whenever a
//! connection to it fails, so a failover moves the queue to the promoted replica.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, TlsCertificates, Value,
};

/// Where the sentinels are and how to reach the master they name.
pub(crate) struct SentinelTarget {
    /// The sentinels, as configured.
    pub(crate) sentinels: Vec<ConnectionInfo>,
    /// The master's name in the sentinels' configuration.
    pub(crate) master: String,
    /// The master's connection settings (credentials, database, TLS); its address is
    /// replaced by the one the sentinels report.
    pub(crate) template: ConnectionInfo,
    pub(crate) tls: Option<TlsCertificates>,
    pub(crate) connect_timeout: Duration,
}

impl SentinelTarget {
    /// The sentinels' addresses, for messages.
    pub(crate) fn describe(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|info| info.addr().to_string())
            .collect();
        format!(
            "master '{}' of the sentinels at {}",
            self.master,
            sentinels.join(", ")
        )
    }

    fn client(&self, info: ConnectionInfo) -> RedisResult<redis::Client> {
        match (&self.tls, info.addr()) {
            (Some(tls), ConnectionAddr::TcpTls { .. }) => {
                redis::Client::build_with_tls(info, tls.clone())
            }
            _ => redis::Client::open(info),
        }
    }

    /// Asks the sentinels, in order, where the master is, connects to it and checks it
    /// is a master (a sentinel may still name a demoted one during a failover).
    pub(crate) async fn connect_master(
        &self,
        response_timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let mut last_error = None;
        for sentinel in &self.sentinels {
            let asked = async {
                let mut conn = self
                    .client(sentinel.clone())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            let (host, port) = match asked.await {
                Ok(Some(address)) => address,
                Ok(None) => {
                    last_error = Some(RedisError::from((
                        ErrorKind::InvalidClientConfig,
                        "the sentinel does not monitor this master name",
                        format!("'{}' at {}", self.master, sentinel.addr()),
                    )));
                    continue;
                }
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            };
            let addr = match self.template.addr() {
                ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: None,
                },
                _ => ConnectionAddr::Tcp(host, port),
            };
            let info = self.template.clone().set_addr(addr);
            let connected = async {
                let mut conn = self
                    .client(info)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
                match role.first() {
                    Some(Value::BulkString(role)) if role.as_slice() == b"master" => Ok(conn),
                    _ => Err(RedisError::from((
                        ErrorKind::Server(ServerErrorKind::ReadOnly),
                        "the sentinels name a server that is not (or no longer) a master",
                    ))),
                }
            };
            match connected.await {
                Ok(conn) => return Ok(conn),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel configured"))
        }))
    }
}

/// The shared connection of a queue behind sentinels: a connection to the current
/// master, opened when first needed and again after any failure that may mean the
/// master moved (a broken connection, a timeout, a READONLY reply from a demoted one).
#[derive(Clone)]
pub(crate) struct SentinelConn {
    shared: Arc<Shared>,
}

struct Shared {
    target: Arc<SentinelTarget>,
    response_timeout: Duration,
    /// The master's connection and its generation (so a failure forgets only the
    /// connection it happened on).
    current: Mutex<(u64, Option<MultiplexedConnection>)>,
    /// One lookup at a time; held only while looking up, never across user code.
    lookup: tokio::sync::Mutex<()>,
}

impl SentinelConn {
    pub(crate) fn new(target: Arc<SentinelTarget>, response_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                target,
                response_timeout,
                current: Mutex::new((0, None)),
                lookup: tokio::sync::Mutex::new(()),
            }),
        }
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let (generation, Some(conn)) = &*self.shared.current.lock() {
            return Ok((*generation, conn.clone()));
        }
        let _lookup = self.shared.lookup.lock().await;
        if let (generation, Some(conn)) = &*self.shared.current.lock() {
            return Ok((*generation, conn.clone()));
        }
        let conn = self
            .shared
            .target
            .connect_master(self.shared.response_timeout)
            .await?;
        let mut current = self.shared.current.lock();
        current.0 += 1;
        current.1 = Some(conn.clone());
        Ok((current.0, conn))
    }

    fn failed(&self, generation: u64, error: &RedisError) {
        let moved = !matches!(error.kind(), ErrorKind::Server(_))
            || error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            || error.kind() == ErrorKind::Server(ServerErrorKind::MasterDown);
        if moved {
            let mut current = self.shared.current.lock();
            if current.0 == generation {
                current.1 = None;
            }
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.failed(generation, error);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_commands(cmd, offset, count).await;
            if let Err(error) = &result {
                self.failed(generation, error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.target.template.redis_settings().db()
    }
}
