"""Everyday helpers, named as in the Node SDK: `await on_idle()` (nothing pending,
delayed or running), `await on_empty()` (nothing waiting to start), `size` (waiting)
and `running` read without a wait, `await on_size_less_than(limit, lane=None)` (fewer
than `limit` waiting to start, in one lane or all), and `pause()`/`resume()` of the whole
queue. `on_size_less_than` is on the shared client surface: the Redis part runs it on a
RedisQueue with a RedisWorker (A3S_LANE_REDIS_URL), woken by the queue's event stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from a3s_lane import (
    CancelOutcome,
    ConfigError,
    Lane,
    LaneConfig,
    LaneError,
    LaneNotFoundError,
    QueueClient,
    RedisQueue,
    RedisWorker,
)
from conftest import redis_url, unique_prefix


def test_size_running_on_empty_and_on_idle_follow_the_work() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0, max_concurrency=1), "b": LaneConfig(priority=1, max_concurrency=1)})
        gate = asyncio.Event()

        @lane.handler("hold")
        async def hold(_: int) -> None:
            await gate.wait()

        # Idle and empty at once when there is nothing.
        await asyncio.wait_for(lane.on_idle(), 1)
        await asyncio.wait_for(lane.on_empty(), 1)
        assert (lane.size, lane.running) == (0, 0)
        lane.start()
        futures = [lane.submit_async(name, "hold", i) for i in range(3) for name in ("a", "b")]
        await asyncio.sleep(0.05)
        assert (lane.size, lane.running) == (4, 2)
        empty = asyncio.ensure_future(lane.on_empty())
        idle = asyncio.ensure_future(lane.on_idle())
        await asyncio.sleep(0.05)
        assert not empty.done() and not idle.done()
        gate.set()
        await asyncio.wait_for(empty, 10)
        await asyncio.wait_for(idle, 10)
        assert (lane.size, lane.running) == (0, 0)
        await asyncio.gather(*futures)

    asyncio.run(main())


def test_on_empty_resolves_while_the_last_commands_still_run() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0, max_concurrency=1)})
        gate = asyncio.Event()

        @lane.handler("hold")
        async def hold(_: int) -> None:
            await gate.wait()

        lane.start()
        futures = [lane.submit_async("a", "hold", i) for i in range(2)]
        await asyncio.sleep(0.05)
        empty = asyncio.ensure_future(lane.on_empty())
        await asyncio.sleep(0.05)
        assert not empty.done(), "one command still waits"
        gate.set()
        await asyncio.wait_for(empty, 10)
        await asyncio.gather(*futures)

    asyncio.run(main())


def test_pause_holds_every_lane_until_resume() -> None:
    lane = Lane({"a": LaneConfig(priority=0), "b": LaneConfig(priority=1)})
    lane.register_handler("echo", lambda p: p)
    lane.start()
    lane.pause()
    assert all(status.paused for status in lane.stats().lanes.values())
    handles = [lane.submit_nowait(name, "echo", name) for name in ("a", "b")]
    assert lane.size == 2
    assert not any(handle.done() for handle in handles)
    lane.resume()
    assert [handle.result(timeout=10) for handle in handles] == ["a", "b"]
    assert not any(status.paused for status in lane.stats().lanes.values())


def test_on_empty_wakes_when_the_last_waiting_command_is_cancelled() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0)})
        lane.register_handler("echo", lambda p: p)
        lane.start()
        # A delayed command waits to start for 30 s; its cancel is what empties the queue.
        handle = lane.submit_nowait("a", "echo", 1, delay=30)
        assert lane.size == 1
        empty = asyncio.ensure_future(lane.on_empty())
        await asyncio.sleep(0.05)
        assert not empty.done(), "a delayed command waits to start"
        handle.cancel()
        await asyncio.wait_for(empty, 5)
        assert lane.size == 0

    asyncio.run(main())


# `await lane.on_size_less_than(limit, lane=None)`: a producer's backpressure, woken by
# the queue's own state changes (p-queue's `onSizeLessThan`).


def test_on_size_less_than_resolves_at_once_when_it_holds_now() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0), "b": LaneConfig(priority=1)})
        lane.register_handler("echo", lambda p: p)
        await asyncio.wait_for(lane.on_size_less_than(1), 1)
        await asyncio.wait_for(lane.on_size_less_than(1, "a"), 1)
        # Not started: the submits wait to start.
        for i in range(3):
            lane.submit_nowait("a", "echo", i)
        assert lane.size == 3
        await asyncio.wait_for(lane.on_size_less_than(4), 1)
        await asyncio.wait_for(lane.on_size_less_than(4, "a"), 1)
        await asyncio.wait_for(lane.on_size_less_than(1, "b"), 1)
        waiting = asyncio.ensure_future(lane.on_size_less_than(3))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "3 wait to start, not fewer than 3"
        lane.start()
        await asyncio.wait_for(waiting, 5)
        await lane.drain_async(10)

    asyncio.run(main())


def test_on_size_less_than_resolves_only_once_enough_commands_started() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0, max_concurrency=1)})
        gates = [asyncio.Event() for _ in range(4)]

        @lane.handler("hold")
        async def hold(i: int) -> int:
            await gates[i].wait()
            return i

        lane.start()
        futures = [lane.submit_async("q", "hold", i) for i in range(4)]
        await asyncio.sleep(0.05)
        assert (lane.size, lane.running) == (3, 1)
        below_2 = asyncio.ensure_future(lane.on_size_less_than(2))
        below_1 = asyncio.ensure_future(lane.on_size_less_than(1, "q"))
        await asyncio.sleep(0.05)
        assert not below_2.done() and not below_1.done()
        gates[0].set()  # command 1 starts: 2 wait
        await asyncio.sleep(0.05)
        assert lane.size == 2
        assert not below_2.done(), "2 still wait to start"
        gates[1].set()  # command 2 starts: 1 waits
        await asyncio.wait_for(below_2, 5)
        assert lane.size == 1
        assert not below_1.done(), "one still waits to start"
        gates[2].set()  # command 3 starts: none waits
        await asyncio.wait_for(below_1, 5)
        assert (lane.size, lane.running) == (0, 1)
        gates[3].set()
        assert await asyncio.gather(*futures) == [0, 1, 2, 3]

    asyncio.run(main())


def test_on_size_less_than_counts_one_lane_or_all_lanes() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0), "b": LaneConfig(priority=1)})
        lane.register_handler("echo", lambda p: p)
        lane.start()
        lane.pause()
        for i in range(2):
            lane.submit_nowait("a", "echo", i)
        lane.submit_nowait("b", "echo", 9)
        assert lane.size == 3
        # Lane "a" alone has 2 waiting: below 3 now; all lanes together have 3.
        await asyncio.wait_for(lane.on_size_less_than(3, "a"), 1)
        all_lanes = asyncio.ensure_future(lane.on_size_less_than(3))
        only_b = asyncio.ensure_future(lane.on_size_less_than(1, "b"))
        only_a = asyncio.ensure_future(lane.on_size_less_than(2, "a"))
        await asyncio.sleep(0.05)
        assert not all_lanes.done() and not only_b.done() and not only_a.done()
        # Emptying lane "b" brings all lanes to 2 and "b" to 0; "a" still has 2.
        assert lane.cancel_lane("b") == 1
        await asyncio.wait_for(all_lanes, 5)
        await asyncio.wait_for(only_b, 5)
        await asyncio.sleep(0.05)
        assert not only_a.done(), "lane a still has 2 waiting"
        lane.resume()
        await asyncio.wait_for(only_a, 5)
        await lane.drain_async(10)

    asyncio.run(main())


def test_on_size_less_than_counts_delayed_commands() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        lane.register_handler("echo", lambda p: p)
        lane.start()
        soon = lane.submit_async("q", "echo", "soon", delay=0.3)
        lane.submit_nowait("q", "echo", "later", delay=30)
        assert lane.size == 2
        below_2 = asyncio.ensure_future(lane.on_size_less_than(2))
        below_1 = asyncio.ensure_future(lane.on_size_less_than(1, "q"))
        await asyncio.sleep(0.1)
        assert not below_2.done(), "two delayed commands wait to start"
        # The first one's delay ends and it runs: one waits.
        await asyncio.wait_for(below_2, 5)
        assert await soon == "soon"
        await asyncio.sleep(0.05)
        assert not below_1.done(), "the 30 s one still waits"
        lane.shutdown_now()
        await asyncio.wait_for(below_1, 5)

    asyncio.run(main())


def test_on_size_less_than_wakes_when_a_waiting_command_is_cancelled() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        lane.register_handler("echo", lambda p: p)
        lane.start()
        lane.pause()
        first = lane.submit_nowait("q", "echo", 1)
        second = lane.submit_nowait("q", "echo", 2)
        below_2 = asyncio.ensure_future(lane.on_size_less_than(2, "q"))
        await asyncio.sleep(0.05)
        assert not below_2.done()
        assert lane.cancel(first.id) == CancelOutcome.CANCELLED
        await asyncio.wait_for(below_2, 5)
        assert lane.size == 1
        lane.resume()
        assert await second == 2

    asyncio.run(main())


def test_on_size_less_than_refuses_a_bad_limit_or_an_unknown_lane() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        # A limit of 0 can never hold: the core refuses it.
        with pytest.raises(ConfigError, match="limit"):
            await asyncio.wait_for(lane.on_size_less_than(0), 1)
        with pytest.raises(ValueError):
            await asyncio.wait_for(lane.on_size_less_than(0, "q"), 1)
        for bad in (-1, 2**64):
            with pytest.raises(ConfigError, match="limit"):
                await lane.on_size_less_than(bad)
        for wrong in (True, "3", 1.0, None):
            with pytest.raises(TypeError, match="limit must be an int"):
                await lane.on_size_less_than(wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await lane.on_size_less_than(1, 7)  # type: ignore[arg-type]
        with pytest.raises(LaneNotFoundError):
            await asyncio.wait_for(lane.on_size_less_than(1, "nope"), 1)

    asyncio.run(main())


# --- on Redis: the same method of the shared client surface -----------------------------


def test_on_size_less_than_is_one_method_of_both_engines() -> None:
    assert Lane.on_size_less_than is QueueClient.on_size_less_than
    assert RedisQueue.on_size_less_than is QueueClient.on_size_less_than


@pytest.fixture
def gated(queues: Callable[..., RedisQueue]) -> Iterator[tuple[RedisQueue, list[threading.Event]]]:
    """A RedisQueue with lanes "q" (one command at a time) and "other", and a started
    RedisWorker whose "hold" handler runs until gate `i` (its payload) is set."""
    queue = queues({"q": LaneConfig(priority=0, max_concurrency=1), "other": LaneConfig(priority=1)})
    worker = RedisWorker(queue, slots=4)
    gates = [threading.Event() for _ in range(4)]

    @worker.handler("hold")
    def hold(i: int) -> int:
        gates[i].wait(30)
        return i

    worker.start()
    yield queue, gates
    for gate in gates:
        gate.set()
    worker.shutdown(timeout=10)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached within the timeout"
        await asyncio.sleep(0.02)


def test_on_redis_on_size_less_than_resolves_only_once_enough_commands_started(
    gated: tuple[RedisQueue, list[threading.Event]],
) -> None:
    queue, gates = gated

    def counts() -> tuple[int, int]:
        stats = queue.stats().lanes["q"]
        return stats.pending + stats.delayed, stats.active

    async def main() -> list[int]:
        handles = [queue.submit("q", "hold", i) for i in range(4)]
        await until(lambda: counts() == (3, 1))
        await asyncio.wait_for(queue.on_size_less_than(4), 5)
        await asyncio.wait_for(queue.on_size_less_than(4, "q"), 5)
        await asyncio.wait_for(queue.on_size_less_than(1, "other"), 5)
        below_2 = asyncio.ensure_future(queue.on_size_less_than(2))
        below_1 = asyncio.ensure_future(queue.on_size_less_than(1, "q"))
        await asyncio.sleep(0.2)
        assert not below_2.done() and not below_1.done(), "3 wait to start"
        gates[0].set()  # command 1 starts: 2 wait
        await until(lambda: counts() == (2, 1))
        await asyncio.sleep(0.2)
        assert not below_2.done(), "2 still wait to start"
        gates[1].set()  # command 2 starts: 1 waits
        await asyncio.wait_for(below_2, 10)
        assert counts()[0] <= 1
        assert not below_1.done(), "one still waits to start"
        gates[2].set()  # command 3 starts: none waits
        await asyncio.wait_for(below_1, 10)
        assert counts()[0] == 0
        gates[3].set()
        return [await asyncio.to_thread(handle.result, 10) for handle in handles]

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_on_redis_on_size_less_than_wakes_when_a_waiting_command_is_cancelled(
    gated: tuple[RedisQueue, list[threading.Event]],
) -> None:
    queue, gates = gated
    queue.pause_lane("q")
    first = queue.submit("q", "hold", 0)
    second = queue.submit("q", "hold", 1)

    async def main() -> None:
        below_2 = asyncio.ensure_future(queue.on_size_less_than(2, "q"))
        await asyncio.sleep(0.2)
        assert not below_2.done(), "both wait to start"
        assert queue.cancel(first.id) == CancelOutcome.CANCELLED
        await asyncio.wait_for(below_2, 10)

    asyncio.run(main())
    stats = queue.stats().lanes["q"]
    assert stats.pending + stats.delayed == 1
    gates[1].set()
    queue.resume_lane("q")
    assert second.result(timeout=10) == 1


def test_on_redis_on_size_less_than_refuses_what_a_lane_refuses(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"q": LaneConfig(priority=0)})

    async def main() -> None:
        with pytest.raises(ConfigError, match="limit"):
            await asyncio.wait_for(queue.on_size_less_than(0), 5)
        with pytest.raises(ValueError):
            await asyncio.wait_for(queue.on_size_less_than(0, "q"), 5)
        for bad in (-1, 2**64):
            with pytest.raises(ConfigError, match="limit"):
                await queue.on_size_less_than(bad)
        for wrong in (True, "3", 1.0, None):
            with pytest.raises(TypeError, match="limit must be an int"):
                await queue.on_size_less_than(wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await queue.on_size_less_than(1, 7)  # type: ignore[arg-type]
        with pytest.raises(LaneNotFoundError):
            await asyncio.wait_for(queue.on_size_less_than(1, "nope"), 5)
        # Nothing waits: at once, for the queue and for a lane.
        await asyncio.wait_for(queue.on_size_less_than(1), 5)
        await asyncio.wait_for(queue.on_size_less_than(1, "q"), 5)

    asyncio.run(main())


def test_on_redis_on_size_less_than_needs_the_event_stream() -> None:
    queue = RedisQueue(redis_url(), {"q": LaneConfig(priority=0)}, key_prefix=unique_prefix("no-events"), events=False)
    try:

        async def main() -> None:
            with pytest.raises(LaneError, match="event stream"):
                await asyncio.wait_for(queue.on_size_less_than(1), 5)

        asyncio.run(main())
    finally:
        queue.clear()
