"""a3s-lane: a lane-based priority command queue running Python handlers.

Commands go into named lanes; each lane has a priority (0 runs first) and concurrency
limits; the scheduler always starts work from the most urgent lane that has pending work
and free capacity. Handlers are plain functions (run on a thread pool) or ``async def``
coroutines (run on the event loop that started the lane).

    from a3s_lane import Lane

    lane = Lane()

    @lane.handler("fetch_data")
    async def fetch_data(payload):
        return {"url": payload["url"], "status": 200}

    lane.start()
    result = lane.submit("query", "fetch_data", {"url": "https://example.com"})

Lanes can have rate limits (``RateLimit``) and priority boosts (``PriorityBoost``), and
draw from a ``SharedBudget`` (``LaneConfig(budget=)``, ``status()`` a ``BudgetStatus``)
shared with lanes of other ``Lane`` queues in the process;
``Lane(metrics=True)`` records metrics; ``RedisQueue`` and ``RedisWorker`` run the same
handlers across processes and machines, with the queue kept in Redis and its lanes
declared with the same ``LaneConfig``. ``Lane`` and ``RedisQueue`` are both a
``QueueClient``: ``cancel`` (a ``CancelOutcome``), ``command`` (a ``CommandStatus``,
with its times and, once finished, its ``result`` or ``error``, a ``CommandFailure``),
``list_commands`` (a lane's commands in one ``CommandState``, paged), recurring
schedules (``put_schedule`` with ``every=`` or ``cron=``, ``schedules`` as
``ScheduleInfo``s, ``pause_schedule``, ``resume_schedule``, ``remove_schedule``),
``stats``, ``pause_lane``, ``resume_lane``, groups inside a lane (``submit(...,
group=)``, ``pause_group``, ``resume_group``, ``cancel_group``, ``group_status`` and
``groups`` as ``GroupStatus``es; limits by ``LaneConfig(group_max_concurrency=,
group_rate_limit=, group_overrides=)`` with ``GroupLimits``), ``dead_letters``,
``redrive``, ``purge_dead_letters`` and ``events`` are the same on both. ``DEFAULTS`` lists every
option's default (the core's table; durations in milliseconds).
"""

import atexit as _atexit
import collections.abc as _abc
import os as _os
import sys as _sys

from a3s_lane import _native
from a3s_lane._client import CancelOutcome, CommandFailure, CommandState, CommandStatus, ScheduleInfo
from a3s_lane._event_payloads import (
    CommandAbandonedPayload,
    CommandCancelledPayload,
    CommandCompletedPayload,
    CommandDeadLetteredPayload,
    CommandDeduplicatedPayload,
    CommandExpiredPayload,
    CommandFailedPayload,
    CommandProgressPayload,
    CommandRetryPayload,
    CommandStartedPayload,
    CommandSubmittedPayload,
    CommandTimeoutPayload,
    EmptyPayload,
    EventsLaggedPayload,
    LaneIdlePayload,
    LaneThrottledPayload,
    LanePressurePayload,
    ScheduleFiredPayload,
    ScheduleSkippedPayload,
    StorageFailedPayload,
)
from a3s_lane._native import (
    DEFAULT_LANES,
    DEFAULTS,
    EVENT_KEYS,
    BudgetStatus,
    CancelledError,
    CommandContext,
    CommandError,
    CommandFuture,
    CommandHandle,
    CommandTimeoutError,
    ConfigError,
    Dashboard,
    DeadLetter,
    Event,
    EventStream,
    ExpiredError,
    GroupLimits,
    GroupStatus,
    HandlerNotFoundError,
    HistogramStats,
    Lane,
    LaneConfig,
    LaneError,
    LaneFullError,
    LaneMetrics,
    LaneNotFoundError,
    LaneStatus,
    MetricsSnapshot,
    NonRetryableError,
    NotJsonError,
    PriorityBoost,
    QueueClient,
    QueueStats,
    RateLimit,
    RedisQueue,
    RedisQueueStats,
    RedisWorker,
    RetryPolicy,
    SharedBudget,
    ShutdownError,
    StorageError,
)

__all__ = [
    "CommandAbandonedPayload",
    "CommandCancelledPayload",
    "CommandCompletedPayload",
    "CommandDeadLetteredPayload",
    "CommandDeduplicatedPayload",
    "CommandExpiredPayload",
    "CommandFailedPayload",
    "CommandProgressPayload",
    "CommandRetryPayload",
    "CommandStartedPayload",
    "CommandSubmittedPayload",
    "CommandTimeoutPayload",
    "EmptyPayload",
    "EventsLaggedPayload",
    "LaneIdlePayload",
    "LaneThrottledPayload",
    "LanePressurePayload",
    "ScheduleFiredPayload",
    "ScheduleSkippedPayload",
    "StorageFailedPayload",
    "DEFAULT_LANES",
    "DEFAULTS",
    "EVENT_KEYS",
    "BudgetStatus",
    "CancelOutcome",
    "CancelledError",
    "CommandContext",
    "CommandError",
    "CommandFailure",
    "CommandFuture",
    "CommandHandle",
    "CommandState",
    "CommandStatus",
    "CommandTimeoutError",
    "ConfigError",
    "Dashboard",
    "DeadLetter",
    "Event",
    "EventStream",
    "ExpiredError",
    "GroupLimits",
    "GroupStatus",
    "HandlerNotFoundError",
    "HistogramStats",
    "Lane",
    "LaneConfig",
    "LaneError",
    "LaneFullError",
    "LaneMetrics",
    "LaneNotFoundError",
    "LaneStatus",
    "MetricsSnapshot",
    "NonRetryableError",
    "NotJsonError",
    "PriorityBoost",
    "QueueClient",
    "QueueStats",
    "RateLimit",
    "RedisQueue",
    "RedisQueueStats",
    "RedisWorker",
    "RetryPolicy",
    "ScheduleInfo",
    "SharedBudget",
    "ShutdownError",
    "StorageError",
]

# `asyncio.create_task(lane.submit_async(...))` and `TaskGroup.create_task` take only
# coroutines; a CommandFuture steps like one (send/throw/close), so it is registered as one.
_abc.Coroutine.register(CommandFuture)

#: Seconds the exit hook waits for accepted commands (A3S_LANE_EXIT_DRAIN_SECONDS).
_EXIT_DRAIN_DEFAULT = 5.0


def _exit_drain_seconds() -> float:
    raw = _os.environ.get("A3S_LANE_EXIT_DRAIN_SECONDS")
    if raw is None:
        return _EXIT_DRAIN_DEFAULT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        print(
            f"a3s_lane: A3S_LANE_EXIT_DRAIN_SECONDS={raw!r} is not a number of seconds >= 0; "
            f"using {_EXIT_DRAIN_DEFAULT:g}",
            file=_sys.stderr,
        )
        return _EXIT_DRAIN_DEFAULT
    return seconds


def _drain_at_exit() -> None:
    """At interpreter exit: give accepted commands a bounded time to finish (a Lane's
    commands, RedisQueue submits Redis has not answered, a RedisWorker's running
    commands), then say on stderr what did not (never silently, never a panic)."""
    seconds = _exit_drain_seconds()
    report = _native._exit_drain(seconds)
    dropped, stored, never_started = report["dropped"], report["stored"], report["never_started"]
    if dropped:
        print(
            f"a3s_lane: {dropped} accepted command(s) were dropped at exit: "
            + (
                f"{never_started} lane(s) holding commands were never started (call lane.start()); "
                if never_started
                else ""
            )
            + f"unfinished after waiting up to {seconds:g} s (A3S_LANE_EXIT_DRAIN_SECONDS), "
            "or their async handlers' event loop had closed. Wait for them before exiting: "
            "lane.drain() or await lane.on_idle().",
            file=_sys.stderr,
        )
    if stored:
        print(
            f"a3s_lane: {stored} accepted command(s) left unfinished at exit stay in the "
            "durable store and run at the next start.",
            file=_sys.stderr,
        )
    unacknowledged = report["unacknowledged"]
    if unacknowledged:
        print(
            f"a3s_lane: {unacknowledged} RedisQueue submit(s) were not acknowledged by Redis "
            f"within {seconds:g} s (A3S_LANE_EXIT_DRAIN_SECONDS); those commands may or may "
            "not be in Redis. Wait for them before exiting: let queue.submit() return, or "
            "await queue.submit_async().",
            file=_sys.stderr,
        )
    for worker in report["workers"]:
        if worker["loop_closed"]:
            why = "its async handlers' event loop had closed, so they could not finish"
        else:
            why = (
                f"they did not finish within {seconds:g} s (A3S_LANE_EXIT_DRAIN_SECONDS)"
            )
        print(
            f"a3s_lane: RedisWorker {worker['id']!r} was running {worker['running']} "
            f"command(s) at exit; {why}: the unfinished ones were cancelled and handed back "
            "to Redis for another worker. Stop workers before exiting: worker.shutdown(timeout).",
            file=_sys.stderr,
        )


_atexit.register(_drain_at_exit)
