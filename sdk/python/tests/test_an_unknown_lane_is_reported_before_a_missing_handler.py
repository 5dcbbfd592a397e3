"""A submit to an unknown lane reports the unknown lane first, before a missing
handler, whichever way the lane is set up (no store, dead letters, a store) and
whichever way the command is submitted (blocking, asyncio, nowait)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from a3s_lane import HandlerNotFoundError, Lane, LaneConfig, LaneNotFoundError


@pytest.fixture(params=["plain", "dead_letters", "storage"])
def lane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lane]:
    setups: dict[str, dict[str, object]] = {
        "plain": {},
        "dead_letters": {"dead_letters": 10},
        "storage": {"storage": str(tmp_path / "store")},
    }
    options = setups[request.param]
    lane = Lane({"work": LaneConfig(priority=0)}, **options)  # type: ignore[arg-type]

    @lane.handler("known")
    def known(payload: object) -> object:
        return payload

    lane.start()
    yield lane
    lane.shutdown()


def test_an_unknown_lane_and_type_raise_lane_not_found(lane: Lane) -> None:
    with pytest.raises(LaneNotFoundError, match="lane 'nowhere' not found"):
        lane.submit("nowhere", "unregistered", {"n": 1})
    with pytest.raises(LaneNotFoundError, match="lane 'nowhere' not found"):
        lane.submit_nowait("nowhere", "unregistered", {"n": 2})

    async def submit_async() -> None:
        await lane.submit_async("nowhere", "unregistered", {"n": 3})

    with pytest.raises(LaneNotFoundError, match="lane 'nowhere' not found"):
        asyncio.run(submit_async())


def test_a_known_lane_with_an_unknown_type_raises_handler_not_found(lane: Lane) -> None:
    with pytest.raises(HandlerNotFoundError, match="unregistered"):
        lane.submit("work", "unregistered", {"n": 1})
    with pytest.raises(LaneNotFoundError, match="lane 'nowhere' not found"):
        lane.submit("nowhere", "known", {"n": 2})
    assert lane.submit("work", "known", {"n": 3}) == {"n": 3}
