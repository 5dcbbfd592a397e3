"""The values of the client surface that `Lane` and `RedisQueue` share (`QueueClient`):
what a cancel did, and where a command is. The native module builds them; they mirror
the core's `CancelOutcome`, `CommandState` and `CommandStatus`, value for value."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    """Finished with a value (a `RedisQueue` keeps finished commands for its
    `result_ttl`; a `Lane` forgets them, and `command(id)` is then None)."""
    CANCELLED = "cancelled"
    """Cancelled."""
    DEAD_LETTERED = "dead_lettered"
    """Failed for good and kept as a dead letter."""
    EXPIRED = "expired"
    """Not started by its start-by deadline (`start_by=`, `start_within=`); it never
    ran."""


@dataclass(frozen=True)
class CommandStatus:
    """A command as `command(id)` reports it."""

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
