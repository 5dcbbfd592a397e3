"""Groups inside a lane (`submit(..., group=...)`): a lane's groups take turns (round
robin), so one group's backlog delays another group's first command by at most one
turn; each group may have a cap and a token-bucket rate limit
(`LaneConfig(group_max_concurrency=, group_rate_limit=, group_overrides=)`); a group is
paused, resumed and cancelled as a whole, and `group_status` / `groups` read it. In
process here; the Redis engine's test of the same behaviours is
test_groups_take_turns_on_a_redis_queue.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

import a3s_lane
from a3s_lane import (
    CancelledError,
    CommandContext,
    CommandHandle,
    CommandState,
    ConfigError,
    GroupLimits,
    GroupStatus,
    Lane,
    LaneConfig,
    LaneNotFoundError,
    RateLimit,
)
from conftest import wait_for


class Gated:
    """A lane whose "job" handler records each start (its payload's label) and how many
    of each group run at once, then waits for `gate`; "block" runs until cancelled."""

    def __init__(self, lanes: dict[str, LaneConfig]) -> None:
        self.lane = Lane(lanes)
        self.gate = threading.Event()
        self.starts: list[str] = []
        self.running: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self.watching = threading.Event()
        self._lock = threading.Lock()

        @self.lane.handler("job")
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

        @self.lane.handler("block")
        def block(payload: None, ctx: CommandContext) -> None:
            self.watching.set()
            while not ctx.is_cancelled():
                time.sleep(0.005)

        self.lane.start()

    def submit(self, lane: str, group: str, label: str) -> CommandHandle[str]:
        return self.lane.submit_nowait(lane, "job", {"label": label, "group": group}, group=group)

    def close(self) -> None:
        # A handler that is still held would keep shutdown_now() waiting: open first.
        self.gate.set()
        self.lane.shutdown_now()


@pytest.fixture
def gated() -> Iterator[list[Gated]]:
    made: list[Gated] = []
    yield made
    for one in made:
        one.close()


def make(made: list[Gated], lanes: dict[str, LaneConfig]) -> Gated:
    one = Gated(lanes)
    made.append(one)
    return one


def results(handles: list[CommandHandle[str]]) -> list[str]:
    return [handle.result(timeout=60) for handle in handles]


def test_a_groups_backlog_delays_another_groups_first_command_by_one_turn(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=1)})
    # A has a backlog of 1,000, its first running (held by the gate); then B submits one.
    g.lane.pause_lane("work")
    handles = [g.submit("work", "A", f"A{n}") for n in range(1000)]
    g.lane.resume_lane("work")
    wait_for(lambda: len(g.starts) == 1)
    handles.append(g.submit("work", "B", "B0"))
    assert g.starts == ["A0"]
    g.gate.set()
    results(handles)
    # B's only command runs right after A's first, not after A's thousand.
    assert g.starts[:3] == ["A0", "B0", "A1"]
    assert len(g.starts) == 1001
    # Each group in its own FIFO order.
    assert [label for label in g.starts if label.startswith("A")] == [f"A{n}" for n in range(1000)]


def test_a_group_arriving_while_another_submits_one_by_one_waits_at_most_one_turn(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=1)})
    # A's first starts as it is submitted, before A's next ones are queued.
    handles = [g.submit("work", "A", "A0")]
    wait_for(lambda: len(g.starts) == 1)
    handles += [g.submit("work", "A", f"A{n}") for n in range(1, 1000)]
    handles.append(g.submit("work", "B", "B0"))
    g.gate.set()
    results(handles)
    assert 1 <= g.starts.index("B0") <= 2, g.starts[:4]


def test_groups_alternate_and_commands_of_no_group_take_turns_as_one_group(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=1)})
    g.lane.pause_lane("work")
    handles = [g.submit("work", "A", f"A{n}") for n in range(3)]
    handles += [g.submit("work", "B", f"B{n}") for n in range(3)]
    handles += [g.lane.submit_nowait("work", "job", {"label": f"none{n}", "group": ""}) for n in range(3)]
    g.gate.set()
    g.lane.resume_lane("work")
    results(handles)
    assert g.starts == ["A0", "B0", "none0", "A1", "B1", "none1", "A2", "B2", "none2"]


def test_each_group_runs_at_most_its_cap_and_an_override_its_own(gated: list[Gated]) -> None:
    g = make(gated, {
        "work": LaneConfig(
            priority=0,
            max_concurrency=20,
            group_max_concurrency=2,
            group_overrides={"vip": GroupLimits(max_concurrency=4)},
        )
    })
    handles: list[CommandHandle[str]] = []
    for n in range(10):
        handles += [g.submit("work", "plain", f"plain{n}"), g.submit("work", "vip", f"vip{n}"),
                    g.submit("work", "other", f"other{n}")]
    # 2 + 4 + 2 handlers running (each entered: the core counts a start before).
    wait_for(lambda: len(g.starts) == 8)
    assert g.lane.stats().lanes["work"].active == 8
    assert g.lane.group_status("work", "plain") == g.lane.groups("work", offset=1, limit=1)[0]
    plain = g.lane.group_status("work", "plain")
    assert isinstance(plain, GroupStatus)
    assert (plain.lane, plain.group, plain.pending, plain.active, plain.paused, plain.throttled,
            plain.max_concurrency) == ("work", "plain", 8, 2, False, False, 2)
    vip = g.lane.group_status("work", "vip")
    assert (vip.active, vip.pending, vip.max_concurrency) == (4, 6, 4)
    other = g.lane.group_status("work", "other")
    assert (other.active, other.pending, other.max_concurrency) == (2, 8, 2)
    # The lane has room for 12 more: the caps hold them back, not the lane.
    assert g.lane.stats().lanes["work"].pending == 22
    g.gate.set()
    results(handles)
    assert dict(g.most) == {"plain": 2, "vip": 4, "other": 2}


def test_an_override_may_be_a_dict_of_group_limits_arguments(gated: list[Gated]) -> None:
    config = LaneConfig(
        priority=0,
        max_concurrency=10,
        group_overrides={"vip": {"max_concurrency": 3, "rate_limit": RateLimit.per_second(100)}},
    )
    assert config.group_overrides == {"vip": GroupLimits(max_concurrency=3, rate_limit=RateLimit.per_second(100))}
    assert config == LaneConfig(
        priority=0,
        max_concurrency=10,
        group_overrides={"vip": GroupLimits(max_concurrency=3, rate_limit=RateLimit.per_second(100))},
    )
    g = make(gated, {"work": config})
    handles = [g.submit("work", "vip", f"vip{n}") for n in range(6)]
    wait_for(lambda: len(g.starts) == 3)
    assert g.lane.group_status("work", "vip").pending == 3
    g.gate.set()
    results(handles)
    assert g.most["vip"] == 3


def test_a_groups_rate_limit_holds_it_back_while_other_groups_go_on(gated: list[Gated]) -> None:
    g = make(gated, {
        "work": LaneConfig(priority=0, max_concurrency=10,
                           group_rate_limit=RateLimit.token_bucket(rate=1, period_seconds=60, burst=1))
    })
    g.gate.set()
    throttled = g.lane.events("queue.lane.throttled")
    slow0, slow1, fast0 = g.submit("work", "slow", "slow0"), g.submit("work", "slow", "slow1"), g.submit("work", "fast", "fast0")
    assert (slow0.result(timeout=30), fast0.result(timeout=30)) == ("slow0", "fast0")
    event = throttled.get(timeout=30)
    assert event is not None, "no queue.lane.throttled event"
    assert (event.payload["lane_id"], event.payload["group"], event.payload["limit"]) == ("work", "slow", "group")
    assert event.payload["until_ms"] > event.timestamp + 50_000, "the next permit is a minute away"
    throttled.close()
    slow = g.lane.group_status("work", "slow")
    assert (slow.pending, slow.throttled, slow.max_concurrency) == (1, True, None)
    assert sorted(g.starts) == ["fast0", "slow0"]
    assert g.lane.cancel_group("work", "slow") == 1
    with pytest.raises(CancelledError):
        slow1.result(timeout=30)


def test_a_paused_group_starts_nothing_until_resumed_and_the_others_go_on(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=4)})
    g.gate.set()
    # A group may be paused before it has commands.
    g.lane.pause_group("work", "held")
    held = [g.submit("work", "held", "held0"), g.submit("work", "held", "held1")]
    assert g.submit("work", "free", "free0").result(timeout=30) == "free0"
    assert g.starts == ["free0"]
    status = g.lane.group_status("work", "held")
    assert (status.group, status.pending, status.active, status.paused) == ("held", 2, 0, True)
    assert [(s.group, s.paused, s.pending) for s in g.lane.groups("work")] == [("held", True, 2)]
    g.lane.resume_group("work", "held")
    assert results(held) == ["held0", "held1"]
    assert g.lane.group_status("work", "held").paused is False
    # Paused with nothing in it: still listed (it is paused); resumed and empty: gone.
    g.lane.pause_group("work", "idle")
    assert [s.group for s in g.lane.groups("work")] == ["idle"]
    g.lane.resume_group("work", "idle")
    assert g.lane.groups("work") == []


def test_cancel_group_ends_pending_commands_and_signals_running_ones(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=4, group_max_concurrency=1, cancel_grace=30)})
    doomed = [g.lane.submit_nowait("work", "block", group="doomed")]
    assert g.watching.wait(30)
    doomed += [g.submit("work", "doomed", f"{n}") for n in range(3)]
    doomed.append(g.lane.submit_nowait("work", "job", {"label": "later", "group": "doomed"}, group="doomed", delay=60))
    spared = g.submit("work", "spared", "spared")
    wait_for(lambda: (s := g.lane.command(spared.id)) is not None and s.state == CommandState.RUNNING)
    status = g.lane.group_status("work", "doomed")
    assert (status.active, status.pending) == (1, 3)
    # One running, three pending, one delayed: all five reached.
    assert g.lane.cancel_group("work", "doomed") == 5
    for handle in doomed:
        with pytest.raises(CancelledError):
            handle.result(timeout=30)
    # The other group is untouched.
    spared_status = g.lane.command(spared.id)
    assert spared_status is not None and spared_status.state == CommandState.RUNNING
    assert g.lane.cancel_group("work", "nobody") == 0
    g.gate.set()
    assert spared.result(timeout=30) == "spared"


def test_groups_lists_a_lanes_groups_sorted_by_key_a_page_at_a_time(gated: list[Gated]) -> None:
    g = make(gated, {"work": LaneConfig(priority=0, max_concurrency=1)})
    g.lane.pause_lane("work")
    handles = [g.submit("work", group, f"{group}{n}") for group in ["e", "c", "a", "d", "b"] for n in range(2)]
    handles.append(g.lane.submit_nowait("work", "job", {"label": "none", "group": ""}))
    listed = g.lane.groups("work")
    # Commands of no group are not listed.
    assert [(s.lane, s.group, s.pending) for s in listed] == [("work", k, 2) for k in "abcde"]
    assert [s.group for s in g.lane.groups("work", offset=1, limit=2)] == ["b", "c"]
    assert [s.group for s in g.lane.groups("work", offset=4)] == ["e"]
    assert g.lane.groups("work", offset=5) == []
    empty = g.lane.group_status("work", "zzz")
    assert (empty.pending, empty.active, empty.paused, empty.throttled, empty.max_concurrency) == (0, 0, False, False, None)
    with pytest.raises(ConfigError):
        g.lane.groups("work", limit=0)
    with pytest.raises(LaneNotFoundError):
        g.lane.groups("nope")
    g.gate.set()
    g.lane.resume_lane("work")
    results(handles)


def test_submit_async_takes_a_group() -> None:
    lane = Lane({"work": LaneConfig(priority=0, max_concurrency=2, group_max_concurrency=1)})
    running: dict[str, int] = defaultdict(int)
    most: dict[str, int] = defaultdict(int)

    @lane.handler("job")
    async def job(payload: dict[str, Any]) -> int:
        group = payload["group"]
        running[group] += 1
        most[group] = max(most[group], running[group])
        await asyncio.sleep(0.01)
        running[group] -= 1
        return int(payload["n"])

    async def main() -> list[int]:
        lane.start()
        done: list[int] = await asyncio.gather(
            *(lane.submit_async("work", "job", {"group": g, "n": n}, group=g) for n in range(4) for g in ("a", "b"))
        )
        return done

    try:
        assert sorted(asyncio.run(main())) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert dict(most) == {"a": 1, "b": 1}
    finally:
        lane.shutdown_now()


def test_lane_config_reads_back_its_group_limits() -> None:
    config = LaneConfig(
        priority=1,
        group_max_concurrency=2,
        group_rate_limit=RateLimit.per_minute(30),
        group_overrides={"vip": GroupLimits(max_concurrency=8)},
    )
    assert config.group_max_concurrency == 2
    assert config.group_rate_limit == RateLimit.per_minute(30)
    assert config.group_overrides == {"vip": GroupLimits(max_concurrency=8)}
    assert "group_max_concurrency=2" in repr(config) and "'vip': GroupLimits(max_concurrency=8)" in repr(config)
    assert config != LaneConfig(priority=1, group_max_concurrency=3)
    assert hash(config) == hash(LaneConfig(
        priority=1,
        group_max_concurrency=2,
        group_rate_limit=RateLimit.per_minute(30),
        group_overrides={"vip": GroupLimits(max_concurrency=8)},
    ))
    plain = LaneConfig()
    assert (plain.group_max_concurrency, plain.group_rate_limit, plain.group_overrides) == (None, None, {})
    limits = GroupLimits(rate_limit=RateLimit.token_bucket(2, 1, 1))
    assert (limits.max_concurrency, limits.rate_limit) == (None, RateLimit.token_bucket(2, 1, 1))
    assert repr(GroupLimits()) == "GroupLimits()"
    assert GroupLimits(rate_limit=RateLimit.unlimited()).rate_limit is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_max_concurrency": 0}, "LaneConfig default group limits: a group max_concurrency of 0 would never start"),
        ({"group_rate_limit": RateLimit.sliding_window(5, 1)},
         r"a group rate limit must be a token bucket \(RateLimit.per_second, per_minute, per_hour or token_bucket\)"),
        ({"group_overrides": {"": GroupLimits()}}, "a group key must not be empty"),
        ({"group_overrides": {"x" * 257: GroupLimits()}}, "a group key of 257 bytes is longer than 256"),
        ({"group_overrides": {"a\nb": GroupLimits()}}, "a group key must not contain control characters"),
        ({"group_overrides": {"vip": {"max_concurrency": 0}}}, "LaneConfig group 'vip': a group max_concurrency of 0"),
        ({"group_overrides": {"vip": {"rate_limit": RateLimit.sliding_window(5, 1)}}},
         "LaneConfig group 'vip': a group rate limit must be a token bucket"),
    ],
)
def test_bad_group_limits_are_a_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LaneConfig(priority=0, **kwargs)
    assert issubclass(ConfigError, ValueError)


def test_bad_group_limits_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="GroupLimits: a group max_concurrency of 0 would never start a command"):
        GroupLimits(max_concurrency=0)
    with pytest.raises(ConfigError, match="GroupLimits: a group rate limit must be a token bucket"):
        GroupLimits(rate_limit=RateLimit.sliding_window(5, 1))
    with pytest.raises(ConfigError, match="group_max_concurrency must be an int >= 0, got -1"):
        LaneConfig(group_max_concurrency=-1)
    with pytest.raises(TypeError, match="group_rate_limit must be a RateLimit"):
        LaneConfig(group_rate_limit=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group_overrides must be a mapping"):
        LaneConfig(group_overrides=[("vip", GroupLimits())])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'group_overrides\["vip"\] must be a GroupLimits or a dict'):
        LaneConfig(group_overrides={"vip": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match='unexpected key "burst"; a group\'s limits are max_concurrency and rate_limit'):
        LaneConfig(group_overrides={"vip": {"burst": 3}})  # type: ignore[dict-item]


def test_bad_group_keys_and_lanes_are_refused_at_the_call() -> None:
    lane = Lane({"work": LaneConfig(priority=0)})

    @lane.handler("job")
    def job(payload: Any) -> Any:
        return payload

    lane.start()
    try:
        for submit in (lane.submit, lane.submit_nowait):
            with pytest.raises(ConfigError, match="a group key must not be empty"):
                submit("work", "job", group="")
            with pytest.raises(ConfigError, match="a group key of 257 bytes is longer than 256"):
                submit("work", "job", group="x" * 257)
            with pytest.raises(TypeError, match="group must be a str, got int"):
                submit("work", "job", group=5)  # type: ignore[arg-type]
        # 256 bytes is allowed.
        assert lane.submit("work", "job", 1, group="é" * 128) == 1
        for call in (lane.pause_group, lane.resume_group, lane.cancel_group, lane.group_status):
            with pytest.raises(ConfigError, match="a group key must not be empty"):
                call("work", "")
            with pytest.raises(TypeError, match="group must be a str"):
                call("work", None)  # type: ignore[arg-type]
            with pytest.raises(LaneNotFoundError, match="lane 'nope' not found"):
                call("nope", "a")

        async def bad_async() -> None:
            lane.submit_async("work", "job", group="")

        with pytest.raises(ConfigError, match="a group key must not be empty"):
            asyncio.run(bad_async())
    finally:
        lane.shutdown_now()


def test_the_group_names_are_exported() -> None:
    assert {"GroupLimits", "GroupStatus"} <= set(a3s_lane.__all__)
    for name in ("pause_group", "resume_group", "cancel_group", "group_status", "groups"):
        assert getattr(Lane, name) is getattr(a3s_lane.QueueClient, name)
        assert getattr(a3s_lane.RedisQueue, name) is getattr(a3s_lane.QueueClient, name)


def test_every_submit_of_both_engines_takes_group() -> None:
    for submit in (Lane.submit, Lane.submit_async, Lane.submit_nowait, a3s_lane.RedisQueue.submit,
                   a3s_lane.RedisQueue.submit_async):
        text = getattr(submit, "__text_signature__", None) or ""
        assert "key=None, group=None)" in text, (submit, text)
    assert getattr(a3s_lane.QueueClient.groups, "__text_signature__", None) == "($self, lane, *, offset=0, limit=100)"
