//! A loopback OTLP/HTTP collector for the tests: an HTTP server that decodes the
//! protobuf requests with the OTLP protocol's own types.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_lane::{
    EventEmitter, LaneConfig, OtlpConfig, QueueManager, QueueManagerBuilder, QueueMetrics,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;

/// What the collector received, decoded.
#[derive(Default)]
pub struct Received {
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub traces: Vec<ExportTraceServiceRequest>,
    pub other_paths: Vec<String>,
}

/// Starts an OTLP/HTTP collector on a free loopback port.
pub async fn collector() -> (SocketAddr, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Received::default()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let content_type = request.headers()["content-type"].clone();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(content_type, "application/x-protobuf");
                        let mut received = store.lock().unwrap();
                        match path.as_str() {
                            "/v1/metrics" => received
                                .metrics
                                .push(ExportMetricsServiceRequest::decode(body).unwrap()),
                            "/v1/traces" => received
                                .traces
                                .push(ExportTraceServiceRequest::decode(body).unwrap()),
                            _ => received.other_paths.push(path),
                        }
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

pub fn config(addr: SocketAddr) -> OtlpConfig {
    OtlpConfig::new(format!("http://{addr}"))
        .with_service_name("lane-otlp-test")
        // Only explicit flushes export during the test.
        .with_export_interval(Duration::from_secs(3600))
}

pub fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

pub fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        }
    })
}

pub async fn manager(metrics: QueueMetrics) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("query", LaneConfig::new(1, 4), 2)
        .with_lane("prompt", LaneConfig::new(1, 2), 5)
        .with_dlq(100)
        .with_metrics(metrics)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}
