"""A RedisQueue's commands run on RedisWorkers with the Lane's handler semantics and
the Lane's lane model: lanes are LaneConfigs (priority, cap, rate limit, boost, timeout,
cancel grace, retries), kept in Redis and honoured by every worker; plain and async
handlers, strict priority between lanes, cancellation of pending and running commands,
handler failures reaching the submitter, dead letters and lane controls kept in Redis.
Workers in other processes: test_redis_workers_in_other_processes.py.

Needs a Redis server (A3S_LANE_REDIS_URL); each test uses keys of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

import a3s_lane
from a3s_lane import (
    CommandContext,
    CommandError,
    CommandHandle,
    ConfigError,
    LaneConfig,
    LaneNotFoundError,
    NonRetryableError,
    PriorityBoost,
    RateLimit,
    RedisQueue,
    RedisQueueStats,
    RedisWorker,
    RetryPolicy,
    StorageError,
)
from conftest import redis_url, wait_for


def test_a_worker_in_this_process_runs_plain_and_async_handlers(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=1, max_concurrency=8)})
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


def test_lane_and_worker_options_take_effect(queues: Callable[..., RedisQueue]) -> None:
    # Timeouts and retries are the lanes' own (kept in Redis), not the worker's.
    retry_once = RetryPolicy.fixed(1, 0)
    queue = queues(
        {
            "fast": LaneConfig(priority=0, max_concurrency=4, timeout=0.05, retry=retry_once),
            "slow": LaneConfig(priority=1, max_concurrency=4, timeout=30, retry=retry_once),
        }
    )
    worker = RedisWorker(
        queue,
        slots=2,
        worker_id="options-test-worker",
        lease_ttl=6,
        heartbeat_interval=1.5,
        block_timeout=0.5,
    )
    assert (worker.slots, worker.lease_ttl, worker.heartbeat_interval, worker.block_timeout) == (2, 6.0, 1.5, 0.5)
    attempts: list[int] = []

    @worker.handler("nap")
    async def nap(payload: float, ctx: CommandContext) -> str:
        attempts.append(ctx.attempt)
        await asyncio.sleep(payload)
        return "rested"

    worker.start()
    assert worker.id == "options-test-worker"
    # 0.05 s in "fast" (the lane's timeout), retried once (the lane's retry policy).
    with pytest.raises(a3s_lane.CommandTimeoutError):
        queue.submit("fast", "nap", 3600).result(timeout=30)
    assert attempts == [1, 2]
    # "slow" has a timeout of its own.
    assert queue.submit("slow", "nap", 0.2).result(timeout=30) == "rested"
    worker.shutdown(timeout=30)


def test_lanes_declared_later_or_elsewhere_run_with_their_options(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=2)})
    # Another queue object (as a worker process has) declares nothing: it uses the lanes,
    # and their options, kept in Redis.
    elsewhere = RedisQueue(redis_url(), key_prefix=queue.key_prefix)
    worker = RedisWorker(elsewhere, slots=2)

    @worker.handler("nap")
    async def nap(payload: float) -> str:
        await asyncio.sleep(payload)
        return "rested"

    worker.start()
    assert queue.submit("jobs", "nap", 0).result(timeout=30) == "rested"
    # A timeout declared later reaches the running worker's next runs.
    queue.declare_lane("jobs", LaneConfig(priority=0, max_concurrency=2, timeout=0.05))
    with pytest.raises(a3s_lane.CommandTimeoutError):
        queue.submit("jobs", "nap", 3600).result(timeout=30)
    # A lane declared after connecting takes commands, with the lane defaults of a Lane.
    queue.declare_lane("later", LaneConfig(priority=1))
    assert queue.submit("later", "nap", 0).result(timeout=30) == "rested"
    later = queue.stats().lanes["later"]
    assert (later.priority, later.max_concurrency) == (1, a3s_lane.DEFAULTS["lane"]["max_concurrency"])
    with pytest.raises(LaneNotFoundError, match="never"):
        queue.submit("never", "nap", 0)
    with pytest.raises(ConfigError, match="lane 'later': pressure_threshold is not supported by the Redis engine"):
        queue.declare_lane("later", LaneConfig(priority=1, pressure_threshold=5))
    worker.shutdown(timeout=30)


def test_commands_start_in_priority_order(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"bulk": LaneConfig(priority=5, max_concurrency=10), "urgent": LaneConfig(priority=0, max_concurrency=10)})
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
            "urgent": LaneConfig(priority=1, max_concurrency=1),
            "batch": LaneConfig(priority=5, max_concurrency=1, priority_boost=PriorityBoost(0.3)),
            "tied": LaneConfig(priority=5, max_concurrency=1, priority_boost=PriorityBoost(3600).with_boost(3600, 4)),
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
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4, cancel_grace=30)})
    pending = queue.submit("jobs", "sleep")
    assert queue.cancel(pending.id) == "cancelled"  # no worker yet: it was waiting
    with pytest.raises(a3s_lane.CancelledError):
        pending.result(timeout=30)
    assert queue.cancel(pending.id) == "already_finished"
    assert queue.cancel(10**12) == "unknown"

    worker = RedisWorker(queue, slots=4)
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
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4, retry=RetryPolicy.fixed(2, 0))})
    worker = RedisWorker(queue)
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
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=16)})

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
    queue = queues({"api": LaneConfig(priority=1, max_concurrency=10, rate_limit=RateLimit.per_hour(3)), "other": LaneConfig(priority=2, max_concurrency=1)})
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
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4, cancel_grace=0)})
    first = RedisWorker(queue, slots=1)

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
        LaneConfig(priority=256, max_concurrency=1)
    with pytest.raises(ConfigError, match="max_concurrency must be at least 1"):
        LaneConfig(priority=0, max_concurrency=0)
    with pytest.raises(TypeError, match="rate_limit must be a RateLimit"):
        LaneConfig(priority=0, max_concurrency=1, rate_limit="5/s")  # type: ignore[arg-type]
    assert LaneConfig(priority=2, max_concurrency=3, rate_limit=RateLimit.per_second(5)) == LaneConfig(priority=2, max_concurrency=3, rate_limit=RateLimit.per_second(5))
    assert LaneConfig(priority=2, max_concurrency=3).rate_limit is None
    boosted = LaneConfig(priority=2, max_concurrency=3, priority_boost=PriorityBoost.standard(60))
    assert boosted.priority_boost == PriorityBoost.standard(60)
    assert boosted == LaneConfig(priority=2, max_concurrency=3, priority_boost=PriorityBoost.standard(60))
    assert boosted != LaneConfig(priority=2, max_concurrency=3)
    assert "priority_boost=PriorityBoost(60.0)" in repr(boosted)
    assert LaneConfig(priority=2, max_concurrency=3).priority_boost is None
    with pytest.raises(TypeError, match="priority_boost must be a PriorityBoost"):
        LaneConfig(priority=0, max_concurrency=1, priority_boost=300)  # type: ignore[arg-type]
    # A boost the Redis clock cannot time is refused when the lane is declared on Redis.
    too_fine = LaneConfig(priority=0, max_concurrency=1, priority_boost=PriorityBoost(1e-7))
    with pytest.raises(ConfigError, match="lane 'jobs': priority boost: .*resolution of 1µs"):
        RedisQueue(redis_url(), {"jobs": too_fine})
    # So is a lane option the Redis engine cannot honour, by name.
    with pytest.raises(ConfigError, match="lane 'jobs': pressure_threshold is not supported by the Redis engine"):
        RedisQueue(redis_url(), {"jobs": LaneConfig(priority=0, pressure_threshold=10)})
    with pytest.raises(ConfigError, match="key prefix"):
        RedisQueue(redis_url(), key_prefix="{tenant}")
    with pytest.raises(TypeError, match="expected a LaneConfig, got int"):
        RedisQueue(redis_url(), {"jobs": 5})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisQueue("http://example.com")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError, match="cannot connect to Redis"):
        RedisQueue(f"redis://127.0.0.1:{port}", response_timeout=2)

    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=1)})
    with pytest.raises(LaneNotFoundError, match="no_such_lane"):
        queue.submit("no_such_lane", "x")
    with pytest.raises(ConfigError, match="command type"):
        queue.submit("jobs", "")
    with pytest.raises(TypeError, match="payload"):
        queue.submit("jobs", "x", {"a": {1, 2}})
    with pytest.raises(ConfigError, match="slots must be at least 1"):
        RedisWorker(queue, slots=0)
    with pytest.raises(ConfigError, match="block_timeout must be at least 10ms"):
        RedisWorker(queue, block_timeout=0.001)
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        RedisWorker(queue, lease_ttl=1, heartbeat_interval=2)
    with pytest.raises(TypeError, match="queue must be a RedisQueue"):
        RedisWorker("redis://")  # type: ignore[arg-type]
    # A lane's retries and timeout are LaneConfig options, checked as such; the worker
    # refuses its old per-lane options rather than ignoring them.
    with pytest.raises(TypeError, match="retry must be a RetryPolicy"):
        queue.declare_lane("jobs", LaneConfig(priority=0, retry=3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timeout must be a finite number"):
        queue.declare_lane("jobs", LaneConfig(priority=0, timeout=-1))
    for removed in ["timeout", "lane_timeouts", "retry", "lane_retries", "cancel_grace"]:
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{removed}'"):
            RedisWorker(queue, **{removed: None})


def test_progress_and_lifecycle_events_reach_every_subscriber(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4)})
    worker = RedisWorker(queue, slots=2)
    step = threading.Semaphore(0)

    @worker.handler("steps")
    def steps(payload: int, ctx: CommandContext) -> str:
        for n in range(1, payload + 1):
            step.acquire()
            ctx.report_progress({"step": n})
        return "done"

    worker.start()
    # Another queue object (another process, say) sees every stage of the command, for as
    # long as it lives.
    elsewhere = RedisQueue(redis_url(), key_prefix=queue.key_prefix)
    everything = elsewhere.events()
    with queue.events(keys=["queue.command.progress"]) as stream:  # blocking iterator
        handle = queue.submit("jobs", "steps", 3)
        for n in range(1, 4):
            step.release()
            event = stream.get(timeout=30)
            assert event is not None and event.key == "queue.command.progress"
            assert event.payload == {"lane_id": "jobs", "command_id": handle.id, "progress": {"step": n}}
        assert handle.result(timeout=30) == "done"
    seen: list[str] = []
    while "queue.command.completed" not in seen:
        event = everything.get(timeout=30)
        assert event is not None
        if event.command_id == handle.id:
            assert event.lane_id == "jobs"
            seen.append(event.key)
    everything.close()
    assert seen == [
        "queue.command.submitted",
        "queue.command.started",
        *["queue.command.progress"] * 3,
        "queue.command.completed",
    ]

    async def read_async() -> None:
        stream = queue.events(keys=["queue.command.progress"])
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


def test_the_event_stream_can_be_turned_off_for_the_whole_queue(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4)})
    quiet_queue = RedisQueue(redis_url(), key_prefix=queue.key_prefix, events=False)
    worker = RedisWorker(queue, slots=2)

    @worker.handler("echo")
    def echo(payload: str) -> str:
        return payload

    worker.start()
    with queue.events() as events:
        quiet = quiet_queue.submit("jobs", "echo", "quiet")
        assert quiet.result(timeout=30) == "quiet"
        # Another process turns the stream on again; the first event seen is the loud one's.
        loud_queue = RedisQueue(redis_url(), key_prefix=queue.key_prefix, events=True)
        loud = loud_queue.submit("jobs", "echo", "loud")
        assert loud.result(timeout=30) == "loud"
        first = events.get(timeout=30)
        assert first is not None
        assert first.key == "queue.command.submitted"
        assert first.command_id == loud.id
    with pytest.raises(TypeError):
        RedisQueue(redis_url(), key_prefix=queue.key_prefix, events=1)  # type: ignore[arg-type]
    worker.shutdown(timeout=30)
