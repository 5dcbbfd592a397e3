//! Python bindings of a3s-lane: the native module `a3s_lane._native`, re-exported by the
//! `a3s_lane` package.
//!
//! A thin layer over the facade crate. Each file holds one concept and only converts
//! arguments, maps errors and carries work between tokio and Python: `lane` (the `Lane`
//! class), `config` (`LaneConfig`, `RetryPolicy`), `error` (the exception hierarchy),
//! `events` (event streams), `runtime` (the tokio runtime and the bridge to asyncio
//! event loops), `handler` (Python callables as handlers), `handle` (what a submit
//! returns), `stats` and `convert` (JSON), `limits` (`RateLimit`, `PriorityBoost`),
//! `metrics` (snapshots of `Lane(metrics=True)`) and `redis` (`RedisQueue`,
//! `RedisWorker`).

// Every GIL hold is assumed to exclude other Python threads (see handler::ErrorSlots).
#![deny(unsafe_code)]

mod config;
mod convert;
mod error;
mod events;
mod handle;
mod handler;
mod lane;
mod limits;
mod metrics;
mod redis;
mod runtime;
mod stats;

use pyo3::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The native part of a3s_lane; import from `a3s_lane` instead.
#[pymodule(gil_used = true)]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(module)?;
    module.add_class::<lane::Lane>()?;
    module.add_class::<config::LaneConfig>()?;
    module.add_class::<config::RetryPolicy>()?;
    module.add_class::<handle::CommandFuture>()?;
    module.add_class::<handle::CommandHandle>()?;
    module.add_class::<handler::CommandContext>()?;
    module.add_class::<events::Event>()?;
    module.add_class::<events::EventStream>()?;
    module.add_class::<stats::QueueStats>()?;
    module.add_class::<stats::LaneStatus>()?;
    module.add_class::<stats::DeadLetter>()?;
    module.add_class::<limits::RateLimit>()?;
    module.add_class::<limits::PriorityBoost>()?;
    module.add_class::<metrics::MetricsSnapshot>()?;
    module.add_class::<metrics::LaneMetrics>()?;
    module.add_class::<metrics::HistogramStats>()?;
    module.add_class::<redis::RedisQueue>()?;
    module.add_class::<redis::RedisLane>()?;
    module.add_class::<redis::RedisWorker>()?;
    module.add_class::<redis::RedisQueueStats>()?;
    module.add("EVENT_KEYS", events::EVENT_KEYS.to_vec())?;
    module.add("DEFAULT_LANES", a3s_lane::DEFAULT_LANES.to_vec())?;
    Ok(())
}
