//! `Lane`: the queue as Python sees it. It holds the core `QueueManager`, converts
//! arguments, maps errors, and leaves every decision to the core.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandQueue, EventEmitter, LaneError as CoreError, LocalStorage, QueueManager,
    QueueManagerBuilder, QueueMetrics, SubmitOptions,
};
use parking_lot::Mutex;
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyDeprecationWarning, PyTimeoutError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use serde_json::Value;

use crate::args::{optional, optional_seconds, submit_options, usize_arg};
use crate::client::QueueClient;
use crate::config::resolve_lanes;
use crate::convert::payload_to_json;
use crate::error::{IntoPyErr, config_error};
use crate::event_loop::{LoopBridge, stop_loop_thread};
use crate::handle::{
    Accepting, CommandFuture, CommandHandle, Finished, SubmitBody, forget_when_done,
};
use crate::handler::{
    DirectCommand, HandlerEnv, Handlers, SharedHandler, clear_handlers, decorator, python_handler,
    traverse_handlers,
};
use crate::loop_task::awaitable;
use crate::metrics::MetricsSnapshot;
use crate::runtime::{block_on, refuse_in_running_loop, runtime};
use crate::spawner::LoopSpawner;

/// A lane-based priority command queue running Python handlers.
///
/// `Lane()` has the six default lanes (system 0, control 1, query 2, session 3, skill 4,
/// prompt 5; lower runs first). `Lane({"name": LaneConfig(...), ...})` has exactly the
/// lanes given. Register handlers with `@lane.handler("type")`, call `start()`, then
/// submit: `submit()` blocks, `await submit_async()` suits asyncio, `submit_nowait()`
/// returns a `CommandHandle` at once.
///
/// `async def` handlers run on the event loop that was running when `start()` was called
/// (or, if there was none, on a private loop in a background thread); plain `def`
/// handlers run on a thread pool.
///
/// A `QueueClient`: `cancel`, `command`, `list_commands`, `put_schedule`, `schedules`,
/// `pause_schedule`, `resume_schedule`, `remove_schedule`, `stats`, `pause_lane`,
/// `resume_lane`, `dead_letters`, `redrive`, `purge_dead_letters`, `on_size_less_than` and
/// `events` are those of a `RedisQueue`.
#[pyclass(frozen, weakref, extends = QueueClient, module = "a3s_lane", name = "Lane")]
pub(crate) struct Lane {
    manager: QueueManager,
    queue: Arc<CommandQueue>,
    /// Whether commands are stored (their acceptance then waits for the store).
    durable: bool,
    /// Whether commands are submitted as `DirectCommand`s: nothing (no store, no dead
    /// letters) needs their payload but their handler.
    direct: bool,
    /// The lanes whose submits may wait for room (`when_full="wait"`): their acceptance
    /// is a future, never a wait on an event loop's thread.
    waiting_lanes: Vec<String>,
    /// The handlers by command type (also registered with the queue, for replayable
    /// commands); the garbage collector sees their callables through `__traverse__`.
    handlers: Handlers,
    env: Arc<HandlerEnv>,
    lifecycle: Mutex<Lifecycle>,
    /// What the queue records with `metrics=True`.
    metrics: Option<QueueMetrics>,
    /// How far an event subscriber may fall behind.
    event_capacity: usize,
    /// What the exit hook drains (unregistered when the lane is dropped).
    _exit: Arc<crate::exit::ExitEntry>,
}

#[derive(Default)]
struct Lifecycle {
    started: bool,
    has_async_handlers: bool,
    /// The `LoopThread` of a lane started outside any event loop.
    private_loop: Option<Py<PyAny>>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(thread) = self.lifecycle.get_mut().private_loop.take() {
            stop_loop_thread(thread);
        }
    }
}

/// Values the core accepts without a rule of its own yet, refused here rather than
/// clamped or ignored: an event capacity of 0 (the core's emitter would treat it as 1)
/// or beyond what its channel can hold (it would panic on the first subscriber), and a
/// dead-letter capacity of 0 (it would keep nothing). Remove a check once the core
/// refuses the value itself.
fn refuse_unchecked_by_core(
    py: Python<'_>,
    event_capacity: usize,
    dead_letters: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    const MAX_EVENT_CAPACITY: usize = usize::MAX >> 1;
    if event_capacity == 0 || event_capacity > MAX_EVENT_CAPACITY {
        return Err(config_error(
            py,
            format!(
                "event_capacity must be an int from 1 to {MAX_EVENT_CAPACITY}, got {event_capacity}"
            ),
        ));
    }
    if let Some(dead_letters) = dead_letters.filter(|d| !d.is_none())
        && usize_arg(dead_letters, "dead_letters")? == 0
    {
        return Err(config_error(
            py,
            "dead_letters must be an int >= 1 (or None to keep none), got 0",
        ));
    }
    Ok(())
}

/// A command's acceptance: done at once, or (durable lanes, lanes that wait for room)
/// waiting.
enum Acceptance {
    Done(a3s_lane::Result<a3s_lane::CommandHandle>),
    Later(Accepting),
}

/// What a submit puts in the queue: a `DirectCommand` (its handler looked up already) or
/// a replayable command by type.
enum Submitted {
    Direct(Box<DirectCommand>),
    Replayable {
        command_type: String,
        payload: Value,
    },
}

/// The acceptance of a command as a future of its own (for the runtime, or an event
/// loop), not tied to the call.
fn accepting(
    queue: &Arc<CommandQueue>,
    lane: &str,
    command: Submitted,
    options: SubmitOptions,
) -> Accepting {
    let queue = queue.clone();
    let lane = lane.to_owned();
    Box::pin(async move {
        match command {
            Submitted::Direct(command) => queue.submit_with_options(&lane, command, &options).await,
            Submitted::Replayable {
                command_type,
                payload,
            } => {
                queue
                    .submit_replayable_with(&lane, &command_type, payload, &options)
                    .await
            }
        }
    })
}

/// Polls an acceptance once, here: without storage and with room in the lane the queue
/// accepts the command at once (no allocation for a future, and the id is known).
fn accept_now(
    py: Python<'_>,
    accept: impl std::future::Future<Output = a3s_lane::Result<a3s_lane::CommandHandle>>,
) -> PyResult<Acceptance> {
    let mut accept = std::pin::pin!(accept);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(accept.as_mut(), &mut cx) {
        std::task::Poll::Ready(result) => Ok(Acceptance::Done(result)),
        // Not expected without storage or a lane that waits; wait rather than lose it.
        std::task::Poll::Pending => block_on(py, accept).map(Acceptance::Done),
    }
}

impl Lane {
    /// Starts accepting a command. Without storage the queue accepts it right here, in
    /// this GIL hold; a durable lane, or one that may wait for room (`when_full="wait"`),
    /// gives a future to wait for.
    fn accept(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> PyResult<Acceptance> {
        let plain = options == SubmitOptions::default();
        let command = if self.direct {
            let Some(handler) = self.handlers.read().get(command_type).cloned() else {
                // An unknown lane is reported first, as the core does.
                let error = match self.queue.lane_status(lane) {
                    Err(unknown_lane) => unknown_lane,
                    Ok(_) => self.handler_not_found(command_type),
                };
                return Ok(Acceptance::Done(Err(error)));
            };
            Submitted::Direct(Box::new(DirectCommand {
                handler,
                payload: Arc::new(payload),
            }))
        } else {
            Submitted::Replayable {
                command_type: command_type.to_owned(),
                payload,
            }
        };
        if self.durable || self.waiting_lanes.iter().any(|waits| waits == lane) {
            return Ok(Acceptance::Later(accepting(
                &self.queue,
                lane,
                command,
                options,
            )));
        }
        match command {
            Submitted::Direct(command) if plain => {
                accept_now(py, self.queue.submit_with_handle(lane, command))
            }
            Submitted::Direct(command) => {
                accept_now(py, self.queue.submit_with_options(lane, command, &options))
            }
            Submitted::Replayable {
                command_type,
                payload,
            } => accept_now(
                py,
                self.queue
                    .submit_replayable_with(lane, &command_type, payload, &options),
            ),
        }
    }

    /// Accepts a command on this thread, the GIL held while polling, so the error slot
    /// is registered before any handler can raise. Ctrl-C during a durable write leaves
    /// the write to finish on the runtime and cancels the command (not a duplicate's:
    /// that command belongs to its first submitter).
    fn accept_blocking(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> PyResult<a3s_lane::CommandHandle> {
        let mut accept = match self.accept(py, lane, command_type, payload, options)? {
            Acceptance::Done(Ok(handle)) => {
                self.env.slots.awaited_handle(&handle);
                return Ok(handle);
            }
            Acceptance::Done(Err(error)) => return Err(error.into_py_err(py)),
            Acceptance::Later(accept) => accept,
        };
        match block_on(py, accept.as_mut()) {
            Ok(Ok(handle)) => {
                self.env.slots.awaited_handle(&handle);
                Ok(handle)
            }
            Ok(Err(error)) => Err(error.into_py_err(py)),
            Err(interrupted) => {
                runtime().spawn(async move {
                    if let Ok(handle) = accept.await
                        && !handle.is_duplicate()
                    {
                        handle.cancel();
                    }
                });
                Err(interrupted)
            }
        }
    }

    fn ensure_home_loop(&self, py: Python<'_>, lifecycle: &mut Lifecycle) -> PyResult<()> {
        self.env.home.ensure(py, &mut lifecycle.private_loop)
    }

    fn register(
        &self,
        py: Python<'_>,
        command_type: &str,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let handler = python_handler(py, command_type, func, self.env.clone())?;
        let is_async = handler.is_async();
        {
            let mut lifecycle = self.lifecycle.lock();
            if is_async {
                lifecycle.has_async_handlers = true;
                if lifecycle.started {
                    self.ensure_home_loop(py, &mut lifecycle)?;
                }
            }
        }
        self.handlers
            .write()
            .insert(command_type.to_owned(), handler.clone());
        self.manager
            .register_handler(command_type, SharedHandler(handler));
        Ok(())
    }

    /// A blocking wait for a command before `start()` would never end.
    fn refuse_before_start(&self, py: Python<'_>, call: &str) -> PyResult<()> {
        if self.queue.is_started() {
            return Ok(());
        }
        Err(crate::error::lane_error(
            py,
            format!(
                "{call} waits for the command to run, and the lane is not started: call \
                 lane.start() first (or use submit_nowait() to queue commands before start)"
            ),
        ))
    }

    fn handler_not_found(&self, command_type: &str) -> CoreError {
        let mut registered: Vec<String> = self.handlers.read().keys().cloned().collect();
        registered.sort_unstable();
        CoreError::HandlerNotFound {
            command_type: command_type.to_owned(),
            registered: if registered.is_empty() {
                "(none)".into()
            } else {
                registered.join(", ")
            },
        }
    }
}

#[pymethods]
impl Lane {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse_handlers(&self.handlers, &visit)
    }

    fn __clear__(&self) {
        clear_handlers(&self.handlers);
    }

    /// Creates a queue (not started yet).
    ///
    /// - `lanes`: lane id -> `LaneConfig`; None for the six default lanes.
    /// - `max_concurrency`: a global budget over all lanes (each lane's
    ///   `min_concurrency` is reserved for it); None for none.
    /// - `storage`: a directory for the durable store. Commands are written before the
    ///   submit returns and unfinished ones run again after a restart (register their
    ///   handlers before `start()`).
    /// - `dead_letters`: keep up to this many commands that failed for good.
    /// - `event_capacity`: how far an event subscriber may fall behind before it misses
    ///   events (`event_buffer` is its deprecated name).
    /// - `metrics`: record counters, gauges and latency histograms (read them with
    ///   `metrics()` or `metrics_prometheus()`).
    /// - `group_metrics`: with `metrics`, series per group for the first this many
    ///   (lane, group) pairs seen (1 to 10,000), plus the groups in
    ///   `group_metrics_always`; later groups count in their lane's `other` bucket.
    #[new]
    #[pyo3(signature = (lanes = None, *, max_concurrency = None, storage = None, dead_letters = None, event_capacity = None, metrics = false, event_buffer = None, group_metrics = None, group_metrics_always = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        lanes: Option<&Bound<'_, PyAny>>,
        max_concurrency: Option<&Bound<'_, PyAny>>,
        storage: Option<&Bound<'_, PyAny>>,
        dead_letters: Option<&Bound<'_, PyAny>>,
        event_capacity: Option<&Bound<'_, PyAny>>,
        metrics: bool,
        event_buffer: Option<&Bound<'_, PyAny>>,
        group_metrics: Option<&Bound<'_, PyAny>>,
        group_metrics_always: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let group_metrics = crate::metrics::group_metrics_config(
            py,
            metrics,
            optional(group_metrics, |n| usize_arg(n, "group_metrics"))?,
            group_metrics_always,
        )?;
        let event_capacity = match (
            optional(event_capacity, |c| usize_arg(c, "event_capacity"))?,
            optional(event_buffer, |b| usize_arg(b, "event_buffer"))?,
        ) {
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(
                    "give event_capacity only (event_buffer is its deprecated name)",
                ));
            }
            (Some(capacity), None) => capacity,
            (None, Some(capacity)) => {
                PyErr::warn(
                    py,
                    &py.get_type::<PyDeprecationWarning>(),
                    c"Lane(event_buffer=...) is deprecated; use Lane(event_capacity=...)",
                    1,
                )?;
                capacity
            }
            (None, None) => a3s_lane::DEFAULT_EVENT_CAPACITY,
        };
        refuse_unchecked_by_core(py, event_capacity, dead_letters)?;
        let env = Arc::new(HandlerEnv::default());
        let mut waiting_lanes = Vec::new();
        let mut builder = QueueManagerBuilder::new(EventEmitter::new(event_capacity))
            .with_spawner(LoopSpawner::new(env.home.clone()));
        match lanes.filter(|l| !l.is_none()) {
            None => builder = builder.with_default_lanes(),
            Some(lanes) => {
                let lanes = resolve_lanes(py, lanes)?;
                if lanes.is_empty() {
                    return Err(config_error(
                        py,
                        "lanes is empty; give at least one lane, or None for the default lanes",
                    ));
                }
                for (id, config, priority) in lanes {
                    if matches!(config.when_full, a3s_lane::WhenFull::Wait { .. }) {
                        waiting_lanes.push(id.clone());
                    }
                    builder = builder.with_lane(id, config, priority);
                }
            }
        }
        if let Some(max) = optional(max_concurrency, |m| usize_arg(m, "max_concurrency"))? {
            builder = builder.with_max_concurrency(max);
        }
        let dead_letters = optional(dead_letters, |d| usize_arg(d, "dead_letters"))?;
        if let Some(size) = dead_letters {
            builder = builder.with_dlq(size);
        }
        let metrics = match (metrics.then(QueueMetrics::local), group_metrics) {
            (Some(metrics), Some(config)) => Some(
                metrics
                    .with_group_metrics(config)
                    .map_err(|e| e.into_py_err(py))?,
            ),
            (metrics, _) => metrics,
        };
        if let Some(metrics) = &metrics {
            builder = builder.with_metrics(metrics.clone());
        }
        let storage = optional(storage, |path| {
            py.import("os")?
                .call_method1("fspath", (path,))
                .and_then(|p| p.extract::<std::path::PathBuf>())
                .map_err(|_| PyTypeError::new_err("storage must be a path (str or os.PathLike)"))
        })?;
        let durable = storage.is_some();
        let direct = !durable && dead_letters.is_none();
        let built = py.detach(|| {
            runtime().block_on(async move {
                if let Some(path) = storage {
                    let store = LocalStorage::new(&path).await?;
                    builder = builder.with_storage(Arc::new(store));
                }
                builder.build().await
            })
        });
        let manager = built.map_err(|e| e.into_py_err(py))?;
        let queue = manager.queue();
        if !queue.schedules().is_empty() {
            // Schedules recovered from storage fire once the lane starts.
            env.slots.track_each();
        }
        let client = QueueClient::local(
            manager.clone(),
            Arc::downgrade(&queue),
            env.clone(),
            metrics.clone(),
        );
        let exit = crate::exit::register(crate::exit::ExitEntry {
            manager: manager.clone(),
            queue: Arc::downgrade(&queue),
            durable,
            env: env.clone(),
        });
        Ok(PyClassInitializer::from(client).add_subclass(Self {
            _exit: exit,
            queue,
            durable,
            direct,
            waiting_lanes,
            handlers: parking_lot::RwLock::new(HashMap::new()),
            manager,
            env,
            lifecycle: Mutex::new(Lifecycle::default()),
            metrics,
            event_capacity,
        }))
    }

    /// How far an event subscriber may fall behind before it misses events.
    #[getter]
    fn event_capacity(&self) -> usize {
        self.event_capacity
    }

    /// Registers `func` as the handler of `command_type` (replacing any earlier one).
    ///
    /// `func(payload)` or `func(payload, ctx)` with a `CommandContext`; a plain `def`
    /// runs on a thread pool, an `async def` on the lane's event loop. It returns the
    /// result (JSON); its exception reaches the caller as is.
    fn register_handler(
        &self,
        py: Python<'_>,
        command_type: &str,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.register(py, command_type, func)
    }

    /// A decorator registering the function as the handler of `command_type`:
    /// `@lane.handler("fetch")`. Returns the function unchanged.
    fn handler(slf: Py<Self>, py: Python<'_>, command_type: String) -> PyResult<Py<PyAny>> {
        let registered = command_type.clone();
        decorator(py, &command_type, "lane.handler(type)", move |py, func| {
            slf.get().register(py, &registered, func)
        })
    }

    /// Starts running commands. `async def` handlers will run on the event loop running
    /// in this thread, or on a private loop if none is running. Commands recovered from
    /// storage start now. Raises `LaneError` if the lane was started already, and
    /// `ShutdownError` after `shutdown()` (make a new `Lane`).
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if self.manager.is_shutting_down() {
            return Err(CoreError::ShutdownInProgress.into_py_err(py));
        }
        {
            let mut lifecycle = self.lifecycle.lock();
            if lifecycle.started {
                return Err(crate::error::lane_error(
                    py,
                    "the lane is started already (start() is called once)",
                ));
            }
            if lifecycle.has_async_handlers {
                self.ensure_home_loop(py, &mut lifecycle)?;
            }
            lifecycle.started = true;
        }
        let mut start = std::pin::pin!(self.manager.start());
        block_on(py, start.as_mut())?.map_err(|e| e.into_py_err(py))
    }

    /// Submits a command and waits for its result (releasing the GIL).
    ///
    /// Returns what the handler returned; raises the handler's exception, or a
    /// `LaneError` (`LaneNotFoundError`, `CommandTimeoutError`, `CancelledError`,
    /// `ShutdownError`, `ExpiredError`, `LaneFullError`, ...). Ctrl-C cancels the
    /// command and raises `KeyboardInterrupt` (for a duplicate of a live key's command,
    /// it only stops this wait: the command goes on for its other submitters). Not for use inside a running event loop:
    /// use `submit_async` there.
    ///
    /// Keyword-only, on every submit: `delay` (seconds or a `timedelta`) or `run_at` (a
    /// timezone-aware `datetime`) holds the command back (shown as delayed) until then,
    /// after which it takes its place at the back of its lane; `start_by` (an aware
    /// `datetime`) or `start_within` (seconds or a `timedelta`) is a deadline to start
    /// by: a command not started by then never runs and ends with `ExpiredError`. A lane
    /// with `max_waiting` that is full raises `LaneFullError`, or waits for room
    /// (`when_full="wait"`). `key` (a non-empty `str` of at most 512 UTF-8 bytes) is an
    /// idempotency key: while a command submitted with the same key to this queue (any
    /// lane) is delayed, pending or running, the submit queues nothing and gives that
    /// command (its result here; `is_duplicate` on the handle or future of the other
    /// submits). Once it ended, the key is free; a durable lane keeps it across restarts.
    /// `group` (a non-empty `str` of at most 256 UTF-8 bytes, such as a tenant or session
    /// id) puts the command in that group of its lane: it waits in its group's FIFO, the
    /// groups of a lane take turns, and each group may have a cap and a rate limit
    /// (`LaneConfig(group_max_concurrency=, group_rate_limit=, group_overrides=)`).
    #[pyo3(signature = (lane, command_type, payload = None, *, delay = None, run_at = None, start_by = None, start_within = None, key = None, group = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        delay: Option<&Bound<'_, PyAny>>,
        run_at: Option<&Bound<'_, PyAny>>,
        start_by: Option<&Bound<'_, PyAny>>,
        start_within: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        group: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        refuse_in_running_loop(py, "submit()", "`await lane.submit_async(...)`")?;
        self.refuse_before_start(py, "submit()")?;
        let options = submit_options(delay, run_at, start_by, start_within, key, group)?;
        let payload = payload_to_json(payload)?;
        let mut handle = self.accept_blocking(py, lane, command_type, payload, options)?;
        let id = handle.id();
        let result = match block_on(py, Pin::new(&mut handle)) {
            Ok(result) => result,
            Err(interrupted) => {
                // A duplicate's command belongs to its first submitter: only stop waiting.
                if !handle.is_duplicate() {
                    self.queue.cancel(id);
                }
                forget_when_done(handle, self.env.clone());
                return Err(interrupted);
            }
        };
        let exception = self.env.slots.take(id);
        Finished { result, exception }.to_python(py)
    }

    /// Submits a command from a coroutine: `await lane.submit_async(...)`.
    ///
    /// Returns a `CommandFuture` at once (bad arguments raise here): its `id` is the
    /// command id, `cancel()` cancels the command, and awaiting it gives the result or
    /// raises. Cancelling the awaiting task cancels the command (a duplicate's future is
    /// only detached: the command goes on for its other submitters). Options as for
    /// `submit`; a lane with `when_full="wait"` that is full makes the acceptance wait
    /// for room (on the runtime: the event loop goes on).
    #[pyo3(signature = (lane, command_type, payload = None, *, delay = None, run_at = None, start_by = None, start_within = None, key = None, group = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit_async(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        delay: Option<&Bound<'_, PyAny>>,
        run_at: Option<&Bound<'_, PyAny>>,
        start_by: Option<&Bound<'_, PyAny>>,
        start_within: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        group: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<CommandFuture>> {
        let bridge = LoopBridge::of_running_loop(py, "submit_async()")?;
        let options = submit_options(delay, run_at, start_by, start_within, key, group)?;
        let payload = payload_to_json(payload)?;
        let queue = Arc::downgrade(&self.queue);
        let env = self.env.clone();
        let future = match self.accept(py, lane, command_type, payload, options)? {
            Acceptance::Done(Ok(handle)) => {
                SubmitBody::spawn_accepted(py, bridge, queue, env, handle)?
            }
            Acceptance::Done(Err(error)) => return Err(error.into_py_err(py)),
            Acceptance::Later(accepting) => SubmitBody::spawn(py, bridge, queue, env, accepting)?,
        };
        // Refused at once (unknown lane, no handler, shutting down): raise here.
        match future.get().refused(py) {
            Some(error) => Err(error),
            None => Ok(future),
        }
    }

    /// Submits a command without waiting for it: returns a `CommandHandle` (`id`,
    /// `cancel()`, `result(timeout)`, and `await handle`). Options as for `submit`; a
    /// lane with `when_full="wait"` that is full makes this wait for room.
    #[pyo3(signature = (lane, command_type, payload = None, *, delay = None, run_at = None, start_by = None, start_within = None, key = None, group = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit_nowait(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        delay: Option<&Bound<'_, PyAny>>,
        run_at: Option<&Bound<'_, PyAny>>,
        start_by: Option<&Bound<'_, PyAny>>,
        start_within: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        group: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CommandHandle> {
        let options = submit_options(delay, run_at, start_by, start_within, key, group)?;
        let payload = payload_to_json(payload)?;
        let handle = self.accept_blocking(py, lane, command_type, payload, options)?;
        Ok(CommandHandle::new(
            handle,
            Arc::downgrade(&self.queue),
            self.env.clone(),
        ))
    }

    /// Cancels every pending, delayed and running command of a lane; returns how many.
    fn cancel_lane(&self, py: Python<'_>, lane: &str) -> PyResult<usize> {
        self.queue.cancel_lane(lane).map_err(|e| e.into_py_err(py))
    }

    /// The lane ids, in the order they were configured.
    #[getter]
    fn lanes(&self) -> Vec<String> {
        self.queue.lane_ids()
    }

    /// Every metric now, in total and per lane (needs `Lane(..., metrics=True)`).
    /// A command is counted just after its result is delivered; after `drain()` the
    /// counts are final.
    fn metrics(&self, py: Python<'_>) -> PyResult<MetricsSnapshot> {
        crate::metrics::snapshot(py, self.metrics.as_ref()).map(MetricsSnapshot::from)
    }

    /// `metrics()` in the Prometheus text format, ready to serve on `/metrics`.
    fn metrics_prometheus(&self, py: Python<'_>) -> PyResult<String> {
        crate::metrics::snapshot(py, self.metrics.as_ref()).map(|s| s.to_prometheus())
    }

    /// Deprecated: `purge_dead_letters()` (which also says how many there were).
    fn clear_dead_letters(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        PyErr::warn(
            py,
            &py.get_type::<PyDeprecationWarning>(),
            c"Lane.clear_dead_letters() is deprecated; use Lane.purge_dead_letters()",
            1,
        )?;
        slf.as_super().get().purge_dead_letters(py).map(drop)
    }

    /// Stops accepting commands; pending, delayed and running ones still finish (wait
    /// for them with `drain`). Does not block. Closes the lane's dashboards.
    fn shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        slf.as_super().get().close_dashboards(py)?;
        let mut shutdown = std::pin::pin!(slf.get().manager.shutdown());
        block_on(py, shutdown.as_mut())
    }

    /// Stops at once: no new commands, pending ones are cancelled, running ones are
    /// cancelled (and dropped after their grace period). Durable commands stay stored for
    /// the next start. Returns how many commands were cancelled. Closes the lane's
    /// dashboards.
    fn shutdown_now(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        slf.as_super().get().close_dashboards(py)?;
        let mut stop = std::pin::pin!(slf.get().manager.shutdown_now());
        block_on(py, stop.as_mut())
    }

    /// Waits until no command is pending, delayed or running (and the store is written),
    /// releasing the GIL. Raises `TimeoutError` after `timeout` seconds (None: no limit).
    #[pyo3(signature = (timeout = None))]
    fn drain(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        refuse_in_running_loop(py, "drain()", "`await lane.drain_async(...)`")?;
        let timeout = optional_seconds(timeout, "timeout")?;
        let manager = self.manager.clone();
        let mut drain = std::pin::pin!(manager.drain(timeout.unwrap_or(Duration::MAX)));
        let result = block_on(py, drain.as_mut())?;
        drain_result(py, &self.queue, result, timeout)
    }

    /// `drain` for coroutines: `await lane.drain_async(timeout=30.0)`.
    #[pyo3(signature = (timeout = None))]
    fn drain_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = optional_seconds(timeout, "timeout")?;
        let manager = self.manager.clone();
        let queue = self.queue.clone();
        awaitable(
            py,
            "drain_async()",
            async move { manager.drain(timeout.unwrap_or(Duration::MAX)).await },
            move |py, result| drain_result(py, &queue, result, timeout).map(|()| py.None()),
        )
    }

    /// Commands waiting to start, over all lanes (pending, and delayed for a retry).
    #[getter]
    fn size(&self) -> usize {
        let stats = self.queue.stats_now();
        stats.total_pending + stats.total_delayed
    }

    /// Commands running now, over all lanes (a run answered while its handler goes on
    /// counts until the handler returns: it holds its slot).
    #[getter]
    fn running(&self) -> usize {
        self.queue.stats_now().total_active
    }

    /// Pauses every lane: no command starts until `resume()`; running ones go on and
    /// submits are still accepted.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        for lane in self.queue.lane_ids() {
            self.queue
                .pause_lane(&lane)
                .map_err(|e| e.into_py_err(py))?;
        }
        Ok(())
    }

    /// Resumes every lane (also a lane paused on its own with `pause_lane`).
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        for lane in self.queue.lane_ids() {
            self.queue
                .resume_lane(&lane)
                .map_err(|e| e.into_py_err(py))?;
        }
        Ok(())
    }

    /// `await lane.on_idle()`: resolves when no command is pending, delayed or running
    /// (at once if none is now).
    fn on_idle<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let queue = self.queue.clone();
        awaitable(
            py,
            "on_idle()",
            async move { queue.wait_idle().await },
            |py, ()| Ok(py.None()),
        )
    }

    /// `await lane.on_empty()`: resolves when no command waits to start (none pending or
    /// delayed; some may still run), at once if none does now.
    fn on_empty<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let queue = self.queue.clone();
        awaitable(
            py,
            "on_empty()",
            // The core's wait, woken by every change of the waiting count (a start, a
            // cancel, an expiry), events or not.
            async move { queue.wait_waiting_below(1, None).await },
            move |py, result| result.map_err(|e| e.into_py_err(py)).map(|()| py.None()),
        )
    }

    /// Whether `shutdown()` (or `shutdown_now()`) was called.
    #[getter]
    fn is_shutting_down(&self) -> bool {
        self.manager.is_shutting_down()
    }

    fn __repr__(&self) -> String {
        let stats = self.queue.stats_now();
        format!(
            "<Lane lanes={:?} pending={} active={}>",
            self.queue.lane_ids(),
            stats.total_pending,
            stats.total_active
        )
    }
}

fn drain_result(
    py: Python<'_>,
    queue: &CommandQueue,
    result: a3s_lane::Result<()>,
    timeout: Option<Duration>,
) -> PyResult<()> {
    match result {
        Ok(()) => Ok(()),
        Err(CoreError::Timeout(_)) => {
            let stats = queue.stats_now();
            Err(PyTimeoutError::new_err(format!(
                "drain did not finish within {:?}: {} pending, {} running, {} waiting to retry",
                timeout.unwrap_or(Duration::MAX),
                stats.total_pending,
                stats.total_active,
                stats.total_delayed
            )))
        }
        Err(error) => Err(error.into_py_err(py)),
    }
}
