"""Commands that fail for good are kept as dead letters (with their payload) when the
lane keeps them, and can be submitted again."""

from __future__ import annotations

import pytest

import a3s_lane
from a3s_lane import Lane, LaneConfig


def test_a_failed_command_becomes_a_dead_letter_that_can_be_redriven() -> None:
    lane = Lane({"q": LaneConfig(priority=0)}, dead_letters=10)
    fixed = False

    @lane.handler("charge")
    def charge(payload: dict[str, int]) -> int:
        if not fixed:
            raise RuntimeError("gateway down")
        return payload["amount"]

    lane.start()
    with pytest.raises(RuntimeError):
        lane.submit("q", "charge", {"amount": 5})
    [letter] = lane.dead_letters()
    assert (letter.lane_id, letter.command_type, letter.attempts) == ("q", "charge", 1)
    assert letter.payload == {"amount": 5}
    assert "RuntimeError: gateway down" in letter.error
    fixed = True
    assert lane.redrive(letter.command_id).result(timeout=10) == 5
    assert lane.dead_letters() == []
    with pytest.raises(a3s_lane.LaneError, match="no dead letter with command id"):
        lane.redrive(letter.command_id)


def test_dead_letters_need_to_be_enabled() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    with pytest.raises(a3s_lane.LaneError, match="dead_letters="):
        lane.dead_letters()


def test_clear_forgets_the_dead_letters() -> None:
    lane = Lane({"q": LaneConfig(priority=0)}, dead_letters=2)

    @lane.handler("fail")
    def fail(payload: int) -> None:
        raise ValueError(payload)

    lane.start()
    for i in range(3):
        with pytest.raises(ValueError):
            lane.submit("q", "fail", i)
    assert [d.payload for d in lane.dead_letters()] == [1, 2]
    lane.clear_dead_letters()
    assert lane.dead_letters() == []
