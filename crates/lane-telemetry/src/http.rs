//! The HTTP client the OTLP exporters use: one HTTP/1.1 request per export over a plain
//! TCP connection, with hyper's client connection, run on the tokio runtime captured
//! when the exporter was built.
//!
//! Why not the exporter's own clients: `reqwest` brings a second runtime thread and a
//! URL/IDNA stack; the hyper-util pooled client brings HTTP/2; tonic brings both and
//! more. Exports happen once per interval (metrics) or per batch (spans), so a
//! connection per request costs nothing that matters. The OpenTelemetry SDK calls the
//! exporter from its own threads; running the request on the captured runtime lets
//! hyper use tokio's I/O from there.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::config::TelemetryError;

/// Largest response body read back (OTLP responses are tiny).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct RuntimeHttpClient {
    runtime: Handle,
    timeout: Duration,
}

impl RuntimeHttpClient {
    /// A client bound to the current tokio runtime.
    pub(crate) fn current(timeout: Duration) -> Result<Self, TelemetryError> {
        let runtime = Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        Ok(Self { runtime, timeout })
    }
}

#[async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let timeout = self.timeout;
        let sent = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, send(request)).await });
        match sent.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!("OTLP request timed out after {timeout:?}").into()),
            Err(join) => Err(format!("OTLP request task failed: {join}").into()),
        }
    }
}

async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let uri = parts.uri.clone();
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// OTLP endpoints are supported, not '{uri}'").into());
    }
    let host = uri.host().ok_or("the OTLP endpoint has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    // HTTP/1.1 wants the origin form (`/v1/metrics`) plus a Host header.
    parts.uri = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    if let Some(authority) = uri.authority() {
        parts
            .headers
            .insert(HOST, HeaderValue::from_str(authority.as_str())?);
    }
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, mut incoming) = response.into_parts();
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err("the OTLP response body is larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(Response::from_parts(parts, Bytes::from(body)))
}
