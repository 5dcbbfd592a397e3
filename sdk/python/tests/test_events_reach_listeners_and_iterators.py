"""Lifecycle events can be read with a blocking iterator and an async iterator, filtered
by key; a slow reader is told how many it missed; the stream ends after shutdown."""

from __future__ import annotations

import asyncio

import pytest

import a3s_lane
from a3s_lane import CommandContext, Event, Lane, LaneConfig


def make_lane(event_capacity: int | None = None) -> Lane:
    lane = Lane({"q": LaneConfig(priority=0)}, event_capacity=event_capacity)

    @lane.handler("work")
    def work(payload: object, ctx: CommandContext) -> object:
        ctx.report_progress({"done": 50})
        return payload

    @lane.handler("fail")
    def fail(payload: object) -> None:
        raise RuntimeError("nope")

    return lane


def test_a_blocking_reader_sees_each_stage_of_a_command_in_order() -> None:
    lane = make_lane()
    lane.start()
    with lane.events() as stream:
        handle = lane.submit_nowait("q", "work", {"n": 1})
        handle.result(timeout=10)
        seen: list[Event] = []
        while not seen or seen[-1].key != "queue.command.completed":
            event = stream.get(timeout=10)
            assert event is not None
            seen.append(event)
    assert [e.key for e in seen] == [
        "queue.command.submitted",
        "queue.command.started",
        "queue.command.progress",
        "queue.command.completed",
    ]
    assert {e.command_id for e in seen} == {handle.id}
    assert {e.lane_id for e in seen} == {"q"}
    assert seen[2].payload["progress"] == {"done": 50}
    assert stream.closed


def test_an_async_reader_with_a_key_filter_ends_after_shutdown() -> None:
    async def main() -> list[str]:
        lane = make_lane()
        lane.start()
        stream = lane.events(keys=["queue.command.completed", "queue.command.failed"])
        await lane.submit_async("q", "work", 1)
        with pytest.raises(RuntimeError):
            await lane.submit_async("q", "fail")
        lane.shutdown()
        keys = [event.key async for event in stream]
        await lane.drain_async(timeout=10)
        return keys

    assert asyncio.run(main()) == ["queue.command.completed", "queue.command.failed"]


def test_a_for_loop_over_the_events_ends_with_the_shutdown() -> None:
    lane = make_lane()
    lane.start()
    stream = lane.events()
    lane.submit("q", "work", 1)
    lane.shutdown()
    keys = [event.key for event in stream]
    assert keys[-2:] == ["queue.shutdown.started", "queue.shutdown.complete"]
    assert "queue.command.completed" in keys


def test_a_reader_that_falls_behind_is_told_how_many_it_missed() -> None:
    lane = make_lane(event_capacity=4)
    assert lane.event_capacity == 4
    lane.start()
    stream = lane.events()
    for i in range(10):
        lane.submit("q", "work", i)
    first = stream.get(timeout=10)
    assert first is not None
    assert first.key == "queue.events.lagged"
    assert first.payload["missed"] > 0
    assert stream.missed == first.payload["missed"]


def test_event_buffer_still_sets_the_capacity_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"Lane\(event_buffer=\.\.\.\) is deprecated; use Lane\(event_capacity=\.\.\.\)"):
        lane = Lane({"q": LaneConfig(priority=0)}, event_buffer=4)
    assert lane.event_capacity == 4
    lane.register_handler("work", lambda payload: payload)
    lane.start()
    stream = lane.events()
    for i in range(10):
        lane.submit("q", "work", i)
    first = stream.get(timeout=10)
    assert first is not None and first.key == "queue.events.lagged"
    with pytest.raises(TypeError, match="give event_capacity only"):
        Lane(event_capacity=8, event_buffer=8)


def test_unknown_event_keys_are_refused() -> None:
    lane = make_lane()
    with pytest.raises(a3s_lane.ConfigError, match="unknown event key 'queue.command.complete'"):
        lane.events(keys=["queue.command.complete"])
    # One key on its own is that key (typed per key), and checked as well.
    with pytest.raises(a3s_lane.ConfigError, match="unknown event key 'queue.command.complete'"):
        lane.events("queue.command.complete")
    lane.events("queue.command.completed").close()
    assert "queue.command.completed" in a3s_lane.EVENT_KEYS
