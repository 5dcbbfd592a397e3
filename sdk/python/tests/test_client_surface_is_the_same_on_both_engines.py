"""`Lane` and `RedisQueue` are one client (`QueueClient`): the same methods, with the
same signatures and return types, doing the same thing. Each behaviour is written once
and run on every engine: in process, in process with durable storage, Redis, and Redis
Cluster — cancel outcomes, a command's state by id, dead letters (list, redrive, purge),
pause and resume, groups inside a lane, stats and events.

The Redis engines need a Redis server (A3S_LANE_REDIS_URL) and a Redis Cluster
(A3S_LANE_REDIS_CLUSTER_URLS); without them those tests fail, never skip."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import a3s_lane
from a3s_lane import (
    CancelOutcome,
    CommandContext,
    CommandError,
    CommandHandle,
    CommandState,
    CommandStatus,
    ConfigError,
    Lane,
    LaneConfig,
    LaneNotFoundError,
    NonRetryableError,
    QueueClient,
    QueueStats,
    RedisQueue,
    RedisQueueStats,
    RedisWorker,
)
from conftest import redis_cluster_urls, redis_url, unique_prefix, wait_for

ENGINES = ["in_process", "in_process_with_storage", "redis", "redis_cluster"]

# The operations both engines offer, inherited by both classes from QueueClient.
SHARED = [
    "cancel",
    "command",
    "list_commands",
    "put_schedule",
    "remove_schedule",
    "schedules",
    "pause_schedule",
    "resume_schedule",
    "stats",
    "pause_lane",
    "resume_lane",
    "pause_group",
    "resume_group",
    "cancel_group",
    "group_status",
    "groups",
    "dead_letters",
    "redrive",
    "purge_dead_letters",
    "on_size_less_than",
    "events",
]


class BadRequest(NonRetryableError):
    pass


class Engine:
    """A queue of one engine with a lane "jobs" and three handlers: "echo" returns its
    payload, "block" runs until cancelled (a plain def, checking ctx.is_cancelled()),
    "fail" raises BadRequest until `fixed` is set."""

    def __init__(self, queue: QueueClient, register: Callable[[str, Callable[..., Any]], None],
                 start: Callable[[], None], submit: Callable[..., CommandHandle],
                 close: Callable[[], None]) -> None:
        self.queue = queue
        self.started = threading.Event()
        self.fixed = threading.Event()
        self.start = start
        self.submit = submit
        self.close = close

        def echo(payload: Any) -> Any:
            return payload

        def block(payload: None, ctx: CommandContext) -> str:
            self.started.set()
            while not ctx.is_cancelled():
                time.sleep(0.005)
            return "stopped"

        def fail(payload: Any) -> Any:
            if not self.fixed.is_set():
                raise BadRequest(f"bad request {payload!r}")
            return payload

        register("echo", echo)
        register("block", block)
        register("fail", fail)


LANES = {"jobs": LaneConfig(priority=0, max_concurrency=4, cancel_grace=30)}


def in_process(storage: Path | None) -> Engine:
    lane = Lane(LANES, storage=storage, dead_letters=100)

    def close() -> None:
        lane.shutdown_now()

    return Engine(lane, lane.register_handler, lane.start, lane.submit_nowait, close)


def on_redis(queue: RedisQueue) -> Engine:
    worker = RedisWorker(queue, slots=4)

    def close() -> None:
        worker.shutdown_now()
        queue.clear()

    return Engine(queue, worker.register_handler, worker.start, queue.submit, close)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    prefix = unique_prefix(request.node.name[:40])
    match request.param:
        case "in_process":
            made = in_process(None)
        case "in_process_with_storage":
            made = in_process(tmp_path)
        case "redis":
            made = on_redis(RedisQueue(redis_url(), LANES, key_prefix=prefix))
        case _:
            made = on_redis(RedisQueue.cluster(redis_cluster_urls(), LANES, key_prefix=prefix))
    yield made
    made.close()


def assert_failed(handle: CommandHandle, payload: object) -> None:
    """The command failed with BadRequest: in process the handler's own exception, on
    Redis a CommandError naming it (exceptions do not cross processes)."""
    with pytest.raises((BadRequest, CommandError), match=f"bad request {payload!r}"):
        handle.result(timeout=30)


def test_both_engines_share_one_implementation_of_the_client_surface() -> None:
    for name in SHARED:
        assert getattr(Lane, name) is getattr(QueueClient, name), name
        if name != "stats":
            assert getattr(RedisQueue, name) is getattr(QueueClient, name), name
    # RedisQueue.stats adds workers and counters, and is a QueueStats all the same.
    assert issubclass(RedisQueueStats, QueueStats)
    assert issubclass(Lane, QueueClient) and issubclass(RedisQueue, QueueClient)
    with pytest.raises(TypeError):
        QueueClient()


def test_the_values_of_the_client_surface() -> None:
    assert [o.value for o in CancelOutcome] == ["cancelled", "signalled", "already_finished", "unknown"]
    assert [bool(o) for o in CancelOutcome] == [True, True, False, False]
    # Equal to their values: code that compared RedisQueue.cancel() with strings still works.
    assert CancelOutcome("cancelled") == "cancelled" and CancelOutcome("unknown") is CancelOutcome.UNKNOWN
    assert [s.value for s in CommandState] == [
        "pending", "delayed", "running", "completed", "failed", "cancelled", "dead_lettered", "expired"
    ]
    status = CommandStatus(id=1, lane_id="jobs", command_type="echo", state=CommandState.RUNNING, attempts=1)
    assert status == CommandStatus(1, "jobs", "echo", CommandState.RUNNING, 1)
    # What a live command does not have yet is None.
    assert (status.submitted_at, status.started_at, status.finished_at, status.result, status.error) == (
        None, None, None, None, None
    )
    with pytest.raises(AttributeError):
        status.attempts = 2  # type: ignore[misc]


def test_cancel_says_what_it_did_and_command_says_where_a_command_is(engine: Engine) -> None:
    queue = engine.queue
    assert isinstance(queue, QueueClient)
    engine.start()
    queue.pause_lane("jobs")
    pending = engine.submit("jobs", "echo", 1)
    status = queue.command(pending.id)
    assert status is not None
    assert replace(status, submitted_at=None) == CommandStatus(
        id=pending.id, lane_id="jobs", command_type="echo", state=CommandState.PENDING, attempts=0
    )
    assert status.submitted_at is not None
    cancelled = queue.cancel(pending.id)
    assert cancelled is CancelOutcome.CANCELLED and cancelled
    with pytest.raises(a3s_lane.CancelledError):
        pending.result(timeout=30)
    finished = queue.cancel(pending.id)
    assert finished is CancelOutcome.ALREADY_FINISHED and not finished
    unknown = queue.cancel(10**12)
    assert unknown is CancelOutcome.UNKNOWN and not unknown
    assert queue.command(10**12) is None

    queue.resume_lane("jobs")
    running = engine.submit("jobs", "block")
    assert engine.started.wait(30)
    status = queue.command(running.id)
    assert status is not None
    assert (status.state, status.attempts, status.lane_id, status.command_type) == (
        CommandState.RUNNING, 1, "jobs", "block"
    )
    signalled = queue.cancel(running.id)
    assert signalled is CancelOutcome.SIGNALLED and signalled
    with pytest.raises(a3s_lane.CancelledError):
        running.result(timeout=30)
    assert queue.cancel(running.id) is CancelOutcome.ALREADY_FINISHED


def test_dead_letters_can_be_listed_redriven_and_purged(engine: Engine) -> None:
    queue = engine.queue
    engine.start()
    assert queue.dead_letters() == []
    failed = engine.submit("jobs", "fail", {"n": 1})
    assert_failed(failed, {"n": 1})
    status = queue.command(failed.id)
    assert status is not None
    assert (status.id, status.lane_id, status.command_type, status.state, status.attempts) == (
        failed.id, "jobs", "fail", CommandState.DEAD_LETTERED, 1
    )
    assert status.error is not None and "bad request" in status.error.message
    [letter] = queue.dead_letters()
    assert (letter.command_id, letter.lane_id, letter.command_type, letter.attempts, letter.payload) == (
        failed.id, "jobs", "fail", 1, {"n": 1}
    )
    assert "bad request" in letter.error
    assert queue.dead_letters(limit=0) == []

    engine.fixed.set()
    redriven = queue.redrive(letter.command_id)
    assert isinstance(redriven, CommandHandle)
    assert redriven.result(timeout=30) == {"n": 1}
    assert queue.dead_letters() == []
    with pytest.raises(a3s_lane.LaneError):
        queue.redrive(letter.command_id)

    engine.fixed.clear()
    for n in range(3):
        assert_failed(engine.submit("jobs", "fail", n), n)
    assert [d.payload for d in queue.dead_letters()] == [0, 1, 2]
    assert [d.payload for d in queue.dead_letters(limit=2)] == [0, 1]
    assert queue.purge_dead_letters() == 3
    assert queue.dead_letters() == []
    assert queue.purge_dead_letters() == 0


def test_a_paused_lane_starts_nothing_until_resumed(engine: Engine) -> None:
    queue = engine.queue
    engine.start()
    queue.pause_lane("jobs")
    held = engine.submit("jobs", "echo", "later")
    stats = queue.stats()
    assert isinstance(stats, QueueStats)
    assert (stats.lanes["jobs"].paused, stats.lanes["jobs"].pending, stats.total_pending) == (True, 1, 1)
    time.sleep(0.1)
    assert not held.done()
    queue.resume_lane("jobs")
    assert held.result(timeout=30) == "later"
    assert not queue.stats().lanes["jobs"].paused

    # A timed pause resumes by itself.
    before = time.monotonic()
    queue.pause_lane("jobs", duration=0.5)
    assert engine.submit("jobs", "echo", "after the pause").result(timeout=30) == "after the pause"
    assert time.monotonic() - before >= 0.4

    with pytest.raises(LaneNotFoundError):
        queue.pause_lane("no_such_lane")
    with pytest.raises(ConfigError):
        queue.pause_lane("jobs", duration=0)


def test_a_group_is_paused_read_resumed_and_cancelled_as_a_whole(engine: Engine) -> None:
    queue = engine.queue
    engine.start()
    queue.pause_group("jobs", "held")
    held = [engine.submit("jobs", "echo", n, group="held") for n in range(2)]
    assert engine.submit("jobs", "echo", "free", group="free").result(timeout=30) == "free"
    status = queue.group_status("jobs", "held")
    assert isinstance(status, a3s_lane.GroupStatus)
    assert (status.lane, status.group, status.pending, status.active, status.paused) == ("jobs", "held", 2, 0, True)
    assert [(g.group, g.pending) for g in queue.groups("jobs")] == [("held", 2)]
    assert not any(handle.done() for handle in held)
    queue.resume_group("jobs", "held")
    assert [handle.result(timeout=30) for handle in held] == [0, 1]

    queue.pause_group("jobs", "doomed")
    doomed = [engine.submit("jobs", "echo", n, group="doomed") for n in range(3)]
    assert queue.cancel_group("jobs", "doomed") == 3
    for handle in doomed:
        with pytest.raises(a3s_lane.CancelledError):
            handle.result(timeout=30)
    queue.resume_group("jobs", "doomed")
    assert queue.groups("jobs") == []
    assert queue.cancel_group("jobs", "nobody") == 0

    with pytest.raises(LaneNotFoundError):
        queue.pause_group("no_such_lane", "g")
    with pytest.raises(ConfigError):
        queue.group_status("jobs", "")


def test_events_reach_a_subscriber(engine: Engine) -> None:
    queue = engine.queue
    with queue.events(keys=["queue.command.completed"]) as events:
        engine.start()
        handle = engine.submit("jobs", "echo", 5)
        assert handle.result(timeout=30) == 5
        event = events.get(timeout=30)
        assert event is not None
        assert (event.key, event.command_id, event.lane_id) == ("queue.command.completed", handle.id, "jobs")
    wait_for(lambda: queue.stats().total_active == 0)
