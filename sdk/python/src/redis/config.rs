//! Keyword arguments of `RedisQueue(...)`, `RedisQueue.cluster(...)` and
//! `RedisWorker(...)` as the core's `RedisQueueConfig` and `RedisWorkerConfig`.
//!
//! Only host types are converted here; the core's `validate` decides what is allowed,
//! including which lane options the Redis engine cannot honour.

use a3s_lane::{RedisQueueConfig, RedisWorkerConfig};
use pyo3::prelude::*;

use crate::args::{optional, optional_seconds, usize_arg};
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
