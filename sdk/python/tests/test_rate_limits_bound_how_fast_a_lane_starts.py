"""A lane's rate limit caps how many of its commands start: a token bucket lets a full
bucket start at once and then holds the lane back (`throttled`), a sliding window
allows its limit per window, and a limited lane still runs everything in time.

No assertion depends on how fast the machine is: the limits under test refill so slowly
(per hour) that nothing more can start during the test, and the liveness test only
waits for completion with a generous timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from a3s_lane import ConfigError, Lane, LaneConfig, RateLimit


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(0.005)


def run_limited(limit: RateLimit, commands: int) -> tuple[Lane, list[int]]:
    """A lane with `limit` and room for every command at once; returns it with the
    payloads its handler started, after the burst has started and the lane is held back."""
    lane = Lane({"api": LaneConfig(priority=0, max_concurrency=commands, rate_limit=limit)})
    started: list[int] = []
    lock = threading.Lock()

    @lane.handler("call")
    def call(payload: int) -> int:
        with lock:
            started.append(payload)
        return payload

    lane.start()
    for i in range(commands):
        lane.submit_nowait("api", "call", i)
    wait_for(lambda: lane.stats().lanes["api"].throttled)
    return lane, started


def test_a_token_bucket_starts_its_burst_at_once_then_throttles_the_lane() -> None:
    # Five per hour: the bucket starts full (5), the next permit is 12 minutes away.
    lane, started = run_limited(RateLimit.per_hour(5), 20)
    wait_for(lambda: len(started) == 5 and lane.stats().lanes["api"].active == 0)
    status = lane.stats().lanes["api"]
    assert status.throttled
    assert status.pending == 15
    assert sorted(started) == [0, 1, 2, 3, 4]  # FIFO: the first five
    assert lane.cancel_lane("api") == 15
    lane.drain(timeout=30)
    assert len(started) == 5


def test_a_sliding_window_allows_its_limit_per_window() -> None:
    lane, started = run_limited(RateLimit.sliding_window(3, 3600), 10)
    wait_for(lambda: len(started) == 3 and lane.stats().lanes["api"].active == 0)
    status = lane.stats().lanes["api"]
    assert status.throttled and status.pending == 7
    assert sorted(started) == [0, 1, 2]
    lane.shutdown_now()


def test_a_burst_of_one_starts_one_command_and_waits() -> None:
    lane, started = run_limited(RateLimit.token_bucket(1, 3600, burst=1), 4)
    wait_for(lambda: len(started) == 1 and lane.stats().lanes["api"].active == 0)
    assert lane.stats().lanes["api"].pending == 3
    lane.shutdown_now()


def test_only_the_limited_lane_is_held_back() -> None:
    lane = Lane(
        {
            "limited": LaneConfig(priority=0, max_concurrency=10, rate_limit=RateLimit.per_hour(2)),
            "free": LaneConfig(priority=1, max_concurrency=10),
        }
    )
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    limited = [lane.submit_nowait("limited", "echo", i) for i in range(5)]
    free = [lane.submit_nowait("free", "echo", i) for i in range(5)]
    assert [handle.result(timeout=30) for handle in free] == list(range(5))
    assert [handle.result(timeout=30) for handle in limited[:2]] == [0, 1]
    stats = lane.stats()
    assert stats.lanes["limited"].throttled and stats.lanes["limited"].pending == 3
    assert not stats.lanes["free"].throttled
    lane.shutdown_now()


def test_a_limited_lane_still_runs_every_command() -> None:
    # Five per second: 20 commands need about 3 s; the timeout leaves a wide margin.
    lane = Lane({"api": LaneConfig(priority=0, max_concurrency=20, rate_limit=RateLimit.per_second(5))})
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    handles = [lane.submit_nowait("api", "echo", i) for i in range(20)]
    assert [handle.result(timeout=60) for handle in handles] == list(range(20))
    # Once nothing waits, nothing holds the lane back.
    wait_for(lambda: not lane.stats().lanes["api"].throttled)


def test_pause_for_a_duration_holds_a_lane_like_an_http_429() -> None:
    lane = Lane({"api": LaneConfig(priority=0)})
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    lane.pause_lane("api", duration=3600)
    handle = lane.submit_nowait("api", "echo", 1)
    assert lane.stats().lanes["api"].paused and lane.stats().lanes["api"].pending == 1
    lane.resume_lane("api")
    assert handle.result(timeout=30) == 1
    lane.pause_lane("api", duration=0.05)  # resumes by itself
    assert lane.submit_nowait("api", "echo", 2).result(timeout=30) == 2


def test_rate_limits_describe_themselves() -> None:
    limit = RateLimit.token_bucket(10, 2.5, burst=3)
    assert (limit.kind, limit.rate, limit.period, limit.burst) == ("token_bucket", 10, 2.5, 3)
    assert repr(limit) == "RateLimit.token_bucket(rate=10, period_seconds=2.5, burst=3)"
    assert RateLimit.per_minute(60) == RateLimit.token_bucket(60, 60, 60)
    window = RateLimit.sliding_window(7, 1)
    assert (window.kind, window.rate, window.period, window.burst) == ("sliding_window", 7, 1.0, None)
    unlimited = RateLimit.unlimited()
    assert (unlimited.kind, unlimited.rate, unlimited.period) == ("unlimited", None, None)
    config = LaneConfig(priority=1, rate_limit=RateLimit.per_second(5))
    assert config.rate_limit == RateLimit.per_second(5)
    assert "rate_limit=RateLimit.token_bucket(rate=5" in repr(config)
    assert LaneConfig(priority=1).rate_limit is None


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: RateLimit.per_second(0), ConfigError, r"a rate of 0 commands per 1s would never start a command; use RateLimitConfig::unlimited\(\)"),
        (lambda: RateLimit.per_minute(-5), ConfigError, "n must be an int >= 0, got -5"),
        (lambda: RateLimit.per_hour(2**32), ConfigError, "n must be an int from 0 to 4294967295, got 4294967296"),
        (lambda: RateLimit.per_second(2.5),  # type: ignore[arg-type]
         TypeError, "n must be an int, got float"),
        (lambda: RateLimit.token_bucket(5, 0, 5), ConfigError, "the token bucket's period must be longer than zero"),
        (lambda: RateLimit.token_bucket(5, float("nan"), 5), ConfigError, "period_seconds must be a finite number"),
        (lambda: RateLimit.token_bucket(5, 1, 0), ConfigError, "a burst of 0 would never hold a permit"),
        (lambda: RateLimit.sliding_window(0, 1), ConfigError, "a limit of 0 commands per 1s would never start a command"),
        (lambda: RateLimit.sliding_window(3, -1), ConfigError, "window_seconds must be a finite number of seconds >= 0, got -1"),
        (lambda: LaneConfig(priority=0, rate_limit=5),  # type: ignore[arg-type]
         TypeError, r"rate_limit must be a RateLimit \(for example"),
    ],
)
def test_bad_rate_limits_are_refused_with_a_reason(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()
