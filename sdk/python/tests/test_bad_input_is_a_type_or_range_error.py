"""Bad arguments are errors that say what is wrong: never wrapped, truncated or clamped."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import a3s_lane
from a3s_lane import ConfigError, Lane, LaneConfig, RetryPolicy


@pytest.mark.parametrize("priority", [-1, 256, 300, 2**64, -(2**70)])
def test_priority_outside_0_to_255_is_refused(priority: int) -> None:
    with pytest.raises(ConfigError, match=f"priority must be an int from 0 to 255 .*got {priority}"):
        LaneConfig(priority=priority)


@pytest.mark.parametrize("value", [1.5, "1", True])
def test_priority_of_another_type_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="priority must be an int"):
        LaneConfig(priority=value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "LaneConfig: max_concurrency must be at least 1"),
        ({"max_concurrency": -3}, "max_concurrency must be an int >= 0, got -3"),
        ({"min_concurrency": -1}, "min_concurrency must be an int >= 0, got -1"),
        ({"min_concurrency": 5, "max_concurrency": 2}, r"min_concurrency \(5\) is greater than max_concurrency \(2\)"),
        ({"timeout": 0}, "LaneConfig: timeout must be greater than zero"),
        ({"timeout": -1.0}, "timeout must be a finite number of seconds >= 0, got -1.0"),
        ({"timeout": math.nan}, "timeout must be a finite number"),
        ({"timeout": math.inf}, "timeout must be a finite number"),
        ({"cancel_grace": -0.5}, "cancel_grace must be a finite number of seconds >= 0"),
        ({"pressure_threshold": 0}, "LaneConfig: pressure_threshold must be at least 1"),
    ],
)
def test_lane_config_values_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LaneConfig(priority=0, **kwargs)


def test_lane_level_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="lanes is empty"):
        Lane({})
    with pytest.raises(ConfigError, match="lane 'jobs' needs a priority"):
        Lane({"jobs": LaneConfig(max_concurrency=2)})
    with pytest.raises(TypeError, match="expected a LaneConfig, got dict"):
        Lane({"jobs": {"priority": 1}})  # type: ignore[dict-item]
    # Checked again, by the core and naming the lane, once the lane's cap is known.
    with pytest.raises(ConfigError, match=r"lane 'jobs': min_concurrency \(5\) is greater than max_concurrency \(1\)"):
        Lane({"jobs": LaneConfig(priority=0, min_concurrency=5)})
    with pytest.raises(ConfigError, match="global max_concurrency must be at least 1"):
        Lane(max_concurrency=0)
    with pytest.raises(ConfigError, match="lane 'query': the lanes' min_concurrency would add up to 3, more than the global"):
        Lane(max_concurrency=2)  # the six default lanes reserve one slot each
    with pytest.raises(ConfigError, match="dead_letters must be an int >= 1"):
        Lane(dead_letters=0)
    with pytest.raises(ConfigError, match="event_capacity must be an int >= 0, got -1"):
        Lane(event_capacity=-1)
    with pytest.raises(ConfigError, match="event_capacity must be an int from 1"):
        Lane(event_capacity=0)
    with pytest.raises(TypeError, match="storage must be a path"):
        Lane(storage=42)  # type: ignore[arg-type]
    # A default lane takes its priority and cap from the defaults.
    lane = Lane({"query": LaneConfig(min_concurrency=1, max_concurrency=10)})
    status = lane.stats().lanes["query"]
    assert (status.priority, status.max_concurrency) == (2, 10)
    assert Lane().lanes == ["system", "control", "query", "session", "skill", "prompt"]


def test_retry_policy_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="multiplier"):
        RetryPolicy(3, multiplier=0.5)
    with pytest.raises(ConfigError, match="max_retries must be an int >= 0, got -1"):
        RetryPolicy.exponential(-1)
    with pytest.raises(ConfigError, match="jitter must be"):
        RetryPolicy(3, jitter="some")
    with pytest.raises(ConfigError, match="max_delay"):
        RetryPolicy(3, initial_delay=2.0, max_delay=1.0)
    with pytest.raises(ConfigError, match="delay must be a finite number of seconds >= 0"):
        RetryPolicy.fixed(2, -1)


def make_lane() -> Lane:
    lane = Lane({"q": LaneConfig(priority=0)})
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    return lane


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"tags": {1, 2}}, TypeError, "payload.tags is not JSON: a value of type 'set'"),
        ({1: "a"}, TypeError, "payload is not JSON: it has a key of type 'int'"),
        ({"x": [0, math.nan]}, ValueError, r"payload\.x\[1\] is not JSON: the float nan"),
        ({"big": 2**64}, ValueError, r"payload\.big is not JSON: the integer 18446744073709551616 does not fit in 64 bits"),
        (object(), TypeError, "payload is not JSON: a value of type 'object'"),
    ],
)
def test_payloads_that_json_cannot_hold_are_refused(payload: Any, error: type[Exception], message: str) -> None:
    lane = make_lane()
    with pytest.raises(error, match=message):
        lane.submit("q", "echo", payload)
    with pytest.raises(error, match=message):
        lane.submit_nowait("q", "echo", payload)
    assert lane.stats().total_pending == 0


def test_a_cyclic_payload_is_refused() -> None:
    lane = make_lane()
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="nests deeper than 128 levels"):
        lane.submit("q", "echo", cycle)


def test_payloads_round_trip_exactly() -> None:
    lane = make_lane()
    payload = {"z": 1, "a": [True, None, 1.5, -(2**63), 2**64 - 1, "é"], "m": {"k": (1, 2)}}
    assert lane.submit("q", "echo", payload) == {
        "z": 1,
        "a": [True, None, 1.5, -(2**63), 2**64 - 1, "é"],
        "m": {"k": [1, 2]},
    }
    assert list(lane.submit("q", "echo", payload)) == ["z", "a", "m"]


def test_an_unknown_lane_is_refused_by_every_submit_at_call_time() -> None:
    lane = make_lane()
    with pytest.raises(a3s_lane.LaneNotFoundError, match="lane 'nope' not found; known lanes: q"):
        lane.submit("nope", "echo")
    with pytest.raises(a3s_lane.LaneNotFoundError):
        lane.submit_nowait("nope", "echo")
    with pytest.raises(a3s_lane.LaneNotFoundError):
        lane.pause_lane("nope")
    with pytest.raises(a3s_lane.LaneNotFoundError):
        lane.cancel_lane("nope")

    async def main() -> None:
        with pytest.raises(a3s_lane.LaneNotFoundError):
            lane.submit_async("nope", "echo")

    asyncio.run(main())


def test_handlers_are_checked_when_registered() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    with pytest.raises(ConfigError, match="command type must not be empty"):
        lane.register_handler("", print)
    with pytest.raises(TypeError, match="must be callable"):
        lane.register_handler("x", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes no arguments"):
        lane.register_handler("x", lambda: None)
    with pytest.raises(TypeError, match="requires 3 arguments"):
        lane.register_handler("x", lambda a, b, c: None)
    with pytest.raises(TypeError, match="required keyword-only"):
        lane.register_handler("x", lambda a, *, b: None)


def test_durations_are_checked_where_they_enter() -> None:
    lane = make_lane()
    with pytest.raises(ConfigError, match="duration must be a finite number of seconds >= 0"):
        lane.pause_lane("q", duration=-1)
    with pytest.raises(ConfigError, match="timeout must be a finite number of seconds >= 0"):
        lane.drain(timeout=math.nan)
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        lane.submit_nowait("q", "echo").result(timeout="1")  # type: ignore[arg-type]
    # A wait longer than the clock can count is a wait without limit, not a panic.
    assert lane.submit_nowait("q", "echo", 1).result(timeout=1e19) == 1
    with pytest.raises(ConfigError, match="timeout is too large"):
        lane.submit_nowait("q", "echo").result(timeout=1e300)


def test_submit_async_needs_a_running_loop_and_submit_refuses_one() -> None:
    lane = make_lane()
    with pytest.raises(RuntimeError, match="must be called from a running asyncio event loop"):
        lane.submit_async("q", "echo")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="use `await lane.submit_async"):
            lane.submit("q", "echo")
        handle = lane.submit_nowait("q", "echo", 1)
        with pytest.raises(RuntimeError, match="use `await handle`"):
            handle.result()
        assert await handle == 1
        with pytest.raises(RuntimeError, match="use `await lane.drain_async"):
            lane.drain()

    asyncio.run(main())
