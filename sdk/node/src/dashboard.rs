//! `serveDashboard()`: the web dashboard of `lane-dashboard` (pages, JSON API, live
//! events, Prometheus `/metrics`) served for a queue in the background, on the addon's
//! tokio runtime; [`Dashboard`] is what it resolves with.
//!
//! The router is `lane_dashboard::router`; the server is `lane_dashboard::serve_until` rather
//! than `lane_dashboard::serve`, which prints a generated token (the caller gets it as
//! `dashboard.token` instead): `close()` here stops accepting, drops every open connection
//! (event streams included) and resolves once the port no longer answers.
//!
//! A serving dashboard keeps the process alive, as a listening `http.Server` does, until
//! `close()` or the queue's `shutdown()` (or the queue being garbage collected).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use a3s_lane::QueueClient;
use lane_dashboard::{DashboardConfig, QueueMetrics};
use napi_derive::napi;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::convert::{At, Js, options_object};
use crate::error::JsFailure;
use crate::runtime::{Bridge, Mail, Settle, spawn};

/// Where and how `serveDashboard` serves
/// (`{ host: '127.0.0.1', port: 9090, token, readOnly: false, title }`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct DashboardOptions {
    /// The IP address to listen on: `'127.0.0.1'` (this machine only, the default),
    /// `'0.0.0.0'` for every interface (anyone who reaches it sees the queue's lanes and
    /// counts).
    #[napi(ts_type = "string")]
    pub host: Option<Js<String>>,
    /// The port, 0 to 65535 (default 9090); 0 for any free port (`url` says which).
    #[napi(ts_type = "number")]
    pub port: Option<Js<f64>>,
    /// The bearer token actions (pause, resume, cancel, redrive, delete) need, and
    /// payloads are shown with; left out, a random one is generated (never printed: read
    /// it from `dashboard.token`).
    #[napi(ts_type = "string")]
    pub token: Option<Js<String>>,
    /// Refuse every action, whatever the token (payloads and results still need the
    /// token, generated when left out); default false.
    #[napi(ts_type = "boolean")]
    pub read_only: Option<Js<bool>>,
    /// The title of the pages (default `'a3s-lane'`).
    #[napi(ts_type = "string")]
    pub title: Option<Js<String>>,
}

options_object!(
    DashboardOptions,
    "an object like { host: '127.0.0.1', port: 9090 }",
    ["host", "port", "token", "readOnly", "title"]
);

/// The checked options.
pub(crate) struct Request {
    addr: SocketAddr,
    token: Option<String>,
    read_only: bool,
    title: Option<String>,
}

impl DashboardOptions {
    /// The options, checked.
    pub(crate) fn into_request(self) -> Result<Request, JsFailure> {
        let at = At::argument("options");
        let ip = at
            .field("host", self.host, |at, host| {
                host.parse::<IpAddr>().map_err(|_| {
                    at.range_error(format!(
                        "{} must be an IP address, such as '127.0.0.1' (this machine only, the \
                         default) or '0.0.0.0' (every interface), got {host:?}",
                        at.path()
                    ))
                })
            })?
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = at
            .field("port", self.port, |at, port| {
                if port.is_finite() && port.fract() == 0.0 && (0.0..=65535.0).contains(&port) {
                    Ok(port as u16)
                } else {
                    Err(at.range_error(format!(
                        "{} must be a whole number from 0 to 65535 (0: any free port), got {}",
                        at.path(),
                        crate::convert::number_text(port)
                    )))
                }
            })?
            .unwrap_or(lane_dashboard::DEFAULT_ADDR.port());
        let token = at.field("token", self.token, |at, token| {
            if token.is_empty() {
                Err(at.range_error(format!(
                    "{} must not be empty: give a long random secret, or leave it out to have \
                     one generated",
                    at.path()
                )))
            } else {
                Ok(token)
            }
        })?;
        let read_only = at
            .field("readOnly", self.read_only, |_, read_only| Ok(read_only))?
            .unwrap_or(false);
        let title = at.field("title", self.title, |_, title| Ok(title))?;
        Ok(Request {
            addr: SocketAddr::new(ip, port),
            token,
            read_only,
            title,
        })
    }
}

/// One dashboard being served: a stop signal and the news that it stopped.
#[derive(Debug)]
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
}

/// The serving side of a [`Serving`].
struct Control {
    stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
}

impl Serving {
    fn new() -> (Arc<Self>, Control) {
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        (
            Arc::new(Self { stop, stopped }),
            Control {
                stop: stop_rx,
                stopped: stopped_tx,
            },
        )
    }

    /// Asks the server to stop (it drops its listener and connections at once).
    fn signal(&self) {
        self.stop.send_replace(true);
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Resolves once the server is gone.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

/// The dashboards served for one queue; closed with it.
#[derive(Debug, Default)]
pub(crate) struct Dashboards(Mutex<Served>);

#[derive(Debug, Default)]
struct Served {
    list: Vec<Arc<Serving>>,
    /// The queue was shut down: no dashboard is served for it any more.
    shut: bool,
}

impl Dashboards {
    /// Keeps `serving` to close with the queue; false if the queue was shut down.
    fn add(&self, serving: Arc<Serving>) -> bool {
        let mut served = self.0.lock();
        if served.shut {
            return false;
        }
        served.list.retain(|serving| !serving.is_stopped());
        served.list.push(serving);
        true
    }

    /// Stops every dashboard of the queue now (the queue serves none any more); the
    /// future resolves once they are gone.
    pub(crate) fn close_all(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let list = {
            let mut served = self.0.lock();
            served.shut = true;
            std::mem::take(&mut served.list)
        };
        for serving in &list {
            serving.signal();
        }
        async move {
            for serving in list {
                serving.stopped().await;
            }
        }
    }
}

impl Drop for Dashboards {
    fn drop(&mut self) {
        // The queue is being collected: its dashboards stop.
        for serving in self.0.get_mut().list.drain(..) {
            serving.signal();
        }
    }
}

/// Resolves once the stop is signalled, or nobody can signal it any more.
async fn stop_signal(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Why the dashboard could not listen at `addr`, and what to do.
fn listen_failure(addr: SocketAddr, error: &std::io::Error) -> JsFailure {
    let (code, hint) = match error.kind() {
        std::io::ErrorKind::AddrInUse => (
            "EADDRINUSE",
            "; another server uses it: pick another port, or port: 0 for any free one",
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            ("EADDRNOTAVAIL", "; host must be an address of this machine")
        }
        std::io::ErrorKind::PermissionDenied => (
            "EACCES",
            "; ports below 1024 need privileges: pick a port of 1024 or more",
        ),
        _ => ("LISTEN", ""),
    };
    JsFailure::error(
        code,
        format!("the dashboard could not listen on {addr}: {error}{hint}"),
    )
}

/// Serves the dashboard of the queue `client` gives, settling the promise of `token`
/// with its [`Dashboard`] once it listens (see `serveDashboard`).
pub(crate) fn serve<F>(
    dashboards: &Dashboards,
    bridge: Arc<Bridge>,
    promise: u64,
    request: Request,
    metrics: Option<QueueMetrics>,
    client: F,
) where
    F: std::future::Future<Output = Result<Arc<dyn QueueClient>, JsFailure>> + Send + 'static,
{
    // Actions and payloads need a token: the one given, or a fresh one (read-only too,
    // where it unlocks payloads and results: without one they would show to everyone).
    let token = request.token.unwrap_or_else(lane_dashboard::generate_token);
    let mut config = DashboardConfig::new()
        .read_only(request.read_only)
        .with_addr(request.addr)
        .with_token(token.clone());
    if let Some(title) = request.title {
        config = config.with_title(title);
    }
    if let Some(metrics) = metrics {
        config = config.with_metrics(metrics);
    }
    let (serving, control) = Serving::new();
    if !dashboards.add(serving.clone()) {
        let failure = JsFailure::error(
            "SHUTDOWN",
            "the lane was shut down, and its dashboards with it; create a new Lane to go on",
        );
        bridge.settle(promise, Settle::Rejected(failure));
        return;
    }
    let addr = request.addr;
    spawn(async move {
        let Control { mut stop, stopped } = control;
        let listening = match client.await {
            Ok(client) => match TcpListener::bind(addr).await.and_then(|listener| {
                let local = listener.local_addr()?;
                Ok((listener, local))
            }) {
                Ok((listener, local)) => Ok((client, listener, local)),
                Err(error) => Err(listen_failure(addr, &error)),
            },
            Err(failure) => Err(failure),
        };
        let (client, listener, local) = match listening {
            Ok(listening) => listening,
            Err(failure) => {
                stopped.send_replace(true);
                bridge.settle(promise, Settle::Rejected(failure));
                return;
            }
        };
        // Held before the promise settles (mail is delivered in order), released once
        // the server is gone.
        bridge.mailbox.send(Mail::Hold);
        let dashboard = Dashboard {
            url: lane_dashboard::url_of(local),
            token,
            serving,
        };
        bridge.settle(promise, Settle::of(Ok(dashboard)));
        // The Host check knows the real address (port 0 resolved).
        let config = config.with_listening_addr(local);
        lane_dashboard::serve_until(
            listener,
            lane_dashboard::router(client, config),
            stop_signal(&mut stop),
        )
        .await;
        stopped.send_replace(true);
        bridge.mailbox.send(Mail::Release);
    });
}

/// A web dashboard served for a queue (`await lane.serveDashboard()`): open `url` in a
/// browser.
///
/// Actions (pause, resume, cancel, redrive, delete) need the header `Authorization:
/// Bearer <token>`; the page asks for the token. It serves in the background, keeping
/// the process alive, until `close()` or the queue's `shutdown()`.
#[napi]
#[derive(Debug)]
pub struct Dashboard {
    url: String,
    token: String,
    serving: Arc<Serving>,
}

#[napi]
impl Dashboard {
    /// Where the dashboard is (`http://127.0.0.1:9090/`); it holds no token.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bearer token actions need and payloads are shown with: the one given, or the
    /// one generated (read-only too, where it only unlocks payloads and results).
    #[napi(getter)]
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Whether the dashboard stopped serving.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.serving.is_stopped()
    }

    /// Stops serving: resolves once the port is closed and open pages are disconnected.
    /// Calling it again does nothing.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.serving.signal();
        self.serving.stopped().await;
        Ok(())
    }
}
