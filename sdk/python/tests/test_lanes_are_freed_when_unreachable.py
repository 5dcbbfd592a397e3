"""A lane whose handlers refer to the lane itself is still freed by the garbage
collector once unreachable, and its private event loop thread stops."""

from __future__ import annotations

import gc
import threading
import weakref

from a3s_lane import Lane, LaneConfig


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "a3s-lane-asyncio"]


def test_a_lane_in_a_cycle_with_its_handlers_is_collected() -> None:
    before = loop_threads()

    def session() -> weakref.ref[Lane]:
        lane = Lane({"q": LaneConfig(priority=0)})

        @lane.handler("lanes")
        async def lanes(payload: object) -> list[str]:
            return lane.lanes  # the handler keeps its lane alive: a cycle

        lane.start()
        assert lane.submit("q", "lanes") == ["q"]
        return weakref.ref(lane)

    reference = session()
    gc.collect()
    assert reference() is None
    for thread in loop_threads():
        if thread not in before:
            thread.join(10)
            assert not thread.is_alive()
