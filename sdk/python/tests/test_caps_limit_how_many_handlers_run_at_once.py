"""A lane never runs more than its max_concurrency commands at once, for plain and
async handlers, and lanes fill up to their own caps independently."""

from __future__ import annotations

import asyncio
import threading

from a3s_lane import Lane, LaneConfig


def test_async_handlers_fill_each_lane_to_its_cap_and_no_further() -> None:
    async def main() -> None:
        lane = Lane({"a": LaneConfig(priority=0, max_concurrency=2), "b": LaneConfig(priority=1, max_concurrency=3)})
        gate = asyncio.Event()
        active = {"a": 0, "b": 0}
        peak = {"a": 0, "b": 0}
        full = asyncio.Event()

        @lane.handler("hold")
        async def hold(name: str) -> None:
            active[name] += 1
            peak[name] = max(peak[name], active[name])
            if active == {"a": 2, "b": 3}:
                full.set()
            await gate.wait()
            active[name] -= 1

        lane.start()
        futures = [lane.submit_async(name, "hold", name) for name in ["a", "b"] * 6]
        await full.wait()
        stats = lane.stats()
        assert (stats.lanes["a"].active, stats.lanes["a"].pending) == (2, 4)
        assert (stats.lanes["b"].active, stats.lanes["b"].pending) == (3, 3)
        gate.set()
        await asyncio.gather(*futures)
        assert peak == {"a": 2, "b": 3}
        assert lane.stats().total_active == 0

    asyncio.run(main())


def test_plain_handlers_respect_the_cap_on_the_thread_pool() -> None:
    lane = Lane({"io": LaneConfig(priority=0, max_concurrency=3)})
    lock = threading.Lock()
    gate = threading.Event()
    three = threading.Event()
    active = 0
    peak = 0

    @lane.handler("hold")
    def hold(payload: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                three.set()
        assert gate.wait(30)
        with lock:
            active -= 1
        return payload

    lane.start()
    handles = [lane.submit_nowait("io", "hold", i) for i in range(10)]
    assert three.wait(30)
    assert lane.stats().lanes["io"].active == 3
    assert lane.stats().lanes["io"].pending == 7
    gate.set()
    assert [h.result(timeout=30) for h in handles] == list(range(10))
    assert peak == 3
