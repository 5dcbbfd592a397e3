"""An idempotency key runs a command once: every submit takes `key=` (a non-empty str of
at most 512 UTF-8 bytes), and a submit whose key a command of the same queue (any lane)
holds while it is delayed, pending or running queues nothing and gets that command —
the same id, `is_duplicate` True on its handle or future, and the one run's result (or
exception). Once the command ended (completed, cancelled, expired) the key is free; a
durable Lane keeps it across a restart. A duplicate publishes
`queue.command.deduplicated` and counts in `lane.commands.deduplicated`.

Cancelling a duplicate's wait implicitly (its future or awaiting task cancelled, Ctrl-C
in a blocking submit) only detaches that waiter: the command goes on for the others. An
explicit cancel (`cancel()` on a duplicate's handle) cancels it for every submitter.

The Redis part runs the same on a RedisQueue with a RedisWorker (A3S_LANE_REDIS_URL),
with a second RedisQueue on the same prefix as another producer."""

from __future__ import annotations

import _thread
import asyncio
import gc
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import a3s_lane
from a3s_lane import (
    CancelledError,
    CancelOutcome,
    CommandState,
    ConfigError,
    ExpiredError,
    Lane,
    LaneConfig,
    RedisQueue,
    RedisWorker,
)
from conftest import wait_for

LANES = {"jobs": LaneConfig(priority=0), "other": LaneConfig(priority=1)}


@dataclass
class Gate:
    """A "job" handler that records its payload, then waits for `release`; payload
    "boom" raises `KeyError("boom")`."""

    release: threading.Event = field(default_factory=threading.Event)
    ran: list[Any] = field(default_factory=list)

    def job(self, payload: Any) -> Any:
        self.ran.append(payload)
        self.release.wait(30)
        if payload == "boom":
            raise KeyError("boom")
        return payload


def started_lane(**options: Any) -> tuple[Lane, Gate]:
    lane = Lane(LANES, **options)
    gate = Gate()
    lane.register_handler("job", gate.job)
    lane.start()
    return lane, gate


# --- in process ---------------------------------------------------------------------


def test_a_submit_with_a_live_key_gets_the_command_holding_it() -> None:
    lane, gate = started_lane()
    first = lane.submit_nowait("jobs", "job", "first", key="report-4")
    assert first.is_duplicate is False
    wait_for(lambda: gate.ran == ["first"])
    # While it runs, the same key gives it: same id, nothing queued, even to another
    # lane and with another payload (keys are per queue).
    second = lane.submit_nowait("other", "job", "second", key="report-4")
    assert second.is_duplicate is True
    assert second.id == first.id
    stats = lane.stats()
    assert (stats.lanes["jobs"].pending, stats.lanes["other"].pending) == (0, 0)
    # Another key is another command.
    other = lane.submit_nowait("jobs", "job", "other key", key="report-5")
    assert other.is_duplicate is False and other.id != first.id
    # A blocking submit of the live key waits for the same run (the gate opens once it
    # was taken as a duplicate: its event says so).
    blocking: list[Any] = []
    with lane.events("queue.command.deduplicated") as events:
        thread = threading.Thread(target=lambda: blocking.append(lane.submit("jobs", "job", "third", key="report-4")))
        thread.start()
        assert events.get(timeout=10) is not None
    gate.release.set()
    assert first.result(timeout=10) == "first"
    assert second.result(timeout=10) == "first"
    thread.join(10)
    assert blocking == ["first"]
    assert other.result(timeout=10) == "other key"
    lane.drain(timeout=10)
    assert gate.ran == ["first", "other key"]


def test_a_duplicate_from_a_coroutine_says_so_and_awaits_the_same_result() -> None:
    lane, gate = started_lane()

    async def main() -> tuple[Any, ...]:
        first = lane.submit_async("jobs", "job", "first", key="k")
        second = lane.submit_async("jobs", "job", "second", key="k")
        assert (first.is_duplicate, second.is_duplicate) == (False, True)
        assert first.id is not None and second.id == first.id
        # A handle awaited from a coroutine keeps saying so.
        handle = lane.submit_nowait("jobs", "job", "third", key="k")
        assert handle.is_duplicate
        gate.release.set()
        return tuple(await asyncio.gather(first, second, handle))

    assert asyncio.run(main()) == ("first", "first", "first")
    assert gate.ran == ["first"]


def test_every_submitter_of_a_key_gets_the_handlers_own_exception() -> None:
    lane, gate = started_lane()
    first = lane.submit_nowait("jobs", "job", "boom", key="k")
    wait_for(lambda: gate.ran == ["boom"])
    second = lane.submit_nowait("jobs", "job", "boom", key="k")

    async def from_a_coroutine() -> None:
        third = lane.submit_async("jobs", "job", "boom", key="k")
        assert third.is_duplicate
        gate.release.set()
        with pytest.raises(KeyError, match="boom"):
            await third

    asyncio.run(from_a_coroutine())
    for handle in (first, second):
        with pytest.raises(KeyError, match="boom"):
            handle.result(timeout=10)
    assert gate.ran == ["boom"]


def test_a_key_is_free_again_once_its_command_completed_was_cancelled_or_expired() -> None:
    lane, gate = started_lane()
    gate.release.set()
    done = lane.submit_nowait("jobs", "job", "done", key="k")
    assert done.result(timeout=10) == "done"
    # Completed: the key is free; this one is delayed, then cancelled.
    delayed = lane.submit_nowait("jobs", "job", "delayed", key="k", delay=3600)
    assert not delayed.is_duplicate and delayed.id != done.id
    status = lane.command(delayed.id)
    assert status is not None and status.state == CommandState.DELAYED
    # A delayed command holds its key too.
    assert lane.submit_nowait("jobs", "job", "again", key="k").id == delayed.id
    assert lane.cancel(delayed.id) == CancelOutcome.CANCELLED
    with pytest.raises(CancelledError):
        delayed.result(timeout=10)
    # Cancelled: free; this one expires in a paused lane.
    lane.pause_lane("jobs")
    expiring = lane.submit_nowait("jobs", "job", "expiring", key="k", start_within=0.2)
    assert not expiring.is_duplicate
    with pytest.raises(ExpiredError):
        expiring.result(timeout=10)
    lane.resume_lane("jobs")
    # Expired: free.
    last = lane.submit_nowait("jobs", "job", "last", key="k")
    assert not last.is_duplicate and last.id not in (done.id, delayed.id, expiring.id)
    assert last.result(timeout=10) == "last"
    assert gate.ran == ["done", "last"]


def test_cancelling_a_duplicates_future_only_detaches_that_waiter() -> None:
    lane, gate = started_lane()

    async def main() -> tuple[Any, Any]:
        first = lane.submit_async("jobs", "job", "first", key="k")
        await asyncio.to_thread(wait_for, lambda: gate.ran == ["first"])
        duplicate = lane.submit_async("jobs", "job", "second", key="k")
        assert duplicate.is_duplicate and duplicate.id == first.id
        task = asyncio.create_task(wait_on(duplicate))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert duplicate.cancelled()
        # An awaited duplicate handle, its task cancelled: detached as well.
        handle = lane.submit_nowait("jobs", "job", "third", key="k")
        assert handle.is_duplicate
        awaiting = asyncio.create_task(wait_on(handle))
        await asyncio.sleep(0.05)
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        await asyncio.sleep(0.05)
        assert first.id is not None
        status = lane.command(first.id)
        assert status is not None and status.state == CommandState.RUNNING
        gate.release.set()
        return await first, await asyncio.to_thread(handle.result, 10)

    assert asyncio.run(main()) == ("first", "first")
    assert gate.ran == ["first"]


async def wait_on(awaitable: Any) -> Any:
    return await awaitable


def test_a_duplicate_cancelled_before_its_durable_acceptance_only_detaches(tmp_path: Path) -> None:
    lane, gate = started_lane(storage=tmp_path)

    async def main() -> Any:
        first = lane.submit_async("jobs", "job", "first", key="k")
        await asyncio.to_thread(wait_for, lambda: gate.ran == ["first"])
        duplicate = lane.submit_async("jobs", "job", "second", key="k")
        duplicate.cancel()  # before a durable lane accepted it, maybe: known a duplicate later
        await asyncio.to_thread(wait_for, lambda: duplicate.id is not None)
        assert duplicate.is_duplicate and duplicate.id == first.id
        gate.release.set()
        return await first

    assert asyncio.run(main()) == "first"
    lane.shutdown_now()


def test_the_first_submitters_cancelled_task_still_cancels_the_command() -> None:
    lane, gate = started_lane()

    async def main() -> None:
        first = lane.submit_async("jobs", "job", "first", key="k")
        await asyncio.to_thread(wait_for, lambda: gate.ran == ["first"])
        duplicate = lane.submit_async("jobs", "job", "second", key="k")
        task = asyncio.create_task(wait_on(first))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(CancelledError):
            await duplicate

    asyncio.run(main())
    gate.release.set()


def test_an_explicit_cancel_through_a_duplicates_handle_cancels_for_every_submitter() -> None:
    lane, gate = started_lane()
    first = lane.submit_nowait("jobs", "job", "first", key="k")
    wait_for(lambda: gate.ran == ["first"])
    duplicate = lane.submit_nowait("jobs", "job", "second", key="k")
    assert duplicate.is_duplicate
    assert duplicate.cancel() is True
    for handle in (first, duplicate):
        with pytest.raises(CancelledError):
            handle.result(timeout=10)
    gate.release.set()


def test_ctrl_c_in_a_blocking_submit_of_a_duplicate_only_stops_that_wait() -> None:
    lane, gate = started_lane()
    first = lane.submit_nowait("jobs", "job", "first", key="k")
    wait_for(lambda: gate.ran == ["first"])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            lane.submit("jobs", "job", "second", key="k")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    status = lane.command(first.id)
    assert status is not None and status.state == CommandState.RUNNING
    gate.release.set()
    assert first.result(timeout=10) == "first"
    assert gate.ran == ["first"]


BAD_KEYS: list[tuple[str, object, type[Exception], str]] = [
    ("empty", "", ConfigError, r"the idempotency key is empty"),
    ("513 bytes", "k" * 513, ConfigError, r"the idempotency key is 513 bytes long, more than 512"),
    ("257 two-byte characters", "é" * 257, ConfigError, r"the idempotency key is 514 bytes long"),
    ("int", 5, TypeError, r"key must be a str, got int"),
    ("bytes", b"k", TypeError, r"key must be a str, got bytes"),
]


@pytest.mark.parametrize(("key", "error", "message"), [case[1:] for case in BAD_KEYS], ids=[case[0] for case in BAD_KEYS])
def test_bad_keys_are_refused_at_the_call(key: Any, error: type[Exception], message: str) -> None:
    lane, gate = started_lane()
    gate.release.set()
    with pytest.raises(error, match=message):
        lane.submit_nowait("jobs", "job", 1, key=key)
    with pytest.raises(error, match=message):
        lane.submit("jobs", "job", 1, key=key)

    async def from_a_coroutine() -> None:
        with pytest.raises(error, match=message):
            lane.submit_async("jobs", "job", 1, key=key)

    asyncio.run(from_a_coroutine())
    assert lane.size == 0 and gate.ran == []
    # ConfigError is a ValueError.
    assert issubclass(ConfigError, ValueError)


def test_the_longest_key_is_taken_and_none_means_no_key() -> None:
    lane, gate = started_lane()
    gate.release.set()
    assert lane.submit("jobs", "job", "longest", key="k" * 512) == "longest"
    assert lane.submit("jobs", "job", "multibyte", key="é" * 256) == "multibyte"
    first = lane.submit_nowait("jobs", "job", 1, key=None)
    second = lane.submit_nowait("jobs", "job", 2, key=None)
    assert first.id != second.id and not second.is_duplicate
    lane.drain(timeout=10)


def test_a_durable_lane_keeps_a_delayed_commands_key_across_a_restart(tmp_path: Path) -> None:
    lane, _gate = started_lane(storage=tmp_path)
    held = lane.submit_nowait("jobs", "job", "held", key="nightly", delay=3600)
    held_id = held.id
    lane.shutdown_now()
    del lane, held
    gc.collect()

    lane, gate = started_lane(storage=tmp_path)
    again = lane.submit_nowait("jobs", "job", "again", key="nightly")
    assert again.is_duplicate, "the key was lost in the restart"
    assert again.id == held_id
    stats = lane.stats()
    assert (stats.lanes["jobs"].delayed, stats.lanes["jobs"].pending) == (1, 0)
    # Ended (cancelled), the key is free, also for the durable store.
    assert lane.cancel(held_id) == CancelOutcome.CANCELLED
    gate.release.set()
    fresh = lane.submit_nowait("jobs", "job", "fresh", key="nightly")
    assert not fresh.is_duplicate and fresh.result(timeout=10) == "fresh"
    assert gate.ran == ["fresh"]
    lane.shutdown_now()


def test_a_duplicate_publishes_the_deduplicated_event_and_counts_in_the_metrics() -> None:
    lane, gate = started_lane(metrics=True)
    with lane.events("queue.command.deduplicated") as events:
        first = lane.submit_nowait("jobs", "job", "first", key="report-4")
        wait_for(lambda: gate.ran == ["first"])
        duplicate = lane.submit_nowait("other", "job", "second", key="report-4")
        event = events.get(timeout=10)
    assert event is not None and event.key == "queue.command.deduplicated"
    assert event.payload == {
        "lane_id": "jobs",
        "command_id": first.id,
        "command_type": "job",
        "key": "report-4",
    }
    assert (event.lane_id, event.command_id) == ("jobs", duplicate.id)
    gate.release.set()
    lane.drain(timeout=10)
    snapshot = lane.metrics()
    assert snapshot.counter("lane.commands.deduplicated") == 1
    assert snapshot.counter("lane.commands.submitted") == 1
    assert snapshot.lanes["jobs"].counter("lane.commands.deduplicated") == 1
    for name in (
        "lane.commands.delayed",
        "lane.commands.promoted",
        "lane.commands.expired",
        "lane.commands.rejected_full",
        "lane.commands.deduplicated",
    ):
        assert name in snapshot.counters, name


def test_the_event_keys_include_deduplicated() -> None:
    # The core's 20 keys (the schedule events included), each once.
    assert len(a3s_lane.EVENT_KEYS) == 21
    assert "queue.command.deduplicated" in a3s_lane.EVENT_KEYS
    assert len(set(a3s_lane.EVENT_KEYS)) == 21


def test_every_submit_of_both_engines_takes_key() -> None:
    for submit in (Lane.submit, Lane.submit_async, Lane.submit_nowait, RedisQueue.submit, RedisQueue.submit_async):
        text = getattr(submit, "__text_signature__", None) or ""
        assert "start_within=None, key=None, group=None)" in text, (submit, text)


# --- on Redis -----------------------------------------------------------------------


@pytest.fixture
def redis_pair(queues: Callable[..., RedisQueue]) -> Iterator[tuple[RedisQueue, Gate]]:
    """A RedisQueue with LANES and a started RedisWorker running the `Gate`'s "job"."""
    queue = queues(LANES)
    worker = RedisWorker(queue, slots=4)
    gate = Gate()
    worker.register_handler("job", gate.job)
    worker.start()
    yield queue, gate
    gate.release.set()
    worker.shutdown(timeout=10)


def test_on_redis_a_submit_with_a_live_key_gets_the_command_holding_it(
    redis_pair: tuple[RedisQueue, Gate], queues: Callable[..., RedisQueue]
) -> None:
    queue, gate = redis_pair
    first = queue.submit("jobs", "job", "first", key="report-4")
    assert first.is_duplicate is False
    wait_for(lambda: gate.ran == ["first"])
    second = queue.submit("other", "job", "second", key="report-4")
    assert second.is_duplicate is True and second.id == first.id
    # Another producer on the same queue gets it too.
    another = queues(LANES).submit("jobs", "job", "third", key="report-4")
    assert another.is_duplicate and another.id == first.id
    stats = queue.stats()
    assert (stats.lanes["jobs"].pending, stats.lanes["other"].pending) == (0, 0)
    other = queue.submit("jobs", "job", "other key", key="report-5")
    assert not other.is_duplicate and other.id != first.id

    async def from_a_coroutine() -> Any:
        future = queue.submit_async("jobs", "job", "fourth", key="report-4")
        # The gate opens once Redis took it (as a duplicate): its id is then known.
        for _ in range(1000):
            if future.id is not None:
                break
            await asyncio.sleep(0.01)
        gate.release.set()
        result = await future
        assert future.is_duplicate and future.id == first.id
        return result

    assert asyncio.run(from_a_coroutine()) == "first"
    for handle in (first, second, another):
        assert handle.result(timeout=10) == "first"
    assert other.result(timeout=10) == "other key"
    assert sorted(gate.ran) == ["first", "other key"]


def test_on_redis_a_key_is_free_again_once_its_command_completed_was_cancelled_or_expired(
    redis_pair: tuple[RedisQueue, Gate],
) -> None:
    queue, gate = redis_pair
    gate.release.set()
    done = queue.submit("jobs", "job", "done", key="k")
    assert done.result(timeout=10) == "done"
    delayed = queue.submit("jobs", "job", "delayed", key="k", delay=3600)
    assert not delayed.is_duplicate and delayed.id != done.id
    assert queue.submit("jobs", "job", "again", key="k").id == delayed.id
    assert queue.cancel(delayed.id) == CancelOutcome.CANCELLED
    with pytest.raises(CancelledError):
        delayed.result(timeout=10)
    queue.pause_lane("jobs")
    expiring = queue.submit("jobs", "job", "expiring", key="k", start_within=timedelta(milliseconds=200))
    assert not expiring.is_duplicate
    with pytest.raises(ExpiredError):
        expiring.result(timeout=10)
    queue.resume_lane("jobs")
    last = queue.submit("jobs", "job", "last", key="k")
    assert not last.is_duplicate and last.id not in (done.id, delayed.id, expiring.id)
    assert last.result(timeout=10) == "last"
    assert gate.ran == ["done", "last"]


@pytest.mark.parametrize(("key", "error", "message"), [case[1:] for case in BAD_KEYS], ids=[case[0] for case in BAD_KEYS])
def test_on_redis_bad_keys_are_refused_at_the_call(
    queues: Callable[..., RedisQueue], key: Any, error: type[Exception], message: str
) -> None:
    queue = queues(LANES)
    with pytest.raises(error, match=message):
        queue.submit("jobs", "job", 1, key=key)

    async def from_a_coroutine() -> None:
        with pytest.raises(error, match=message):
            queue.submit_async("jobs", "job", 1, key=key)

    asyncio.run(from_a_coroutine())
    stats = queue.stats()
    assert stats.total_pending + stats.total_delayed == 0


def test_on_redis_a_duplicate_publishes_the_deduplicated_event(redis_pair: tuple[RedisQueue, Gate]) -> None:
    queue, gate = redis_pair
    with queue.events("queue.command.deduplicated") as events:
        first = queue.submit("jobs", "job", "first", key="report-4")
        wait_for(lambda: gate.ran == ["first"])
        duplicate = queue.submit("other", "job", "second", key="report-4")
        event = events.get(timeout=10)
    assert event is not None and event.key == "queue.command.deduplicated"
    assert event.payload["command_id"] == first.id == duplicate.id
    assert (event.payload["lane_id"], event.payload["key"]) == ("jobs", "report-4")
    gate.release.set()
    assert duplicate.result(timeout=10) == "first"


def test_on_redis_cancelling_a_duplicates_future_only_detaches_that_waiter(
    redis_pair: tuple[RedisQueue, Gate],
) -> None:
    queue, gate = redis_pair
    first = queue.submit("jobs", "job", "first", key="k")
    wait_for(lambda: gate.ran == ["first"])

    async def main() -> Any:
        duplicate = queue.submit_async("jobs", "job", "second", key="k")
        task = asyncio.create_task(wait_on(duplicate))
        await asyncio.to_thread(wait_for, lambda: duplicate.id is not None)
        assert duplicate.is_duplicate and duplicate.id == first.id
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Cancelled before Redis answered: known a duplicate then, so only detached too.
        early = queue.submit_async("jobs", "job", "third", key="k")
        early.cancel()
        await asyncio.to_thread(wait_for, lambda: early.id is not None)
        assert early.is_duplicate
        await asyncio.sleep(0.2)
        status = queue.command(first.id)
        assert status is not None and status.state == CommandState.RUNNING
        gate.release.set()
        return await asyncio.to_thread(first.result, 10)

    assert asyncio.run(main()) == "first"
    assert gate.ran == ["first"]


def test_on_redis_an_explicit_cancel_through_a_duplicates_handle_cancels_for_every_submitter(
    redis_pair: tuple[RedisQueue, Gate],
) -> None:
    queue, gate = redis_pair
    first = queue.submit("jobs", "job", "first", key="k")
    wait_for(lambda: gate.ran == ["first"])
    duplicate = queue.submit("jobs", "job", "second", key="k")
    assert duplicate.is_duplicate
    assert duplicate.cancel() is True
    for handle in (first, duplicate):
        with pytest.raises(CancelledError):
            handle.result(timeout=10)
    gate.release.set()
