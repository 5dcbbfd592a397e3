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

Lanes can have rate limits (``RateLimit``) and priority boosts (``PriorityBoost``);
``Lane(metrics=True)`` records metrics; ``RedisQueue`` and ``RedisWorker`` run the same
handlers across processes and machines, with the queue kept in Redis and its lanes
declared with the same ``LaneConfig``. ``Lane`` and ``RedisQueue`` are both a
``QueueClient``: ``cancel`` (a ``CancelOutcome``), ``command`` (a ``CommandStatus``),
``stats``, ``pause_lane``, ``resume_lane``, ``dead_letters``, ``redrive``,
``purge_dead_letters`` and ``events`` are the same on both. ``DEFAULTS`` lists every
option's default (the core's table; durations in milliseconds).
"""

from a3s_lane._client import CancelOutcome, CommandState, CommandStatus
from a3s_lane._native import (
    DEFAULT_LANES,
    DEFAULTS,
    EVENT_KEYS,
    CancelledError,
    CommandContext,
    CommandError,
    CommandFuture,
    CommandHandle,
    CommandTimeoutError,
    ConfigError,
    DeadLetter,
    Event,
    EventStream,
    HandlerNotFoundError,
    HistogramStats,
    Lane,
    LaneConfig,
    LaneError,
    LaneMetrics,
    LaneNotFoundError,
    LaneStatus,
    MetricsSnapshot,
    NonRetryableError,
    PriorityBoost,
    QueueClient,
    QueueStats,
    RateLimit,
    RedisQueue,
    RedisQueueStats,
    RedisWorker,
    RetryPolicy,
    ShutdownError,
    StorageError,
)

__all__ = [
    "DEFAULT_LANES",
    "DEFAULTS",
    "EVENT_KEYS",
    "CancelOutcome",
    "CancelledError",
    "CommandContext",
    "CommandError",
    "CommandFuture",
    "CommandHandle",
    "CommandState",
    "CommandStatus",
    "CommandTimeoutError",
    "ConfigError",
    "DeadLetter",
    "Event",
    "EventStream",
    "HandlerNotFoundError",
    "HistogramStats",
    "Lane",
    "LaneConfig",
    "LaneError",
    "LaneMetrics",
    "LaneNotFoundError",
    "LaneStatus",
    "MetricsSnapshot",
    "NonRetryableError",
    "PriorityBoost",
    "QueueClient",
    "QueueStats",
    "RateLimit",
    "RedisQueue",
    "RedisQueueStats",
    "RedisWorker",
    "RetryPolicy",
    "ShutdownError",
    "StorageError",
]
