//! [`OtelMetricsBackend`]: the queue's metrics as OpenTelemetry instruments.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use lane_metrics::{
    HistogramStats, LaneCounter, LaneGauge, LaneHistogram, LocalMetrics, MetricsBackend,
    MetricsRecorder, MetricsSnapshot, WatchedQueues,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    AsyncInstrument, Counter, Gauge, Histogram, Meter, MeterProvider as _, ObservableGauge,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use parking_lot::{Mutex, RwLock};

use crate::config::{OtlpConfig, TelemetryError};
use crate::http::RuntimeHttpClient;

/// Bucket boundaries (milliseconds) of the exported latency and wait histograms.
pub const LATENCY_BUCKETS_MS: [f64; 17] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
    30_000.0, 60_000.0, 300_000.0,
];

/// The name of the instrumentation scope the instruments belong to.
const SCOPE: &str = "a3s-lane";

/// Queue metrics exported through OpenTelemetry: each queue counter is an OTel counter,
/// each gauge an OTel gauge, each histogram an OTel histogram (unit `ms`, buckets
/// [`LATENCY_BUCKETS_MS`]), all under the metric names of
/// [`metric_names`](lane_metrics::metric_names) with the lane as the attribute `lane`.
///
/// Recording is synchronous (it is a [`MetricsRecorder`]), so the queue feeds it on its
/// hot path like the local store. It also keeps a [`LocalMetrics`] copy so that
/// [`MetricsBackend::snapshot`] and the `get_*` methods work; `reset` clears that copy
/// only (exported counters are cumulative).
///
/// [`OtelMetricsBackend::otlp`] exports over OTLP/HTTP; [`OtelMetricsBackend::new`] uses
/// any [`Meter`] you already have.
///
/// ```no_run
/// use a3s_lane::{EventEmitter, OtelMetricsBackend, OtlpConfig, QueueManagerBuilder, QueueMetrics};
/// use std::sync::Arc;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let otel = Arc::new(OtelMetricsBackend::otlp(&OtlpConfig::new("http://localhost:4318"))?);
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_metrics(QueueMetrics::new(otel.clone()))
///     .with_default_lanes()
///     .build()
///     .await?;
/// // … run commands …
/// otel.shutdown().await?; // exports what is left
/// # drop(manager); Ok(()) }
/// ```
pub struct OtelMetricsBackend {
    local: LocalMetrics,
    counters: Vec<Counter<u64>>,
    /// Lane gauges are observable: read (from the watched queues) when the SDK collects.
    _gauges: Vec<ObservableGauge<f64>>,
    watched: Arc<Mutex<Option<WatchedQueues>>>,
    histograms: Vec<Histogram<f64>>,
    meter: Meter,
    named: Mutex<Named>,
    lanes: RwLock<HashMap<Box<str>, [KeyValue; 1]>>,
    provider: Option<SdkMeterProvider>,
}

/// Instruments for values recorded by name, without a lane.
#[derive(Default)]
struct Named {
    counters: HashMap<String, Counter<u64>>,
    gauges: HashMap<String, Gauge<f64>>,
    histograms: HashMap<String, Histogram<f64>>,
}

impl std::fmt::Debug for OtelMetricsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMetricsBackend")
            .field("lanes", &self.lanes.read().len())
            .field("owns_provider", &self.provider.is_some())
            .finish_non_exhaustive()
    }
}

impl OtelMetricsBackend {
    /// Records through `meter` (its provider decides where the data goes).
    pub fn new(meter: Meter) -> Self {
        Self::with_meter(meter, None)
    }

    /// Exports over OTLP/HTTP (protobuf) to `config.endpoint` every
    /// `config.export_interval`. Must be called inside a tokio runtime: the export
    /// requests run on it.
    pub fn otlp(config: &OtlpConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        let client = RuntimeHttpClient::current(config.timeout)?;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.signal_url("metrics"))
            .with_timeout(config.timeout)
            .build()
            .map_err(TelemetryError::export)?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(config.export_interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(config.resource())
            .build();
        let meter = provider.meter(SCOPE);
        Ok(Self::with_meter(meter, Some(provider)))
    }

    fn with_meter(meter: Meter, provider: Option<SdkMeterProvider>) -> Self {
        let counters = LaneCounter::ALL
            .iter()
            .map(|c| {
                meter
                    .u64_counter(c.name())
                    .with_description(c.description())
                    .build()
            })
            .collect();
        let local = LocalMetrics::new();
        let watched: Arc<Mutex<Option<WatchedQueues>>> = Arc::default();
        let gauges = LaneGauge::ALL
            .iter()
            .map(|&gauge| {
                let (local, watched) = (local.clone(), watched.clone());
                meter
                    .f64_observable_gauge(gauge.name())
                    .with_description(gauge.description())
                    .with_callback(move |observer| {
                        observe_lane_gauge(&local, &watched, gauge, observer)
                    })
                    .build()
            })
            .collect();
        let histograms = LaneHistogram::ALL
            .iter()
            .map(|h| {
                meter
                    .f64_histogram(h.name())
                    .with_description(h.description())
                    .with_unit("ms")
                    .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
                    .build()
            })
            .collect();
        Self {
            local,
            counters,
            _gauges: gauges,
            watched,
            histograms,
            meter,
            named: Mutex::default(),
            lanes: RwLock::default(),
            provider,
        }
    }

    /// The local copy of every value recorded.
    pub fn local(&self) -> &LocalMetrics {
        &self.local
    }

    /// The meter provider built by [`OtelMetricsBackend::otlp`].
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.provider.as_ref()
    }

    /// Exports everything recorded so far now (a no-op for [`OtelMetricsBackend::new`],
    /// whose provider you own).
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        self.with_provider(SdkMeterProvider::force_flush).await
    }

    /// Exports what is left and stops exporting. Call it before dropping the backend:
    /// the provider's own shutdown on drop blocks the thread that drops it.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        self.with_provider(SdkMeterProvider::shutdown).await
    }

    async fn with_provider(
        &self,
        action: fn(&SdkMeterProvider) -> opentelemetry_sdk::error::OTelSdkResult,
    ) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        // The SDK blocks until its export thread is done, and that thread sends on this
        // runtime: block on a blocking-pool thread, never on a runtime worker.
        tokio::task::spawn_blocking(move || action(&provider))
            .await
            .map_err(TelemetryError::export)?
            .map_err(TelemetryError::export)
    }

    fn with_lane(&self, lane: &str, record: impl FnOnce(&[KeyValue])) {
        if let Some(attributes) = self.lanes.read().get(lane) {
            return record(attributes);
        }
        let mut lanes = self.lanes.write();
        let attributes = lanes
            .entry(lane.into())
            .or_insert_with(|| [KeyValue::new("lane", Arc::<str>::from(lane))]);
        record(attributes);
    }
}

/// An observable gauge's callback: the watched queues' current counts first (kept in the
/// local copy too), then every lane's latest value.
fn observe_lane_gauge(
    local: &LocalMetrics,
    watched: &Mutex<Option<WatchedQueues>>,
    gauge: LaneGauge,
    observer: &dyn AsyncInstrument<f64>,
) {
    let watched = watched.lock().clone();
    if let Some(watched) = watched {
        for (lane, read, value) in watched.lane_gauges() {
            if read == gauge {
                local.set(&lane, gauge, value);
            }
        }
    }
    for (lane, value) in local.lane_gauge(gauge) {
        observer.observe(value, &[KeyValue::new("lane", lane)]);
    }
}

impl MetricsRecorder for OtelMetricsBackend {
    fn add(&self, lane: &str, counter: LaneCounter, value: u64) {
        self.local.add(lane, counter, value);
        self.with_lane(lane, |attrs| {
            self.counters[counter as usize].add(value, attrs);
        });
    }

    /// Kept locally; the observable gauge reports it at the next collection.
    fn set(&self, lane: &str, gauge: LaneGauge, value: f64) {
        self.local.set(lane, gauge, value);
    }

    fn watch_queues(&self, queues: WatchedQueues) {
        *self.watched.lock() = Some(queues);
    }

    fn observe(&self, lane: &str, histogram: LaneHistogram, value_ms: f64) {
        self.local.observe(lane, histogram, value_ms);
        if value_ms.is_finite() && value_ms >= 0.0 {
            self.with_lane(lane, |attrs| {
                self.histograms[histogram as usize].record(value_ms, attrs);
            });
        }
    }
}

#[async_trait]
impl MetricsBackend for OtelMetricsBackend {
    async fn increment_counter(&self, name: &str, value: u64) {
        self.local.increment_counter(name, value).await;
        let mut named = self.named.lock();
        let counter = named
            .counters
            .entry(name.to_owned())
            .or_insert_with(|| self.meter.u64_counter(name.to_owned()).build());
        counter.add(value, &[]);
    }

    async fn set_gauge(&self, name: &str, value: f64) {
        self.local.set_gauge(name, value).await;
        if value.is_finite() {
            let mut named = self.named.lock();
            let gauge = named
                .gauges
                .entry(name.to_owned())
                .or_insert_with(|| self.meter.f64_gauge(name.to_owned()).build());
            gauge.record(value, &[]);
        }
    }

    async fn record_histogram(&self, name: &str, value: f64) {
        self.local.record_histogram(name, value).await;
        if value.is_finite() && value >= 0.0 {
            let mut named = self.named.lock();
            let histogram = named.histograms.entry(name.to_owned()).or_insert_with(|| {
                self.meter
                    .f64_histogram(name.to_owned())
                    .with_boundaries(LATENCY_BUCKETS_MS.to_vec())
                    .build()
            });
            histogram.record(value, &[]);
        }
    }

    async fn get_counter(&self, name: &str) -> Option<u64> {
        self.local.get_counter(name).await
    }

    async fn get_gauge(&self, name: &str) -> Option<f64> {
        self.local.get_gauge(name).await
    }

    async fn get_histogram_stats(&self, name: &str) -> Option<HistogramStats> {
        self.local.get_histogram_stats(name).await
    }

    async fn reset(&self) {
        self.local.reset_now();
    }

    async fn snapshot(&self) -> MetricsSnapshot {
        self.local.snapshot_now()
    }

    fn recorder(&self) -> Option<&dyn MetricsRecorder> {
        Some(self)
    }
}
