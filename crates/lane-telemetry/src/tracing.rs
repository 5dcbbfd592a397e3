//! [`OtlpTracing`]: the queue's `lane.command` spans (and your own) exported over OTLP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{OtlpConfig, TelemetryError};
use crate::http::RuntimeHttpClient;

/// Exports `tracing` spans to OpenTelemetry over OTLP/HTTP (protobuf).
///
/// The queue runs each command in a `lane.command` span (attributes `lane`,
/// `command_id`, `command_type`, `attempt`, `outcome`; status `ERROR` when the run
/// failed or timed out) whose parent is the span that was current when the command was
/// submitted, so one trace goes from the submitter through the queue into the command's
/// own spans. Install [`OtlpTracing::layer`] in your subscriber:
///
/// ```no_run
/// use a3s_lane::{OtlpConfig, OtlpTracing};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tracing_export = OtlpTracing::new(&OtlpConfig::new("http://localhost:4318"))?;
/// let subscriber = tracing_subscriber::registry().with(tracing_export.layer());
/// tracing::subscriber::set_global_default(subscriber)?;
/// // … submit commands inside your spans …
/// tracing_export.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// Without any subscriber the queue's spans cost nothing: they are disabled at the
/// callsite.
#[derive(Debug, Clone)]
pub struct OtlpTracing {
    provider: SdkTracerProvider,
}

impl OtlpTracing {
    /// Exports batches of spans to `config.endpoint`. Must be called inside a tokio
    /// runtime: the export requests run on it.
    pub fn new(config: &OtlpConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        let client = RuntimeHttpClient::current(config.timeout)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.signal_url("traces"))
            .with_timeout(config.timeout)
            .build()
            .map_err(TelemetryError::export)?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(config.resource())
            .build();
        Ok(Self { provider })
    }

    /// A `tracing-subscriber` layer that turns spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("a3s-lane"))
    }

    /// The tracer provider (for your own tracers, or to set it as the global one).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports the spans ended so far now.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .map_err(TelemetryError::export)?
            .map_err(TelemetryError::export)
    }

    /// Exports what is left and stops exporting.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .map_err(TelemetryError::export)?
            .map_err(TelemetryError::export)
    }
}
