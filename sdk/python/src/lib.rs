//! Python bindings of a3s-lane: the native module `a3s_lane._native`, re-exported by the
//! `a3s_lane` package.
//!
//! A thin layer over the facade crate. Each class holds the core object, converts
//! arguments and maps errors; every rule about values is the core's. One concept per file:
//!
//! - the classes: `client` (`QueueClient`, the operations `Lane` and `RedisQueue` share,
//!   which both extend), `lane` (`Lane`), `config` (`LaneConfig`, `RetryPolicy`), `limits`
//!   (`RateLimit`, `PriorityBoost`, `GroupLimits`), `budget` (`SharedBudget`,
//!   `BudgetStatus`), `redis` (`RedisQueue`,
//!   `RedisWorker`), `handle` (what a submit returns), `events` (event streams), `stats`
//!   and `metrics` (read-outs), `dashboard` (`Dashboard`, the web dashboard served for
//!   a queue);
//! - the boundary: `args` (Python arguments as Rust types), `convert` (JSON), `error`
//!   (the exception hierarchy and the one mapping of core errors), `schedules` (a
//!   recurring schedule's arguments and its `ScheduleInfo`);
//! - running Python code: `handler` (Python callables as handlers), `coroutine` (`async
//!   def` handlers on an event loop), `spawner` (where command runners are polled),
//!   `loop_task` (Rust futures behind Python awaitables), `event_loop` (the bridge to an
//!   asyncio loop) and `runtime` (the tokio runtime and blocking waits), each built only
//!   on the ones after it.

// Every GIL hold is assumed to exclude other Python threads (see handler::ErrorSlots).
#![deny(unsafe_code)]

mod args;
mod budget;
mod client;
mod config;
mod convert;
mod coroutine;
mod dashboard;
mod error;
mod event_loop;
mod events;
mod exit;
mod handle;
mod handler;
mod lane;
mod limits;
mod loop_task;
mod metrics;
mod redis;
mod runtime;
mod schedules;
mod spawner;
mod stats;

use pyo3::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The native part of a3s_lane; import from `a3s_lane` instead.
#[pymodule(gil_used = true)]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(module)?;
    module.add_class::<client::QueueClient>()?;
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
    module.add_class::<stats::GroupStatus>()?;
    module.add_class::<limits::RateLimit>()?;
    module.add_class::<limits::PriorityBoost>()?;
    module.add_class::<limits::GroupLimits>()?;
    module.add_class::<budget::SharedBudget>()?;
    module.add_class::<budget::BudgetStatus>()?;
    module.add_class::<metrics::MetricsSnapshot>()?;
    module.add_class::<metrics::LaneMetrics>()?;
    module.add_class::<metrics::HistogramStats>()?;
    module.add_class::<redis::queue::RedisQueue>()?;
    module.add_class::<redis::worker::RedisWorker>()?;
    module.add_class::<redis::stats::RedisQueueStats>()?;
    module.add_class::<dashboard::Dashboard>()?;
    module.add_function(wrap_pyfunction!(exit::exit_drain, module)?)?;
    module.add("EVENT_KEYS", events::EVENT_KEYS.to_vec())?;
    module.add("DEFAULT_LANES", a3s_lane::DEFAULT_LANES.to_vec())?;
    module.add(
        "DEFAULTS",
        convert::to_py(module.py(), &a3s_lane::defaults())?,
    )?;
    Ok(())
}
