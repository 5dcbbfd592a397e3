//! A web dashboard for a3s-lane queues: an [`axum::Router`] you mount in your own server
//! (or run with [`serve`]) over any [`QueueClient`] — the in-process `QueueManager` or a
//! Redis `RedisQueue`.
//!
//! What it serves (paths relative to where the router is mounted):
//!
//! | path | what |
//! | --- | --- |
//! | `/`, `/lanes`, `/commands`, `/dead-letters`, `/groups`, `/schedules` | the pages (plain HTML, CSS and one small script, embedded; no CDN) |
//! | `/api/…` | the JSON API behind the pages (see the crate README) |
//! | `/api/events` | server-sent events: batches of queue events and fresh counts, pushed from the queue's event subscription |
//! | `/metrics` | Prometheus text: the lanes' counts from [`QueueClient::stats`], and every series of a [`QueueMetrics`] given with [`DashboardConfig::with_metrics`] |
//!
//! Security: every action (pause, resume, cancel, redrive, delete, purge) is POST-only,
//! needs `Authorization: Bearer <token>` with the configured token (compared in constant
//! time), and is refused when the request comes from another site (`Origin`,
//! `Sec-Fetch-Site`). With no token configured, or in read-only mode, every action is
//! refused. When a token is set, command payloads and results are shown only to
//! requests carrying it. [`serve`] binds `127.0.0.1` by default and generates a token
//! when none is given.
//!
//! Every route checks the request's `Host` (against DNS rebinding): the listening
//! address (when known: [`serve`] and the SDKs set it, see
//! [`DashboardConfig::with_listening_addr`]), `localhost`, `127.0.0.1` and `[::1]`, and
//! the hosts of [`DashboardConfig::with_allowed_host`]; other hosts get 421. Mounted with
//! [`router`] in your own server, where the listening address is unknown, the loopback
//! names are accepted on any port: add the names your users reach it by with
//! [`DashboardConfig::with_allowed_host`]. An `Origin` is checked against the same hosts
//! (and [`DashboardConfig::with_allowed_origin`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use lane_core::{EventEmitter, QueueClient, QueueManagerBuilder};
//! use lane_dashboard::{DashboardConfig, router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = QueueManagerBuilder::new(EventEmitter::new(1024))
//!     .with_default_lanes()
//!     .with_dlq(1000)
//!     .build()
//!     .await?;
//! manager.start().await?;
//! let client: Arc<dyn QueueClient> = Arc::new(manager);
//! let config = DashboardConfig::new().with_token("a-long-random-secret");
//! let app = axum::Router::new().nest("/dashboard", router(client, config));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod api;
mod assets;
mod config;
mod error;
mod events;
mod prometheus;
mod security;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use lane_core::QueueClient;
use tokio::net::TcpListener;

pub use config::{DEFAULT_ADDR, DashboardConfig};
pub use error::ApiError;
pub use lane_metrics::QueueMetrics;
pub use security::generate_token;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) client: Arc<dyn QueueClient>,
    pub(crate) config: Arc<DashboardConfig>,
    /// Under [`serve`]: turns true when the server shuts down, so that open event streams
    /// end (a graceful shutdown waits for every open response).
    pub(crate) closing: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The dashboard as a router over `client`: pages, the JSON API under `/api`, server-sent
/// events at `/api/events` and Prometheus text at `/metrics`. Mount it at the root or
/// under a prefix with [`Router::nest`]; the pages find their API relative to where they
/// are served.
pub fn router(client: Arc<dyn QueueClient>, config: DashboardConfig) -> Router {
    router_closing(client, config, None)
}

fn router_closing(
    client: Arc<dyn QueueClient>,
    config: DashboardConfig,
    closing: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    let state = AppState {
        client,
        config: Arc::new(config),
        closing,
    };
    let actions = Router::new()
        .route("/api/lanes/{lane}/pause", post(api::pause_lane))
        .route("/api/lanes/{lane}/resume", post(api::resume_lane))
        .route("/api/lanes/{lane}/pause-for", post(api::pause_lane_for))
        .route(
            "/api/lanes/{lane}/groups/{group}/pause",
            post(api::pause_group),
        )
        .route(
            "/api/lanes/{lane}/groups/{group}/resume",
            post(api::resume_group),
        )
        .route("/api/commands/{id}/cancel", post(api::cancel_command))
        .route("/api/dead-letters/{id}/redrive", post(api::redrive))
        .route(
            "/api/dead-letters/{id}/delete",
            post(api::delete_dead_letter),
        )
        .route("/api/dead-letters/redrive-all", post(api::redrive_all))
        .route("/api/dead-letters/purge", post(api::purge))
        .route("/api/schedules/{name}/pause", post(api::pause_schedule))
        .route("/api/schedules/{name}/resume", post(api::resume_schedule))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_action_rights,
        ));
    Router::new()
        .route("/", get(assets::page))
        .route("/lanes", get(assets::page))
        .route("/commands", get(assets::page))
        .route("/dead-letters", get(assets::page))
        .route("/groups", get(assets::page))
        .route("/schedules", get(assets::page))
        .route("/assets/app.js", get(assets::script))
        .route("/assets/style.css", get(assets::style))
        .route("/api/overview", get(api::overview))
        .route("/api/lanes", get(api::lanes))
        .route("/api/lanes/{lane}/commands", get(api::lane_commands))
        .route("/api/lanes/{lane}/groups", get(api::lane_groups))
        .route("/api/commands/{id}", get(api::command))
        .route("/api/dead-letters", get(api::dead_letters))
        .route("/api/dead-letters/{id}", get(api::dead_letter))
        .route("/api/schedules", get(api::schedules))
        .route("/api/events", get(events::stream))
        .route("/metrics", get(prometheus::metrics))
        .merge(actions)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_known_host,
        ))
        .layer(axum::middleware::from_fn(security::response_headers))
        .with_state(state)
}

/// Serves the dashboard over `client` on `listener` until `shutdown` resolves; then open
/// event streams end and requests in flight finish before it returns.
///
/// The address is printed to standard error (never with a token in it). A token is
/// needed for actions and payloads: the configured one, or one made here with
/// [`generate_token`] (also in read-only mode, where it only unlocks payloads and
/// results), printed once to standard error only when that is a terminal; otherwise
/// set your own with [`DashboardConfig::with_token`]. Requests are accepted only for
/// the listening address, the loopback names and the hosts of
/// [`DashboardConfig::with_allowed_host`]. Use [`bind`] to get a
/// listener on the configured address (`127.0.0.1:9090` by default).
pub async fn serve(
    listener: TcpListener,
    client: Arc<dyn QueueClient>,
    mut config: DashboardConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    config = config.with_listening_addr(addr);
    // The token never goes into a URL in the logs; it is printed only to a terminal.
    eprintln!("a3s-lane dashboard: http://{addr}/");
    if config.token().is_none() {
        let token = generate_token();
        let what = if config.is_read_only() {
            "read-only: actions are off; the token shows payloads and results"
        } else {
            "actions (and payloads) need the header `Authorization: Bearer <token>`"
        };
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!("{what}; the token is {token} (shown once)");
        } else {
            eprintln!(
                "{what}; a token was generated and is not logged: set your own \
                 (A3S_LANE_DASHBOARD_TOKEN for the CLI, DashboardConfig::with_token) to \
                 use it"
            );
        }
        config = config.with_token(token);
    }
    if !addr.ip().is_loopback() {
        eprintln!(
            "a3s-lane dashboard: listening on {addr}, which is reachable from other machines"
        );
    }
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    axum::serve(listener, router_closing(client, config, Some(closing_rx)))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open event streams end now; the shutdown then waits for nothing endless.
            let _ = closing.send(true);
        })
        .await
}

/// Serves `app` (a [`router`]) on `listener` until `stop` resolves, each connection on
/// a task of its own; then drops the listener and every open connection at once, open
/// event streams included, so the port is closed when this returns. For embedders (the
/// Python and Node SDKs) that stop a dashboard on demand and must not print its token.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    connections.spawn(async move {
                        let builder = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        );
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service).await;
                    });
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Where to open a dashboard listening on `addr`: its own address, or loopback when it
/// listens on every interface. It holds no token.
pub fn url_of(addr: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", std::net::SocketAddr::new(ip, addr.port()))
}

/// Binds a listener on the configured address ([`DashboardConfig::with_addr`];
/// `127.0.0.1:9090` by default).
pub async fn bind(config: &DashboardConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(config.addr()).await
}
