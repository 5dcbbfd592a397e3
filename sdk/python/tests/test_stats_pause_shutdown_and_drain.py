"""Stats count what waits and runs; pause/resume hold and release a lane; shutdown stops
admission while drain waits (with a deadline) for what was accepted."""

from __future__ import annotations

import asyncio
import threading

import pytest

import a3s_lane
from a3s_lane import Lane, LaneConfig


def test_stats_follow_pause_resume_and_completion() -> None:
    lane = Lane({"a": LaneConfig(priority=0, max_concurrency=2), "b": LaneConfig(priority=1)})
    gate = threading.Event()

    @lane.handler("hold")
    def hold(payload: object) -> None:
        assert gate.wait(30)

    lane.start()
    lane.pause_lane("b")
    handles = [lane.submit_nowait("a", "hold") for _ in range(3)] + [lane.submit_nowait("b", "hold")]
    stats = lane.stats()
    assert stats.lanes["b"].paused and stats.lanes["b"].pending == 1
    assert stats.lanes["a"].active + stats.lanes["a"].pending == 3
    assert stats.total_pending + stats.total_active == 4
    gate.set()
    for handle in handles[:3]:
        handle.result(timeout=30)
    assert not handles[3].done()
    lane.resume_lane("b")
    handles[3].result(timeout=30)
    stats = lane.stats()
    assert (stats.total_pending, stats.total_active, stats.total_delayed) == (0, 0, 0)


def test_a_lane_paused_for_a_while_resumes_by_itself() -> None:
    lane = Lane({"a": LaneConfig(priority=0)})
    lane.register_handler("echo", lambda p: p)
    lane.start()
    lane.pause_lane("a", duration=0.05)
    assert lane.stats().lanes["a"].paused
    assert lane.submit_nowait("a", "echo", 1).result(timeout=30) == 1


def test_shutdown_refuses_new_commands_and_drain_waits_for_the_rest() -> None:
    lane = Lane({"a": LaneConfig(priority=0)})
    gate = threading.Event()

    @lane.handler("hold")
    def hold(payload: int) -> int:
        assert gate.wait(30)
        return payload

    lane.start()
    handle = lane.submit_nowait("a", "hold", 9)
    lane.shutdown()
    assert lane.is_shutting_down
    with pytest.raises(a3s_lane.ShutdownError, match="shutting down"):
        lane.submit("a", "hold", 1)
    with pytest.raises(TimeoutError, match="drain did not finish within .*1 running"):
        lane.drain(timeout=0.05)
    gate.set()
    lane.drain(timeout=30)
    assert handle.result() == 9


def test_drain_async_waits_from_a_coroutine() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0)})
        gate = asyncio.Event()

        @lane.handler("hold")
        async def hold(payload: object) -> None:
            await gate.wait()

        lane.start()
        future = lane.submit_async("a", "hold")
        lane.shutdown()
        with pytest.raises(TimeoutError):
            await lane.drain_async(timeout=0.05)
        gate.set()
        await lane.drain_async(timeout=30)
        assert future.done()

    asyncio.run(main())
