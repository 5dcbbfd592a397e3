"""A RedisQueue's commands run on RedisWorkers in this process and in others, with the
Lane's handler semantics: plain and async handlers, strict priority between lanes,
cancellation of running commands wherever they run, handler failures reaching the
submitter, retries, dead letters and lane controls kept in Redis.

Needs a Redis server (A3S_LANE_REDIS_URL); each test uses keys of its own."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import a3s_lane
from a3s_lane import (
    CommandContext,
    CommandError,
    CommandHandle,
    ConfigError,
    LaneNotFoundError,
    NonRetryableError,
    PriorityBoost,
    RateLimit,
    RedisLane,
    RedisQueue,
    RedisQueueStats,
    RedisWorker,
    RetryPolicy,
    StorageError,
)
from conftest import redis_url, unique_prefix

WORKER_SCRIPT = Path(__file__).resolve().parent / "redis_worker_process.py"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(0.01)


@pytest.fixture
def queues(request: pytest.FixtureRequest) -> Iterator[Callable[..., RedisQueue]]:
    """Makes RedisQueues on a key prefix of this test's own; deletes its keys afterwards."""
    url = redis_url()
    prefix = unique_prefix(request.node.name[:40])
    made: list[RedisQueue] = []

    def make(lanes: dict[str, RedisLane] | None = None) -> RedisQueue:
        queue = RedisQueue(url, lanes, key_prefix=prefix)
        made.append(queue)
        return queue

    yield make
    if made:
        made[0].clear()


class WorkerProcess:
    """A RedisWorker running in a child process (tests/redis_worker_process.py)."""

    def __init__(self, prefix: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), redis_url(), prefix, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("ready "), f"worker process did not start: {line!r} {self.stop()}"
        self.pid = int(line.split()[1])

    def readline(self) -> str:
        """The next line it prints (the suite's timeout ends a wait for one that never comes)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def kill(self) -> None:
        """Kills it (SIGKILL) and closes its pipes."""
        self.process.kill()
        self.process.communicate(timeout=60)

    def stop(self) -> str:
        """Closes its input (it shuts down) and returns everything it printed."""
        out, err = self.process.communicate(input="", timeout=60)
        return out + err


def test_a_worker_in_this_process_runs_plain_and_async_handlers(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(1, 8)})
    worker = RedisWorker(queue, slots=8)

    @worker.handler("add")
    def add(payload: dict[str, int], ctx: CommandContext) -> dict[str, object]:
        return {"sum": payload["a"] + payload["b"], "lane": ctx.lane, "attempt": ctx.attempt, "id": ctx.id}

    @worker.handler("shout")
    async def shout(payload: str) -> str:
        await asyncio.sleep(0)
        return payload.upper()

    worker.start()
    assert worker.id is not None and worker.running == 0
    handle = queue.submit("jobs", "add", {"a": 2, "b": 3})
    assert isinstance(handle, CommandHandle)
    result = handle.result(timeout=30)
    assert result == {"sum": 5, "lane": "jobs", "attempt": 1, "id": handle.id}
    assert handle.done()
    handles = [queue.submit("jobs", "shout", f"word {i}") for i in range(20)]
    assert [h.result(timeout=30) for h in handles] == [f"WORD {i}" for i in range(20)]
    assert len({h.id for h in handles}) == 20
    stats = queue.stats()
    assert isinstance(stats, RedisQueueStats)
    assert stats.workers == 1
    assert stats.counter("submitted") == 21 and stats.counter("completed") == 21
    worker.shutdown(timeout=30)
    assert queue.stats().workers == 0


def test_a_worker_in_another_process_runs_the_commands(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    child = WorkerProcess(queue.key_prefix)
    try:
        results = [queue.submit("jobs", "whoami", i) for i in range(5)]
        for i, handle in enumerate(results):
            assert handle.result(timeout=30) == {"pid": child.pid, "payload": i, "lane": "jobs"}
        assert child.pid != os.getpid()

        # The handler's exception in the other process reaches this one by type and message.
        failing = queue.submit("jobs", "fail", "missing-key")
        with pytest.raises(CommandError, match="KeyError: 'missing-key'"):
            failing.result(timeout=30)

        # A cancel reaches the command running in the other process.
        running = queue.submit("jobs", "wait_for_cancel")
        assert child.readline() == "handler started\n"
        assert queue.stats().lanes["jobs"].active == 1
        assert running.cancel() is True
        with pytest.raises(a3s_lane.CancelledError):
            running.result(timeout=30)
        assert running.cancel() is False  # finished already
    finally:
        output = child.stop()
    assert "handler cancelled" in output
    assert "stopped" in output


def test_workers_in_two_processes_share_one_queue(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 8)})
    child = WorkerProcess(queue.key_prefix)
    worker = RedisWorker(queue, slots=4)
    ran_here = threading.Event()

    @worker.handler("whoami")
    def whoami(payload: object) -> dict[str, object]:
        ran_here.set()
        return {"pid": os.getpid(), "payload": payload}

    worker.start()
    try:
        assert queue.stats().workers == 2
        # Commands submitted here run in both processes; every result comes back here.
        results: list[dict[str, object]] = []
        while not (ran_here.is_set() and any(r["pid"] == child.pid for r in results)):
            batch = [queue.submit("jobs", "whoami", i) for i in range(20)]
            results += [h.result(timeout=30) for h in batch]
            assert len(results) < 2000, "one of the workers never got a command"
        assert {r["pid"] for r in results} == {os.getpid(), child.pid}
    finally:
        worker.shutdown(timeout=30)
        child.stop()


def test_a_killed_worker_process_loses_its_command_to_another_worker(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    child = WorkerProcess(queue.key_prefix, "0.5")  # lease_ttl 0.5 s
    handle = queue.submit("jobs", "wait_for_cancel")
    assert child.readline() == "handler started\n"
    child.kill()  # no shutdown, no goodbye: only the lease tells
    worker = RedisWorker(queue, slots=1, lease_ttl=0.5, heartbeat_interval=0.1)

    @worker.handler("wait_for_cancel")
    def rescue(payload: None, ctx: CommandContext) -> dict[str, object]:
        return {"rescued": True, "attempt": ctx.attempt}

    worker.start()
    result = handle.result(timeout=30)  # the same command, run again here
    assert result == {"rescued": True, "attempt": 2}
    assert queue.stats().counter("workers_lost") == 1
    worker.shutdown(timeout=30)


def test_worker_options_take_effect(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"fast": RedisLane(0, 4), "slow": RedisLane(1, 4)})
    worker = RedisWorker(
        queue,
        slots=2,
        worker_id="options-test-worker",
        timeout=0.05,
        lane_timeouts={"slow": 30},
        retry=RetryPolicy.fixed(1, 0),
    )
    attempts: list[int] = []

    @worker.handler("nap")
    async def nap(payload: float, ctx: CommandContext) -> str:
        attempts.append(ctx.attempt)
        await asyncio.sleep(payload)
        return "rested"

    worker.start()
    assert worker.id == "options-test-worker"
    # 0.05 s in "fast" (the worker's timeout), retried once (the worker's retry policy).
    with pytest.raises(a3s_lane.CommandTimeoutError):
        queue.submit("fast", "nap", 3600).result(timeout=30)
    assert attempts == [1, 2]
    # "slow" has a timeout of its own.
    assert queue.submit("slow", "nap", 0.2).result(timeout=30) == "rested"
    worker.shutdown(timeout=30)


def test_commands_start_in_priority_order(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"bulk": RedisLane(5, 10), "urgent": RedisLane(0, 10)})
    order: list[str] = []

    # Queued before any worker exists: the one-slot worker then picks by priority.
    handles = [queue.submit("bulk", "record", f"bulk-{i}") for i in range(3)]
    handles += [queue.submit("urgent", "record", f"urgent-{i}") for i in range(3)]
    worker = RedisWorker(queue, slots=1)
    worker.register_handler("record", order.append)
    worker.start()
    for handle in handles:
        handle.result(timeout=30)
    worker.shutdown(timeout=30)
    assert order == ["urgent-0", "urgent-1", "urgent-2", "bulk-0", "bulk-1", "bulk-2"]


def test_a_boosted_lane_overtakes_a_busier_more_urgent_one(queues: Callable[..., RedisQueue]) -> None:
    # Past its 0.3 s deadline, the batch command's lane is at priority 0, ahead of the
    # urgent lane's 1; 40 urgent commands of 0.02 s keep the one slot busy well past it.
    queue = queues(
        {
            "urgent": RedisLane(1, 1),
            "batch": RedisLane(5, 1, priority_boost=PriorityBoost(0.3)),
            "tied": RedisLane(5, 1, priority_boost=PriorityBoost(3600).with_boost(3600, 4)),
        }
    )
    assert queue.stats().lanes["batch"].effective_priority == 5  # nothing waits yet
    order: list[str] = []

    def record(payload: list[object]) -> None:
        order.append(str(payload[0]))
        time.sleep(float(str(payload[1])))

    # Queued before any worker exists. "tied" is boosted from the start, but 5 - 4 = 1
    # only ties "urgent", which keeps its turns as the lane configured more urgent.
    handles = [queue.submit("urgent", "record", ["urgent", 0.02]) for _ in range(40)]
    handles.append(queue.submit("tied", "record", ["tied", 0]))
    handles.append(queue.submit("batch", "record", ["batch", 0]))
    assert queue.stats().lanes["tied"].effective_priority == 1
    wait_for(lambda: queue.stats().lanes["batch"].effective_priority == 0)
    worker = RedisWorker(queue, slots=1)
    worker.register_handler("record", record)
    worker.start()
    for handle in handles:
        handle.result(timeout=60)
    worker.shutdown(timeout=30)
    assert order[0] == "batch", order
    assert order.index("tied") > order.index("urgent"), order
    assert order[-1] == "tied", order


def test_cancel_stops_pending_and_running_commands(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    pending = queue.submit("jobs", "sleep")
    assert queue.cancel(pending.id) == "cancelled"  # no worker yet: it was waiting
    with pytest.raises(a3s_lane.CancelledError):
        pending.result(timeout=30)
    assert queue.cancel(pending.id) == "already_finished"
    assert queue.cancel(10**12) == "unknown"

    worker = RedisWorker(queue, slots=4, cancel_grace=30)
    started = threading.Event()
    saw: list[str] = []

    @worker.handler("sleep")
    async def sleep(payload: None) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            saw.append("async cancelled")
            raise

    @worker.handler("poll")
    def poll(payload: None, ctx: CommandContext) -> str:
        started.set()
        while not ctx.is_cancelled():
            time.sleep(0.01)
        saw.append("plain saw the cancel")
        return "stopped early"

    worker.start()
    for command_type in ["sleep", "poll"]:
        started.clear()
        handle = queue.submit("jobs", command_type)
        assert started.wait(30)
        assert handle.cancel() is True
        with pytest.raises(a3s_lane.CancelledError):
            handle.result(timeout=30)
    assert saw == ["async cancelled", "plain saw the cancel"]
    assert queue.stats().counter("cancelled") == 3
    worker.shutdown(timeout=30)


def test_handler_failures_reach_the_submitter_and_become_dead_letters(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    worker = RedisWorker(queue, lane_retries={"jobs": RetryPolicy.fixed(2, 0)})
    attempts: list[int] = []
    fixed = threading.Event()

    class BadRequest(NonRetryableError):
        pass

    @worker.handler("flaky")
    def flaky(payload: None, ctx: CommandContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("503 from upstream")
        return "ok"

    @worker.handler("validate")
    def validate(payload: dict[str, str]) -> str:
        if not fixed.is_set():
            raise BadRequest(f"missing field {payload['field']!r}")
        return "valid"

    worker.start()
    assert queue.submit("jobs", "flaky").result(timeout=30) == "ok"
    assert attempts == [1, 2, 3]

    handle = queue.submit("jobs", "validate", {"field": "user"})
    with pytest.raises(CommandError, match="BadRequest: missing field 'user'"):
        handle.result(timeout=30)
    [letter] = queue.dead_letters()
    assert (letter.command_id, letter.command_type, letter.lane_id) == (handle.id, "validate", "jobs")
    assert letter.attempts == 1  # NonRetryableError: no retries
    assert "BadRequest: missing field 'user'" in letter.error
    assert letter.payload == {"field": "user"}

    fixed.set()
    assert queue.redrive(letter.command_id).result(timeout=30) == "valid"
    assert queue.dead_letters() == []
    worker.shutdown(timeout=30)


def test_awaiting_in_asyncio(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 16)})

    async def main() -> None:
        worker = RedisWorker(queue)
        loop_thread = threading.get_ident()

        @worker.handler("echo")
        async def echo(payload: int) -> dict[str, object]:
            return {"payload": payload, "on_this_loop": threading.get_ident() == loop_thread}

        @worker.handler("hang")
        async def hang(payload: None) -> None:
            await asyncio.sleep(3600)

        worker.start()  # async handlers run on this loop
        assert await queue.submit_async("jobs", "echo", 1) == {"payload": 1, "on_this_loop": True}
        results = await asyncio.gather(*(queue.submit_async("jobs", "echo", i) for i in range(50)))
        assert [r["payload"] for r in results] == list(range(50))
        assert await queue.submit("jobs", "echo", 7) == {"payload": 7, "on_this_loop": True}

        future = queue.submit_async("jobs", "hang")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(future, timeout=0.2)  # cancels the command too
        deadline = time.monotonic() + 30
        while queue.stats().counter("cancelled") != 1:  # the handler stops on this loop
            assert time.monotonic() < deadline, "the cancel did not reach the command"
            await asyncio.sleep(0.01)

        with pytest.raises(LaneNotFoundError, match="no_such_lane"):
            await queue.submit_async("no_such_lane", "echo", 1)
        with pytest.raises(RuntimeError, match="shutdown_async"):
            worker.shutdown()
        await worker.shutdown_async(timeout=30)

    asyncio.run(main())


def test_lane_controls_and_stats_live_in_redis(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"api": RedisLane(1, 10, rate_limit=RateLimit.per_hour(3)), "other": RedisLane(2, 1)})
    handles = [queue.submit("api", "echo", i) for i in range(5)]
    queue.pause_lane("other")
    other = queue.submit("other", "echo", "later")
    stats = queue.stats()
    assert (stats.total_pending, stats.lanes["api"].pending, stats.lanes["other"].paused) == (6, 5, True)
    assert (stats.lanes["api"].priority, stats.lanes["api"].max_concurrency) == (1, 10)

    worker = RedisWorker(queue, slots=10)
    worker.register_handler("echo", lambda payload: payload)
    worker.start()
    # Three per hour over all workers: three run, two wait, and the lane shows throttled.
    assert [h.result(timeout=30) for h in handles[:3]] == [0, 1, 2]
    wait_for(lambda: queue.stats().lanes["api"].throttled)
    assert queue.stats().lanes["api"].pending == 2
    assert not other.done()
    queue.resume_lane("other")
    assert other.result(timeout=30) == "later"
    queue.pause_lane("other", duration=3600)  # in Redis a timed pause shows as throttled
    assert queue.stats().lanes["other"].throttled
    queue.resume_lane("other")  # ends a timed pause too
    assert not queue.stats().lanes["other"].throttled
    worker.shutdown_now()
    assert queue.clear() > 0
    assert queue.stats().total_pending == 0


def test_shutdown_hands_unfinished_commands_back_to_the_queue(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    first = RedisWorker(queue, slots=1, cancel_grace=0)

    @first.handler("job")
    async def stuck(payload: None) -> str:
        await asyncio.sleep(3600)
        return "first"

    first.start()
    handle = queue.submit("jobs", "job")
    wait_for(lambda: first.running == 1)
    with pytest.raises(TimeoutError, match="handed back to the queue"):
        first.shutdown(timeout=0.1)
    with pytest.raises(a3s_lane.LaneError, match="cannot start again"):
        first.start()

    second = RedisWorker(queue, slots=1)

    @second.handler("job")
    def finish(payload: None) -> str:
        return "second"

    second.start()
    assert handle.result(timeout=30) == "second"  # the same command, run again
    started_again = queue.submit("jobs", "job")
    assert started_again.result(timeout=30) == "second"
    assert second.shutdown_now() == 0


def test_bad_arguments_are_refused_with_a_reason(queues: Callable[..., RedisQueue]) -> None:
    with pytest.raises(ConfigError, match="priority must be an int from 0 to 255"):
        RedisLane(256, 1)
    with pytest.raises(ConfigError, match="max_concurrency must be an int >= 1"):
        RedisLane(0, 0)
    with pytest.raises(TypeError, match="rate_limit must be a RateLimit"):
        RedisLane(0, 1, rate_limit="5/s")  # type: ignore[arg-type]
    assert RedisLane(2, 3, rate_limit=RateLimit.per_second(5)) == RedisLane(2, 3, rate_limit=RateLimit.per_second(5))
    assert RedisLane(2, 3).rate_limit is None
    boosted = RedisLane(2, 3, priority_boost=PriorityBoost.standard(60))
    assert boosted.priority_boost == PriorityBoost.standard(60)
    assert boosted == RedisLane(2, 3, priority_boost=PriorityBoost.standard(60))
    assert boosted != RedisLane(2, 3)
    assert "priority_boost=PriorityBoost(60.0)" in repr(boosted)
    assert RedisLane(2, 3).priority_boost is None
    with pytest.raises(TypeError, match="priority_boost must be a PriorityBoost"):
        RedisLane(0, 1, priority_boost=300)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="resolution of 1 microsecond"):
        RedisLane(0, 1, priority_boost=PriorityBoost(1e-7))
    with pytest.raises(ConfigError, match="key prefix"):
        RedisQueue(redis_url(), key_prefix="{tenant}")
    with pytest.raises(TypeError, match="expected a RedisLane, got int"):
        RedisQueue(redis_url(), {"jobs": 5})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisQueue("http://example.com")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError, match="cannot connect to Redis"):
        RedisQueue(f"redis://127.0.0.1:{port}", response_timeout=2)

    queue = queues({"jobs": RedisLane(0, 1)})
    with pytest.raises(LaneNotFoundError, match="no_such_lane"):
        queue.submit("no_such_lane", "x")
    with pytest.raises(ConfigError, match="command type"):
        queue.submit("jobs", "")
    with pytest.raises(TypeError, match="payload"):
        queue.submit("jobs", "x", {"a": {1, 2}})
    with pytest.raises(ConfigError, match="slots must be an int >= 1"):
        RedisWorker(queue, slots=0)
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        RedisWorker(queue, lease_ttl=1, heartbeat_interval=2)
    with pytest.raises(TypeError, match="queue must be a RedisQueue"):
        RedisWorker("redis://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"lane_retries\['jobs'\] must be a RetryPolicy"):
        RedisWorker(queue, lane_retries={"jobs": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"lane_timeouts\['jobs'\] must be a finite number"):
        RedisWorker(queue, lane_timeouts={"jobs": -1})


def test_progress_reported_on_a_worker_reaches_the_submitters_events(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": RedisLane(0, 4)})
    worker = RedisWorker(queue, slots=2)
    step = threading.Semaphore(0)

    @worker.handler("steps")
    def steps(payload: int, ctx: CommandContext) -> str:
        for n in range(1, payload + 1):
            step.acquire()
            ctx.report_progress({"step": n})
        return "done"

    worker.start()
    with queue.events() as stream:  # blocking iterator
        handle = queue.submit("jobs", "steps", 3)
        for n in range(1, 4):
            step.release()
            event = stream.get(timeout=30)
            assert event is not None and event.key == "queue.command.progress"
            assert event.payload == {"lane_id": "jobs", "command_id": handle.id, "progress": {"step": n}}
        assert handle.result(timeout=30) == "done"

    async def read_async() -> None:
        stream = queue.events()
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(None, queue.submit, "jobs", "steps", 1)
        step.release()
        async for event in stream:  # async iterator
            assert event.command_id == handle.id and event.payload["progress"] == {"step": 1}
            break
        stream.close()
        assert await loop.run_in_executor(None, handle.result, 30) == "done"

    asyncio.run(asyncio.wait_for(read_async(), 60))
    worker.shutdown(timeout=30)
