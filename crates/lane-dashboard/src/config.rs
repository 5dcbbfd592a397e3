//! [`DashboardConfig`]: token, read-only mode, metrics, address, stream pacing.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use lane_metrics::QueueMetrics;

/// Where [`serve`](crate::serve) listens by default: loopback only, port 9090.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// How the dashboard behaves. Build it with [`DashboardConfig::new`] and the `with_*`
/// methods.
///
/// Its [`Debug`] output never shows the token.
#[derive(Clone)]
pub struct DashboardConfig {
    token: Option<String>,
    read_only: bool,
    metrics: Option<QueueMetrics>,
    title: String,
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    listening_addr: Option<SocketAddr>,
    addr: SocketAddr,
    batch_interval: Duration,
    idle_refresh: Duration,
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_only", &self.read_only)
            .field("metrics", &self.metrics.is_some())
            .field("title", &self.title)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("listening_addr", &self.listening_addr)
            .field("addr", &self.addr)
            .field("batch_interval", &self.batch_interval)
            .field("idle_refresh", &self.idle_refresh)
            .finish()
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DashboardConfig {
    /// No token (every action refused until one is set), not read-only, no metrics,
    /// title "a3s-lane", address [`DEFAULT_ADDR`], events pushed at most every 500 ms and
    /// counts refreshed every 5 s while the queue is idle.
    pub fn new() -> Self {
        Self {
            token: None,
            read_only: false,
            metrics: None,
            title: "a3s-lane".to_owned(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            listening_addr: None,
            addr: DEFAULT_ADDR,
            batch_interval: Duration::from_millis(500),
            idle_refresh: Duration::from_secs(5),
        }
    }

    /// The bearer token that actions (and payload views) need. An empty token is
    /// ignored (no token).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Read-only: every action is refused with 403, whatever the token.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The queue's [`QueueMetrics`] (the one given to
    /// `QueueManagerBuilder::with_metrics`): `/metrics` then adds its series, and the
    /// lanes page shows its throughput counters and wait / run percentiles.
    pub fn with_metrics(mut self, metrics: QueueMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The title shown on the pages (HTML-escaped).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Another origin (`https://ops.example.com`) whose pages may send actions, besides
    /// the dashboard's own (the hosts it accepts, see
    /// [`with_allowed_host`](Self::with_allowed_host)).
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Another host name (`dashboard.example.com`, or `dashboard.example.com:8443` for
    /// that port only) by which the dashboard may be reached, besides the address it
    /// listens on and the loopback names (`localhost`, `127.0.0.1`, `[::1]`). Every
    /// request whose `Host` is none of these is refused (421), so that a web page under
    /// another name pointed at this machine (DNS rebinding) cannot read the API.
    pub fn with_allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(
            host.into()
                .trim()
                .trim_end_matches('/')
                .to_ascii_lowercase(),
        );
        self
    }

    /// The address the server really listens on (after binding; port 0 resolved), whose
    /// `Host` the dashboard then accepts, the loopback names with this port only.
    /// [`serve`](crate::serve) sets it. Without it (the [`router`](crate::router)
    /// mounted in a server of your own) the loopback names are accepted on any port,
    /// plus the hosts of [`with_allowed_host`](Self::with_allowed_host).
    pub fn with_listening_addr(mut self, addr: SocketAddr) -> Self {
        self.listening_addr = Some(addr);
        self
    }

    /// Where [`serve`](crate::serve) listens ([`bind`](crate::bind)); loopback by
    /// default.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// How often the event stream pushes a batch while events arrive (500 ms by
    /// default; at least 10 ms).
    pub fn with_batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How often the event stream sends fresh counts while no event arrives (a timed
    /// pause ending, a rate limit lifting emit no event); 5 s by default, at least 1 s.
    pub fn with_idle_refresh(mut self, interval: Duration) -> Self {
        self.idle_refresh = interval.max(Duration::from_secs(1));
        self
    }

    /// The configured token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether actions are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The metrics given with [`with_metrics`](Self::with_metrics).
    pub fn metrics(&self) -> Option<&QueueMetrics> {
        self.metrics.as_ref()
    }

    /// The page title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The origins allowed besides the dashboard's own.
    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// The hosts allowed with [`with_allowed_host`](Self::with_allowed_host).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    /// The address given with [`with_listening_addr`](Self::with_listening_addr).
    pub fn listening_addr(&self) -> Option<SocketAddr> {
        self.listening_addr
    }

    /// The address [`serve`](crate::serve) listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The event stream's batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.batch_interval
    }

    /// The event stream's idle refresh interval.
    pub fn idle_refresh(&self) -> Duration {
        self.idle_refresh
    }
}
