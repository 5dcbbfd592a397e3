"""Commands that fail for good are kept as dead letters (with their payload) when the
lane keeps them (`dead_letters=N`), and can be submitted again or purged. The same on
both engines: test_client_surface_is_the_same_on_both_engines.py."""

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


def test_a_lane_without_dead_letters_lists_none_and_keeps_none() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("fail")
    def fail(payload: None) -> None:
        raise RuntimeError("lost")

    lane.start()
    with pytest.raises(RuntimeError):
        lane.submit("q", "fail")
    assert lane.dead_letters() == []
    assert lane.purge_dead_letters() == 0


def test_purge_forgets_the_dead_letters() -> None:
    lane = Lane({"q": LaneConfig(priority=0)}, dead_letters=2)

    @lane.handler("fail")
    def fail(payload: int) -> None:
        raise ValueError(payload)

    lane.start()
    for i in range(3):
        with pytest.raises(ValueError):
            lane.submit("q", "fail", i)
    assert [d.payload for d in lane.dead_letters()] == [1, 2]
    assert [d.payload for d in lane.dead_letters(limit=1)] == [1]
    assert lane.purge_dead_letters() == 2
    assert lane.dead_letters() == []
    assert lane.purge_dead_letters() == 0


def test_clear_dead_letters_is_a_deprecated_purge() -> None:
    lane = Lane({"q": LaneConfig(priority=0)}, dead_letters=2)

    @lane.handler("fail")
    def fail(payload: int) -> None:
        raise ValueError(payload)

    lane.start()
    with pytest.raises(ValueError):
        lane.submit("q", "fail", 1)
    with pytest.warns(DeprecationWarning, match="purge_dead_letters"):
        lane.clear_dead_letters()
    assert lane.dead_letters() == []
