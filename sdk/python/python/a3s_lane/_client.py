"""The values of the client surface that `Lane` and `RedisQueue` share (`QueueClient`):
what a cancel did, where a command is, how it ended, and where a recurring schedule
stands. The native module builds them; they mirror the core's `CancelOutcome`,
`CommandState`, `CommandStatus`, `CommandFailure` and `ScheduleInfo`, value for value
(times as timezone-aware UTC datetimes, durations in seconds, a schedule's interval and
jitter as `timedelta`s)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any, Literal


class CancelOutcome(enum.StrEnum):
    """What `cancel(id)` did. True (in `if queue.cancel(id):`) when the cancel reached
    the command, False when there was nothing left to cancel; equal to its value
    (`"cancelled"`, ...)."""

    CANCELLED = "cancelled"
    """It was pending, delayed or waiting for a retry, and ended now as cancelled."""
    SIGNALLED = "signalled"
    """It is running: it was told (an `async def` handler's task is cancelled, a plain
    `def` sees `ctx.is_cancelled()`) and ends as cancelled once it stops."""
    ALREADY_FINISHED = "already_finished"
    """It had finished already."""
    UNKNOWN = "unknown"
    """No such command (or its record expired)."""

    def __bool__(self) -> bool:
        return self is CancelOutcome.CANCELLED or self is CancelOutcome.SIGNALLED


class CommandState(enum.StrEnum):
    """Where a command is in its life; equal to its value (`"pending"`, ...)."""

    PENDING = "pending"
    """Waiting in its lane."""
    DELAYED = "delayed"
    """Waiting for its start time (`delay=`, `run_at=`) or a retry delay."""
    RUNNING = "running"
    """Running."""
    COMPLETED = "completed"
    """Finished with a value (its `result`). Finished commands are kept as their lane
    says (`LaneConfig(keep_last=, keep_for=)`); once let go, `command(id)` is None."""
    FAILED = "failed"
    """Failed for good (its `error`) on a queue that keeps no dead letters (with them it
    is `DEAD_LETTERED`)."""
    CANCELLED = "cancelled"
    """Cancelled."""
    DEAD_LETTERED = "dead_lettered"
    """Failed for good and kept as a dead letter."""
    EXPIRED = "expired"
    """Not started by its start-by deadline (`start_by=`, `start_within=`); it never
    ran."""


@dataclass(frozen=True)
class CommandFailure:
    """How a command failed, was cancelled or expired, as kept after it ended
    (`CommandStatus.error`)."""

    kind: str
    """What kind of error: `"failed"` (the handler raised; a dead letter's kind too),
    `"non_retryable"` (it raised a `NonRetryableError`), `"timeout"`, `"cancelled"`,
    `"expired"`, `"handler_not_found"`, `"invalid_input"` or `"other"`."""
    message: str
    """What went wrong (for a handler's exception `"TypeName: message"`)."""
    timeout: float | None = None
    """The run timeout in seconds, for kind `"timeout"`."""


@dataclass(frozen=True)
class CommandStatus:
    """A command as `command(id)` and `list_commands(...)` report it."""

    id: int
    """Its id."""
    lane_id: str
    """Its lane."""
    command_type: str
    """Its handler type."""
    state: CommandState
    """Where it is."""
    attempts: int
    """How many runs started, this one included when it is running."""
    submitted_at: datetime.datetime | None = None
    """When it was submitted (timezone-aware, UTC), or None where the engine did not
    record it."""
    started_at: datetime.datetime | None = None
    """When its last run started (UTC), or None before the first."""
    finished_at: datetime.datetime | None = None
    """When it finished (UTC), or None while it lives."""
    result: Any = None
    """What its handler returned, once `COMPLETED` (None otherwise)."""
    error: CommandFailure | None = None
    """Why it failed, was cancelled or expired, once it did (None otherwise)."""


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _utc(ms: int | None) -> datetime.datetime | None:
    return None if ms is None else _EPOCH + datetime.timedelta(milliseconds=ms)


def _command_status(
    id: int,
    lane_id: str,
    command_type: str,
    state: str,
    attempts: int,
    submitted_at_ms: int | None,
    started_at_ms: int | None,
    finished_at_ms: int | None,
    result: Any,
    error: tuple[str, str, int | None] | None,
) -> CommandStatus:
    """A `CommandStatus` from the core's values (the native module's constructor)."""
    failure = None
    if error is not None:
        kind, message, timeout_ms = error
        failure = CommandFailure(kind, message, None if timeout_ms is None else timeout_ms / 1000)
    return CommandStatus(
        id,
        lane_id,
        command_type,
        CommandState(state),
        attempts,
        _utc(submitted_at_ms),
        _utc(started_at_ms),
        _utc(finished_at_ms),
        result,
        failure,
    )


@dataclass(frozen=True)
class ScheduleInfo:
    """A recurring schedule and where it stands, as `put_schedule(...)` and
    `schedules()` report it. Exactly one of `every` and `cron` is set."""

    name: str
    """Its name, unique per queue (putting a schedule of the same name replaces it)."""
    lane: str
    """The lane its commands go to."""
    command_type: str
    """Their handler type."""
    payload: Any
    """Their payload."""
    every: datetime.timedelta | None
    """Its interval (it fires at the interval's multiples since the Unix epoch), or None
    for a cron schedule."""
    cron: str | None
    """Its cron expression, or None for an interval."""
    time_zone: str | None
    """The IANA time zone its cron expression is read in (None for an interval)."""
    missed: Literal["skip", "run_once"]
    """What it does about instants missed while no process ran or it was paused: skip
    them, or fire the latest once."""
    jitter: datetime.timedelta
    """Each instant's command is delayed by a part of this (0: none)."""
    paused: bool
    """Paused: it fires nothing until resumed."""
    next_fire_at: datetime.datetime | None
    """Its next instant (timezone-aware, UTC), or None when it has no more."""
    last_fired_at: datetime.datetime | None
    """The last instant it fired (UTC), or None before the first."""
    last_command_id: int | None
    """The command that instant submitted."""
    fired: int
    """Instants fired since it was first put."""
    skipped: int
    """Times it skipped instants since it was first put (missed, paused, or refused by
    its lane); each `queue.schedule.skipped` event counts once."""


def _schedule_info(
    what: tuple[str, str, str, Any],
    when: tuple[int | None, str | None, str | None, Literal["skip", "run_once"], int],
    where: tuple[bool, int | None, int | None, int | None, int, int],
) -> ScheduleInfo:
    """A `ScheduleInfo` from the core's values (the native module's constructor): what it
    submits, when (interval and jitter in ms), and where it stands (times in ms)."""
    name, lane, command_type, payload = what
    every_ms, cron, time_zone, missed, jitter_ms = when
    paused, next_ms, last_ms, last_command_id, fired, skipped = where
    return ScheduleInfo(
        name,
        lane,
        command_type,
        payload,
        None if every_ms is None else datetime.timedelta(milliseconds=every_ms),
        cron,
        time_zone,
        missed,
        datetime.timedelta(milliseconds=jitter_ms),
        paused,
        _utc(next_ms),
        _utc(last_ms),
        last_command_id,
        fired,
        skipped,
    )
