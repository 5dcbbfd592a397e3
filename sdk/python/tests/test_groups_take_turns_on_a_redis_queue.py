"""Groups inside a lane on a RedisQueue (`submit(..., group=...)`), over all workers: a
lane's groups take turns, so one group's backlog delays another group's first command
by at most one turn; a group's cap (`group_max_concurrency`, an override's) holds;
groups are paused, resumed, cancelled and read as on a `Lane` (see
test_groups_take_turns_inside_a_lane.py).

Needs a Redis server (A3S_LANE_REDIS_URL); each test uses keys of its own."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from a3s_lane import (
    CancelledError,
    CommandHandle,
    ConfigError,
    GroupLimits,
    GroupStatus,
    LaneConfig,
    LaneNotFoundError,
    RedisQueue,
    RedisWorker,
)
from conftest import wait_for


class Gated:
    """A queue and one worker whose "job" handler records each start (its payload's
    label) and how many of each group run at once, then waits for `gate`."""

    def __init__(self, queue: RedisQueue, slots: int) -> None:
        self.queue = queue
        self.worker = RedisWorker(queue, slots=slots)
        self.gate = threading.Event()
        self.starts: list[str] = []
        self.running: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

        @self.worker.handler("job")
        def job(payload: dict[str, str]) -> str:
            label, group = payload["label"], payload["group"]
            with self._lock:
                self.starts.append(label)
                self.running[group] += 1
                self.most[group] = max(self.most[group], self.running[group])
            try:
                assert self.gate.wait(60), "the gate was never opened"
            finally:
                with self._lock:
                    self.running[group] -= 1
            return label

        self.worker.start()

    def submit(self, lane: str, group: str, label: str) -> CommandHandle[str]:
        return self.queue.submit(lane, "job", {"label": label, "group": group}, group=group)

    def close(self) -> None:
        self.gate.set()
        self.worker.shutdown_now()


@pytest.fixture
def gated(queues: Callable[..., RedisQueue]) -> Iterator[Callable[[dict[str, LaneConfig], int], Gated]]:
    made: list[Gated] = []

    def make(lanes: dict[str, LaneConfig], slots: int) -> Gated:
        one = Gated(queues(lanes), slots)
        made.append(one)
        return one

    yield make
    for one in made:
        one.close()


def results(handles: list[CommandHandle[str]]) -> list[str]:
    return [handle.result(timeout=60) for handle in handles]


def test_a_groups_backlog_delays_another_groups_first_command_by_one_turn_over_redis(
    gated: Callable[[dict[str, LaneConfig], int], Gated],
) -> None:
    g = gated({"work": LaneConfig(priority=0, max_concurrency=1)}, 4)
    # A has a backlog of 1,000, its first running (held by the gate); then B submits one.
    g.queue.pause_lane("work")
    handles = [g.submit("work", "A", f"A{n}") for n in range(1000)]
    g.queue.resume_lane("work")
    wait_for(lambda: len(g.starts) == 1)
    handles.append(g.submit("work", "B", "B0"))
    assert g.starts == ["A0"]
    g.gate.set()
    results(handles)
    # B's only command runs right after A's first, not after A's thousand.
    assert g.starts[:3] == ["A0", "B0", "A1"]
    assert len(g.starts) == 1001


def test_each_group_runs_at_most_its_cap_over_redis_and_an_override_its_own(
    gated: Callable[[dict[str, LaneConfig], int], Gated],
) -> None:
    g = gated(
        {
            "work": LaneConfig(
                priority=0,
                max_concurrency=20,
                group_max_concurrency=2,
                group_overrides={"vip": GroupLimits(max_concurrency=3)},
            )
        },
        16,
    )
    handles: list[CommandHandle[str]] = []
    for n in range(6):
        handles += [g.submit("work", "plain", f"plain{n}"), g.submit("work", "vip", f"vip{n}")]
    # 2 + 3 handlers running.
    wait_for(lambda: len(g.starts) == 5)
    plain = g.queue.group_status("work", "plain")
    assert isinstance(plain, GroupStatus)
    assert (plain.lane, plain.group, plain.pending, plain.active, plain.paused, plain.throttled,
            plain.max_concurrency) == ("work", "plain", 4, 2, False, False, 2)
    vip = g.queue.group_status("work", "vip")
    assert (vip.active, vip.pending, vip.max_concurrency) == (3, 3, 3)
    assert [s.group for s in g.queue.groups("work")] == ["plain", "vip"]
    assert [s.group for s in g.queue.groups("work", offset=1, limit=1)] == ["vip"]
    g.gate.set()
    results(handles)
    assert dict(g.most) == {"plain": 2, "vip": 3}


def test_a_paused_group_waits_in_redis_until_resumed_and_cancel_group_ends_its_commands(
    gated: Callable[[dict[str, LaneConfig], int], Gated],
) -> None:
    g = gated({"work": LaneConfig(priority=0, max_concurrency=4)}, 4)
    g.gate.set()
    g.queue.pause_group("work", "held")
    held = [g.submit("work", "held", "held0"), g.submit("work", "held", "held1")]
    assert g.submit("work", "free", "free0").result(timeout=30) == "free0"
    assert g.starts == ["free0"]
    status = g.queue.group_status("work", "held")
    assert (status.paused, status.pending, status.active) == (True, 2, 0)
    g.queue.resume_group("work", "held")
    assert results(held) == ["held0", "held1"]

    g.queue.pause_group("work", "doomed")
    doomed = [g.submit("work", "doomed", "d0"), g.submit("work", "doomed", "d1")]
    assert g.queue.cancel_group("work", "doomed") == 2
    for handle in doomed:
        with pytest.raises(CancelledError):
            handle.result(timeout=30)


def test_declare_lane_takes_the_group_limits_and_bad_input_is_refused_as_on_a_lane(
    gated: Callable[[dict[str, LaneConfig], int], Gated],
) -> None:
    g = gated({"work": LaneConfig(priority=0, max_concurrency=8)}, 8)
    with pytest.raises(ConfigError, match="a group key must not be empty"):
        g.queue.submit("work", "job", group="")
    with pytest.raises(TypeError, match="group must be a str, got int"):
        g.queue.submit("work", "job", group=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a group key of 300 bytes is longer than 256"):
        g.queue.pause_group("work", "x" * 300)
    with pytest.raises(LaneNotFoundError, match="nowhere"):
        g.queue.group_status("nowhere", "g")
    with pytest.raises(LaneNotFoundError, match="nowhere"):
        g.queue.groups("nowhere")

    g.queue.declare_lane("work", LaneConfig(priority=0, max_concurrency=8, group_max_concurrency=1))
    handles = [g.submit("work", "g", f"g{n}") for n in range(3)]
    wait_for(lambda: len(g.starts) == 1)
    status = g.queue.group_status("work", "g")
    assert (status.lane, status.group, status.pending, status.active, status.paused, status.throttled,
            status.max_concurrency) == ("work", "g", 2, 1, False, False, 1)
    g.gate.set()
    assert results(handles) == ["g0", "g1", "g2"]
    assert g.most["g"] == 1
