//! Keyword arguments of `RedisQueue(...)`, `RedisQueue.cluster(...)` and
//! `RedisWorker(...)` as the core's `RedisQueueConfig` and `RedisWorkerConfig`.
//!
//! Only host types are converted here; the core's `validate` decides what is allowed,
//! including which lane options the Redis engine cannot honour.

use a3s_lane::{RedisQueueConfig, RedisTls, RedisWorkerConfig};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::args::{optional, optional_seconds, type_name, usize_arg};
use crate::config::resolve_lanes;
use crate::error::IntoPyErr;

/// The options `RedisQueue(url, ...)` and `RedisQueue.cluster(nodes, ...)` share.
pub(crate) struct QueueOptions<'a, 'py> {
    pub(crate) lanes: Option<&'a Bound<'py, PyAny>>,
    pub(crate) key_prefix: Option<&'a str>,
    pub(crate) result_ttl: Option<&'a Bound<'py, PyAny>>,
    pub(crate) response_timeout: Option<&'a Bound<'py, PyAny>>,
    pub(crate) connect_timeout: Option<&'a Bound<'py, PyAny>>,
    pub(crate) events: Option<bool>,
    pub(crate) reconnect_wait: Option<&'a Bound<'py, PyAny>>,
    pub(crate) reconnect_min_delay: Option<&'a Bound<'py, PyAny>>,
    pub(crate) reconnect_max_delay: Option<&'a Bound<'py, PyAny>>,
    pub(crate) tls_ca: Option<&'a Bound<'py, PyAny>>,
    pub(crate) tls_cert: Option<&'a Bound<'py, PyAny>>,
    pub(crate) tls_key: Option<&'a Bound<'py, PyAny>>,
}

/// PEM text given as `str`, `bytes` or a path (`os.PathLike`, read here).
fn pem(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<Vec<u8>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes().to_vec()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_str()?;
        if !text.contains("-----BEGIN") {
            return Err(PyTypeError::new_err(format!(
                "{name} takes PEM text (it starts with -----BEGIN) or a path such as \
                 pathlib.Path('ca.pem'); this str is neither"
            )));
        }
        return Ok(Some(text.as_bytes().to_vec()));
    }
    let os = value.py().import("os")?;
    if let Ok(path) = os.call_method1("fspath", (value,)) {
        let path: String = path.extract()?;
        return std::fs::read(&path).map(Some).map_err(|error| {
            PyTypeError::new_err(format!("{name}: cannot read {path:?}: {error}"))
        });
    }
    Err(PyTypeError::new_err(format!(
        "{name} takes PEM text (str or bytes) or a path, got {}",
        type_name(value)
    )))
}

impl QueueOptions<'_, '_> {
    /// `config` with these options, checked by the core.
    pub(crate) fn apply(
        self,
        py: Python<'_>,
        mut config: RedisQueueConfig,
    ) -> PyResult<RedisQueueConfig> {
        if let Some(prefix) = self.key_prefix {
            config = config.with_key_prefix(prefix);
        }
        if let Some(lanes) = self.lanes.filter(|l| !l.is_none()) {
            for (id, lane, priority) in resolve_lanes(py, lanes)? {
                config = config.with_lane(id, lane, priority);
            }
        }
        if let Some(ttl) = optional_seconds(self.result_ttl, "result_ttl")? {
            config = config.with_result_ttl(ttl);
        }
        if let Some(timeout) = optional_seconds(self.response_timeout, "response_timeout")? {
            config = config.with_response_timeout(timeout);
        }
        if let Some(timeout) = optional_seconds(self.connect_timeout, "connect_timeout")? {
            config = config.with_connect_timeout(timeout);
        }
        if let Some(enabled) = self.events {
            config = config.with_events(enabled);
        }
        if let Some(wait) = optional_seconds(self.reconnect_wait, "reconnect_wait")? {
            config = config.with_reconnect_wait(wait);
        }
        let (default_min, default_max) = config.reconnect_backoff();
        let min = optional_seconds(self.reconnect_min_delay, "reconnect_min_delay")?;
        let max = optional_seconds(self.reconnect_max_delay, "reconnect_max_delay")?;
        if min.is_some() || max.is_some() {
            config = config
                .with_reconnect_backoff(min.unwrap_or(default_min), max.unwrap_or(default_max));
        }
        let ca = pem(self.tls_ca, "tls_ca")?;
        let cert = pem(self.tls_cert, "tls_cert")?;
        let key = pem(self.tls_key, "tls_key")?;
        if ca.is_some() || cert.is_some() || key.is_some() {
            let mut tls = RedisTls::new();
            if let Some(ca) = ca {
                tls = tls.with_ca_pem(ca);
            }
            match (cert, key) {
                (Some(cert), Some(key)) => tls = tls.with_client_cert_pem(cert, key),
                (None, None) => {}
                _ => {
                    return Err(PyTypeError::new_err(
                        "tls_cert and tls_key go together: a client certificate needs its key",
                    ));
                }
            }
            config = config.with_tls(tls);
        }
        config.validate().map_err(|e| e.into_py_err(py))?;
        Ok(config)
    }
}

/// The options of `RedisWorker(queue, ...)`.
pub(crate) struct WorkerOptions<'a, 'py> {
    pub(crate) slots: Option<&'a Bound<'py, PyAny>>,
    pub(crate) worker_id: Option<&'a str>,
    pub(crate) lease_ttl: Option<&'a Bound<'py, PyAny>>,
    pub(crate) heartbeat_interval: Option<&'a Bound<'py, PyAny>>,
    pub(crate) block_timeout: Option<&'a Bound<'py, PyAny>>,
}

impl WorkerOptions<'_, '_> {
    /// The worker's configuration, checked by the core.
    pub(crate) fn config(self, py: Python<'_>) -> PyResult<RedisWorkerConfig> {
        let slots = optional(self.slots, |s| usize_arg(s, "slots"))?
            .unwrap_or(RedisWorkerConfig::DEFAULT_SLOTS);
        let mut config = RedisWorkerConfig::new(slots);
        if let Some(id) = self.worker_id {
            config = config.with_worker_id(id);
        }
        if let Some(ttl) = optional_seconds(self.lease_ttl, "lease_ttl")? {
            config = config.with_lease_ttl(ttl);
        }
        if let Some(interval) = optional_seconds(self.heartbeat_interval, "heartbeat_interval")? {
            config = config.with_heartbeat_interval(interval);
        }
        if let Some(timeout) = optional_seconds(self.block_timeout, "block_timeout")? {
            config = config.with_block_timeout(timeout);
        }
        config.validate().map_err(|e| e.into_py_err(py))?;
        Ok(config)
    }
}
