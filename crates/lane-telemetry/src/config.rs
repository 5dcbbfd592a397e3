//! [`OtlpConfig`]: where and how to export, and [`TelemetryError`].

use std::time::Duration;

/// The OTLP/HTTP endpoint used when none is given and `OTEL_EXPORTER_OTLP_ENDPOINT` is unset.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// What can go wrong when setting up or flushing the export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A configuration value is invalid; the message says which and why.
    #[error("invalid telemetry configuration: {0}")]
    Config(String),
    /// The exporter needs a tokio runtime to send its requests on.
    #[error(
        "OTLP export needs a tokio runtime: build the exporter from inside one (for example in an async fn under #[tokio::main])"
    )]
    NoRuntime,
    /// The OpenTelemetry SDK or exporter failed.
    #[error("OpenTelemetry export failed: {0}")]
    Export(String),
}

impl TelemetryError {
    pub(crate) fn export(error: impl std::fmt::Display) -> Self {
        Self::Export(error.to_string())
    }
}

/// Where to send OTLP data and how often.
///
/// The transport is OTLP over HTTP with protobuf bodies (`http://host:4318/v1/metrics`,
/// `/v1/traces`), which every OpenTelemetry Collector and most backends accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct OtlpConfig {
    /// The base URL, such as `http://localhost:4318`; the signal paths are appended.
    /// Only `http://` is supported (point it at a local collector for TLS upstream).
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How often metrics are exported.
    pub export_interval: Duration,
    /// How long one export request may take.
    pub timeout: Duration,
}

impl Default for OtlpConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or [`DEFAULT_OTLP_ENDPOINT`], service `a3s-lane`,
    /// metrics every 60 s, 10 s timeout.
    fn default() -> Self {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.to_owned());
        Self {
            endpoint,
            service_name: "a3s-lane".to_owned(),
            export_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl OtlpConfig {
    /// The defaults with `endpoint` as the base URL.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ..Self::default()
        }
    }

    /// Sets the `service.name` resource attribute.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Sets how often metrics are exported.
    pub fn with_export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// Sets how long one export request may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let uri: http::Uri = self.endpoint.parse().map_err(|e| {
            TelemetryError::Config(format!("endpoint '{}' is not a URL: {e}", self.endpoint))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(TelemetryError::Config(format!(
                "endpoint '{}' must be an http:// URL with a host, such as {DEFAULT_OTLP_ENDPOINT}",
                self.endpoint
            )));
        }
        if self.export_interval.is_zero() || self.timeout.is_zero() {
            return Err(TelemetryError::Config(
                "export_interval and timeout must be greater than zero".into(),
            ));
        }
        if self.service_name.is_empty() {
            return Err(TelemetryError::Config(
                "service_name must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The URL of one signal (`metrics`, `traces`).
    pub(crate) fn signal_url(&self, signal: &str) -> String {
        format!("{}/v1/{signal}", self.endpoint.trim_end_matches('/'))
    }

    pub(crate) fn resource(&self) -> opentelemetry_sdk::Resource {
        opentelemetry_sdk::Resource::builder()
            .with_service_name(self.service_name.clone())
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert!(OtlpConfig::new("http://127.0.0.1:4318").validate().is_ok());
        let err = OtlpConfig::new("https://collector:4318")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("must be an http:// URL"), "{err}");
        assert!(OtlpConfig::new("not a url").validate().is_err());
        assert!(
            OtlpConfig::new("http://x:1")
                .with_export_interval(Duration::ZERO)
                .validate()
                .is_err()
        );
        assert_eq!(
            OtlpConfig::new("http://x:1/").signal_url("metrics"),
            "http://x:1/v1/metrics"
        );
    }
}
