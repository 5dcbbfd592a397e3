//! `RedisWorker`: runs the commands of a `RedisQueue` with Python handlers, in this
//! process or any other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    HandlerRegistry, LaneError as CoreError, RedisQueue as CoreQueue, RedisWorker as CoreWorker,
    RedisWorkerConfig,
};
use parking_lot::{Mutex, RwLock};
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTimeoutError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;

use crate::args::{optional_seconds, type_name};
use crate::error::{IntoPyErr, lane_error};
use crate::event_loop::{LoopBridge, stop_loop_thread};
use crate::handler::{
    HandlerEnv, Handlers, SharedHandler, clear_handlers, decorator, python_handler,
    traverse_handlers,
};
use crate::loop_task::awaitable;
use crate::redis::config::WorkerOptions;
use crate::redis::queue::RedisQueue;
use crate::runtime::{block_on, on_runtime, refuse_in_running_loop};

pub(crate) enum Phase {
    New,
    Starting,
    Running(CoreWorker),
    Stopped,
}

pub(crate) struct WorkerState {
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
    /// Its state, shared with the exit hook (which stops a running worker at exit).
    state: Arc<WorkerShared>,
}

/// A worker's state and where its `async def` handlers run: what the exit hook needs to
/// stop it. Unregistered when the worker is dropped.
pub(crate) struct WorkerShared {
    state: Mutex<WorkerState>,
    env: Arc<HandlerEnv>,
}

impl WorkerShared {
    /// Takes the running worker to stop it at exit, with its id; None if it is not
    /// running.
    pub(crate) fn take_at_exit(&self) -> Option<(CoreWorker, String)> {
        let mut state = self.state.lock();
        if !matches!(state.phase, Phase::Running(_)) {
            return None;
        }
        let Phase::Running(worker) = std::mem::replace(&mut state.phase, Phase::Stopped) else {
            return None;
        };
        let id = worker.id().to_owned();
        Some((worker, id))
    }

    /// Where its `async def` handlers run.
    pub(crate) fn env(&self) -> &HandlerEnv {
        &self.env
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, WorkerState> {
        self.state.lock()
    }
}

impl Drop for RedisWorker {
    fn drop(&mut self) {
        if let Some(thread) = self.state.lock().private_loop.take() {
            stop_loop_thread(thread);
        }
    }
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
                self.env.home.ensure(py, private_loop)?;
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

    /// A worker for `queue` (not started yet), checked here by the core's rules. How a
    /// lane's commands run (timeout, cancel grace, retries) is the lane's `LaneConfig`,
    /// kept in Redis; a worker says how much it takes on and how it keeps its claims.
    ///
    /// - `slots`: most commands this worker runs at once (default
    ///   `DEFAULTS["redis_worker"]["slots"]`, 16).
    /// - `worker_id`: its name in Redis (default: host, process id and a random suffix);
    ///   two live workers must never share one.
    /// - `lease_ttl`: seconds its commands stay its own without a heartbeat (default 15);
    ///   a worker that dies loses them to the others after this long.
    /// - `heartbeat_interval`: seconds between lease renewals when idle (default a third
    ///   of `lease_ttl`).
    /// - `block_timeout`: the longest, in seconds, the idle worker waits on Redis before
    ///   checking its connection (default 30); work arriving wakes it at once.
    #[new]
    #[pyo3(signature = (
        queue,
        slots = None,
        *,
        worker_id = None,
        lease_ttl = None,
        heartbeat_interval = None,
        block_timeout = None,
    ))]
    fn new(
        py: Python<'_>,
        queue: &Bound<'_, PyAny>,
        slots: Option<&Bound<'_, PyAny>>,
        worker_id: Option<&str>,
        lease_ttl: Option<&Bound<'_, PyAny>>,
        heartbeat_interval: Option<&Bound<'_, PyAny>>,
        block_timeout: Option<&Bound<'_, PyAny>>,
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
        let config = WorkerOptions {
            slots,
            worker_id,
            lease_ttl,
            heartbeat_interval,
            block_timeout,
        }
        .config(py)?;
        let env = Arc::new(HandlerEnv::default());
        let state = crate::exit::register_worker(WorkerShared {
            state: Mutex::new(WorkerState {
                phase: Phase::New,
                id: worker_id.map(str::to_owned),
                has_async_handlers: false,
                private_loop: None,
            }),
            env: env.clone(),
        });
        Ok(Self {
            queue,
            config,
            registry: HandlerRegistry::default(),
            handlers: RwLock::new(HashMap::new()),
            env,
            state,
        })
    }

    /// Most commands this worker runs at once.
    #[getter]
    fn slots(&self) -> usize {
        self.config.slots()
    }

    /// Seconds its commands stay its own without a heartbeat.
    #[getter]
    fn lease_ttl(&self) -> f64 {
        self.config.lease_ttl().as_secs_f64()
    }

    /// Seconds between lease renewals when idle.
    #[getter]
    fn heartbeat_interval(&self) -> f64 {
        self.config.heartbeat_interval().as_secs_f64()
    }

    /// The longest, in seconds, the idle worker waits on Redis before checking its
    /// connection.
    #[getter]
    fn block_timeout(&self) -> f64 {
        self.config.block_timeout().as_secs_f64()
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
                self.env.home.ensure(py, private_loop)?;
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
        let timeout = optional_seconds(timeout, "timeout")?.unwrap_or(Duration::MAX);
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
        let timeout = optional_seconds(timeout, "timeout")?.unwrap_or(Duration::MAX);
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
