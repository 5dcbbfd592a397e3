//! `QueueClient`: the operations `Lane` and `RedisQueue` share, written once over the
//! core's client surface (`a3s_lane::QueueClient`). Both classes extend it, so each
//! method is the same Python method, with the same signature and return type, on either
//! engine; what only one engine offers stays on its own class.
//!
//! Every call polls the core's future on the caller's thread (the GIL held while
//! polling, released while waiting; Ctrl-C abandons it), as a blocking call of the lane
//! does: a redriven command is then registered for its handler's exception before any
//! handler can raise.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use a3s_lane::{
    CancelOutcome, CommandQueue, CommandState, CommandStatus, Page, QueueClient as CoreClient,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::args::{group_key, optional, optional_seconds, type_name, usize_arg};
use crate::convert::to_py;
use crate::error::IntoPyErr;
use crate::events::{EventStream, wanted_keys};
use crate::handle::{CancelTarget, CommandHandle};
use crate::handler::HandlerEnv;
use crate::loop_task::awaitable;
use crate::runtime::{block_on, python_attr, runtime};
use crate::schedules::{schedule_arg, schedule_info_to_py};
use crate::stats::{DeadLetter, GroupStatus, QueueStats};

/// The operations every queue offers, whichever engine runs it: cancel a command, read
/// its state and result, list a lane's commands, put, list, pause, resume and remove
/// recurring schedules, read the stats, pause and resume lanes, pause, resume, cancel
/// and list the groups inside a lane, list, redrive and purge
/// dead letters, subscribe to events. `Lane` (in process) and `RedisQueue` are both
/// `QueueClient`s: code written against this class runs unchanged on either.
#[pyclass(subclass, frozen, module = "a3s_lane", name = "QueueClient")]
pub(crate) struct QueueClient {
    client: Arc<dyn CoreClient>,
    /// Where the cancel of a redriven command's handle goes.
    target: CancelTarget,
    /// In process: where a handler's own exception waits for the command's waiter.
    env: Option<Arc<HandlerEnv>>,
    /// In process, with `metrics=True`: what the queue records (its dashboard shows it).
    metrics: Option<a3s_lane::QueueMetrics>,
    /// The dashboards served for this queue (closed with it).
    dashboards: crate::dashboard::Dashboards,
}

impl QueueClient {
    /// The client of an in-process queue.
    pub(crate) fn local(
        manager: a3s_lane::QueueManager,
        queue: Weak<CommandQueue>,
        env: Arc<HandlerEnv>,
        metrics: Option<a3s_lane::QueueMetrics>,
    ) -> Self {
        Self {
            client: Arc::new(manager),
            target: CancelTarget::Local(queue),
            env: Some(env),
            metrics,
            dashboards: crate::dashboard::Dashboards::default(),
        }
    }

    /// The client of a queue in Redis.
    pub(crate) fn remote(queue: a3s_lane::RedisQueue) -> Self {
        Self {
            client: Arc::new(queue.clone()),
            target: CancelTarget::Remote(queue),
            env: None,
            metrics: None,
            dashboards: crate::dashboard::Dashboards::default(),
        }
    }

    /// Closes the dashboards served for this queue (at its shutdown).
    pub(crate) fn close_dashboards(&self, py: Python<'_>) -> PyResult<()> {
        self.dashboards.close_all(py)
    }

    /// Waits for one call of the core's client here, releasing the GIL.
    fn wait<T>(
        py: Python<'_>,
        mut call: Pin<Box<dyn Future<Output = a3s_lane::Result<T>> + Send + '_>>,
    ) -> PyResult<T> {
        block_on(py, call.as_mut())?.map_err(|e| e.into_py_err(py))
    }
}

/// A future polled inside the runtime's context: a Redis queue's waits start timers and
/// tasks on it, and an awaitable is polled on its event loop's thread.
struct InRuntime<F>(Pin<Box<F>>);

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _context = runtime().enter();
        self.0.as_mut().poll(cx)
    }
}

static CANCEL_OUTCOME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MAKE_STATUS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A member of one of the Python enums of `a3s_lane._client`, by its value.
fn member<'py>(
    py: Python<'py>,
    class: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
    value: &str,
) -> PyResult<Bound<'py, PyAny>> {
    python_attr(py, class, "a3s_lane._client", name)?.call1((value,))
}

fn outcome_value(outcome: CancelOutcome) -> &'static str {
    match outcome {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Signalled => "signalled",
        CancelOutcome::AlreadyFinished => "already_finished",
        CancelOutcome::Unknown => "unknown",
    }
}

/// A `CommandStatus` of `a3s_lane._client`, made by its `_command_status` from the core's
/// values (state by name, times in ms since the Unix epoch, the result as Python, the
/// error's kind, message and timeout in ms); the Python side turns the times into
/// datetimes.
fn status_to_py(py: Python<'_>, status: CommandStatus) -> PyResult<Bound<'_, PyAny>> {
    let result = match &status.result {
        Some(value) => to_py(py, value)?,
        None => py.None().into_bound(py),
    };
    let error = status
        .error
        .map(|failure| (failure.kind, failure.message, failure.timeout_ms));
    python_attr(py, &MAKE_STATUS, "a3s_lane._client", "_command_status")?.call1((
        status.id,
        status.lane_id,
        status.command_type,
        status.state.as_str(),
        status.attempts,
        status.submitted_at_ms,
        status.started_at_ms,
        status.finished_at_ms,
        result,
        error,
    ))
}

// `list_commands` shows the core's default page in its signature (`help()`, the stubs).
const _: () = assert!(Page::DEFAULT_LIMIT == 100);

/// A `state` argument: a `CommandState` (a `str` enum) or its value, as the core names
/// it (an unknown name is the core's error, a `ConfigError` listing the states).
fn state_arg(py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<CommandState> {
    let Ok(name) = state.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "state must be a CommandState or its value (a str such as \"pending\"), got {}",
            type_name(state)
        )));
    };
    name.to_str()?
        .parse::<CommandState>()
        .map_err(|error| error.into_py_err(py))
}

#[pymethods]
impl QueueClient {
    /// Serves the web dashboard of this queue in the background (on the queue's
    /// runtime) and returns its `Dashboard`: `url` to open, `token` for actions, and
    /// `close()` (also a context manager).
    ///
    /// - `host`: the IP address to listen on; "127.0.0.1" (this machine only) by
    ///   default, "0.0.0.0" for every interface (anyone who can reach it sees the
    ///   queue's lanes and counts).
    /// - `port`: 9090 by default; 0 for any free port (`url` says which).
    /// - `token`: the bearer token actions (pause, resume, cancel, redrive, delete)
    ///   need, and payloads are shown with; None to have a random one generated (never
    ///   printed: read it from `dashboard.token`).
    /// - `read_only`: refuse every action, whatever the token (no token is generated).
    /// - `title`: the title of the pages ("a3s-lane" by default).
    ///
    /// With `Lane(metrics=True)` the lanes page shows wait and run percentiles and
    /// `/metrics` serves every series of the queue's metrics. The dashboard stops with
    /// `close()`, the queue's `shutdown()` or the queue being garbage collected. Raises
    /// `ConfigError` or `TypeError` for bad arguments, `OSError` (naming the address)
    /// when it cannot listen there, as when the port is in use, and `ShutdownError`
    /// after the lane's `shutdown()`.
    #[pyo3(
        signature = (*, host = None, port = None, token = None, read_only = None, title = None),
        text_signature = "($self, /, *, host='127.0.0.1', port=9090, token=None, read_only=False, title=None)"
    )]
    fn serve_dashboard(
        &self,
        py: Python<'_>,
        host: Option<&Bound<'_, PyAny>>,
        port: Option<&Bound<'_, PyAny>>,
        token: Option<&Bound<'_, PyAny>>,
        read_only: Option<&Bound<'_, PyAny>>,
        title: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<crate::dashboard::Dashboard> {
        let default_host = PyString::new(py, "127.0.0.1").into_any();
        let default_port = 9090_u16.into_pyobject(py)?.into_any();
        let default_read_only = pyo3::types::PyBool::new(py, false).to_owned().into_any();
        crate::dashboard::serve(
            py,
            self.client.clone(),
            self.metrics.clone(),
            &self.dashboards,
            host.unwrap_or(&default_host),
            port.unwrap_or(&default_port),
            token,
            read_only.unwrap_or(&default_read_only),
            title,
        )
    }

    /// Cancels a command by id. Returns a `CancelOutcome`: `CANCELLED` (it was pending or
    /// waiting for a retry, and ended now), `SIGNALLED` (it is running: its handler was
    /// told, and it ends as cancelled once it stops), `ALREADY_FINISHED` or `UNKNOWN`.
    /// The outcome is true when the cancel reached the command.
    fn cancel<'py>(
        &self,
        py: Python<'py>,
        command_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let command_id = crate::args::command_id_arg(command_id)?;
        let outcome = Self::wait(py, self.client.cancel(command_id))?;
        member(py, &CANCEL_OUTCOME, "CancelOutcome", outcome_value(outcome))
    }

    /// Where a command is: a `CommandStatus` (`id`, `lane_id`, `command_type`, `state`,
    /// `attempts`, `submitted_at`, `started_at`, `finished_at`, and once it finished its
    /// `result` or `error`), or None when the queue knows nothing of it. Both engines
    /// know pending, delayed and running commands, dead letters, and finished commands
    /// for as long as their lane keeps them (`LaneConfig(keep_last=, keep_for=)`: the
    /// last 1000 of each final state for a day by default), so another client, or the
    /// submitter after a restart, reads a command's result here.
    fn command<'py>(
        &self,
        py: Python<'py>,
        command_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let command_id = crate::args::command_id_arg(command_id)?;
        match Self::wait(py, self.client.command(command_id))? {
            Some(status) => status_to_py(py, status).map(Some),
            None => Ok(None),
        }
    }

    /// A lane's commands in `state` (a `CommandState`, or its value such as
    /// `"pending"`), a page at a time: at most `limit` (1 to 1000) after the first
    /// `offset`. Pending ones come in the order they will start, delayed ones by due
    /// time, running ones by start, finished ones and dead letters newest first. An
    /// unknown lane is a `LaneNotFoundError`; a bad page or state a `ConfigError`.
    #[pyo3(
        signature = (lane, state, *, offset = None, limit = None),
        text_signature = "($self, lane, state, *, offset=0, limit=100)"
    )]
    fn list_commands<'py>(
        &self,
        py: Python<'py>,
        lane: &str,
        state: &Bound<'py, PyAny>,
        offset: Option<&Bound<'py, PyAny>>,
        limit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let state = state_arg(py, state)?;
        let default = Page::default();
        let page = Page::new(
            optional(offset, |o| usize_arg(o, "offset"))?.unwrap_or(default.offset),
            optional(limit, |l| usize_arg(l, "limit"))?.unwrap_or(default.limit),
        );
        let listed = Self::wait(py, self.client.list_commands(lane, state, page))?;
        listed
            .into_iter()
            .map(|status| status_to_py(py, status))
            .collect()
    }

    /// Creates or replaces the recurring schedule `name`: from now on it submits
    /// `command_type` with `payload` to `lane` at each of its instants, each instant
    /// once however many processes run the queue. Give exactly one of `every` (an
    /// interval: seconds or a `timedelta`, at least 1 ms; it fires at the interval's
    /// multiples since the Unix epoch) and `cron` (5 fields, or 6 with seconds first,
    /// read in `time_zone`, an IANA name, "UTC" by default). `missed` says what to do
    /// about instants missed while no process ran or the schedule was paused: "skip"
    /// them (the default) or "run_once" (fire the latest once). `jitter` (seconds or a
    /// `timedelta`, less than the interval, at most an hour) delays each instant's
    /// command by a part of it, the same in every process. A replaced schedule keeps its
    /// counts and whether it is paused. Returns its `ScheduleInfo`. Refused at once: a
    /// bad schedule (both or neither of `every` and `cron`, a negative or NaN interval,
    /// a cron expression that does not parse, an unknown time zone) is a `ConfigError`,
    /// an unknown lane a `LaneNotFoundError`, a command type without a handler (in
    /// process) a `HandlerNotFoundError`, a payload JSON cannot hold a `NotJsonError`.
    #[pyo3(
        signature = (
            name,
            lane,
            command_type,
            payload = None,
            *,
            every = None,
            cron = None,
            time_zone = None,
            missed = None,
            jitter = None,
        ),
        text_signature = "($self, name, lane, command_type, payload=None, *, every=None, \
                          cron=None, time_zone=None, missed='skip', jitter=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn put_schedule<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        lane: &str,
        command_type: &str,
        payload: Option<&Bound<'py, PyAny>>,
        every: Option<&Bound<'py, PyAny>>,
        cron: Option<&Bound<'py, PyAny>>,
        time_zone: Option<&Bound<'py, PyAny>>,
        missed: Option<&Bound<'py, PyAny>>,
        jitter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let schedule = schedule_arg(
            py,
            name,
            lane,
            command_type,
            payload,
            every,
            cron,
            time_zone,
            missed,
            jitter,
        )?;
        if let Some(env) = &self.env {
            // Before the queue can fire it: its commands have no waiter.
            env.slots.track_each();
        }
        let info = Self::wait(py, self.client.put_schedule(schedule))?;
        schedule_info_to_py(py, info)
    }

    /// Removes the schedule `name`: it fires no more (commands it already submitted
    /// stay). False when there was none of that name.
    fn remove_schedule(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        Self::wait(py, self.client.remove_schedule(name))
    }

    /// Every schedule (a `ScheduleInfo`: the schedule, whether it is paused, its next
    /// instant, its last one and that instant's command, how many instants it fired and
    /// skipped), by name.
    fn schedules<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Self::wait(py, self.client.schedules())?
            .into_iter()
            .map(|info| schedule_info_to_py(py, info))
            .collect()
    }

    /// Pauses the schedule `name`: it fires nothing until resumed. An unknown name is a
    /// `ConfigError`.
    fn pause_schedule(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        Self::wait(py, self.client.pause_schedule(name))
    }

    /// Resumes the schedule `name`: its next instant is the first after now (those in
    /// between are skipped, reported by a `queue.schedule.skipped` event). An unknown
    /// name is a `ConfigError`.
    fn resume_schedule(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        Self::wait(py, self.client.resume_schedule(name))
    }

    /// Counts for the queue and each lane.
    fn stats(&self, py: Python<'_>) -> PyResult<QueueStats> {
        QueueStats::new(py, Self::wait(py, self.client.stats())?)
    }

    /// Stops starting commands from a lane (running ones continue). With `duration`
    /// (seconds) the lane resumes by itself afterwards, for example after an HTTP 429; a
    /// shorter pause never cuts a longer one short.
    #[pyo3(signature = (lane, duration = None))]
    fn pause_lane(
        &self,
        py: Python<'_>,
        lane: &str,
        duration: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match optional_seconds(duration, "duration")? {
            Some(duration) => Self::wait(py, self.client.pause_lane_for(lane, duration)),
            None => Self::wait(py, self.client.pause_lane(lane)),
        }
    }

    /// Resumes a paused lane (ends a timed pause too).
    fn resume_lane(&self, py: Python<'_>, lane: &str) -> PyResult<()> {
        Self::wait(py, self.client.resume_lane(lane))
    }

    /// Stops starting the commands of group `group` of `lane` (running ones go on, the
    /// lane's other groups take its turns) until `resume_group`. A group may be paused
    /// before it has commands. A bad group key is a `ConfigError`, an unknown lane a
    /// `LaneNotFoundError`.
    fn pause_group(&self, py: Python<'_>, lane: &str, group: &Bound<'_, PyAny>) -> PyResult<()> {
        let group = group_key(group)?;
        Self::wait(py, self.client.pause_group(lane, &group))
    }

    /// Starts the commands of a paused group again.
    fn resume_group(&self, py: Python<'_>, lane: &str, group: &Bound<'_, PyAny>) -> PyResult<()> {
        let group = group_key(group)?;
        Self::wait(py, self.client.resume_group(lane, &group))
    }

    /// Cancels every command of group `group` of `lane`: pending and delayed ones end now
    /// as cancelled, running ones are signalled (as `cancel` does). Returns how many
    /// commands the cancel reached.
    fn cancel_group(
        &self,
        py: Python<'_>,
        lane: &str,
        group: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let group = group_key(group)?;
        Self::wait(py, self.client.cancel_group(lane, &group))
    }

    /// A group's counts: a `GroupStatus` (`lane`, `group`, `pending`, `active`,
    /// `paused`, `throttled`, `max_concurrency`); all zero for a group with nothing
    /// waiting or running.
    fn group_status(
        &self,
        py: Python<'_>,
        lane: &str,
        group: &Bound<'_, PyAny>,
    ) -> PyResult<GroupStatus> {
        let group = group_key(group)?;
        Self::wait(py, self.client.group_status(lane, &group)).map(GroupStatus::from)
    }

    /// The lane's groups that have commands waiting or running, or are paused, as
    /// `GroupStatus`es sorted by group key, a page at a time: at most `limit` (1 to
    /// 1000) after the first `offset`. Commands of no group are not listed. An unknown
    /// lane is a `LaneNotFoundError`; a bad page a `ConfigError`.
    #[pyo3(
        signature = (lane, *, offset = None, limit = None),
        text_signature = "($self, lane, *, offset=0, limit=100)"
    )]
    fn groups(
        &self,
        py: Python<'_>,
        lane: &str,
        offset: Option<&Bound<'_, PyAny>>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<GroupStatus>> {
        let default = Page::default();
        let page = Page::new(
            optional(offset, |o| usize_arg(o, "offset"))?.unwrap_or(default.offset),
            optional(limit, |l| usize_arg(l, "limit"))?.unwrap_or(default.limit),
        );
        let listed = Self::wait(py, self.client.groups(lane, page))?;
        Ok(listed.into_iter().map(GroupStatus::from).collect())
    }

    /// The commands that failed for good, oldest first, at most `limit` (None: all). A
    /// `Lane` keeps them only when created with `dead_letters=N`; without, this is [].
    #[pyo3(signature = (limit = None))]
    fn dead_letters(
        &self,
        py: Python<'_>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<DeadLetter>> {
        let limit = optional(limit, |l| usize_arg(l, "limit"))?.unwrap_or(usize::MAX);
        let letters = Self::wait(py, self.client.dead_letters(limit))?;
        Ok(letters.into_iter().map(DeadLetter::from).collect())
    }

    /// Sends a dead letter's command back to the end of its lane as a fresh attempt and
    /// removes it from the dead letters; returns its `CommandHandle`.
    fn redrive(&self, py: Python<'_>, command_id: &Bound<'_, PyAny>) -> PyResult<CommandHandle> {
        let command_id = crate::args::command_id_arg(command_id)?;
        let submitted = Self::wait(py, self.client.redrive(command_id))?;
        let id = submitted.id();
        if let Some(env) = &self.env {
            // In this GIL hold: before its handler can raise.
            env.slots.awaited(id);
        }
        Ok(CommandHandle::watching(
            id,
            submitted,
            self.target.clone(),
            self.env.clone(),
        ))
    }

    /// Deletes every dead letter (also from durable storage); returns how many there were.
    pub(crate) fn purge_dead_letters(&self, py: Python<'_>) -> PyResult<usize> {
        Self::wait(py, self.client.purge_dead_letters())
    }

    /// `await queue.on_size_less_than(limit, lane=None)`: resolves when fewer than `limit`
    /// commands wait to start (pending or delayed) in `lane`, or in all lanes together
    /// when `lane` is None; at once if that is so now. For a producer that keeps the
    /// backlog bounded: `await queue.on_size_less_than(100)` before the next submit.
    /// `limit` 0 is a `ConfigError` (fewer than 0 never comes); an unknown lane is a
    /// `LaneNotFoundError`. On a `RedisQueue` it counts the commands of every process,
    /// woken by the queue's event stream: with `events=False` it raises `LaneError`.
    #[pyo3(signature = (limit, lane = None))]
    fn on_size_less_than<'py>(
        &self,
        py: Python<'py>,
        limit: &Bound<'py, PyAny>,
        lane: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limit = usize_arg(limit, "limit")?;
        let lane = lane.map(str::to_owned);
        let client = self.client.clone();
        awaitable(
            py,
            "on_size_less_than()",
            InRuntime(Box::pin(async move {
                client.wait_waiting_below(limit, lane.as_deref()).await
            })),
            move |py, result| result.map_err(|e| e.into_py_err(py)).map(|()| py.None()),
        )
    }

    /// Subscribes to the lifecycle events of every command of the queue from now on
    /// (a `RedisQueue`'s from any process); `keys` (one key, or an iterable of keys)
    /// limits them to those keys (see `EVENT_KEYS`). Iterate with `for` or `async for`;
    /// `close()` ends the stream.
    #[pyo3(signature = (keys = None))]
    fn events(&self, py: Python<'_>, keys: Option<&Bound<'_, PyAny>>) -> PyResult<EventStream> {
        let wanted = wanted_keys(py, keys)?;
        Ok(EventStream::new(self.client.subscribe(), wanted))
    }
}
