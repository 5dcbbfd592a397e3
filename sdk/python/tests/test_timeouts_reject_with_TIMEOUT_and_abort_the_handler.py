"""A run longer than its lane's timeout fails with CommandTimeoutError (a TimeoutError);
an async handler is cancelled at its await point, and a retry policy retries timeouts."""

from __future__ import annotations

import asyncio
import threading

import pytest

from a3s_lane import CommandContext, CommandTimeoutError, Lane, LaneConfig, LaneError, RetryPolicy


def test_an_async_handler_past_its_timeout_is_cancelled_and_the_caller_gets_a_timeout() -> None:
    async def main() -> None:
        lane = Lane({"q": LaneConfig(priority=0, timeout=0.05)})
        stopped = asyncio.Event()

        @lane.handler("slow")
        async def slow(payload: object) -> str:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                stopped.set()
                raise
            return "never"

        lane.start()
        with pytest.raises(CommandTimeoutError) as caught:
            await lane.submit_async("q", "slow")
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, LaneError)
        assert "timed out" in str(caught.value)
        await asyncio.wait_for(stopped.wait(), 10)

    asyncio.run(main())


def test_a_plain_handler_past_its_timeout_fails_the_blocking_caller() -> None:
    lane = Lane({"q": LaneConfig(priority=0, timeout=0.05, cancel_grace=0)})
    release = threading.Event()

    @lane.handler("slow")
    def slow(payload: object) -> str:
        release.wait(30)
        return "late"

    lane.start()
    with pytest.raises(CommandTimeoutError):
        lane.submit("q", "slow")
    release.set()


def test_a_retry_policy_runs_a_timed_out_command_again() -> None:
    async def main() -> list[int]:
        lane = Lane({"q": LaneConfig(priority=0, timeout=0.05, retry=RetryPolicy.fixed(2, 0))})
        attempts: list[int] = []

        @lane.handler("slow")
        async def slow(payload: object, ctx: CommandContext) -> str:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                await asyncio.sleep(60)
            return "third time"

        lane.start()
        assert await lane.submit_async("q", "slow") == "third time"
        return attempts

    assert asyncio.run(main()) == [1, 2, 3]
