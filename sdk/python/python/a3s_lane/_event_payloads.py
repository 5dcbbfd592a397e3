"""The payload of each event key, as TypedDicts (for type checkers; at runtime an
event's payload is a plain dict). `lane.events("queue.command.completed")` is typed as an
`EventStream[CommandCompletedPayload]`."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class CommandSubmittedPayload(TypedDict):
    """`queue.command.submitted`: a command was accepted."""

    lane_id: str
    command_id: int
    command_type: str


class CommandStartedPayload(TypedDict):
    """`queue.command.started`: a run began."""

    lane_id: str
    command_id: int
    command_type: str
    attempt: int


class CommandCompletedPayload(TypedDict):
    """`queue.command.completed`: the handler returned a value."""

    lane_id: str
    command_id: int
    duration_ms: float


class CommandRetryPayload(TypedDict):
    """`queue.command.retry`: a failed run will run again after `delay_ms`."""

    lane_id: str
    command_id: int
    attempt: int
    delay_ms: int
    error: str


class CommandDeadLetteredPayload(TypedDict):
    """`queue.command.dead_lettered`: a command failed for good and was kept."""

    lane_id: str
    command_id: int
    command_type: str
    error: str


class CommandFailedPayload(TypedDict):
    """`queue.command.failed`: a command failed for good."""

    lane_id: str
    command_id: int
    error: str


class CommandTimeoutPayload(TypedDict):
    """`queue.command.timeout`: a command's last run took longer than its timeout."""

    lane_id: str
    command_id: int
    error: str


class CommandCancelledPayload(TypedDict):
    """`queue.command.cancelled`: a command was cancelled."""

    lane_id: str
    command_id: int
    was_running: bool
    reason: str
    error: NotRequired[str]


class CommandProgressPayload(TypedDict):
    """`queue.command.progress`: a handler called `ctx.report_progress(...)`."""

    lane_id: str
    command_id: int
    progress: Any


class CommandAbandonedPayload(TypedDict):
    """`queue.command.abandoned`: a command was answered (timed out, or cancelled after
    its grace period) but its handler goes on; its slot stays taken until it returns."""

    lane_id: str
    command_id: int
    reason: str


class CommandExpiredPayload(TypedDict):
    """`queue.command.expired`: a command was not started by its start-by deadline
    (`start_by_ms`, milliseconds since the Unix epoch); it never runs."""

    lane_id: str
    command_id: int
    command_type: str
    start_by_ms: int


class CommandDeduplicatedPayload(TypedDict):
    """`queue.command.deduplicated`: a submit carried the idempotency `key` of a command
    still delayed, pending or running, so it queued nothing and got that command
    (`command_id`, `lane_id` and `command_type` are the existing command's)."""

    lane_id: str
    command_id: int
    command_type: str
    key: str


class ScheduleFiredPayload(TypedDict):
    """`queue.schedule.fired`: a recurring schedule fired an instant (`instant_ms`,
    milliseconds since the Unix epoch), submitting `command_id` to `lane_id`."""

    schedule: str
    lane_id: str
    command_id: int
    instant_ms: int


class ScheduleSkippedPayload(TypedDict):
    """`queue.schedule.skipped`: a recurring schedule skipped its instants from `from_ms`
    through `until_ms` (milliseconds since the Unix epoch, inclusive): missed while no
    process ran or it was paused (`reason` "missed" or "paused"), or its lane refused the
    command (`reason` the error)."""

    schedule: str
    from_ms: int
    until_ms: int
    reason: str


class EmptyPayload(TypedDict):
    """`queue.shutdown.started` and `queue.shutdown.complete` carry nothing."""


class LanePressurePayload(TypedDict):
    """`queue.lane.pressure`: a lane's pending count reached its threshold."""

    lane_id: str
    pending: int


class LaneIdlePayload(TypedDict):
    """`queue.lane.idle`: a lane has nothing pending or running."""

    lane_id: str


class LaneThrottledPayload(TypedDict):
    """`queue.lane.throttled`: a rate limit held back the lane's next start, once per
    wait: the lane's own (`limit` `"lane"`), one group's (`"group"`, `group` names it) or
    its shared budget's (`"budget"`); it may start again at `until_ms` (ms since the
    Unix epoch)."""

    lane_id: str
    group: str | None
    limit: Literal["lane", "group", "budget"]
    until_ms: int


class StorageFailedPayload(TypedDict):
    """`queue.storage.failed`: the durable store could not be written."""

    error: str


class EventsLaggedPayload(TypedDict):
    """`queue.events.lagged`: this subscriber fell behind and missed `missed` events."""

    missed: int
