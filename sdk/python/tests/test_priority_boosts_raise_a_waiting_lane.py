"""A lane's priority boost raises its effective priority while its oldest command waits,
and the scheduler follows the effective priority: a boosted lane's command overtakes a
more urgent lane's. Boost steps are chosen so that the outcome does not depend on timing
(a step at the deadline applies from the moment a command is queued), or the test waits
for a condition instead of a duration."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from a3s_lane import ConfigError, Lane, LaneConfig, PriorityBoost


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(0.005)


def test_effective_priority_rises_while_the_oldest_command_waits() -> None:
    # Boost by 3 from the start, and to priority 0 past a 0.2 s deadline.
    boost = PriorityBoost(0.2).with_boost(0.2, 3)
    lane = Lane({"bulk": LaneConfig(priority=10, priority_boost=boost)})
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    assert lane.stats().lanes["bulk"].effective_priority == 10  # nothing waits
    lane.pause_lane("bulk")
    handle = lane.submit_nowait("bulk", "echo", 1)
    status = lane.stats().lanes["bulk"]
    assert (status.priority, status.effective_priority) in [(10, 7), (10, 0)]
    wait_for(lambda: lane.stats().lanes["bulk"].effective_priority == 0)
    lane.resume_lane("bulk")
    assert handle.result(timeout=30) == 1
    assert lane.stats().lanes["bulk"].effective_priority == 10  # empty again


@pytest.mark.parametrize("boosted", [True, False])
def test_a_boosted_lane_overtakes_a_more_urgent_one(boosted: bool) -> None:
    boost = PriorityBoost(3600).with_boost(3600, 5) if boosted else None
    lane = Lane(
        {
            "urgent": LaneConfig(priority=1, min_concurrency=0, max_concurrency=4),
            "bulk": LaneConfig(priority=5, min_concurrency=0, max_concurrency=4, priority_boost=boost),
        },
        max_concurrency=1,
    )
    order: list[str] = []
    gate = threading.Event()

    @lane.handler("work")
    def work(payload: str) -> None:
        if payload == "blocker":
            assert gate.wait(30)
        order.append(payload)

    lane.start()
    blocker = lane.submit_nowait("bulk", "work", "blocker")  # takes the only slot
    wait_for(lambda: lane.stats().total_active == 1)
    bulk = lane.submit_nowait("bulk", "work", "bulk")
    urgent = lane.submit_nowait("urgent", "work", "urgent")
    expected = 0 if boosted else 5
    assert lane.stats().lanes["bulk"].effective_priority == expected
    gate.set()
    for handle in [blocker, bulk, urgent]:
        handle.result(timeout=30)
    assert order == (["blocker", "bulk", "urgent"] if boosted else ["blocker", "urgent", "bulk"])


def test_standard_and_aggressive_boosts_have_their_steps() -> None:
    standard = PriorityBoost.standard(100)
    assert standard.deadline == 100.0
    assert standard.steps == [(75.0, 1), (50.0, 2), (25.0, 3), (10.0, 4)]
    assert [standard.boost_for(t) for t in [0, 25, 50, 75, 90, 100]] == [0, 1, 2, 3, 4, 255]
    aggressive = PriorityBoost.aggressive(100)
    assert aggressive.steps == [(80.0, 2), (60.0, 4), (40.0, 6), (20.0, 8)]
    disabled = PriorityBoost.disabled()
    assert (disabled.enabled, disabled.deadline, disabled.steps) == (False, None, [])
    assert repr(PriorityBoost(10).with_boost(5, 2)) == "PriorityBoost(10.0).with_boost(5.0, 2)"
    assert PriorityBoost(10).with_boost(5, 2) == PriorityBoost(10).with_boost(5, 2)
    config = LaneConfig(priority=3, priority_boost=standard)
    assert config.priority_boost == standard
    # A disabled boost changes nothing.
    lane = Lane({"q": LaneConfig(priority=4, priority_boost=disabled)})
    lane.register_handler("echo", lambda payload: payload)
    lane.start()
    lane.pause_lane("q")
    lane.submit_nowait("q", "echo", 1)
    assert lane.stats().lanes["q"].effective_priority == 4
    lane.shutdown_now()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: PriorityBoost(0), ConfigError, "the deadline must be longer than zero"),
        (lambda: PriorityBoost.standard(-1), ConfigError, "deadline must be a finite number of seconds >= 0, got -1"),
        (lambda: PriorityBoost.aggressive("60"),  # type: ignore[arg-type]
         TypeError, "deadline must be a number of seconds"),
        (lambda: PriorityBoost.disabled().with_boost(1, 1), ConfigError, r"with_boost needs a deadline, but this config is disabled\(\)"),
        (lambda: PriorityBoost(10).with_boost(11, 1), ConfigError, r"the step at 11s before the deadline is longer than the deadline \(10s\)"),
        (lambda: PriorityBoost(10).with_boost(5, 0), ConfigError, "boosts by 0 levels and would do nothing"),
        (lambda: PriorityBoost(10).with_boost(5, 256), ConfigError, "boost must be an int from 0 to 255"),
        (lambda: PriorityBoost(10).with_boost(-1, 1), ConfigError, "time_before_deadline must be a finite number of seconds >= 0"),
        (lambda: LaneConfig(priority=0, priority_boost=60),  # type: ignore[arg-type]
         TypeError, "priority_boost must be a PriorityBoost"),
    ],
)
def test_bad_boosts_are_refused_with_a_reason(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()
