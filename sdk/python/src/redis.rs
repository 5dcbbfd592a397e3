//! The Redis backend: `RedisQueue` (producers: submit, cancel, inspect, administer),
//! `RedisLane` (a lane's settings, kept in Redis) and `RedisWorker` (runs Python
//! handlers for a Redis queue, in this process or any other).
//!
//! A worker's handlers are the lane's handlers (`handler::PyHandler`), with the same
//! semantics: plain `def` on the thread pool, `async def` on the event loop running at
//! `start()` (or a private one). What crosses processes is JSON: a handler's exception
//! reaches the submitter as a `CommandError` carrying its type and message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use a3s_lane::{
    CancelOutcome, HandlerRegistry, LaneError as CoreError, RedisCommandHandle,
    RedisLane as CoreLane, RedisQueue as CoreQueue, RedisQueueConfig, RedisQueueStats as CoreStats,
    RedisWorker as CoreWorker, RedisWorkerConfig,
};
use parking_lot::{Mutex, RwLock};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTimeoutError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::config::{
    RetryPolicy, int_in_range, optional_int, optional_rate_limit, optional_seconds, type_name,
};
use crate::error::{IntoPyErr, config_error, lane_error};
use crate::events::EventStream;
use crate::handle::{CommandFuture, CommandHandle, Finished};
use crate::handler::{
    HandlerEnv, Handlers, SharedHandler, clear_handlers, decorator, python_handler,
    stop_loop_thread, traverse_handlers,
};
use crate::lane::{payload_to_json, refuse_in_running_loop};
use crate::limits::{PriorityBoost, RateLimit};
use crate::runtime::{LoopBody, LoopBridge, LoopTask, awaitable, block_on, runtime};
use crate::stats::{DeadLetter, LaneStatus};

/// The default number of commands a worker runs at once.
const DEFAULT_SLOTS: usize = 64;
/// The default `limit` of `RedisQueue.dead_letters`.
const DEFAULT_DEAD_LETTER_LIMIT: usize = 1000;

/// A task of the runtime failed to return (it panicked or was aborted).
fn join_error(py: Python<'_>, error: tokio::task::JoinError) -> PyErr {
    lane_error(py, format!("the Redis call did not finish: {error}"))
}

/// Runs `future` on the runtime and waits for it here, releasing the GIL; Ctrl-C
/// abandons it (raising `KeyboardInterrupt`).
fn on_runtime<T: Send + 'static>(
    py: Python<'_>,
    future: impl Future<Output = a3s_lane::Result<T>> + Send + 'static,
) -> PyResult<T> {
    let mut task = runtime().spawn(future);
    match block_on(py, Pin::new(&mut task)) {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(error.into_py_err(py)),
        Ok(Err(error)) => Err(join_error(py, error)),
        Err(interrupted) => {
            task.abort();
            Err(interrupted)
        }
    }
}

fn check_command_type(py: Python<'_>, command_type: &str) -> PyResult<()> {
    if command_type.is_empty() || command_type.contains('\n') {
        return Err(config_error(
            py,
            format!("command type {command_type:?} must be non-empty and hold no newline"),
        ));
    }
    Ok(())
}

/// `(key, value)` pairs of a mapping argument, with a TypeError naming it otherwise.
fn mapping_items<'py>(
    value: &Bound<'py, PyAny>,
    name: &str,
    of: &str,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let items = value
        .call_method0("items")
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a mapping of {of}")))?;
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
        let key: String = key.extract().map_err(|_| {
            PyTypeError::new_err(format!("{name}: keys must be str, got {}", type_name(&key)))
        })?;
        out.push((key, value));
    }
    Ok(out)
}

/// A lane of a Redis queue: its priority, its cap, its rate limit and its priority boost
/// hold over every worker together (at most `max_concurrency` of its commands run at once
/// in all processes, the rate limit counts starts in all processes, and the boost counts
/// the head command's wait on the Redis server's clock).
#[pyclass(frozen, eq, hash, module = "a3s_lane", name = "RedisLane")]
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisLane {
    lane: CoreLane,
}

impl std::hash::Hash for RedisLane {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let CoreLane {
            priority,
            max_concurrency,
            rate_limit,
            priority_boost,
        } = &self.lane;
        (priority, max_concurrency, rate_limit, priority_boost).hash(state);
    }
}

#[pymethods]
impl RedisLane {
    /// A lane with `priority` (0..255, lower runs first), `max_concurrency` (>= 1) and,
    /// optionally, a `RateLimit` and a `PriorityBoost` (when workers claim, the lane
    /// competes with its priority minus the boost its oldest pending command has earned
    /// by waiting, timed by the Redis server's clock in whole microseconds).
    #[new]
    #[pyo3(signature = (priority, max_concurrency, *, rate_limit = None, priority_boost = None))]
    fn new(
        py: Python<'_>,
        priority: &Bound<'_, PyAny>,
        max_concurrency: &Bound<'_, PyAny>,
        rate_limit: Option<&Bound<'_, PyAny>>,
        priority_boost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let priority = int_in_range(
            py,
            priority,
            "priority",
            0,
            255,
            "an int from 0 to 255 (0 runs first)",
        )? as u8;
        let max = int_in_range(
            py,
            max_concurrency,
            "max_concurrency",
            1,
            i64::MAX.into(),
            "an int >= 1 (commands of the lane running at once over all workers)",
        )? as usize;
        let mut lane = CoreLane::new(priority, max);
        if let Some(limit) = optional_rate_limit(rate_limit)? {
            lane = lane.with_rate_limit(limit.config);
        }
        if let Some(boost) = priority_boost.filter(|b| !b.is_none()) {
            let boost = boost.cast::<PriorityBoost>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "priority_boost must be a PriorityBoost (for example \
                     PriorityBoost.standard(300)), got {}",
                    type_name(boost)
                ))
            })?;
            let config = boost.get().config.clone();
            if config
                .deadline()
                .is_some_and(|deadline| deadline < Duration::from_micros(1))
            {
                return Err(config_error(
                    py,
                    "priority_boost: the deadline is shorter than the Redis clock's resolution \
                     of 1 microsecond; use at least 0.000001 seconds",
                ));
            }
            lane = lane.with_priority_boost(config);
        }
        Ok(Self { lane })
    }

    /// Priority, 0 runs first.
    #[getter]
    fn priority(&self) -> u8 {
        self.lane.priority
    }

    /// Most commands of the lane running at once, over all workers.
    #[getter]
    fn max_concurrency(&self) -> usize {
        self.lane.max_concurrency
    }

    /// How fast the lane may start commands over all workers, or None for no limit.
    #[getter]
    fn rate_limit(&self) -> Option<RateLimit> {
        (!self.lane.rate_limit.is_unlimited()).then_some(RateLimit {
            config: self.lane.rate_limit,
        })
    }

    /// How the lane's priority rises while its oldest pending command waits, or None.
    #[getter]
    fn priority_boost(&self) -> Option<PriorityBoost> {
        self.lane
            .priority_boost
            .is_enabled()
            .then(|| PriorityBoost {
                config: self.lane.priority_boost.clone(),
            })
    }

    fn __repr__(&self) -> String {
        let mut text = format!(
            "RedisLane(priority={}, max_concurrency={}",
            self.lane.priority, self.lane.max_concurrency
        );
        if let Some(limit) = self.rate_limit() {
            text.push_str(&format!(", rate_limit={}", limit.__repr__()));
        }
        if let Some(boost) = self.priority_boost() {
            text.push_str(&format!(", priority_boost={}", boost.__repr__()));
        }
        text.push(')');
        text
    }
}

/// A command queue kept in Redis, shared by any number of processes and machines.
///
/// Producers submit commands (lane, type, JSON payload) and wait for their results;
/// `RedisWorker`s, here or in other processes, run them with their handlers. Lanes keep
/// strict priority and FIFO order; caps and rate limits hold over all workers; a cancel
/// reaches the worker running the command; retries and dead letters live in Redis.
/// Delivery is at least once: a command whose worker dies runs again elsewhere.
///
/// Every call except `submit_async` blocks for about one Redis round trip, releasing
/// the GIL.
#[pyclass(frozen, module = "a3s_lane", name = "RedisQueue")]
pub(crate) struct RedisQueue {
    queue: CoreQueue,
    prefix: String,
}

/// The options `RedisQueue(url, ...)` and `RedisQueue.cluster(nodes, ...)` share.
struct QueueOptions<'a, 'py> {
    lanes: Option<&'a Bound<'py, PyAny>>,
    key_prefix: &'a str,
    result_ttl: Option<&'a Bound<'py, PyAny>>,
    response_timeout: Option<&'a Bound<'py, PyAny>>,
    connect_timeout: Option<&'a Bound<'py, PyAny>>,
}

impl RedisQueue {
    fn connect(
        py: Python<'_>,
        config: RedisQueueConfig,
        options: QueueOptions<'_, '_>,
    ) -> PyResult<Self> {
        let mut config = config.with_key_prefix(options.key_prefix);
        if let Some(lanes) = options.lanes.filter(|l| !l.is_none()) {
            for (id, lane) in mapping_items(lanes, "lanes", "lane id to RedisLane")? {
                let lane = lane.cast::<RedisLane>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "lane '{id}': expected a RedisLane, got {}",
                        type_name(&lane)
                    ))
                })?;
                config = config.with_lane(id, lane.get().lane.clone());
            }
        }
        if let Some(ttl) = optional_seconds(py, options.result_ttl, "result_ttl", false)? {
            config = config.with_result_ttl(ttl);
        }
        if let Some(timeout) =
            optional_seconds(py, options.response_timeout, "response_timeout", false)?
        {
            config = config.with_response_timeout(timeout);
        }
        if let Some(timeout) =
            optional_seconds(py, options.connect_timeout, "connect_timeout", false)?
        {
            config = config.with_connect_timeout(timeout);
        }
        config.validate().map_err(|e| e.into_py_err(py))?;
        let queue = on_runtime(py, CoreQueue::connect(config))?;
        Ok(Self {
            queue,
            prefix: options.key_prefix.to_owned(),
        })
    }
}

#[pymethods]
impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and declares
    /// `lanes` (lane id -> `RedisLane`), updating lanes that exist already. With
    /// `lanes=None` nothing is declared: use the lanes another process declared.
    /// `RedisQueue.cluster(nodes, ...)` connects to a Redis Cluster instead.
    ///
    /// - `key_prefix`: every key of the queue starts with `{key_prefix}`; different
    ///   prefixes are separate queues on one server.
    /// - `result_ttl`: seconds finished commands and undelivered results stay in Redis
    ///   (default one day); dead letters stay until re-driven or cleared.
    /// - `response_timeout`: seconds to wait for Redis to answer (default 5).
    /// - `connect_timeout`: seconds one connection attempt may take (default 5); an
    ///   address nothing listens on fails at once.
    ///
    /// Raises `StorageError` (naming the address) when Redis cannot be reached and
    /// `ConfigError` for bad values.
    #[new]
    #[pyo3(signature = (url, lanes = None, *, key_prefix = "a3s-lane", result_ttl = None, response_timeout = None, connect_timeout = None))]
    fn new(
        py: Python<'_>,
        url: &str,
        lanes: Option<&Bound<'_, PyAny>>,
        key_prefix: &str,
        result_ttl: Option<&Bound<'_, PyAny>>,
        response_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let options = QueueOptions {
            lanes,
            key_prefix,
            result_ttl,
            response_timeout,
            connect_timeout,
        };
        Self::connect(py, RedisQueueConfig::new(url), options)
    }

    /// Connects to a Redis Cluster through `nodes` (a list of node URLs such as
    /// `["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`; the other nodes are
    /// discovered from them), with the same options as `RedisQueue(url, ...)`. The queue
    /// lives on the node holding its `{key_prefix}` hash slot; commands and workers
    /// follow the slot when the cluster moves it.
    ///
    /// Raises `ConfigError` for an empty list or a bad URL and `StorageError` when no
    /// node can be reached.
    #[staticmethod]
    #[pyo3(signature = (nodes, lanes = None, *, key_prefix = "a3s-lane", result_ttl = None, response_timeout = None, connect_timeout = None))]
    fn cluster(
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        lanes: Option<&Bound<'_, PyAny>>,
        key_prefix: &str,
        result_ttl: Option<&Bound<'_, PyAny>>,
        response_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // A str is a sequence too (of one-letter "URLs"): refuse it by name.
        let urls = if nodes.is_instance_of::<pyo3::types::PyString>() {
            None
        } else {
            nodes.extract::<Vec<String>>().ok()
        };
        let Some(urls) = urls else {
            return Err(PyTypeError::new_err(format!(
                "nodes must be a list of node URLs like ['redis://10.0.0.1:7000'], got {}",
                type_name(nodes)
            )));
        };
        let options = QueueOptions {
            lanes,
            key_prefix,
            result_ttl,
            response_timeout,
            connect_timeout,
        };
        Self::connect(py, RedisQueueConfig::cluster(urls), options)
    }

    /// The key prefix (keys start with `{key_prefix}`).
    #[getter]
    fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// Declares a lane, or updates it; the new settings apply to the next claims (a
    /// changed rate limit starts with a full bucket).
    fn declare_lane(
        &self,
        py: Python<'_>,
        lane: &str,
        config: &Bound<'_, RedisLane>,
    ) -> PyResult<()> {
        let queue = self.queue.clone();
        let (lane, config) = (lane.to_owned(), config.get().lane.clone());
        on_runtime(py, async move { queue.declare_lane(&lane, config).await })
    }

    /// Submits a command to the end of `lane` and returns its `CommandHandle` once Redis
    /// has it (`id`, `cancel()`, `result(timeout)`, `await handle`). Raises
    /// `LaneNotFoundError` for a lane not declared in Redis. Ctrl-C during the round trip
    /// cancels the command.
    #[pyo3(signature = (lane, command_type, payload = None))]
    fn submit(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CommandHandle> {
        let mut task = self.spawn_submit(py, lane, command_type, payload)?;
        match block_on(py, Pin::new(&mut task)) {
            Ok(Ok(Ok(handle))) => Ok(CommandHandle::remote(handle, self.queue.clone())),
            Ok(Ok(Err(error))) => Err(error.into_py_err(py)),
            Ok(Err(error)) => Err(join_error(py, error)),
            Err(interrupted) => {
                // The command may be in Redis already: cancel it once its id is known.
                runtime().spawn(async move {
                    if let Ok(Ok(handle)) = task.await {
                        let _ = handle.cancel().await;
                    }
                });
                Err(interrupted)
            }
        }
    }

    /// Submits a command from a coroutine: `await queue.submit_async(...)` gives its
    /// result. Returns a `CommandFuture` at once (bad arguments raise here); its `id` is
    /// known once Redis has the command, and cancelling it (or the task awaiting it)
    /// cancels the command.
    #[pyo3(signature = (lane, command_type, payload = None))]
    fn submit_async(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<CommandFuture>> {
        let bridge = LoopBridge::of_running_loop(py, "submit_async()")?;
        let task = self.spawn_submit(py, lane, command_type, payload)?;
        let future = CommandFuture::new(
            py,
            bridge.clone(),
            crate::handle::CancelTarget::Remote(self.queue.clone()),
            None,
        )?;
        let body = RemoteSubmit {
            stage: Stage::Accepting(task),
            future: future.clone_ref(py),
        };
        LoopTask::spawn(py, bridge, body);
        Ok(future)
    }

    /// Cancels a command by id. Returns "cancelled" (it was pending or waiting for a
    /// retry, and ended now), "signalled" (it is running; its worker was told and it
    /// ends as cancelled once it stops), "already_finished" or "unknown".
    fn cancel(&self, py: Python<'_>, command_id: u64) -> PyResult<&'static str> {
        let queue = self.queue.clone();
        let outcome = on_runtime(py, async move { queue.cancel(command_id).await })?;
        Ok(match outcome {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::Signalled => "signalled",
            CancelOutcome::AlreadyFinished => "already_finished",
            CancelOutcome::Unknown => "unknown",
        })
    }

    /// Counts per lane and for the queue, the registered workers, and lifetime counters.
    fn stats(&self, py: Python<'_>) -> PyResult<RedisQueueStats> {
        let queue = self.queue.clone();
        let stats = on_runtime(py, async move { queue.stats().await })?;
        RedisQueueStats::new(py, stats)
    }

    /// Stops claims from a lane on every worker (running commands continue). With
    /// `duration` (seconds) the lane resumes by itself afterwards, for example after an
    /// HTTP 429; a shorter pause never cuts a longer one short. `stats()` shows a lane
    /// paused without a duration as `paused`, and one paused for a duration as
    /// `throttled` (like a rate limit, it ends by itself).
    #[pyo3(signature = (lane, duration = None))]
    fn pause_lane(
        &self,
        py: Python<'_>,
        lane: &str,
        duration: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let duration = optional_seconds(py, duration, "duration", false)?;
        let queue = self.queue.clone();
        let lane = lane.to_owned();
        on_runtime(py, async move {
            match duration {
                Some(duration) => queue.pause_lane_for(&lane, duration).await,
                None => queue.pause_lane(&lane).await,
            }
        })
    }

    /// Ends a pause of a lane (timed or not).
    fn resume_lane(&self, py: Python<'_>, lane: &str) -> PyResult<()> {
        let queue = self.queue.clone();
        let lane = lane.to_owned();
        on_runtime(py, async move { queue.resume_lane(&lane).await })
    }

    /// The commands that failed for good, oldest first, at most `limit` (default 1000).
    #[pyo3(signature = (limit = None))]
    fn dead_letters(
        &self,
        py: Python<'_>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<DeadLetter>> {
        let limit = optional_int(py, limit, "limit", 1, usize::MAX as i128, "an int >= 1")?
            .map_or(DEFAULT_DEAD_LETTER_LIMIT, |l| l as usize);
        let queue = self.queue.clone();
        let letters = on_runtime(py, async move { queue.dead_letters(limit).await })?;
        Ok(letters.into_iter().map(DeadLetter::from).collect())
    }

    /// Sends a dead letter back to the end of its lane (attempts reset); returns its
    /// `CommandHandle`.
    fn redrive(&self, py: Python<'_>, command_id: u64) -> PyResult<CommandHandle> {
        let queue = self.queue.clone();
        let handle = on_runtime(py, async move { queue.redrive(command_id).await })?;
        Ok(CommandHandle::remote(handle, self.queue.clone()))
    }

    /// Subscribes to the events of the commands this process submitted and still awaits:
    /// `queue.command.progress` (`lane_id`, `command_id`, `progress`) for each
    /// `ctx.report_progress(...)` of their handlers, on whichever worker they run, and
    /// `queue.events.lagged` for a subscriber that fell more than 1024 events behind.
    /// Progress of a command whose result arrived, or whose handle is gone, is not
    /// delivered. Iterate with `for` or `async for`; `close()` ends the stream.
    fn events(&self) -> EventStream {
        EventStream::new(self.queue.subscribe(), None)
    }

    /// Deletes every key of this queue (lanes, commands, results, dead letters); returns
    /// how many. For tests and retiring a queue: its running workers lose their leases.
    fn clear(&self, py: Python<'_>) -> PyResult<usize> {
        let queue = self.queue.clone();
        on_runtime(py, async move { queue.clear().await })
    }

    fn __repr__(&self) -> String {
        format!("<RedisQueue key_prefix={:?}>", self.prefix)
    }
}

impl RedisQueue {
    /// Checks the arguments here, then submits on the runtime.
    fn spawn_submit(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<JoinHandle<a3s_lane::Result<RedisCommandHandle>>> {
        check_command_type(py, command_type)?;
        let payload: Value = payload_to_json(payload)?;
        let queue = self.queue.clone();
        let (lane, command_type) = (lane.to_owned(), command_type.to_owned());
        Ok(runtime().spawn(async move { queue.submit(&lane, &command_type, payload).await }))
    }
}

enum Stage {
    Accepting(JoinHandle<a3s_lane::Result<RedisCommandHandle>>),
    Waiting(RedisCommandHandle),
    Done,
}

/// Drives one `RedisQueue.submit_async` on the loop's thread: acceptance, then the result.
struct RemoteSubmit {
    stage: Stage,
    future: Py<CommandFuture>,
}

impl LoopBody for RemoteSubmit {
    fn poll(&mut self, py: Python<'_>, cx: &mut Context<'_>) -> Poll<()> {
        let future = self.future.bind(py);
        loop {
            match &mut self.stage {
                Stage::Accepting(task) => {
                    let accepted = std::task::ready!(Pin::new(task).poll(cx));
                    match accepted {
                        Ok(Ok(handle)) => {
                            future.get().accepted(handle.id());
                            self.stage = Stage::Waiting(handle);
                        }
                        Ok(Err(error)) => {
                            self.stage = Stage::Done;
                            CommandFuture::refuse(future, error.into_py_err(py));
                            return Poll::Ready(());
                        }
                        Err(error) => {
                            self.stage = Stage::Done;
                            CommandFuture::refuse(future, join_error(py, error));
                            return Poll::Ready(());
                        }
                    }
                }
                Stage::Waiting(handle) => {
                    if future.get().is_done() {
                        // Cancelled by the caller (and the command with it): stop waiting.
                        self.stage = Stage::Done;
                        return Poll::Ready(());
                    }
                    let result = std::task::ready!(Pin::new(handle).poll(cx));
                    self.stage = Stage::Done;
                    let finished = Finished {
                        result,
                        exception: None,
                    };
                    CommandFuture::finish(future, &finished);
                    return Poll::Ready(());
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Counts of a Redis queue at the time of `RedisQueue.stats()`.
#[pyclass(frozen, module = "a3s_lane", name = "RedisQueueStats")]
pub(crate) struct RedisQueueStats {
    stats: CoreStats,
    lanes: HashMap<String, Py<LaneStatus>>,
}

impl RedisQueueStats {
    fn new(py: Python<'_>, mut stats: CoreStats) -> PyResult<Self> {
        let mut lanes = HashMap::with_capacity(stats.queue.lanes.len());
        for (id, status) in std::mem::take(&mut stats.queue.lanes) {
            lanes.insert(id, Py::new(py, LaneStatus::from(status))?);
        }
        Ok(Self { stats, lanes })
    }
}

#[pymethods]
impl RedisQueueStats {
    /// Commands waiting in their lanes, over all lanes.
    #[getter]
    fn total_pending(&self) -> usize {
        self.stats.queue.total_pending
    }

    /// Commands running on workers, over all lanes.
    #[getter]
    fn total_active(&self) -> usize {
        self.stats.queue.total_active
    }

    /// Failed commands waiting for their retry delay.
    #[getter]
    fn total_delayed(&self) -> usize {
        self.stats.queue.total_delayed
    }

    /// Each lane's status, by lane id (`min_concurrency` is 0: Redis lanes reserve none).
    #[getter]
    fn lanes(&self, py: Python<'_>) -> HashMap<String, Py<LaneStatus>> {
        self.lanes
            .iter()
            .map(|(id, status)| (id.clone(), status.clone_ref(py)))
            .collect()
    }

    /// Registered workers.
    #[getter]
    fn workers(&self) -> usize {
        self.stats.workers
    }

    /// Workers waiting for work.
    #[getter]
    fn idle_workers(&self) -> usize {
        self.stats.idle_workers
    }

    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a lost worker), `released`, `stale` (results refused
    /// by fencing), `workers_lost`.
    #[getter]
    fn counters(&self) -> HashMap<String, u64> {
        self.stats.counters.clone()
    }

    /// A lifetime counter, 0 if it never moved.
    fn counter(&self, name: &str) -> u64 {
        self.stats.counter(name)
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisQueueStats(total_pending={}, total_active={}, total_delayed={}, workers={}, lanes={})",
            self.stats.queue.total_pending,
            self.stats.queue.total_active,
            self.stats.queue.total_delayed,
            self.stats.workers,
            self.lanes.len()
        )
    }
}

enum Phase {
    New,
    Starting,
    Running(CoreWorker),
    Stopped,
}

struct WorkerState {
    phase: Phase,
    /// The worker's id in Redis, once known.
    id: Option<String>,
    has_async_handlers: bool,
    /// The `LoopThread` of a worker started outside any event loop.
    private_loop: Option<Py<PyAny>>,
}

/// Runs the commands of a `RedisQueue` with Python handlers; start as many as you like,
/// in any number of processes and machines.
///
/// Register handlers with `@worker.handler("type")` (plain `def` or `async def`, the same
/// as a `Lane`'s), then `start()`. Each worker claims the most urgent commands it has
/// room for (`slots`); a worker that dies loses its commands to the others after
/// `lease_ttl`. Stop it with `shutdown(timeout)` (finish what runs) or `shutdown_now()`
/// (hand running commands back to the queue); a dropped worker stops as with
/// `shutdown_now()`.
#[pyclass(frozen, weakref, module = "a3s_lane", name = "RedisWorker")]
pub(crate) struct RedisWorker {
    queue: CoreQueue,
    config: RedisWorkerConfig,
    registry: HandlerRegistry,
    /// The handlers by type; the garbage collector sees their callables.
    handlers: Handlers,
    env: Arc<HandlerEnv>,
    state: Mutex<WorkerState>,
}

impl Drop for RedisWorker {
    fn drop(&mut self) {
        if let Some(thread) = self.state.get_mut().private_loop.take() {
            stop_loop_thread(thread);
        }
    }
}

fn worker_config(
    py: Python<'_>,
    slots: Option<&Bound<'_, PyAny>>,
    worker_id: Option<&str>,
    durations: [(Option<&Bound<'_, PyAny>>, &str); 4],
    lane_timeouts: Option<&Bound<'_, PyAny>>,
    retry: Option<&Bound<'_, PyAny>>,
    lane_retries: Option<&Bound<'_, PyAny>>,
) -> PyResult<RedisWorkerConfig> {
    let slots = optional_int(
        py,
        slots,
        "slots",
        1,
        usize::MAX as i128,
        "an int >= 1 (commands the worker runs at once)",
    )?
    .map_or(DEFAULT_SLOTS, |s| s as usize);
    let mut config = RedisWorkerConfig::new(slots);
    if let Some(id) = worker_id {
        config = config.with_worker_id(id);
    }
    let [
        (lease_ttl, lease_name),
        (heartbeat, heartbeat_name),
        (grace, grace_name),
        (timeout, timeout_name),
    ] = durations;
    if let Some(ttl) = optional_seconds(py, lease_ttl, lease_name, false)? {
        config = config.with_lease_ttl(ttl);
    }
    if let Some(interval) = optional_seconds(py, heartbeat, heartbeat_name, false)? {
        config = config.with_heartbeat_interval(interval);
    }
    if let Some(grace) = optional_seconds(py, grace, grace_name, true)? {
        config = config.with_cancel_grace(grace);
    }
    if let Some(timeout) = optional_seconds(py, timeout, timeout_name, false)? {
        config = config.with_timeout(timeout);
    }
    if let Some(timeouts) = lane_timeouts.filter(|t| !t.is_none()) {
        for (lane, value) in mapping_items(timeouts, "lane_timeouts", "lane id to seconds")? {
            let seconds =
                crate::config::seconds(py, &value, &format!("lane_timeouts['{lane}']"), false)?;
            config = config.with_lane_timeout(lane, seconds);
        }
    }
    let policy = |value: &Bound<'_, PyAny>, name: &str| -> PyResult<a3s_lane::RetryPolicy> {
        value
            .cast::<RetryPolicy>()
            .map(|policy| policy.get().policy.clone())
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "{name} must be a RetryPolicy, got {}",
                    type_name(value)
                ))
            })
    };
    if let Some(retry) = retry.filter(|r| !r.is_none()) {
        config = config.with_retry_policy(policy(retry, "retry")?);
    }
    if let Some(retries) = lane_retries.filter(|r| !r.is_none()) {
        for (lane, value) in mapping_items(retries, "lane_retries", "lane id to RetryPolicy")? {
            let retry = policy(&value, &format!("lane_retries['{lane}']"))?;
            config = config.with_lane_retry_policy(lane, retry);
        }
    }
    config.validate().map_err(|e| e.into_py_err(py))?;
    Ok(config)
}

fn shutdown_result(
    py: Python<'_>,
    result: a3s_lane::Result<()>,
    timeout: Duration,
) -> PyResult<()> {
    match result {
        Ok(()) => Ok(()),
        Err(CoreError::Timeout(_)) => Err(PyTimeoutError::new_err(format!(
            "the worker's running commands did not finish within {timeout:?}; they were \
             cancelled and handed back to the queue for other workers"
        ))),
        Err(error) => Err(error.into_py_err(py)),
    }
}

impl RedisWorker {
    fn register(
        &self,
        py: Python<'_>,
        command_type: &str,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let handler = python_handler(py, command_type, func, self.env.clone())?;
        if handler.is_async() {
            let mut state = self.state.lock();
            state.has_async_handlers = true;
            if matches!(state.phase, Phase::Starting | Phase::Running(_)) {
                let WorkerState { private_loop, .. } = &mut *state;
                self.env.ensure_home(py, private_loop)?;
            }
        }
        self.handlers
            .write()
            .insert(command_type.to_owned(), handler.clone());
        self.registry.register(command_type, SharedHandler(handler));
        Ok(())
    }

    /// Takes the running worker to stop it; None if it never started.
    fn take_running(&self, py: Python<'_>) -> PyResult<Option<CoreWorker>> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut state.phase, Phase::Stopped) {
            Phase::Running(worker) => Ok(Some(worker)),
            Phase::New | Phase::Stopped => Ok(None),
            Phase::Starting => {
                state.phase = Phase::Starting;
                Err(lane_error(
                    py,
                    "the worker is still starting in another thread; shut it down once start() returned",
                ))
            }
        }
    }
}

#[pymethods]
impl RedisWorker {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse_handlers(&self.handlers, &visit)
    }

    fn __clear__(&self) {
        clear_handlers(&self.handlers);
    }

    /// A worker for `queue` (not started yet); every value is checked here.
    ///
    /// - `slots`: most commands this worker runs at once (default 64).
    /// - `worker_id`: its name in Redis (default: host, process id and a random suffix);
    ///   two live workers must never share one.
    /// - `lease_ttl`: seconds its commands stay its own without a heartbeat (default 15);
    ///   a worker that dies loses them to the others after this long.
    /// - `heartbeat_interval`: seconds between lease renewals when idle (default a third
    ///   of `lease_ttl`).
    /// - `cancel_grace`: seconds a cancelled running command gets to stop by itself.
    /// - `timeout` / `lane_timeouts`: seconds a run may take, for every lane / per lane.
    /// - `retry` / `lane_retries`: a `RetryPolicy` for every lane / per lane; a retry
    ///   waits in Redis and may run on any worker.
    ///
    /// Workers of one queue should agree on timeouts and retry policies.
    #[new]
    #[pyo3(signature = (
        queue,
        slots = None,
        *,
        worker_id = None,
        lease_ttl = None,
        heartbeat_interval = None,
        cancel_grace = None,
        timeout = None,
        lane_timeouts = None,
        retry = None,
        lane_retries = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        queue: &Bound<'_, PyAny>,
        slots: Option<&Bound<'_, PyAny>>,
        worker_id: Option<&str>,
        lease_ttl: Option<&Bound<'_, PyAny>>,
        heartbeat_interval: Option<&Bound<'_, PyAny>>,
        cancel_grace: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        lane_timeouts: Option<&Bound<'_, PyAny>>,
        retry: Option<&Bound<'_, PyAny>>,
        lane_retries: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let queue = queue
            .cast::<RedisQueue>()
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "queue must be a RedisQueue, got {}",
                    type_name(queue)
                ))
            })?
            .get()
            .queue
            .clone();
        let config = worker_config(
            py,
            slots,
            worker_id,
            [
                (lease_ttl, "lease_ttl"),
                (heartbeat_interval, "heartbeat_interval"),
                (cancel_grace, "cancel_grace"),
                (timeout, "timeout"),
            ],
            lane_timeouts,
            retry,
            lane_retries,
        )?;
        Ok(Self {
            queue,
            config,
            registry: HandlerRegistry::default(),
            handlers: RwLock::new(HashMap::new()),
            env: Arc::new(HandlerEnv::default()),
            state: Mutex::new(WorkerState {
                phase: Phase::New,
                id: worker_id.map(str::to_owned),
                has_async_handlers: false,
                private_loop: None,
            }),
        })
    }

    /// Registers `func` as the handler of `command_type` (replacing any earlier one),
    /// before or after `start()`. Same rules as `Lane.register_handler`.
    fn register_handler(
        &self,
        py: Python<'_>,
        command_type: &str,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.register(py, command_type, func)
    }

    /// A decorator registering the function as the handler of `command_type`:
    /// `@worker.handler("fetch")`. Returns the function unchanged.
    fn handler(slf: Py<Self>, py: Python<'_>, command_type: String) -> PyResult<Py<PyAny>> {
        let registered = command_type.clone();
        decorator(
            py,
            &command_type,
            "worker.handler(type)",
            move |py, func| slf.get().register(py, &registered, func),
        )
    }

    /// Registers the worker with the queue and starts claiming commands. `async def`
    /// handlers run on the event loop running in this thread, or on a private loop if
    /// none is. Calling it again while it runs does nothing; a worker that was shut down
    /// cannot start again.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut state = self.state.lock();
            match state.phase {
                Phase::Running(_) => return Ok(()),
                Phase::Starting => {
                    return Err(lane_error(
                        py,
                        "the worker is already starting in another thread",
                    ));
                }
                Phase::Stopped => {
                    return Err(lane_error(
                        py,
                        "this worker was shut down and cannot start again; create a new RedisWorker",
                    ));
                }
                Phase::New => {}
            }
            if state.has_async_handlers {
                let WorkerState { private_loop, .. } = &mut *state;
                self.env.ensure_home(py, private_loop)?;
            }
            state.phase = Phase::Starting;
        }
        let (queue, registry, config) = (
            self.queue.clone(),
            self.registry.clone(),
            self.config.clone(),
        );
        let started = on_runtime(py, async move {
            CoreWorker::start(&queue, registry, config).await
        });
        let mut state = self.state.lock();
        match started {
            Ok(worker) => {
                state.id = Some(worker.id().to_owned());
                state.phase = Phase::Running(worker);
                Ok(())
            }
            Err(error) => {
                state.phase = Phase::New;
                Err(error)
            }
        }
    }

    /// The worker's id in Redis (None before `start()` unless `worker_id` was given).
    #[getter]
    fn id(&self) -> Option<String> {
        self.state.lock().id.clone()
    }

    /// How many commands this worker runs now.
    #[getter]
    fn running(&self) -> usize {
        match &self.state.lock().phase {
            Phase::Running(worker) => worker.running(),
            _ => 0,
        }
    }

    /// Stops claiming, lets running commands finish and report, and leaves the queue,
    /// releasing the GIL. After `timeout` seconds (None: no limit) what still runs is
    /// cancelled and handed back to the queue, and `TimeoutError` is raised. Not for use
    /// inside a running event loop: use `shutdown_async` there.
    #[pyo3(signature = (timeout = None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        refuse_in_running_loop(py, "shutdown()", "`await worker.shutdown_async(...)`")?;
        let timeout = optional_seconds(py, timeout, "timeout", true)?.unwrap_or(Duration::MAX);
        let Some(worker) = self.take_running(py)? else {
            return Ok(());
        };
        let mut stop = Box::pin(worker.shutdown(timeout));
        let result = block_on(py, stop.as_mut())?;
        shutdown_result(py, result, timeout)
    }

    /// `shutdown` for coroutines: `await worker.shutdown_async(timeout=30.0)`.
    #[pyo3(signature = (timeout = None))]
    fn shutdown_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = optional_seconds(py, timeout, "timeout", true)?.unwrap_or(Duration::MAX);
        // Outside a loop this must fail before the worker is taken (and stopped).
        LoopBridge::of_running_loop(py, "shutdown_async()")?;
        let worker = self.take_running(py)?;
        awaitable(
            py,
            "shutdown_async()",
            async move {
                match worker {
                    Some(worker) => worker.shutdown(timeout).await,
                    None => Ok(()),
                }
            },
            move |py, result| shutdown_result(py, result, timeout).map(|()| py.None()),
        )
    }

    /// Stops at once: running commands are cancelled (their handlers see it) and handed
    /// back to the queue for other workers, without counting an attempt. Returns how
    /// many were handed back. Not for use inside a running event loop: use
    /// `shutdown_now_async` there.
    fn shutdown_now(&self, py: Python<'_>) -> PyResult<usize> {
        refuse_in_running_loop(py, "shutdown_now()", "`await worker.shutdown_now_async()`")?;
        let Some(worker) = self.take_running(py)? else {
            return Ok(0);
        };
        let mut stop = Box::pin(worker.shutdown_now());
        block_on(py, stop.as_mut())
    }

    /// `shutdown_now` for coroutines: `await worker.shutdown_now_async()`.
    fn shutdown_now_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        LoopBridge::of_running_loop(py, "shutdown_now_async()")?;
        let worker = self.take_running(py)?;
        awaitable(
            py,
            "shutdown_now_async()",
            async move {
                match worker {
                    Some(worker) => worker.shutdown_now().await,
                    None => 0,
                }
            },
            |py, handed_back| Ok(handed_back.into_pyobject(py)?.into_any().unbind()),
        )
    }

    fn __repr__(&self) -> String {
        let state = self.state.lock();
        let phase = match &state.phase {
            Phase::New => "new",
            Phase::Starting => "starting",
            Phase::Running(_) => "running",
            Phase::Stopped => "stopped",
        };
        match &state.id {
            Some(id) => format!("<RedisWorker id={id:?} {phase}>"),
            None => format!("<RedisWorker {phase}>"),
        }
    }
}
