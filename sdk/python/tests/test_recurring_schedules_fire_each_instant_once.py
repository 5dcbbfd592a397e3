"""Recurring schedules: `put_schedule(name, lane, command_type, payload, every= | cron=,
time_zone=, missed=, jitter=)` submits the command at each instant of an interval (its
multiples since the Unix epoch) or of a cron expression in a time zone, each instant
once however many clients and workers run the queue, reported by `queue.schedule.fired`
events; `schedules()` lists them as `ScheduleInfo`s (next instant and last one as aware
UTC datetimes, counts), `pause_schedule` / `resume_schedule` stop and restart one (the
instants in between reported by `queue.schedule.skipped`), `remove_schedule` ends it;
a schedule outlives its client where the engine keeps state (storage, Redis); bad
schedules are refused with a clear error, never adjusted.

Each behaviour is written once and run on every engine: in process, in process with
durable storage, Redis and Redis Cluster (two clients, each with a worker, so that an
instant fired twice would show). The Redis engines need a Redis server
(A3S_LANE_REDIS_URL) and a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS); without them
those tests fail, never skip."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import a3s_lane
from a3s_lane import (
    CommandContext,
    CommandError,
    ConfigError,
    Event,
    HandlerNotFoundError,
    Lane,
    LaneConfig,
    LaneNotFoundError,
    NotJsonError,
    QueueClient,
    RedisQueue,
    RedisWorker,
    ScheduleFiredPayload,
    ScheduleInfo,
    ScheduleSkippedPayload,
)
from conftest import redis_cluster_urls, redis_url, unique_prefix, wait_for

ENGINES = ["in_process", "in_process_with_storage", "redis", "redis_cluster"]

LANES = {"jobs": LaneConfig(priority=0, max_concurrency=4)}

# Clocks of different hosts (Redis' and this one) may differ by a little.
SLACK = timedelta(seconds=1)


class Engine:
    """Clients of one engine with a lane "jobs" and a handler "tick" that records the id
    of each command it runs (`runs`). On Redis there are two clients on one prefix, each
    with a worker: an instant fired by both would run twice."""

    def __init__(self, kind: str, store: Path, prefix: str) -> None:
        self.kind = kind
        self.store = store
        self.prefix = prefix
        self.lock = threading.Lock()
        self.runs: Counter[int] = Counter()
        self.payloads: list[Any] = []
        self.clients: list[QueueClient] = []
        self.workers: list[RedisWorker] = []

    def tick(self, payload: Any, ctx: CommandContext) -> Any:
        with self.lock:
            self.runs[ctx.id] += 1
            self.payloads.append(payload)
        return payload

    def register(self, command_type: str, handler: Callable[..., Any]) -> None:
        """Registers one more handler on every Lane and worker of the engine."""
        for client in self.clients:
            if isinstance(client, Lane):
                client.register_handler(command_type, handler)
        for worker in self.workers:
            worker.register_handler(command_type, handler)

    def ran(self) -> int:
        with self.lock:
            return sum(self.runs.values())

    def _redis(self, lanes: dict[str, LaneConfig] | None) -> RedisQueue:
        if self.kind == "redis":
            return RedisQueue(redis_url(), lanes, key_prefix=self.prefix)
        return RedisQueue.cluster(redis_cluster_urls(), lanes, key_prefix=self.prefix)

    def _lane(self) -> Lane:
        storage = self.store if self.kind == "in_process_with_storage" else None
        lane = Lane(LANES, storage=storage)
        lane.register_handler("tick", self.tick)
        lane.start()
        return lane

    def open(self) -> QueueClient:
        """The first client (started, with its handler), and on Redis a second one."""
        if self.kind.startswith("in_process"):
            self.clients.append(self._lane())
        else:
            for lanes in (LANES, None):
                queue = self._redis(lanes)
                worker = RedisWorker(queue, slots=4)
                worker.register_handler("tick", self.tick)
                worker.start()
                self.clients.append(queue)
                self.workers.append(worker)
        return self.clients[0]

    @property
    def queue(self) -> QueueClient:
        return self.clients[0]

    def reopen(self) -> QueueClient:
        """A client opened afresh on the same queue: a new Lane on the same store once the
        first is shut down and gone, a new RedisQueue on the same prefix; in process
        without storage, the Lane itself (the only client such a queue has)."""
        match self.kind:
            case "in_process":
                return self.queue
            case "in_process_with_storage":
                first = self.clients.pop()
                assert isinstance(first, Lane)
                first.shutdown()
                del first
                gc.collect()  # the store stays locked while the first Lane lives
                self.clients.append(self._lane())
                return self.queue
            case _:
                queue = self._redis(None)
                self.clients.append(queue)
                return queue

    def close(self) -> None:
        for worker in self.workers:
            worker.shutdown_now()
        for client in self.clients:
            if isinstance(client, Lane):
                client.shutdown_now()
        if self.clients and isinstance(self.clients[0], RedisQueue):
            self.clients[0].clear()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = Engine(request.param, tmp_path, unique_prefix(request.node.name[:40]))
    yield made
    made.close()


def utc(moment: datetime | None) -> datetime:
    """A time of a ScheduleInfo: set, and timezone-aware in UTC."""
    assert moment is not None
    assert moment.tzinfo is timezone.utc, moment
    return moment


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def next_event(stream: a3s_lane.EventStream[Any], timeout: float = 10.0) -> Event[Any]:
    event = stream.get(timeout=timeout)
    assert event is not None, f"no event within {timeout} s"
    return event


def fired_of(stream: a3s_lane.EventStream[ScheduleFiredPayload], name: str, count: int) -> list[ScheduleFiredPayload]:
    """The next `count` fired events of schedule `name`."""
    fired: list[ScheduleFiredPayload] = []
    while len(fired) < count:
        payload: ScheduleFiredPayload = next_event(stream).payload
        if payload["schedule"] == name:
            fired.append(payload)
    return fired


def assert_quiet(engine: Engine, seconds: float) -> None:
    """No command of the schedule runs for `seconds` (after those in flight settled)."""
    time.sleep(0.5)
    before = engine.ran()
    time.sleep(seconds)
    assert engine.ran() == before, "a command ran although the schedule should fire nothing"


def test_an_interval_schedule_fires_its_command_at_each_instant_once(engine: Engine) -> None:
    queue = engine.open()
    with queue.events("queue.schedule.fired") as events:
        before = datetime.now(timezone.utc)
        info = queue.put_schedule("tick", "jobs", "tick", {"n": 1}, every=0.3)
        assert isinstance(info, ScheduleInfo)
        assert (info.name, info.lane, info.command_type, info.payload) == ("tick", "jobs", "tick", {"n": 1})
        assert (info.every, info.cron, info.time_zone, info.missed, info.jitter) == (
            timedelta(milliseconds=300), None, None, "skip", timedelta(0)
        )
        assert (info.paused, info.last_fired_at, info.last_command_id, info.fired, info.skipped) == (
            False, None, None, 0, 0
        )
        # The next multiple of the interval since the epoch.
        first = utc(info.next_fire_at)
        assert ms(first) % 300 == 0, first
        assert before - SLACK < first <= before + timedelta(milliseconds=300) + SLACK, (before, first)

        fired = fired_of(events, "tick", 6)
    instants = [payload["instant_ms"] for payload in fired]
    ids = [payload["command_id"] for payload in fired]
    # Each instant once, in order: distinct, increasing multiples of the interval.
    assert instants == sorted(set(instants)), instants
    assert all(instant % 300 == 0 for instant in instants), instants
    assert len(set(ids)) == len(ids), ids
    assert all(payload["lane_id"] == "jobs" for payload in fired), fired
    # Each instant's command runs, once.
    wait_for(lambda: all(engine.runs[command_id] >= 1 for command_id in ids), timeout=30)
    assert all(engine.runs[command_id] == 1 for command_id in ids), engine.runs
    assert {"n": 1} in engine.payloads

    (listed,) = queue.schedules()
    assert listed.name == "tick" and listed.fired >= 6, listed
    assert utc(listed.last_fired_at) >= datetime.fromtimestamp(instants[-1] / 1000, timezone.utc)
    assert listed.last_command_id is not None and listed.last_command_id >= ids[-1], listed
    assert utc(listed.next_fire_at) > utc(listed.last_fired_at)

    assert queue.remove_schedule("tick") is True
    assert queue.schedules() == []
    assert_quiet(engine, 1.5)
    # Whatever ran, ran once: no instant was fired by two clients or workers.
    assert max(engine.runs.values()) == 1, engine.runs
    assert queue.remove_schedule("tick") is False


def test_schedules_are_listed_paused_resumed_replaced_and_removed(engine: Engine) -> None:
    queue = engine.open()
    hourly = queue.put_schedule(
        "hourly", "jobs", "tick", [1, "two"], every=timedelta(hours=1), jitter=timedelta(minutes=1)
    )
    assert (hourly.every, hourly.jitter) == (timedelta(hours=1), timedelta(minutes=1))
    nightly = queue.put_schedule(
        "nightly", "jobs", "tick", cron="0 3 * * *", time_zone="Europe/Berlin", missed="run_once"
    )
    assert (nightly.every, nightly.cron, nightly.time_zone, nightly.missed, nightly.payload) == (
        None, "0 3 * * *", "Europe/Berlin", "run_once", None
    )
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 in summer: within the next day.
    at = utc(nightly.next_fire_at)
    now = datetime.now(timezone.utc)
    assert (at.hour, at.minute, at.second) in ((1, 0, 0), (2, 0, 0)), at
    assert now - SLACK < at <= now + timedelta(days=1), at
    # A cron schedule without a zone reads its expression in UTC.
    utc_daily = queue.put_schedule("utc-daily", "jobs", "tick", cron="30 4 * * *")
    assert utc_daily.time_zone == "UTC"
    assert (utc(utc_daily.next_fire_at).hour, utc(utc_daily.next_fire_at).minute) == (4, 30)

    # Listed by name, as put.
    listed = queue.schedules()
    assert [info.name for info in listed] == ["hourly", "nightly", "utc-daily"]
    assert listed[0] == hourly and listed[1] == nightly, listed

    # Paused: listed as paused (twice is no error); resumed: not, with its next instant ahead.
    queue.pause_schedule("hourly")
    queue.pause_schedule("hourly")
    assert [info.paused for info in queue.schedules()] == [True, False, False]
    # Replacing keeps whether it is paused and its counts, and takes the new timing.
    replaced = queue.put_schedule("hourly", "jobs", "tick", {"v": 2}, every=timedelta(hours=2))
    assert (replaced.paused, replaced.every, replaced.payload, replaced.jitter) == (
        True, timedelta(hours=2), {"v": 2}, timedelta(0)
    )
    queue.resume_schedule("hourly")
    resumed = queue.schedules()[0]
    assert resumed.paused is False
    assert utc(resumed.next_fire_at) > datetime.now(timezone.utc) - SLACK
    assert ms(utc(resumed.next_fire_at)) % 7_200_000 == 0

    # Removed: gone from the list; a second remove finds nothing.
    assert queue.remove_schedule("hourly") is True
    assert queue.remove_schedule("hourly") is False
    assert [info.name for info in queue.schedules()] == ["nightly", "utc-daily"]
    # An unknown name cannot be paused or resumed.
    with pytest.raises(ConfigError, match="hourly"):
        queue.pause_schedule("hourly")
    with pytest.raises(ConfigError, match="hourly"):
        queue.resume_schedule("hourly")
    # Nothing fired: none was due.
    assert engine.ran() == 0


def test_a_paused_schedule_fires_nothing_and_resumes_skipping_what_it_missed(engine: Engine) -> None:
    queue = engine.open()
    with queue.events(["queue.schedule.fired", "queue.schedule.skipped"]) as events:
        queue.put_schedule("fast", "jobs", "tick", every=0.2)
        event = next_event(events)
        assert event.key == "queue.schedule.fired", event
        queue.pause_schedule("fast")
        assert queue.schedules()[0].paused
        assert_quiet(engine, 1.2)
        paused_at = datetime.now(timezone.utc)
        queue.resume_schedule("fast")
        # The instants missed while paused are reported skipped, then it fires again.
        skipped: ScheduleSkippedPayload | None = None
        while True:
            event = next_event(events)
            if event.key == "queue.schedule.skipped":
                skipped = event.payload
            elif event.payload["instant_ms"] >= ms(paused_at):
                break
    assert skipped is not None, "resuming after missed instants reports them skipped"
    assert skipped["schedule"] == "fast" and skipped["reason"] == "paused", skipped
    assert skipped["from_ms"] <= skipped["until_ms"] < ms(paused_at) + 1000, skipped
    assert skipped["from_ms"] % 200 == 0 and skipped["until_ms"] % 200 == 0, skipped
    info = queue.schedules()[0]
    assert info.skipped >= 1 and info.fired >= 2 and not info.paused, info


def test_a_schedule_outlives_its_client(engine: Engine) -> None:
    queue = engine.open()
    queue.put_schedule("nightly", "jobs", "tick", {"keep": True}, cron="0 3 * * *", time_zone="Asia/Tokyo")
    queue.put_schedule("paused", "jobs", "tick", every=3600)
    queue.pause_schedule("paused")
    before = queue.schedules()
    del queue
    again = engine.reopen()
    after = again.schedules()
    assert [(i.name, i.cron, i.time_zone, i.every, i.payload, i.paused) for i in after] == [
        ("nightly", "0 3 * * *", "Asia/Tokyo", None, {"keep": True}, False),
        ("paused", None, None, timedelta(hours=1), None, True),
    ]
    assert [i.next_fire_at for i in after] == [i.next_fire_at for i in before]
    assert again.remove_schedule("paused") is True
    assert [i.name for i in again.schedules()] == ["nightly"]


class ScheduledFailure(Exception):
    pass


def test_the_exceptions_of_scheduled_commands_are_not_kept(engine: Engine) -> None:
    """Nobody waits for a scheduled command, so its handler's exception is not kept for a
    waiter (one kept per failed instant would grow for ever)."""
    queue = engine.open()
    failed = threading.Event()

    def fail(payload: Any) -> Any:
        failed.set()
        raise ScheduledFailure(f"instant {payload}")

    engine.register("fail", fail)
    # A submitter waits for its command: it gets the handler's own exception in process
    # (which is kept for it until then), a CommandError naming it on Redis.
    if isinstance(queue, Lane):
        with pytest.raises(ScheduledFailure, match="instant 0"):
            queue.submit("jobs", "fail", 0)
    else:
        assert isinstance(queue, RedisQueue)
        with pytest.raises(CommandError, match="ScheduledFailure: instant 0"):
            queue.submit("jobs", "fail", 0).result(timeout=30)
    with queue.events("queue.schedule.fired") as events:
        queue.put_schedule("failing", "jobs", "fail", 1, every=0.01)
        fired_of(events, "failing", 30)
    queue.pause_schedule("failing")
    assert failed.is_set()

    def kept() -> int:
        gc.collect()
        return sum(1 for value in gc.get_objects() if isinstance(value, ScheduledFailure))

    # Those still being raised go; none stays.
    wait_for(lambda: kept() == 0, timeout=10)
    if engine.kind != "in_process_with_storage":
        return

    # A Lane reopened on the store fires the schedule it recovers: the same holds.
    del queue
    again = engine.reopen()
    assert isinstance(again, Lane)
    engine.register("fail", fail)
    with pytest.raises(ScheduledFailure, match="instant 2"):
        again.submit("jobs", "fail", 2)
    with again.events("queue.schedule.fired") as events:
        again.resume_schedule("failing")
        fired_of(events, "failing", 30)
    again.pause_schedule("failing")
    wait_for(lambda: kept() == 0, timeout=10)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"every": 1, "cron": "0 3 * * *"}, "exactly one of every= .* and cron="),
    ({}, "exactly one of every= .* and cron="),
    ({"every": -1}, "every must be a finite number of seconds >= 0, got -1"),
    ({"every": math.nan}, "every must be a finite number of seconds >= 0, got nan"),
    ({"every": math.inf}, "every must be a finite number of seconds >= 0, got inf"),
    ({"every": timedelta(seconds=-5)}, "every must be a timedelta >= 0"),
    ({"every": 0}, "interval of 0"),
    ({"every": 0.0004}, "every must be at least 1 ms"),
    ({"every": 200 * 365 * 86_400}, "longer than 100 years"),
    ({"cron": "61 * * * *"}, 'cron expression "61 \\* \\* \\* \\*" does not parse'),
    ({"cron": "every day"}, "does not parse"),
    ({"cron": "0 3 * * *", "time_zone": "Mars/Olympus"}, 'unknown time zone "Mars/Olympus"'),
    ({"every": 60, "time_zone": "Europe/Berlin"}, "time_zone=\"Europe/Berlin\" applies to cron= only"),
    ({"every": 60, "missed": "never"}, 'missed must be "skip" or "run_once", got "never"'),
    ({"every": 10, "jitter": 10}, "jitter of 10000 ms is not less than its interval"),
    ({"every": 60, "jitter": -1}, "jitter must be a finite number of seconds >= 0, got -1"),
    ({"every": 60, "jitter": math.nan}, "jitter must be a finite number of seconds >= 0, got nan"),
    ({"cron": "0 3 * * *", "jitter": timedelta(hours=2)}, "more than an hour"),
]


def test_bad_schedules_are_refused_with_a_clear_error(engine: Engine) -> None:
    queue = engine.open()
    for options, says in BAD:
        with pytest.raises(ConfigError, match=says):
            queue.put_schedule("bad", "jobs", "tick", **options)
    for name in ("", "a\nb", "x" * 201):
        with pytest.raises(ConfigError, match="schedule name"):
            queue.put_schedule(name, "jobs", "tick", every=60)
    with pytest.raises(LaneNotFoundError):
        queue.put_schedule("bad", "no-such-lane", "tick", every=60)
    with pytest.raises(NotJsonError) as not_json:
        queue.put_schedule("bad", "jobs", "tick", {"x": math.nan}, every=60)
    assert not_json.value.path == "payload.x"
    for wrong in ({"every": "60"}, {"every": True}, {"cron": 5}, {"every": 60, "missed": 1},
                  {"cron": "0 3 * * *", "time_zone": 1}, {"every": 60, "jitter": "1"}):
        with pytest.raises(TypeError):
            queue.put_schedule("bad", "jobs", "tick", **wrong)
    if engine.kind.startswith("in_process"):
        # In process the handlers are the queue's: a type without one is refused at once.
        with pytest.raises(HandlerNotFoundError):
            queue.put_schedule("bad", "jobs", "no-such-handler", every=60)
    # Nothing refused was kept.
    assert queue.schedules() == []
    assert engine.ran() == 0


def test_sub_millisecond_spans_round_to_the_nearest_millisecond() -> None:
    lane = Lane(LANES)
    lane.register_handler("tick", lambda payload: payload)
    info = lane.put_schedule("s", "jobs", "tick", every=0.3, jitter=timedelta(microseconds=1_600))
    assert (info.every, info.jitter) == (timedelta(milliseconds=300), timedelta(milliseconds=2))
    info = lane.put_schedule("s", "jobs", "tick", every=timedelta(microseconds=2_400))
    assert info.every == timedelta(milliseconds=2)
    lane.shutdown_now()


def test_the_event_keys_include_the_schedule_events() -> None:
    keys = a3s_lane.EVENT_KEYS
    assert "queue.schedule.fired" in keys and "queue.schedule.skipped" in keys
    assert keys.index("queue.schedule.fired") + 1 == keys.index("queue.schedule.skipped")
    assert len(keys) == len(set(keys)) == 21
    # Each is a key a subscriber may ask for.
    lane = Lane(LANES)
    lane.events(["queue.schedule.fired", "queue.schedule.skipped"]).close()
    # Their payloads are typed.
    assert set(ScheduleFiredPayload.__annotations__) == {"schedule", "lane_id", "command_id", "instant_ms"}
    assert set(ScheduleSkippedPayload.__annotations__) == {"schedule", "from_ms", "until_ms", "reason"}
    lane.shutdown_now()
