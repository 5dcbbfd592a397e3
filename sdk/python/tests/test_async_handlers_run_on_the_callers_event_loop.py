"""An async handler runs on the event loop that started the lane (or on a private loop
when none was running), as a task: asyncio.current_task() and asyncio.timeout() work,
and context variables set by one handler do not leak into the next."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import a3s_lane

from a3s_lane import Lane, LaneConfig
from conftest import run_python

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_handlers_run_on_the_loop_that_started_the_lane() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0, max_concurrency=4)})
        loop = asyncio.get_running_loop()
        seen: list[tuple[bool, bool, str]] = []

        @lane.handler("where")
        async def where(payload: str) -> str:
            seen.append((asyncio.get_running_loop() is loop, asyncio.current_task() is not None, request_id.get()))
            request_id.set(payload)
            await asyncio.sleep(0)
            return request_id.get()

        lane.start()
        assert await asyncio.gather(*(lane.submit_async("q", "where", f"r{i}") for i in range(5))) == [
            f"r{i}" for i in range(5)
        ]
        assert seen == [(True, True, "unset")] * 5
        # A blocking submit from another thread runs the async handler on this loop too.
        result = await loop.run_in_executor(None, lane.submit, "q", "where", "thread")
        assert result == "thread"
        assert seen[-1] == (True, True, "unset")

    asyncio.run(main())


def test_asyncio_timeout_inside_a_handler_works() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0)})

        @lane.handler("bounded")
        async def bounded(payload: object) -> str:
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(60)
            except TimeoutError:
                return "timed out inside"
            return "no"

        lane.start()
        assert await lane.submit_async("q", "bounded") == "timed out inside"
        assert await lane.submit_async("q", "bounded") == "timed out inside"

    asyncio.run(main())


def test_a_lane_started_outside_any_loop_runs_async_handlers_on_a_private_loop() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    threads: list[str] = []

    @lane.handler("where")
    async def where(payload: int) -> int:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return payload + 1

    lane.start()
    assert lane.submit("q", "where", 1) == 2

    async def main() -> int:
        return await lane.submit_async("q", "where", 2)  # type: ignore[no-any-return]

    assert asyncio.run(main()) == 3
    assert threads == ["a3s-lane-asyncio"] * 2


def test_a_lane_whose_loop_has_closed_fails_async_commands_instead_of_hanging() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("work")
    async def work(payload: object) -> str:
        return "ran"

    async def main() -> None:
        lane.start()
        assert await lane.submit_async("q", "work") == "ran"

    asyncio.run(main())
    with pytest.raises(a3s_lane.LaneError, match="event loop that runs async handlers was closed"):
        lane.submit("q", "work")


RACE = """
import asyncio
from a3s_lane import Lane, LaneConfig

async def main():
    lane = Lane({"q": LaneConfig(priority=0)})
    started = asyncio.Event()

    @lane.handler("long")
    async def long(payload):
        started.set()
        await asyncio.sleep(3600)

    lane.start()
    future = lane.submit_async("q", "long")
    await started.wait()
    future.cancel()          # the command's cancel reaches the worker's task ...
    # ... while asyncio.run() cancels every task on the way out.

async def swallowing():
    lane = Lane({"q": LaneConfig(priority=0)})
    started = asyncio.Event()

    @lane.handler("stubborn")
    async def stubborn(payload):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "swallowed"   # a handler that ignores cancellation ...

    lane.start()
    lane.submit_async("q", "stubborn")
    await started.wait()
    # ... still lets asyncio.run() finish: its worker ends with the task's cancel.

for _ in range(40):
    asyncio.run(main())
asyncio.run(swallowing())
print("done")
"""


def test_a_command_cancel_racing_the_loop_shutdown_does_not_hang_it() -> None:
    # Two cancels of a worker's task arrive as one CancelledError; the worker must not
    # take it for its own and keep the loop's shutdown waiting.
    result = run_python(RACE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["done"]
