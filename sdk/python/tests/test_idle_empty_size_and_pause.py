"""Everyday helpers, named as in the Node SDK: `await on_idle()` (nothing pending,
delayed or running), `await on_empty()` (nothing waiting to start), `size` (waiting)
and `running` read without a wait, and `pause()`/`resume()` of the whole queue."""

from __future__ import annotations

import asyncio

from a3s_lane import Lane, LaneConfig


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
