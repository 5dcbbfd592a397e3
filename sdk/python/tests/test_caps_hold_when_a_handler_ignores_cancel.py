"""A handler that ignores cancellation keeps its slot until it really returns: the
submitter is answered at the cancel grace (or the timeout) as before, but the next
command of a full lane waits, so max_concurrency holds. The lane's stats count such runs
(`abandoned`, `abandoned_running`) and a `queue.command.abandoned` event is published."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from a3s_lane import CancelledError, CommandTimeoutError, Lane, LaneConfig


def test_a_coroutine_that_swallows_cancelled_error_keeps_its_slot() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0, max_concurrency=1, cancel_grace=0.05)})
        running = 0
        peak = 0
        started = asyncio.Event()
        stubborn_done = asyncio.Event()

        @lane.handler("stubborn")
        async def stubborn(_: None) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.4)  # swallows the cancel and goes on
            running -= 1
            stubborn_done.set()
            return "late"

        @lane.handler("next")
        async def next_(_: None) -> bool:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return stubborn_done.is_set()

        lane.start()
        abandoned = lane.events("queue.command.abandoned")
        first = lane.submit_async("q", "stubborn")
        second = lane.submit_async("q", "next")
        await started.wait()
        assert first.id is not None
        assert lane.cancel(first.id)
        with pytest.raises(CancelledError):
            await first
        # Answered, but its slot is still taken: the next command has not started.
        await asyncio.sleep(0.1)
        status = lane.stats().lanes["q"]
        assert (status.active, status.pending) == (1, 1)
        assert (status.abandoned, status.abandoned_running) == (1, 1)
        assert await second is True, "the next command started only after the stubborn one returned"
        assert peak == 1
        event = await asyncio.wait_for(abandoned.__anext__(), 5)
        assert event.payload["command_id"] == first.id
        assert event.payload["lane_id"] == "q"
        abandoned.close()
        status = lane.stats().lanes["q"]
        assert (status.abandoned, status.abandoned_running) == (1, 0)

    asyncio.run(main())


def test_timed_out_plain_handlers_never_run_more_than_the_cap() -> None:
    lane = Lane({"q": LaneConfig(priority=0, max_concurrency=2, timeout=0.05)})
    lock = threading.Lock()
    running = 0
    peak = 0

    @lane.handler("slow")
    def slow(_: int) -> None:
        # A thread cannot be stopped: it runs on after the timeout.
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.2)
        with lock:
            running -= 1

    lane.start()
    handles = [lane.submit_nowait("q", "slow", i) for i in range(6)]
    for handle in handles:
        with pytest.raises(CommandTimeoutError):
            handle.result(timeout=30)
    lane.drain(timeout=30)
    assert peak == 2
    assert lane.stats().lanes["q"].abandoned == 6
