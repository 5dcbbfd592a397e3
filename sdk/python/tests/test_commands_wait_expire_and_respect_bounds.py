"""Commands can wait before they start, must start by a deadline, and lanes can be
bounded: every submit takes `delay=` (seconds or a timedelta) or `run_at=` (an aware
datetime), and `start_by=` (an aware datetime) or `start_within=` (seconds or a
timedelta); a `LaneConfig` takes `max_waiting=`, `when_full=` and `full_wait_timeout=`.

A delayed command shows as delayed, then takes its place at the back of its lane; one
not started by its deadline never runs and ends with `ExpiredError`; a full lane rejects
with `LaneFullError` or waits for room. Bad values are refused at the call, naming the
argument. The Redis part runs the delayed and expired cases on a RedisQueue with a
RedisWorker (A3S_LANE_REDIS_URL)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from a3s_lane import (
    DEFAULTS,
    CancelledError,
    CancelOutcome,
    CommandState,
    ConfigError,
    ExpiredError,
    Lane,
    LaneConfig,
    LaneError,
    LaneFullError,
    QueueClient,
    RedisQueue,
    RedisWorker,
)
from conftest import wait_for


def now() -> datetime:
    return datetime.now(timezone.utc)


def started_lane(lanes: dict[str, LaneConfig] | None = None) -> tuple[Lane, list[Any]]:
    """A started lane whose "record" handler appends its payload to the returned list."""
    lane = Lane(lanes or {"q": LaneConfig(priority=0)})
    ran: list[Any] = []

    @lane.handler("record")
    def record(payload: Any) -> Any:
        ran.append(payload)
        return payload

    lane.start()
    return lane, ran


# --- delays -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        {"delay": 0.3},
        {"delay": timedelta(milliseconds=300)},
        {"run_at": "in 0.3 s"},
    ],
    ids=["seconds", "timedelta", "run_at"],
)
def test_a_delayed_command_shows_as_delayed_then_runs_after_a_later_undelayed_one(when: dict[str, Any]) -> None:
    lane, ran = started_lane()
    if "run_at" in when:
        when = {"run_at": now() + timedelta(milliseconds=300)}
    submitted = time.monotonic()
    delayed = lane.submit_nowait("q", "record", "delayed", **when)
    status = lane.command(delayed.id)
    assert status is not None and status.state == CommandState.DELAYED
    stats = lane.stats()
    assert (stats.lanes["q"].delayed, stats.lanes["q"].pending, stats.total_delayed) == (1, 0, 1)
    assert lane.size == 1

    # Submitted later, without a delay: it runs first.
    assert lane.submit("q", "record", "now") == "now"
    assert delayed.result(timeout=5) == "delayed"
    assert time.monotonic() - submitted >= 0.29
    assert ran == ["now", "delayed"]
    assert lane.stats().lanes["q"].delayed == 0


def test_a_delayed_command_takes_its_place_at_the_back_of_its_lane() -> None:
    lane, ran = started_lane()
    lane.pause_lane("q")
    lane.submit_nowait("q", "record", "delayed", delay=0.1)
    lane.submit_nowait("q", "record", "first")
    wait_for(lambda: lane.stats().lanes["q"].delayed == 0)
    lane.submit_nowait("q", "record", "after it fell due")
    lane.resume_lane("q")
    lane.drain(timeout=5)
    assert ran == ["first", "delayed", "after it fell due"]


def test_a_delayed_command_can_be_cancelled_and_never_runs() -> None:
    lane, ran = started_lane()
    handle = lane.submit_nowait("q", "record", "never", delay=30)
    assert lane.cancel(handle.id) == CancelOutcome.CANCELLED
    with pytest.raises(CancelledError):
        handle.result(timeout=5)
    assert lane.stats().lanes["q"].delayed == 0
    assert lane.size == 0
    assert ran == []


def test_delays_work_from_coroutines() -> None:
    lane, ran = started_lane()

    async def main() -> list[Any]:
        later = lane.submit_async("q", "record", "later", delay=timedelta(milliseconds=200))
        sooner = lane.submit_async("q", "record", "sooner")
        return list(await asyncio.gather(later, sooner))

    assert asyncio.run(main()) == ["later", "sooner"]
    assert ran == ["sooner", "later"]


# --- start-by deadlines ---------------------------------------------------------------


@pytest.mark.parametrize(
    "deadline",
    [{"start_within": 0.1}, {"start_within": timedelta(milliseconds=100)}, {"start_by": "in 0.1 s"}],
    ids=["start_within", "start_within_timedelta", "start_by"],
)
def test_a_command_not_started_by_its_deadline_expires(deadline: dict[str, Any]) -> None:
    lane, ran = started_lane()
    if "start_by" in deadline:
        deadline = {"start_by": now() + timedelta(milliseconds=100)}
    lane.pause_lane("q")
    with lane.events("queue.command.expired") as events:
        handle = lane.submit_nowait("q", "record", "too late", **deadline)
        with pytest.raises(ExpiredError, match="start-by deadline") as raised:
            handle.result(timeout=5)
        assert raised.value.code == "EXPIRED"
        assert isinstance(raised.value, LaneError)
        event = events.get(timeout=5)
    assert event is not None and event.key == "queue.command.expired"
    payload = event.payload
    assert (payload["lane_id"], payload["command_id"], payload["command_type"]) == ("q", handle.id, "record")
    assert isinstance(payload["start_by_ms"], int)
    status = lane.stats().lanes["q"]
    assert (status.expired, status.pending) == (1, 0)
    lane.resume_lane("q")
    lane.drain(timeout=5)
    assert ran == []


def test_a_command_started_before_its_deadline_runs() -> None:
    lane, _ = started_lane()
    assert lane.submit("q", "record", 1, delay=0.05, start_within=5) == 1
    assert lane.stats().lanes["q"].expired == 0


def test_an_expired_submit_async_raises_ExpiredError() -> None:
    lane, _ = started_lane()
    lane.pause_lane("q")

    async def main() -> None:
        with pytest.raises(ExpiredError):
            await lane.submit_async("q", "record", 1, start_within=0.05)

    asyncio.run(main())


# --- bounded lanes ----------------------------------------------------------------------


def test_a_full_lane_rejects_with_LaneFullError() -> None:
    lane, ran = started_lane({"q": LaneConfig(priority=0, max_waiting=1)})
    lane.pause_lane("q")
    first = lane.submit_nowait("q", "record", 1)
    with pytest.raises(LaneFullError, match="lane 'q' is full") as raised:
        lane.submit_nowait("q", "record", 2)
    assert (raised.value.code, raised.value.lane, raised.value.limit) == ("LANE_FULL", "q", 1)
    # Delayed commands wait in the lane too.
    with pytest.raises(LaneFullError):
        lane.submit_nowait("q", "record", 3, delay=1)
    status = lane.stats().lanes["q"]
    assert (status.max_waiting, status.rejected_full, status.pending) == (1, 2, 1)
    lane.resume_lane("q")
    assert first.result(timeout=5) == 1
    # Room again once it started.
    assert lane.submit("q", "record", 4) == 4
    assert ran == [1, 4]


def test_a_full_lane_that_waits_accepts_once_there_is_room() -> None:
    lane, ran = started_lane({"q": LaneConfig(priority=0, max_waiting=1, when_full="wait")})
    lane.pause_lane("q")
    lane.submit_nowait("q", "record", 1)
    threading.Timer(0.3, lambda: lane.resume_lane("q")).start()
    began = time.monotonic()
    second = lane.submit_nowait("q", "record", 2)  # waits for the lane to have room
    assert time.monotonic() - began >= 0.25
    assert second.result(timeout=5) == 2
    assert ran == [1, 2]
    assert lane.stats().lanes["q"].rejected_full == 0


def test_a_full_lane_that_waits_gives_up_after_full_wait_timeout() -> None:
    lane, _ = started_lane({"q": LaneConfig(priority=0, max_waiting=1, when_full="wait", full_wait_timeout=0.2)})
    lane.pause_lane("q")
    lane.submit_nowait("q", "record", 1)
    began = time.monotonic()
    with pytest.raises(LaneFullError) as raised:
        lane.submit_nowait("q", "record", 2)
    assert time.monotonic() - began >= 0.15
    assert (raised.value.lane, raised.value.limit) == ("q", 1)
    assert lane.stats().lanes["q"].rejected_full == 1


def test_a_coroutine_waiting_for_room_does_not_block_its_event_loop() -> None:
    lane, ran = started_lane({"q": LaneConfig(priority=0, max_waiting=1, when_full="wait")})
    lane.pause_lane("q")

    async def main() -> list[Any]:
        first = lane.submit_async("q", "record", 1)
        second = lane.submit_async("q", "record", 2)  # waits for room, on the runtime
        await asyncio.sleep(0.2)  # the loop goes on meanwhile
        assert not second.done()
        lane.resume_lane("q")
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == [1, 2]
    assert ran == [1, 2]


def test_lane_config_bounds_are_readable_and_checked() -> None:
    config = LaneConfig(priority=0, max_waiting=10, when_full="wait", full_wait_timeout=1.5)
    assert (config.max_waiting, config.when_full, config.full_wait_timeout) == (10, "wait", 1.5)
    assert config == LaneConfig(priority=0, max_waiting=10, when_full="wait", full_wait_timeout=1.5)
    assert config != LaneConfig(priority=0, max_waiting=10, when_full="wait")
    assert "max_waiting=10" in repr(config)
    plain = LaneConfig()
    assert (plain.max_waiting, plain.when_full, plain.full_wait_timeout) == (None, "reject", None)
    assert (plain.max_waiting, plain.when_full) == (DEFAULTS["lane"]["max_waiting"], DEFAULTS["lane"]["when_full"])
    with pytest.raises(ConfigError, match="max_waiting must be at least 1"):
        LaneConfig(max_waiting=0)
    with pytest.raises(ConfigError, match="max_waiting must be an int >= 0"):
        LaneConfig(max_waiting=-1)
    with pytest.raises(TypeError, match="max_waiting must be an int"):
        LaneConfig(max_waiting=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='when_full must be "reject" or "wait"'):
        LaneConfig(when_full="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match='full_wait_timeout applies only with when_full="wait"'):
        LaneConfig(full_wait_timeout=1)
    with pytest.raises(ConfigError, match="full_wait_timeout must be greater than zero"):
        LaneConfig(when_full="wait", full_wait_timeout=0)
    with pytest.raises(ConfigError, match="full_wait_timeout must be a finite number of seconds"):
        LaneConfig(when_full="wait", full_wait_timeout=math.nan)


# --- bad input ---------------------------------------------------------------------------


def past() -> datetime:
    return now() - timedelta(seconds=30)


def naive() -> datetime:
    return datetime.now() + timedelta(seconds=30)


BAD_OPTIONS: list[tuple[str, Callable[[], dict[str, Any]], type[Exception], str]] = [
    ("negative delay", lambda: {"delay": -1}, ConfigError, r"delay must be a finite number of seconds >= 0, got -1"),
    ("NaN delay", lambda: {"delay": math.nan}, ConfigError, r"delay must be a finite number of seconds >= 0, got nan"),
    ("infinite delay", lambda: {"delay": math.inf}, ConfigError, r"delay must be a finite number of seconds >= 0"),
    ("negative timedelta", lambda: {"delay": timedelta(seconds=-1)}, ConfigError, r"delay must be a timedelta >= 0"),
    ("bool delay", lambda: {"delay": True}, TypeError, r"delay must be a number of seconds \(int or float\) or a datetime.timedelta, got bool"),
    ("str delay", lambda: {"delay": "5"}, TypeError, r"delay must be a number of seconds"),
    ("naive run_at", lambda: {"run_at": naive()}, ConfigError, r"run_at is a naive datetime .* give a timezone-aware one"),
    ("date run_at", lambda: {"run_at": now().date()}, TypeError, r"run_at must be a timezone-aware datetime.datetime, got date"),
    ("run_at in the past", lambda: {"run_at": past()}, ConfigError, r"run_at lies .* in the past"),
    ("delay with run_at", lambda: {"delay": 1, "run_at": now() + timedelta(seconds=5)}, ConfigError, r"give a delay or a run_at, not both"),
    ("naive start_by", lambda: {"start_by": naive()}, ConfigError, r"start_by is a naive datetime"),
    ("start_by in the past", lambda: {"start_by": past()}, ConfigError, r"start_by lies .* in the past"),
    ("negative start_within", lambda: {"start_within": -0.5}, ConfigError, r"start_within must be a finite number of seconds >= 0"),
    ("NaN start_within", lambda: {"start_within": math.nan}, ConfigError, r"start_within must be a finite number of seconds >= 0"),
    ("start_by with start_within", lambda: {"start_by": now() + timedelta(seconds=5), "start_within": 5}, ConfigError, r"give a start_by or a start_within, not both"),
    ("deadline before the start", lambda: {"delay": 10, "start_within": 5}, ConfigError, r"could never run"),
]


@pytest.mark.parametrize(("options", "error", "message"), [case[1:] for case in BAD_OPTIONS], ids=[case[0] for case in BAD_OPTIONS])
def test_bad_timing_options_are_refused_at_the_call(options: Callable[[], dict[str, Any]], error: type[Exception], message: str) -> None:
    lane, ran = started_lane()
    with pytest.raises(error, match=message):
        lane.submit_nowait("q", "record", 1, **options())
    with pytest.raises(error, match=message):
        lane.submit("q", "record", 1, **options())

    async def from_a_coroutine() -> None:
        with pytest.raises(error, match=message):
            lane.submit_async("q", "record", 1, **options())

    asyncio.run(from_a_coroutine())
    assert lane.size == 0 and ran == []


# --- on Redis ---------------------------------------------------------------------------


@pytest.fixture
def redis_pair(queues: Callable[..., RedisQueue]) -> Any:
    """A RedisQueue with lane "q" and a started RedisWorker whose "record" handler
    appends its payload to the returned list."""
    queue = queues({"q": LaneConfig(priority=0)})
    worker = RedisWorker(queue, slots=4)
    ran: list[Any] = []

    @worker.handler("record")
    def record(payload: Any) -> Any:
        ran.append(payload)
        return payload

    worker.start()
    yield queue, ran
    worker.shutdown(timeout=10)


def test_on_redis_a_delayed_command_shows_as_delayed_then_runs_after_a_later_undelayed_one(
    redis_pair: tuple[RedisQueue, list[Any]],
) -> None:
    queue, ran = redis_pair
    submitted = time.monotonic()
    delayed = queue.submit("q", "record", "delayed", delay=0.5)
    status = queue.command(delayed.id)
    assert status is not None and status.state == CommandState.DELAYED
    assert queue.stats().lanes["q"].delayed == 1
    assert queue.submit("q", "record", "now").result(timeout=10) == "now"
    assert delayed.result(timeout=10) == "delayed"
    assert time.monotonic() - submitted >= 0.45
    assert ran == ["now", "delayed"]
    assert queue.stats().lanes["q"].delayed == 0


def test_on_redis_a_delayed_command_can_be_cancelled(redis_pair: tuple[RedisQueue, list[Any]]) -> None:
    queue, ran = redis_pair
    handle = queue.submit("q", "record", "never", run_at=now() + timedelta(seconds=30))
    assert queue.cancel(handle.id) == CancelOutcome.CANCELLED
    with pytest.raises(CancelledError):
        handle.result(timeout=10)
    assert queue.stats().lanes["q"].delayed == 0
    assert ran == []


def test_on_redis_a_command_not_started_by_its_deadline_expires(redis_pair: tuple[RedisQueue, list[Any]]) -> None:
    queue, ran = redis_pair
    queue.pause_lane("q")
    with queue.events("queue.command.expired") as events:
        handle = queue.submit("q", "record", "too late", start_within=timedelta(milliseconds=200))
        with pytest.raises(ExpiredError) as raised:
            handle.result(timeout=10)
        assert raised.value.code == "EXPIRED"
        event = events.get(timeout=10)
    assert event is not None
    assert (event.payload["lane_id"], event.payload["command_id"]) == ("q", handle.id)
    status = queue.command(handle.id)
    assert status is not None and status.state == CommandState.EXPIRED
    assert queue.stats().lanes["q"].expired == 1
    queue.resume_lane("q")
    assert queue.submit("q", "record", "after").result(timeout=10) == "after"
    assert ran == ["after"]


def test_on_redis_submit_async_takes_the_same_options(redis_pair: tuple[RedisQueue, list[Any]]) -> None:
    queue, ran = redis_pair

    async def main() -> list[Any]:
        later = queue.submit_async("q", "record", "later", delay=0.3)
        sooner = queue.submit_async("q", "record", "sooner", start_by=now() + timedelta(seconds=30))
        return list(await asyncio.gather(later, sooner))

    assert asyncio.run(main()) == ["later", "sooner"]
    assert ran == ["sooner", "later"]


@pytest.mark.parametrize(("options", "error", "message"), [case[1:] for case in BAD_OPTIONS], ids=[case[0] for case in BAD_OPTIONS])
def test_on_redis_bad_timing_options_are_refused_at_the_call(
    queues: Callable[..., RedisQueue],
    options: Callable[[], dict[str, Any]],
    error: type[Exception],
    message: str,
) -> None:
    queue = queues({"q": LaneConfig(priority=0)})
    with pytest.raises(error, match=message):
        queue.submit("q", "record", 1, **options())
    assert queue.stats().total_pending + queue.stats().total_delayed == 0


def test_both_engines_take_the_options_on_the_shared_client_surface() -> None:
    # The options are keyword-only on every submit of both engines.
    for submit in (Lane.submit, Lane.submit_async, Lane.submit_nowait, RedisQueue.submit, RedisQueue.submit_async):
        text = getattr(submit, "__text_signature__", None) or ""
        assert "*, delay=None, run_at=None, start_by=None, start_within=None" in text, (submit, text)
    assert issubclass(Lane, QueueClient) and issubclass(RedisQueue, QueueClient)
