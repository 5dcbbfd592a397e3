"""Misusing the lane's lifecycle is either natural or a clear error at once: nothing
hangs, nothing silently succeeds, and no raw Python error leaks out."""

from __future__ import annotations

import asyncio
import time

import pytest

from a3s_lane import ConfigError, Lane, LaneConfig, LaneError, ShutdownError
from conftest import run_python


def echo_lane(**config: object) -> Lane:
    lane = Lane({"q": LaneConfig(priority=0, **config)})  # type: ignore[arg-type]

    @lane.handler("echo")
    def echo(payload: object) -> object:
        return payload

    return lane


def test_a_blocking_submit_before_start_raises_at_once() -> None:
    lane = echo_lane()
    with pytest.raises(LaneError, match=r"not started: call lane.start\(\) first"):
        lane.submit("q", "echo", 1)
    # submit_nowait queues before start; its result says why it cannot finish yet.
    handle = lane.submit_nowait("q", "echo", 2)
    with pytest.raises(LaneError, match=r"its lane is not started"):
        handle.result(timeout=0.05)
    lane.start()
    assert handle.result(timeout=10) == 2


def test_start_twice_or_after_shutdown_is_an_error() -> None:
    lane = echo_lane()
    lane.start()
    with pytest.raises(LaneError, match="started already"):
        lane.start()
    lane.shutdown()
    with pytest.raises(ShutdownError):
        lane.start()


def test_submit_async_goes_to_create_task_and_task_groups() -> None:
    async def main() -> None:
        lane = echo_lane()
        lane.start()
        task = asyncio.create_task(lane.submit_async("q", "echo", 1))
        assert await task == 1
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(lane.submit_async("q", "echo", i)) for i in range(3)]
        assert [t.result() for t in tasks] == [0, 1, 2]
        # Cancelling the task cancels the command.
        started = asyncio.Event()

        @lane.handler("wait")
        async def wait(_: None) -> None:
            started.set()
            await asyncio.sleep(30)

        future = lane.submit_async("q", "wait")
        task = asyncio.create_task(future)
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await lane.drain_async(timeout=10)
        assert lane.running == 0

    asyncio.run(main())


def test_a_finished_handle_gives_its_result_inside_a_running_loop() -> None:
    lane = echo_lane()
    lane.start()
    handle = lane.submit_nowait("q", "echo", 7)
    assert handle.result(timeout=10) == 7

    async def main() -> None:
        assert handle.result() == 7

    asyncio.run(main())


def test_commands_left_when_asyncio_run_returns_are_reported_at_exit() -> None:
    # The running handler's task is cancelled by asyncio.run (that command ends as
    # cancelled); the two waiting ones can never run on the closed loop: they are
    # reported at exit at once, without waiting for the drain bound.
    began = time.monotonic()
    done = run_python(
        """
        import asyncio
        from a3s_lane import Lane, LaneConfig
        lane = Lane({"q": LaneConfig(priority=0, max_concurrency=1)})

        @lane.handler("slow")
        async def slow(_):
            await asyncio.sleep(30)

        async def main():
            lane.start()
            for _ in range(3):
                lane.submit_async("q", "slow")  # never awaited
            await asyncio.sleep(0.05)

        asyncio.run(main())
        """,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "panicked" not in done.stderr
    assert "a3s_lane: 2 accepted command(s) were dropped at exit" in done.stderr
    assert time.monotonic() - began < 4.5, "the drain bound (5 s) was not waited for"


def test_bad_ids_and_missing_dead_letter_queues() -> None:
    lane = echo_lane()
    with pytest.raises(ConfigError, match=r"command_id must be an int >= 0.*got -1"):
        lane.cancel(-1)
    with pytest.raises(TypeError, match="command_id must be an int"):
        lane.command("1")  # type: ignore[arg-type]
    assert lane.dead_letters() == []
