//! `RedisQueue`: a command queue kept in Redis, for producers (submit, cancel, inspect,
//! administer); its lanes are `LaneConfig`s, declared with a priority as a `Lane`'s are.

use std::pin::Pin;
use std::task::{Context, Poll};

use a3s_lane::{
    QueueClient as CoreClient, RedisQueue as CoreQueue, RedisQueueConfig, SubmitOptions,
    SubmittedCommand,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::args::{submit_options, type_name};
use crate::client::QueueClient;
use crate::config::LaneConfig;
use crate::convert::payload_to_json;
use crate::error::{IntoPyErr, config_error};
use crate::event_loop::LoopBridge;
use crate::handle::{CancelTarget, CommandFuture, CommandHandle, Finished};
use crate::loop_task::{LoopBody, LoopTask};
use crate::redis::config::QueueOptions;
use crate::redis::stats::RedisQueueStats;
use crate::runtime::{block_on, join_error, on_runtime, runtime};

/// Refuses a command type the Redis engine cannot store, as a `ConfigError` before
/// anything is sent (the engine's own check reports a `QueueError`).
fn check_command_type(py: Python<'_>, command_type: &str) -> PyResult<()> {
    if command_type.is_empty() || command_type.contains('\n') {
        return Err(config_error(
            py,
            format!("command type {command_type:?} must be non-empty and hold no newline"),
        ));
    }
    Ok(())
}

/// A list of URLs (`RedisQueue.cluster`'s nodes, `RedisQueue.sentinel`'s sentinels); a
/// str is a sequence too (of one-letter "URLs"), so it is refused by name.
fn url_list(value: &Bound<'_, PyAny>, name: &str, expected: &str) -> PyResult<Vec<String>> {
    let urls = if value.is_instance_of::<pyo3::types::PyString>() {
        None
    } else {
        value.extract::<Vec<String>>().ok()
    };
    urls.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{name} must be a list of {expected}, got {}",
            type_name(value)
        ))
    })
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
///
/// A `QueueClient`: `cancel`, `command`, `list_commands`, `put_schedule`, `schedules`,
/// `pause_schedule`, `resume_schedule`, `remove_schedule`, `stats`, `pause_lane`,
/// `resume_lane`, `dead_letters`, `redrive`, `purge_dead_letters`, `on_size_less_than` and
/// `events` are those of a `Lane`.
#[pyclass(frozen, extends = QueueClient, module = "a3s_lane", name = "RedisQueue")]
pub(crate) struct RedisQueue {
    pub(crate) queue: CoreQueue,
}

impl RedisQueue {
    fn connect(
        py: Python<'_>,
        config: RedisQueueConfig,
        options: QueueOptions<'_, '_>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let config = options.apply(py, config)?;
        let queue = on_runtime(py, CoreQueue::connect(config))?;
        Ok(PyClassInitializer::from(QueueClient::remote(queue.clone()))
            .add_subclass(Self { queue }))
    }
}

#[pymethods]
impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and declares
    /// `lanes` (lane id -> `LaneConfig`, as for `Lane`), updating lanes that exist
    /// already. With `lanes=None` nothing is declared: use the lanes another process
    /// declared. `RedisQueue.cluster(nodes, ...)` connects to a Redis Cluster instead.
    ///
    /// A lane's cap, rate limit and priority boost hold over all workers; its timeout,
    /// cancel grace and retry policy are kept in Redis and every worker runs its commands
    /// with them. A lane option the Redis engine cannot honour (`pressure_threshold`) is
    /// a `ConfigError` naming it.
    ///
    /// - `key_prefix`: every key of the queue starts with `{key_prefix}`; different
    ///   prefixes are separate queues on one server (default "a3s-lane").
    /// - `result_ttl`: seconds finished commands and undelivered results stay in Redis
    ///   (default one day); dead letters stay until re-driven or cleared.
    /// - `response_timeout`: seconds to wait for Redis to answer (default 5).
    /// - `connect_timeout`: seconds one connection attempt may take (default 5); an
    ///   address nothing listens on fails at once.
    /// - `events`: `False` turns the queue's event stream off for every process (no
    ///   command writes events; `events()` then yields nothing), `True` on again; `None`
    ///   (the default) leaves the setting kept in Redis as it is (on unless turned off).
    /// - `reconnect_wait`: seconds a submit waits for Redis to come back when it is
    ///   unreachable, restarting or loading (default 5); a submit sent again meanwhile is
    ///   accepted once. After it the submit raises `StorageError`.
    /// - `reconnect_min_delay`, `reconnect_max_delay`: seconds between reconnect attempts,
    ///   doubling from the first to the second (default 0.05 up to 1).
    /// - `tls_ca`, `tls_cert`, `tls_key`: PEM text (`str`/`bytes`) or a path, for a
    ///   `rediss://` URL: a private certificate authority, a client certificate and its
    ///   key. Passwords in URLs are never shown in errors.
    ///
    /// Raises `StorageError` (naming the address) when Redis cannot be reached and
    /// `ConfigError` for bad values.
    #[new]
    #[pyo3(signature = (url, lanes = None, *, key_prefix = None, result_ttl = None, response_timeout = None, connect_timeout = None, events = None, reconnect_wait = None, reconnect_min_delay = None, reconnect_max_delay = None, tls_ca = None, tls_cert = None, tls_key = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &str,
        lanes: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&str>,
        result_ttl: Option<&Bound<'_, PyAny>>,
        response_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        events: Option<bool>,
        reconnect_wait: Option<&Bound<'_, PyAny>>,
        reconnect_min_delay: Option<&Bound<'_, PyAny>>,
        reconnect_max_delay: Option<&Bound<'_, PyAny>>,
        tls_ca: Option<&Bound<'_, PyAny>>,
        tls_cert: Option<&Bound<'_, PyAny>>,
        tls_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = QueueOptions {
            lanes,
            key_prefix,
            result_ttl,
            response_timeout,
            connect_timeout,
            events,
            reconnect_wait,
            reconnect_min_delay,
            reconnect_max_delay,
            tls_ca,
            tls_cert,
            tls_key,
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
    #[pyo3(signature = (nodes, lanes = None, *, key_prefix = None, result_ttl = None, response_timeout = None, connect_timeout = None, events = None, reconnect_wait = None, reconnect_min_delay = None, reconnect_max_delay = None, tls_ca = None, tls_cert = None, tls_key = None))]
    #[allow(clippy::too_many_arguments)]
    fn cluster(
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        lanes: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&str>,
        result_ttl: Option<&Bound<'_, PyAny>>,
        response_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        events: Option<bool>,
        reconnect_wait: Option<&Bound<'_, PyAny>>,
        reconnect_min_delay: Option<&Bound<'_, PyAny>>,
        reconnect_max_delay: Option<&Bound<'_, PyAny>>,
        tls_ca: Option<&Bound<'_, PyAny>>,
        tls_cert: Option<&Bound<'_, PyAny>>,
        tls_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        let urls = url_list(nodes, "nodes", "node URLs like ['redis://10.0.0.1:7000']")?;
        let options = QueueOptions {
            lanes,
            key_prefix,
            result_ttl,
            response_timeout,
            connect_timeout,
            events,
            reconnect_wait,
            reconnect_min_delay,
            reconnect_max_delay,
            tls_ca,
            tls_cert,
            tls_key,
        };
        Py::new(
            py,
            Self::connect(py, RedisQueueConfig::cluster(urls), options)?,
        )
    }

    /// Connects to the master that Redis Sentinel names, following it through failovers:
    /// `master` is the master's URL with its Sentinel name as the host
    /// (`"redis://user:password@mymaster/0"`, `rediss://` for TLS), `sentinels` the
    /// sentinels' URLs (`["redis://10.0.0.5:26379"]`). Same options as
    /// `RedisQueue(url, ...)`.
    ///
    /// Raises `ConfigError` for an empty list or a bad URL and `StorageError` when no
    /// sentinel names a reachable master.
    #[staticmethod]
    #[pyo3(signature = (master, sentinels, lanes = None, *, key_prefix = None, result_ttl = None, response_timeout = None, connect_timeout = None, events = None, reconnect_wait = None, reconnect_min_delay = None, reconnect_max_delay = None, tls_ca = None, tls_cert = None, tls_key = None))]
    #[allow(clippy::too_many_arguments)]
    fn sentinel(
        py: Python<'_>,
        master: &str,
        sentinels: &Bound<'_, PyAny>,
        lanes: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&str>,
        result_ttl: Option<&Bound<'_, PyAny>>,
        response_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        events: Option<bool>,
        reconnect_wait: Option<&Bound<'_, PyAny>>,
        reconnect_min_delay: Option<&Bound<'_, PyAny>>,
        reconnect_max_delay: Option<&Bound<'_, PyAny>>,
        tls_ca: Option<&Bound<'_, PyAny>>,
        tls_cert: Option<&Bound<'_, PyAny>>,
        tls_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        let urls = url_list(
            sentinels,
            "sentinels",
            "sentinel URLs like ['redis://10.0.0.5:26379']",
        )?;
        let options = QueueOptions {
            lanes,
            key_prefix,
            result_ttl,
            response_timeout,
            connect_timeout,
            events,
            reconnect_wait,
            reconnect_min_delay,
            reconnect_max_delay,
            tls_ca,
            tls_cert,
            tls_key,
        };
        Py::new(
            py,
            Self::connect(py, RedisQueueConfig::sentinel(master, urls), options)?,
        )
    }

    /// The key prefix as given (keys start with `{key_prefix}`).
    #[getter]
    fn key_prefix(&self) -> &str {
        let tagged = self.queue.key_prefix();
        tagged
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(tagged)
    }

    /// Declares a lane with a `LaneConfig` (as `RedisQueue(url, lanes)` does), or
    /// updates it; the new settings apply to the next claims (a changed rate limit
    /// starts with a full bucket) and the next runs.
    fn declare_lane(
        &self,
        py: Python<'_>,
        lane: &str,
        config: &Bound<'_, LaneConfig>,
    ) -> PyResult<()> {
        let (config, priority) = config.get().resolve(py, lane)?;
        let queue = self.queue.clone();
        let lane = lane.to_owned();
        on_runtime(py, async move {
            queue.declare_lane(&lane, config, priority).await
        })
    }

    /// Submits a command to the end of `lane` and returns its `CommandHandle` once Redis
    /// has it (`id`, `cancel()`, `result(timeout)`, `await handle`). Raises
    /// `LaneNotFoundError` for a lane not declared in Redis, `LaneFullError` for a full
    /// lane that rejects. Ctrl-C during the round trip cancels the command (unless it
    /// turns out a duplicate: a live key's command goes on for its other submitters).
    ///
    /// `delay`, `run_at`, `start_by` and `start_within` (keyword-only) are those of
    /// `Lane.submit`: the command waits in Redis (shown as delayed) until its start time;
    /// one no worker started by its deadline never runs and ends with `ExpiredError`.
    /// `key` is an idempotency key, as for `Lane.submit`, shared by every producer of
    /// the queue: a duplicate's handle has `is_duplicate` True and the live command's id.
    /// `group` puts the command in a group of its lane, as for `Lane.submit`: the groups
    /// take turns, each within the lane's group limits, across every worker.
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
    ) -> PyResult<CommandHandle> {
        let options = submit_options(delay, run_at, start_by, start_within, key, group)?;
        let mut task = self.spawn_submit(py, lane, command_type, payload, options)?;
        match block_on(py, Pin::new(&mut task)) {
            Ok(Ok(Ok(submitted))) => {
                let duplicate = submitted.is_duplicate();
                Ok(CommandHandle::watching(
                    submitted.id(),
                    submitted,
                    CancelTarget::Remote(self.queue.clone()),
                    None,
                )
                .marked_duplicate(duplicate))
            }
            Ok(Ok(Err(error))) => Err(error.into_py_err(py)),
            Ok(Err(error)) => Err(join_error(py, error)),
            Err(interrupted) => {
                // The command may be in Redis already: cancel it once its id is known
                // (not a duplicate's: that command belongs to its first submitter).
                let queue = self.queue.clone();
                runtime().spawn(async move {
                    if let Ok(Ok(submitted)) = task.await
                        && !submitted.is_duplicate()
                    {
                        let _ = queue.cancel(submitted.id()).await;
                    }
                });
                Err(interrupted)
            }
        }
    }

    /// Submits a command from a coroutine: `await queue.submit_async(...)` gives its
    /// result. Returns a `CommandFuture` at once (bad arguments raise here); its `id` is
    /// known once Redis has the command, and cancelling it (or the task awaiting it)
    /// cancels the command; a duplicate's future is only detached (the command goes on
    /// for its other submitters).
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
        let task = self.spawn_submit(py, lane, command_type, payload, options)?;
        let future = CommandFuture::new(
            py,
            bridge.clone(),
            CancelTarget::Remote(self.queue.clone()),
            None,
        )?;
        let body = RemoteSubmit {
            stage: Stage::Accepting(task),
            future: future.clone_ref(py),
        };
        LoopTask::spawn(py, bridge, body);
        Ok(future)
    }

    /// Counts per lane and for the queue (a `QueueStats`), the registered workers, and
    /// lifetime counters. A lane paused for a duration shows as `throttled` (like a rate
    /// limit, it ends by itself); one paused without a duration as `paused`.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<RedisQueueStats>> {
        let queue = self.queue.clone();
        let stats = on_runtime(py, async move { queue.stats().await })?;
        Py::new(py, RedisQueueStats::new(py, stats)?)
    }

    /// Deletes every key of this queue (lanes, commands, results, dead letters); returns
    /// how many. For tests and retiring a queue: its running workers lose their leases.
    fn clear(&self, py: Python<'_>) -> PyResult<usize> {
        let queue = self.queue.clone();
        on_runtime(py, async move { queue.clear().await })
    }

    fn __repr__(&self) -> String {
        format!("<RedisQueue key_prefix={:?}>", self.key_prefix())
    }
}

impl RedisQueue {
    /// Checks the arguments here, then submits on the runtime. Until Redis answers, the
    /// submit counts as in flight: the exit hook waits for it.
    fn spawn_submit(
        &self,
        py: Python<'_>,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        options: SubmitOptions,
    ) -> PyResult<JoinHandle<a3s_lane::Result<SubmittedCommand>>> {
        check_command_type(py, command_type)?;
        let payload: Value = payload_to_json(payload)?;
        let queue = self.queue.clone();
        let (lane, command_type) = (lane.to_owned(), command_type.to_owned());
        let in_flight = crate::exit::SubmitInFlight::begin();
        Ok(runtime().spawn(async move {
            let submitted = if options == SubmitOptions::default() {
                queue
                    .submit(&lane, &command_type, payload)
                    .await
                    .map(|handle| SubmittedCommand::new(handle.id(), handle))
            } else {
                CoreClient::submit_with(&queue, &lane, &command_type, payload, options).await
            };
            drop(in_flight);
            submitted
        }))
    }
}

enum Stage {
    Accepting(JoinHandle<a3s_lane::Result<SubmittedCommand>>),
    Waiting(SubmittedCommand),
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
                            future.get().accepted(handle.id(), handle.is_duplicate());
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
                        // Cancelled by the caller (and the command with it, unless a
                        // duplicate's): stop waiting.
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
