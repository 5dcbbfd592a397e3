"""Failed commands run again as the lane's RetryPolicy says; the caller sees the result
of the last attempt, or the exception of the last attempt; NonRetryableError skips the
retries."""

from __future__ import annotations

import asyncio

import pytest

from a3s_lane import CommandContext, Lane, LaneConfig, NonRetryableError, RetryPolicy


class Flaky(Exception):
    def __init__(self, attempt: int) -> None:
        super().__init__(f"attempt {attempt} failed")
        self.attempt = attempt


def make_lane(retries: int) -> Lane:
    return Lane({"q": LaneConfig(priority=0, retry=RetryPolicy.fixed(retries, 0.001))})


def test_a_command_that_fails_twice_succeeds_on_its_third_attempt() -> None:
    lane = make_lane(3)
    attempts: list[int] = []

    @lane.handler("flaky")
    def flaky(payload: int, ctx: CommandContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Flaky(ctx.attempt)
        return payload * 2

    lane.start()
    assert lane.submit("q", "flaky", 21) == 42
    assert attempts == [1, 2, 3]


def test_when_retries_run_out_the_caller_gets_the_last_attempts_exception() -> None:
    async def main() -> None:
        lane = make_lane(2)

        @lane.handler("always")
        async def always(payload: object, ctx: CommandContext) -> None:
            raise Flaky(ctx.attempt)

        lane.start()
        with pytest.raises(Flaky) as caught:
            await lane.submit_async("q", "always")
        assert caught.value.attempt == 3

    asyncio.run(main())


def test_non_retryable_errors_are_not_retried() -> None:
    lane = make_lane(5)
    attempts: list[int] = []

    class BadInput(NonRetryableError, ValueError):
        pass

    @lane.handler("strict")
    def strict(payload: object, ctx: CommandContext) -> None:
        attempts.append(ctx.attempt)
        raise BadInput("payload is missing 'url'")

    lane.start()
    with pytest.raises(BadInput, match="missing 'url'"):
        lane.submit("q", "strict", {})
    assert attempts == [1]


def test_retry_policy_values_are_checked_and_readable() -> None:
    policy = RetryPolicy(5, initial_delay=0.05, multiplier=3.0, max_delay=1.0, jitter="equal")
    assert (policy.max_retries, policy.initial_delay, policy.multiplier, policy.max_delay, policy.jitter) == (
        5,
        0.05,
        3.0,
        1.0,
        "equal",
    )
    assert RetryPolicy.exponential(3).delay_for(3) == pytest.approx(0.4)
    assert RetryPolicy.exponential(3).delay_for(4) is None
    assert RetryPolicy.none().max_retries == 0
    assert LaneConfig(priority=1, retry=policy).retry is not None
