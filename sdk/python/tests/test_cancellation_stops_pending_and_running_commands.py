"""Cancelling a command removes it when it is pending and stops it when it runs: an
async handler's task is cancelled, a plain handler sees ctx.is_cancelled(); a cancelled
await cancels its command; cancel_lane and shutdown_now cancel in bulk."""

from __future__ import annotations

import asyncio
import threading

import pytest

import a3s_lane
from a3s_lane import CancelOutcome, CommandContext, Lane, LaneConfig


def test_a_pending_command_cancelled_from_a_thread_never_runs() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    ran: list[object] = []

    @lane.handler("work")
    def work(payload: object) -> None:
        ran.append(payload)

    lane.start()
    lane.pause_lane("q")
    handle = lane.submit_nowait("q", "work", 1)
    assert handle.cancel() is True
    with pytest.raises(a3s_lane.CancelledError):
        handle.result(timeout=10)
    assert handle.cancel() is False
    lane.resume_lane("q")
    lane.drain(timeout=10)
    assert ran == []


def test_a_running_plain_handler_sees_the_cancel_and_stops() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    started = threading.Event()
    noticed = threading.Event()

    @lane.handler("loop")
    def loop(payload: object, ctx: CommandContext) -> str:
        started.set()
        while not ctx.is_cancelled():
            threading.Event().wait(0.005)
        noticed.set()
        return "stopped"

    lane.start()
    handle = lane.submit_nowait("q", "loop")
    assert started.wait(10)
    assert lane.cancel(handle.id) is CancelOutcome.SIGNALLED
    with pytest.raises(a3s_lane.CancelledError):
        handle.result(timeout=10)
    assert noticed.is_set()


def test_a_running_async_handler_is_cancelled_at_its_await() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @lane.handler("wait")
        async def wait(payload: object) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        lane.start()
        future = lane.submit_async("q", "wait")
        await started.wait()
        assert future.id is not None
        assert lane.cancel(future.id) is CancelOutcome.SIGNALLED
        with pytest.raises(a3s_lane.CancelledError):
            await future
        assert cancelled.is_set()
        # The worker that ran it took the cancel back and keeps serving.
        @lane.handler("echo")
        async def echo(payload: int) -> int:
            await asyncio.sleep(0)
            return payload

        assert await lane.submit_async("q", "echo", 7) == 7

    asyncio.run(main())


def test_cancelling_the_awaiting_task_cancels_the_command() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @lane.handler("wait")
        async def wait(payload: object) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        lane.start()

        async def caller() -> None:
            await lane.submit_async("q", "wait")

        task = asyncio.create_task(caller())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), 10)
        # wait_for's timeout cancels the same way.
        started.clear()
        cancelled.clear()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lane.submit_async("q", "wait"), 0.05)
        await asyncio.wait_for(cancelled.wait(), 10)
        await lane.drain_async(timeout=10)
        assert lane.stats().total_active == 0

    asyncio.run(main())


def test_future_cancel_cancels_a_pending_command() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})
        ran: list[int] = []

        @lane.handler("work")
        async def work(payload: int) -> None:
            ran.append(payload)

        lane.start()
        lane.pause_lane("q")
        future = lane.submit_async("q", "work", 1)
        keep = lane.submit_async("q", "work", 2)
        assert future.cancel() is True
        assert future.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await future
        assert lane.stats().lanes["q"].pending == 1
        lane.resume_lane("q")
        await keep
        assert ran == [2]

    asyncio.run(main())


def test_cancel_lane_and_shutdown_now_cancel_in_bulk() -> None:
    lane = Lane({"a": LaneConfig(priority=0), "b": LaneConfig(priority=1)})

    @lane.handler("work")
    def work(payload: object) -> None:
        return None

    lane.start()
    lane.pause_lane("a")
    lane.pause_lane("b")
    a = [lane.submit_nowait("a", "work", i) for i in range(3)]
    b = [lane.submit_nowait("b", "work", i) for i in range(2)]
    assert lane.cancel_lane("a") == 3
    for handle in a:
        with pytest.raises(a3s_lane.CancelledError):
            handle.result(timeout=10)
    assert lane.shutdown_now() == 2
    for handle in b:
        with pytest.raises(a3s_lane.CancelledError):
            handle.result(timeout=10)
    with pytest.raises(a3s_lane.ShutdownError):
        lane.submit_nowait("a", "work")
