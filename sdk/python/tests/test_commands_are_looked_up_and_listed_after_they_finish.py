"""A command's state and result afterwards: `command(id)` reports a finished command with
its times (timezone-aware UTC datetimes) and its `result` or `error` (a
`CommandFailure`); each lane keeps, per final state, its last `keep_last` finished
commands for at most `keep_for` (`LaneConfig(keep_last=, keep_for=)`; 0 keeps none);
`list_commands(lane, state, offset=, limit=)` lists a lane's commands in one state, a
page at a time; bad pages, states and retentions are refused with the core's error; and
another client (a new `RedisQueue` on the same prefix, a `Lane` reopened on the same
store) reads the result of a command submitted before.

Each behaviour is written once and run on every engine: in process, in process with
durable storage (and dead letters), Redis and Redis Cluster. The Redis engines need a
Redis server (A3S_LANE_REDIS_URL) and a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS);
without them those tests fail, never skip."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from a3s_lane import (
    DEFAULTS,
    CancelledError,
    CancelOutcome,
    CommandContext,
    CommandError,
    CommandFailure,
    CommandHandle,
    CommandState,
    CommandStatus,
    CommandTimeoutError,
    ConfigError,
    ExpiredError,
    Lane,
    LaneConfig,
    LaneNotFoundError,
    QueueClient,
    RedisQueue,
    RedisWorker,
    RetryPolicy,
)
from conftest import redis_cluster_urls, redis_url, unique_prefix, wait_for

ENGINES = ["in_process", "in_process_with_storage", "redis", "redis_cluster"]

# "jobs" runs one command at a time; "busy" holds a running command for the listings.
LANES = {
    "jobs": LaneConfig(priority=0, max_concurrency=1, cancel_grace=30),
    "busy": LaneConfig(priority=1, max_concurrency=1, cancel_grace=30),
}

LIVE = (CommandState.PENDING, CommandState.DELAYED, CommandState.RUNNING)

# Clocks of different hosts (Redis' and this one) may differ by a little.
SLACK = timedelta(seconds=1)


class Engine:
    """Queues of one engine, with three handlers: "echo" returns its payload, "fail"
    raises RuntimeError, "block" runs until cancelled (a plain def that sets `started`
    and checks ctx.is_cancelled())."""

    def __init__(self, kind: str, store: Path, prefix: str) -> None:
        self.kind = kind
        self.store = store
        self.prefix = prefix
        self.started = threading.Event()
        self.lanes: Mapping[str, LaneConfig] = LANES
        self._queue: QueueClient | None = None
        self._workers: list[RedisWorker] = []
        self._closers: list[Callable[[], object]] = []

    @property
    def dead_letters(self) -> bool:
        """Whether a command that failed for good is a dead letter (else FAILED)."""
        return self.kind != "in_process"

    @property
    def queue(self) -> QueueClient:
        assert self._queue is not None, "open() first"
        return self._queue

    def _register(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        def echo(payload: Any) -> Any:
            return payload

        def fail(payload: Any) -> Any:
            raise RuntimeError(f"out of paper {payload!r}")

        def block(payload: Any, ctx: CommandContext) -> str:
            self.started.set()
            while not ctx.is_cancelled():
                time.sleep(0.005)
            return "stopped"

        register("echo", echo)
        register("fail", fail)
        register("block", block)

    def _redis(self, lanes: Mapping[str, LaneConfig] | None) -> RedisQueue:
        if self.kind == "redis":
            return RedisQueue(redis_url(), lanes, key_prefix=self.prefix)
        return RedisQueue.cluster(redis_cluster_urls(), lanes, key_prefix=self.prefix)

    def _lane(self) -> Lane:
        match self.kind:
            case "in_process":
                return Lane(self.lanes)
            case _:
                return Lane(self.lanes, storage=self.store, dead_letters=100)

    def open(self, lanes: Mapping[str, LaneConfig] = LANES) -> QueueClient:
        """A started queue with the lanes `lanes` and the three handlers."""
        self.lanes = lanes
        if self.kind.startswith("in_process"):
            lane = self._lane()
            self._register(lane.register_handler)
            lane.start()
            self._queue = lane
            return lane
        queue = self._redis(lanes)
        worker = RedisWorker(queue, slots=4)
        self._register(worker.register_handler)
        worker.start()
        self._workers.append(worker)
        self._closers.append(queue.clear)
        self._queue = queue
        return queue

    def submit(self, lane: str, command_type: str, payload: Any = None, **options: Any) -> CommandHandle[Any]:
        queue = self.queue
        if isinstance(queue, Lane):
            return queue.submit_nowait(lane, command_type, payload, **options)
        assert isinstance(queue, RedisQueue)
        return queue.submit(lane, command_type, payload, **options)

    def another_client(self) -> QueueClient:
        """Another client of the same queue: a new RedisQueue on the same prefix (which
        declares no lane); in process with storage, a new Lane on the same store once
        the first one is shut down and gone; in process without, the Lane itself (the
        only client an in-process queue has)."""
        match self.kind:
            case "in_process":
                return self.queue
            case "in_process_with_storage":
                first = self.queue
                assert isinstance(first, Lane)
                first.drain(timeout=30)
                first.shutdown()
                self._queue = None
                del first
                gc.collect()  # the store stays locked while the first Lane lives
                self._queue = self._lane()
                return self._queue
            case _:
                return self._redis(None)

    def close(self) -> None:
        for worker in self._workers:
            worker.shutdown_now()
        if isinstance(self._queue, Lane):
            self._queue.shutdown_now()
        for close in self._closers[:1]:
            close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = Engine(request.param, tmp_path, unique_prefix(request.node.name[:40]))
    yield made
    made.close()


def utc(moment: datetime | None) -> datetime:
    """A time of a CommandStatus: set, and timezone-aware in UTC."""
    assert moment is not None
    assert moment.tzinfo is timezone.utc, moment
    return moment


def ids(statuses: list[CommandStatus]) -> list[int]:
    return [status.id for status in statuses]


def test_a_finished_command_is_looked_up_with_its_times_and_result(engine: Engine) -> None:
    queue = engine.open()
    before = datetime.now(timezone.utc)
    handle = engine.submit("jobs", "echo", {"items": [1, "two", None], "ok": True})
    assert handle.result(timeout=30) == {"items": [1, "two", None], "ok": True}
    status = queue.command(handle.id)
    assert status is not None
    assert (status.id, status.lane_id, status.command_type, status.state, status.attempts) == (
        handle.id, "jobs", "echo", CommandState.COMPLETED, 1
    )
    assert status.result == {"items": [1, "two", None], "ok": True}
    assert status.error is None
    submitted, started, finished = utc(status.submitted_at), utc(status.started_at), utc(status.finished_at)
    assert before - SLACK <= submitted <= started + SLACK, status
    assert started <= finished <= datetime.now(timezone.utc) + SLACK, status


def test_failed_cancelled_and_expired_commands_keep_their_error(engine: Engine) -> None:
    queue = engine.open()
    # A failure: the handler raised (no retry policy: the first failure is final).
    failed = engine.submit("jobs", "fail", 7)
    with pytest.raises((RuntimeError, CommandError), match="out of paper 7"):
        failed.result(timeout=30)
    status = queue.command(failed.id)
    assert status is not None
    assert status.state is (CommandState.DEAD_LETTERED if engine.dead_letters else CommandState.FAILED)
    assert status.error is not None and status.error.kind == "failed", status
    assert "RuntimeError: out of paper 7" in status.error.message, status
    assert status.result is None
    utc(status.finished_at)

    # A pending command, cancelled: it never ran.
    queue.pause_lane("jobs")
    pending = engine.submit("jobs", "echo", "never")
    assert queue.cancel(pending.id) is CancelOutcome.CANCELLED
    with pytest.raises(CancelledError):
        pending.result(timeout=30)
    status = queue.command(pending.id)
    assert status is not None
    assert (status.state, status.attempts, status.started_at, status.result) == (
        CommandState.CANCELLED, 0, None, None
    )
    assert status.error is not None and status.error.kind == "cancelled", status
    assert utc(status.submitted_at) <= utc(status.finished_at) + SLACK

    # A running command, cancelled: it ran once.
    running = engine.submit("busy", "block")
    assert engine.started.wait(30)
    assert queue.cancel(running.id) is CancelOutcome.SIGNALLED
    with pytest.raises(CancelledError):
        running.result(timeout=30)
    status = queue.command(running.id)
    assert status is not None
    assert (status.state, status.attempts) == (CommandState.CANCELLED, 1), status
    assert status.error is not None and status.error.kind == "cancelled", status
    assert utc(status.started_at) <= utc(status.finished_at) + SLACK

    # Not started by its deadline (the lane is still paused): it expired.
    late = engine.submit("jobs", "echo", "late", start_within=0.2)
    with pytest.raises(ExpiredError):
        late.result(timeout=30)
    status = queue.command(late.id)
    assert status is not None
    assert (status.state, status.attempts, status.started_at) == (CommandState.EXPIRED, 0, None), status
    assert status.error is not None and status.error.kind == "expired", status


def test_a_failed_command_counts_each_run_once(engine: Engine) -> None:
    queue = engine.open({"jobs": LaneConfig(priority=0, retry=RetryPolicy.fixed(2, 0.01))})
    failed = engine.submit("jobs", "fail", 1)
    with pytest.raises((RuntimeError, CommandError), match="out of paper 1"):
        failed.result(timeout=30)
    status = queue.command(failed.id)
    assert status is not None
    assert status.state is (CommandState.DEAD_LETTERED if engine.dead_letters else CommandState.FAILED)
    assert status.attempts == 3, f"one run and two retries: {status}"


def test_a_lane_keeps_the_last_n_of_each_final_state(engine: Engine) -> None:
    queue = engine.open({"jobs": LaneConfig(priority=0, keep_last=2)})
    done: list[int] = []
    for name in ["a", "b", "c"]:
        handle = engine.submit("jobs", "echo", name)
        assert handle.result(timeout=30) == name
        done.append(handle.id)
    # A cancelled command is kept in a list of its own: it evicts no completed one.
    queue.pause_lane("jobs")
    cancelled = engine.submit("jobs", "echo", "d")
    assert queue.cancel(cancelled.id)
    with pytest.raises(CancelledError):
        cancelled.result(timeout=30)

    completed = queue.list_commands("jobs", CommandState.COMPLETED)
    assert ids(completed) == [done[2], done[1]], "the newest two, newest first"
    assert [status.result for status in completed] == ["c", "b"]
    assert all(status.state is CommandState.COMPLETED for status in completed)
    assert queue.command(done[0]) is None, "the oldest was let go"
    assert ids(queue.list_commands("jobs", CommandState.CANCELLED)) == [cancelled.id]
    assert queue.list_commands("jobs", CommandState.FAILED) == []


def test_a_lane_that_keeps_nothing_forgets_a_command_once_it_ended(engine: Engine) -> None:
    queue = engine.open({
        "jobs": LaneConfig(priority=0, keep_last=0),
        "brief": LaneConfig(priority=1, keep_for=timedelta(milliseconds=400)),
    })
    handle = engine.submit("jobs", "echo", "a")
    assert handle.result(timeout=30) == "a", "its submitter still gets the result"
    assert queue.command(handle.id) is None
    assert queue.list_commands("jobs", "completed") == []

    # Kept for keep_for, then gone.
    brief = engine.submit("brief", "echo", "b")
    assert brief.result(timeout=30) == "b"
    kept = queue.command(brief.id)
    assert kept is not None and kept.result == "b"
    time.sleep(0.8)
    assert queue.command(brief.id) is None
    assert queue.list_commands("brief", CommandState.COMPLETED) == []


def test_commands_are_listed_by_lane_and_state_in_order_a_page_at_a_time(engine: Engine) -> None:
    queue = engine.open()
    running = engine.submit("busy", "block")
    assert engine.started.wait(30)
    queue.pause_lane("jobs")
    pending = [engine.submit("jobs", "echo", n).id for n in range(5)]
    later = engine.submit("jobs", "echo", "later", delay=60)
    sooner = engine.submit("jobs", "echo", "sooner", delay=timedelta(seconds=30))

    # Pending: in the order they will start; a page at a time.
    assert ids(queue.list_commands("jobs", CommandState.PENDING)) == pending
    assert ids(queue.list_commands("jobs", CommandState.PENDING, limit=2)) == pending[:2]
    assert ids(queue.list_commands("jobs", CommandState.PENDING, offset=2, limit=2)) == pending[2:4]
    assert ids(queue.list_commands("jobs", "pending", offset=4, limit=2)) == pending[4:]
    assert queue.list_commands("jobs", CommandState.PENDING, offset=10) == []
    first = queue.list_commands("jobs", "pending", limit=1)[0]
    assert (first.lane_id, first.command_type, first.state, first.attempts, first.started_at) == (
        "jobs", "echo", CommandState.PENDING, 0, None
    )
    utc(first.submitted_at)
    # Delayed: by due time.
    assert ids(queue.list_commands("jobs", CommandState.DELAYED)) == [sooner.id, later.id]
    # Running: by start, in their own lane only.
    [busy] = queue.list_commands("busy", CommandState.RUNNING)
    assert (busy.id, busy.state, busy.attempts) == (running.id, CommandState.RUNNING, 1)
    utc(busy.started_at)
    assert queue.list_commands("jobs", CommandState.RUNNING) == []
    assert queue.list_commands("busy", CommandState.PENDING) == []

    for command_id in [sooner.id, later.id, running.id]:
        assert queue.cancel(command_id)
    queue.resume_lane("jobs")
    wait_for(lambda: queue.stats().total_pending == 0 and queue.stats().total_active == 0)
    assert ids(queue.list_commands("jobs", CommandState.COMPLETED)) == pending[::-1], "newest first"
    assert ids(queue.list_commands("jobs", CommandState.COMPLETED, offset=1, limit=3)) == pending[3:0:-1]
    assert ids(queue.list_commands("jobs", CommandState.CANCELLED)) == [later.id, sooner.id]


def test_bad_pages_and_states_are_refused(engine: Engine) -> None:
    queue = engine.open()
    for limit in [0, 1001]:
        with pytest.raises(ConfigError, match="page limit"):
            queue.list_commands("jobs", CommandState.PENDING, limit=limit)
    with pytest.raises(ConfigError, match="offset"):
        queue.list_commands("jobs", CommandState.PENDING, offset=-1)
    with pytest.raises(TypeError, match="limit"):
        queue.list_commands("jobs", CommandState.PENDING, limit="10")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown command state 'finished'.*completed"):
        queue.list_commands("jobs", "finished")
    with pytest.raises(TypeError, match="state must be a CommandState"):
        queue.list_commands("jobs", 3)  # type: ignore[arg-type]
    with pytest.raises(LaneNotFoundError):
        queue.list_commands("nowhere", CommandState.COMPLETED)
    # The largest page is allowed.
    assert queue.list_commands("jobs", CommandState.COMPLETED, limit=1000) == []


def test_bad_retentions_are_refused_with_the_cores_error() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"keep_for": 0}, "keep_for .* shorter than 1 ms; keep_last=0 keeps nothing"),
        ({"keep_for": timedelta(days=366)}, "keep_for .* longer than a year"),
        ({"keep_last": 1_000_001}, "keep_last 1000001 is more than 1000000"),
        ({"keep_last": -1}, "keep_last must be an int >= 0, got -1"),
        ({"keep_for": -1.0}, "keep_for must be a finite number of seconds >= 0"),
        ({"keep_for": float("nan")}, "keep_for must be a finite number"),
        ({"keep_last": 0, "keep_for": 0}, "keep_for"),
    ]
    for options, match in cases:
        with pytest.raises(ConfigError, match=match):
            LaneConfig(priority=0, **options)
    with pytest.raises(TypeError, match="keep_last must be an int"):
        LaneConfig(keep_last=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keep_for must be a number of seconds"):
        LaneConfig(keep_for="1h")  # type: ignore[arg-type]
    # Neither clamped nor changed: what was given is what the lane keeps.
    config = LaneConfig(keep_last=1_000_000, keep_for=timedelta(days=365))
    assert (config.keep_last, config.keep_for) == (1_000_000, 365 * 86400.0)
    assert (LaneConfig(keep_for=0.001).keep_for, LaneConfig(keep_last=0).keep_last) == (0.001, 0)


def test_retention_is_part_of_a_lane_config() -> None:
    table = DEFAULTS["lane"]
    config = LaneConfig()
    assert (config.keep_last, config.keep_for) == (table["keep_last"], table["keep_for_ms"] / 1000)
    assert LaneConfig(keep_last=5) != config
    assert LaneConfig(keep_for=60) == LaneConfig(keep_for=timedelta(minutes=1))
    assert hash(LaneConfig(keep_for=60)) == hash(LaneConfig(keep_for=timedelta(minutes=1)))
    assert repr(LaneConfig(priority=1, keep_last=5, keep_for=90)) == "LaneConfig(priority=1, keep_last=5, keep_for=90)"


def test_another_client_reads_the_result_of_an_earlier_submit(engine: Engine) -> None:
    queue = engine.open()
    # Submitted, and never awaited: its submitter lets the handle go.
    command_id = engine.submit("jobs", "echo", {"report": "ready"}).id

    def finished() -> bool:
        status = queue.command(command_id)
        return status is not None and status.state not in LIVE

    wait_for(finished)
    del queue
    other = engine.another_client()
    status = other.command(command_id)
    assert status is not None
    assert (status.state, status.result, status.lane_id) == (
        CommandState.COMPLETED, {"report": "ready"}, "jobs"
    )
    utc(status.finished_at)
    assert ids(other.list_commands("jobs", CommandState.COMPLETED)) == [command_id]


def test_a_timed_out_command_keeps_its_timeout() -> None:
    lane = Lane({"jobs": LaneConfig(priority=0, timeout=0.1)})

    @lane.handler("slow")
    async def slow(payload: None) -> None:
        await asyncio.sleep(30)

    lane.start()
    handle = lane.submit_nowait("jobs", "slow")
    with pytest.raises(CommandTimeoutError):
        handle.result(timeout=30)
    status = lane.command(handle.id)
    assert status is not None and status.state is CommandState.FAILED
    assert status.error is not None
    assert (status.error.kind, status.error.timeout) == ("timeout", 0.1), status
    assert status.error == CommandFailure("timeout", status.error.message, 0.1)
    lane.shutdown_now()
