//! `serve_dashboard`: the web dashboard of `lane-dashboard` (pages, JSON API, live
//! events, Prometheus `/metrics`) served for a queue in the background, on the runtime.
//!
//! The router is `lane_dashboard::router`; the server is `lane_dashboard::serve_until` rather
//! than `lane_dashboard::serve`, which prints a generated token (the caller gets it as
//! `Dashboard.token` instead): `close()` here stops accepting, drops every open connection
//! (event streams included) and returns once the port no longer answers.
//!
//! A queue keeps its dashboards in a [`Dashboards`]: `Lane.shutdown()` closes them, and
//! so does the queue being garbage collected.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use a3s_lane::QueueClient as CoreClient;
use lane_dashboard::{DashboardConfig, QueueMetrics};
use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString, PyTuple};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::config_error;
use crate::runtime::{block_on, runtime};

/// One dashboard being served: a stop signal and the news that it stopped.
pub(crate) struct Serving {
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
}

impl Serving {
    /// Asks the server to stop (it drops its listener and connections at once).
    fn signal(&self) {
        self.stop.send_replace(true);
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Signals the stop and waits here (releasing the GIL) until the server is gone.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.signal();
        let mut stopped = self.stopped.clone();
        let mut wait = std::pin::pin!(async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        });
        block_on(py, wait.as_mut())
    }
}

/// The dashboards served for one queue; closed with it.
#[derive(Default)]
pub(crate) struct Dashboards(Mutex<Served>);

#[derive(Default)]
struct Served {
    list: Vec<Arc<Serving>>,
    /// The queue was shut down: no dashboard is served for it any more.
    shut: bool,
}

impl Dashboards {
    fn is_shut(&self) -> bool {
        self.0.lock().shut
    }

    /// Keeps `serving` to close with the queue; false (and stopped) if the queue was
    /// shut down meanwhile.
    fn add(&self, serving: Arc<Serving>) -> bool {
        let mut served = self.0.lock();
        if served.shut {
            serving.signal();
            return false;
        }
        served.list.retain(|serving| !serving.is_stopped());
        served.list.push(serving);
        true
    }

    /// Closes every dashboard of the queue, waiting until they are gone; the queue
    /// serves none any more.
    pub(crate) fn close_all(&self, py: Python<'_>) -> PyResult<()> {
        let list = {
            let mut served = self.0.lock();
            served.shut = true;
            std::mem::take(&mut served.list)
        };
        for serving in &list {
            serving.signal();
        }
        for serving in &list {
            serving.close(py)?;
        }
        Ok(())
    }
}

impl Drop for Dashboards {
    fn drop(&mut self) {
        // The queue is being collected: its dashboards stop (without waiting here).
        for serving in self.0.get_mut().list.drain(..) {
            serving.signal();
        }
    }
}

/// Resolves once the stop is signalled, or nobody can signal it any more.
async fn stop_signal(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves `app` until the stop signal (or until nobody can send it any more), then says
/// it stopped.
async fn run(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    lane_dashboard::serve_until(listener, app, stop_signal(&mut stop)).await;
    stopped.send_replace(true);
}

/// Binds `addr` and serves the dashboard of `client` with `config` on the runtime.
async fn start(
    client: Arc<dyn CoreClient>,
    addr: SocketAddr,
    config: DashboardConfig,
) -> std::io::Result<(SocketAddr, Arc<Serving>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let (stopped_tx, stopped) = watch::channel(false);
    // The Host check knows the real address (port 0 resolved).
    let app = lane_dashboard::router(client, config.with_listening_addr(local));
    tokio::spawn(run(listener, app, stop_rx, stopped_tx));
    Ok((local, Arc::new(Serving { stop, stopped })))
}

/// The checked arguments of `serve_dashboard`.
struct Request {
    addr: SocketAddr,
    token: Option<String>,
    read_only: bool,
    title: Option<String>,
}

fn request(
    py: Python<'_>,
    host: &Bound<'_, PyAny>,
    port: &Bound<'_, PyAny>,
    token: Option<&Bound<'_, PyAny>>,
    read_only: &Bound<'_, PyAny>,
    title: Option<&Bound<'_, PyAny>>,
) -> PyResult<Request> {
    let Ok(host) = host.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "host must be a str holding an IP address, such as '127.0.0.1', got {}",
            crate::args::type_name(host)
        )));
    };
    let host = host.to_str()?;
    let ip: IpAddr = host.parse().map_err(|_| {
        config_error(
            py,
            format!(
                "host must be an IP address, such as '127.0.0.1' (this machine only, the \
                 default) or '0.0.0.0' (every interface), got {host:?}"
            ),
        )
    })?;
    if port.is_instance_of::<PyBool>() || !port.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "port must be an int from 0 to 65535 (0: any free port), got {}",
            crate::args::type_name(port)
        )));
    }
    let port: u16 = port.extract().map_err(|_| {
        config_error(
            py,
            format!("port must be from 0 to 65535 (0: any free port), got {port}"),
        )
    })?;
    let token = match token.filter(|token| !token.is_none()) {
        None => None,
        Some(token) => {
            let Ok(token) = token.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "token must be a str (or None to have one generated), got {}",
                    crate::args::type_name(token)
                )));
            };
            let token = token.to_str()?;
            if token.is_empty() {
                return Err(config_error(
                    py,
                    "token must not be empty: give a long random secret, or None to have one \
                     generated",
                ));
            }
            Some(token.to_owned())
        }
    };
    let Ok(read_only) = read_only.cast::<PyBool>() else {
        return Err(PyTypeError::new_err(format!(
            "read_only must be True or False, got {}",
            crate::args::type_name(read_only)
        )));
    };
    let title = match title.filter(|title| !title.is_none()) {
        None => None,
        Some(title) => Some(
            title
                .cast::<PyString>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "title must be a str (or None for the default), got {}",
                        crate::args::type_name(title)
                    ))
                })?
                .to_str()?
                .to_owned(),
        ),
    };
    Ok(Request {
        addr: SocketAddr::new(ip, port),
        token,
        read_only: read_only.is_true(),
        title,
    })
}

/// The queue was shut down: its dashboards closed with it.
fn shut_down(py: Python<'_>) -> PyErr {
    crate::error::IntoPyErr::into_py_err(a3s_lane::LaneError::ShutdownInProgress, py)
}

/// Serves the dashboard of `client` (see `QueueClient.serve_dashboard`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve(
    py: Python<'_>,
    client: Arc<dyn CoreClient>,
    metrics: Option<QueueMetrics>,
    dashboards: &Dashboards,
    host: &Bound<'_, PyAny>,
    port: &Bound<'_, PyAny>,
    token: Option<&Bound<'_, PyAny>>,
    read_only: &Bound<'_, PyAny>,
    title: Option<&Bound<'_, PyAny>>,
) -> PyResult<Dashboard> {
    let request = request(py, host, port, token, read_only, title)?;
    if dashboards.is_shut() {
        return Err(shut_down(py));
    }
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
    let addr = request.addr;
    let mut task = runtime().spawn(start(client, addr, config));
    let (local, serving) = match block_on(py, std::pin::Pin::new(&mut task)) {
        Ok(Ok(Ok(started))) => started,
        Ok(Ok(Err(error))) => {
            let hint = match error.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "; another server uses it: pick another port, or port=0 for any free one"
                }
                std::io::ErrorKind::AddrNotAvailable => "; host must be an address of this machine",
                std::io::ErrorKind::PermissionDenied => {
                    "; ports below 1024 need privileges: pick a port of 1024 or more"
                }
                _ => "",
            };
            let message = format!("the dashboard could not listen on {addr}: {error}{hint}");
            return Err(match error.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, message)),
                None => PyOSError::new_err(message),
            });
        }
        Ok(Err(error)) => return Err(crate::runtime::join_error(py, error)),
        Err(interrupted) => {
            task.abort();
            return Err(interrupted);
        }
    };
    if !dashboards.add(serving.clone()) {
        serving.close(py)?;
        return Err(shut_down(py));
    }
    Ok(Dashboard {
        url: lane_dashboard::url_of(local),
        token,
        serving,
    })
}

/// A web dashboard served for a queue (`serve_dashboard()`): open `url` in a browser.
///
/// Actions (pause, resume, cancel, redrive, delete) need the header `Authorization:
/// Bearer <token>`; the page asks for the token. It serves in the background until
/// `close()`, the queue's `shutdown()`, or the queue being garbage collected; `with
/// lane.serve_dashboard() as dashboard:` closes it at the end of the block.
#[pyclass(frozen, module = "a3s_lane", name = "Dashboard")]
pub(crate) struct Dashboard {
    url: String,
    token: String,
    serving: Arc<Serving>,
}

#[pymethods]
impl Dashboard {
    /// Where the dashboard is (`http://127.0.0.1:9090/`); it holds no token.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token actions need and payloads are shown with: the one given, or the
    /// one generated (read-only too, where it only unlocks payloads and results).
    #[getter]
    fn token(&self) -> &str {
        &self.token
    }

    /// Whether the dashboard stopped serving.
    #[getter]
    fn closed(&self) -> bool {
        self.serving.is_stopped()
    }

    /// Stops serving: the port is closed and open pages are disconnected when this
    /// returns. Calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.serving.close(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Dashboard url={:?} closed={}>",
            self.url,
            if self.serving.is_stopped() {
                "True"
            } else {
                "False"
            }
        )
    }
}
