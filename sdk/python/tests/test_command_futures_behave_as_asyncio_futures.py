"""What submit_async returns is an asyncio future: isfuture, callbacks (added, removed,
run in their context), result/exception/cancelled, and it works with shield,
as_completed, wait_for and gather. It is also a coroutine (create_task and TaskGroup take
it), which is why asyncio.wait, which refuses coroutines, takes it wrapped in a task."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from a3s_lane import CommandFuture, Lane, LaneConfig

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")


def make_lane() -> tuple[Lane, asyncio.Event]:
    lane = Lane({"q": LaneConfig(priority=0, max_concurrency=8)})
    gate = asyncio.Event()

    @lane.handler("echo")
    async def echo(payload: int) -> int:
        await asyncio.sleep(0)
        return payload

    @lane.handler("wait")
    async def wait(payload: int) -> int:
        await gate.wait()
        return payload

    @lane.handler("fail")
    async def fail(payload: object) -> None:
        raise ValueError("no")

    lane.start()
    return lane, gate


def test_the_future_protocol() -> None:
    async def main() -> None:
        lane, gate = make_lane()
        future = lane.submit_async("q", "wait", 1)
        assert asyncio.isfuture(future)
        assert isinstance(future, CommandFuture)
        assert future.get_loop() is asyncio.get_running_loop()
        assert not future.done() and not future.cancelled()
        with pytest.raises(asyncio.InvalidStateError):
            future.result()
        with pytest.raises(asyncio.InvalidStateError):
            future.exception()
        with pytest.raises(asyncio.InvalidStateError, match="settled by the queue"):
            future.set_result(2)

        seen: list[tuple[str, object]] = []
        context = contextvars.copy_context()
        context.run(marker.set, "theirs")

        def first(f: CommandFuture) -> None:
            seen.append(("first", f.result()))

        def second(f: CommandFuture) -> None:
            seen.append(("second", marker.get()))

        def removed(f: CommandFuture) -> None:
            seen.append(("removed", None))

        future.add_done_callback(first)
        future.add_done_callback(removed)
        future.add_done_callback(second, context=context)
        future.add_done_callback(removed)
        assert future.remove_done_callback(removed) == 2
        gate.set()
        assert await future == 1
        await asyncio.sleep(0)
        assert seen == [("first", 1), ("second", "theirs")]
        assert future.exception() is None
        # A callback added once done is scheduled at once.
        late: list[object] = []
        future.add_done_callback(late.append)
        await asyncio.sleep(0)
        assert late == [future]

        failed = lane.submit_async("q", "fail")
        with pytest.raises(ValueError):
            await failed
        assert isinstance(failed.exception(), ValueError)

    asyncio.run(main())


def test_the_future_works_with_asyncio_combinators() -> None:
    async def main() -> None:
        lane, gate = make_lane()
        slow = lane.submit_async("q", "wait", 1)
        fast = lane.submit_async("q", "echo", 2)
        assert asyncio.isfuture(slow) and asyncio.iscoroutine(slow)
        tasks = {asyncio.create_task(slow): "slow", asyncio.create_task(fast): "fast"}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        assert [tasks[t] for t in done] == ["fast"] and [tasks[t] for t in pending] == ["slow"]

        outer = asyncio.shield(slow)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not slow.cancelled()  # shielded: the command goes on
        gate.set()
        assert [await f for f in asyncio.as_completed([slow, lane.submit_async("q", "echo", 3)])] in (
            [1, 3],
            [3, 1],
        )
        assert await asyncio.wait_for(lane.submit_async("q", "echo", 4), 10) == 4

    asyncio.run(main())


def test_done_callbacks_run_as_asyncio_runs_them() -> None:
    """In settling order, each in the context current when it was added (asyncio copies
    it then), and a callback that raises goes to the loop's exception handler without
    stopping the others."""

    async def main() -> None:
        lane, gate = make_lane()
        loop = asyncio.get_running_loop()
        reported: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, details: reported.append(details))
        seen: list[tuple[int, str]] = []

        def record(f: CommandFuture) -> None:
            seen.append((f.result(), marker.get()))
            marker.set("changed by a callback")

        def explode(f: CommandFuture) -> None:
            raise RuntimeError("callback failed")

        futures = [lane.submit_async("q", "wait", i) for i in range(4)]
        for i, future in enumerate(futures):
            marker.set(f"when added {i}")
            future.add_done_callback(record)
            if i == 1:
                future.add_done_callback(explode)
        marker.set("later")
        gate.set()
        assert await asyncio.gather(*futures) == [0, 1, 2, 3]
        await asyncio.sleep(0)
        assert sorted(seen) == [(i, f"when added {i}") for i in range(4)]
        assert marker.get() == "later"
        assert len(reported) == 1
        assert "Exception in callback" in str(reported[0]["message"])
        assert isinstance(reported[0]["exception"], RuntimeError)
        assert reported[0]["future"] is futures[1]

    asyncio.run(main())
