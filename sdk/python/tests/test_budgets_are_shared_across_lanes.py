"""A SharedBudget bounds the commands running at once over lanes of many Lane queues:
lanes wait for a slot first come, first served, a lane without a budget is never held,
a queue shut down gives its slots back, bad input is refused with the core's reason, and
a RedisQueue refuses a lane with a budget (the Redis test needs A3S_LANE_REDIS_URL)."""

from __future__ import annotations

import threading

import pytest

from a3s_lane import BudgetStatus, ConfigError, Lane, LaneConfig, RateLimit, RedisQueue, SharedBudget
from conftest import redis_url, unique_prefix, wait_for


class Session:
    """One queue with a budgeted `prompt` lane and a `control` lane, whose `hold` handler
    waits for its own gate."""

    def __init__(self, budget: SharedBudget, name: str, started: list[str], lock: threading.Lock) -> None:
        self.gate = threading.Event()
        self.lane = Lane({"prompt": LaneConfig(max_concurrency=4, budget=budget), "control": LaneConfig()})

        @self.lane.handler("hold")
        def hold(payload: str) -> str:
            with lock:
                started.append(payload)
            assert self.gate.wait(30)
            return payload

        self.lane.register_handler("ping", lambda _: "pong")
        self.lane.start()
        self.name = name


def test_two_queues_share_a_budget_and_a_control_lane_is_never_held() -> None:
    budget = SharedBudget("llm", 2)
    started: list[str] = []
    lock = threading.Lock()
    a = Session(budget, "a", started, lock)
    b = Session(budget, "b", started, lock)
    try:
        a_handles = [a.lane.submit_nowait("prompt", "hold", f"a{n}") for n in range(2)]
        wait_for(lambda: len(started) == 2)
        b_handles = [b.lane.submit_nowait("prompt", "hold", f"b{n}") for n in range(2)]
        wait_for(lambda: budget.status().waiting == 1)  # b's prompt lane waits for a slot
        status = budget.status()
        assert isinstance(status, BudgetStatus)
        assert (status.name, status.slots, status.in_use, status.waiting, status.started) == ("llm", 2, 2, 1, 2)
        assert sorted(started) == ["a0", "a1"]
        assert a.lane.stats().lanes["prompt"].active == 2
        assert (b.lane.stats().lanes["prompt"].active, b.lane.stats().lanes["prompt"].pending) == (0, 2)
        # The control lanes have no budget: they run while the budget is saturated.
        assert b.lane.submit("control", "ping", None) == "pong"
        assert a.lane.submit("control", "ping", None) == "pong"
        assert budget.status().in_use == 2

        # a queues one more: its lane waits behind b's.
        a_handles.append(a.lane.submit_nowait("prompt", "hold", "a2"))
        wait_for(lambda: budget.status().waiting == 2)
        # a's first two end: the first slot goes to b (first in line), the next to a.
        a.gate.set()
        assert [h.result(timeout=30) for h in a_handles] == ["a0", "a1", "a2"]
        # a2 ended at once: its slot goes to b's lane, in line again for b1.
        wait_for(lambda: len(started) == 5)
        assert sorted(started[2:4]) == ["a2", "b0"]
        assert started[4] == "b1"
        assert budget.status().in_use == 2
        assert budget.status().waiting == 0
        b.gate.set()
        assert [h.result(timeout=30) for h in b_handles] == ["b0", "b1"]
        wait_for(lambda: budget.status().in_use == 0)
        final = budget.status()
        assert (final.in_use, final.waiting, final.started) == (0, 0, 5)
    finally:
        a.gate.set()
        b.gate.set()
        a.lane.shutdown_now()
        b.lane.shutdown_now()


def test_a_queue_shut_down_gives_its_slots_back() -> None:
    budget = SharedBudget("llm", 2)
    started: list[str] = []
    lock = threading.Lock()
    a = Session(budget, "a", started, lock)
    b = Session(budget, "b", started, lock)
    try:
        for n in range(2):
            a.lane.submit_nowait("prompt", "hold", f"a{n}")
        wait_for(lambda: budget.status().in_use == 2)
        b_handle = b.lane.submit_nowait("prompt", "hold", "b0")
        wait_for(lambda: budget.status().waiting == 1)
        a.lane.shutdown_now()  # a's running commands are abandoned ...
        a.gate.set()  # ... and give their slots back when their handlers return
        wait_for(lambda: "b0" in started)
        assert budget.status().in_use == 1
        b.gate.set()
        assert b_handle.result(timeout=30) == "b0"
        wait_for(lambda: budget.status().in_use == 0)
        assert budget.status().waiting == 0
    finally:
        a.gate.set()
        b.gate.set()
        a.lane.shutdown_now()
        b.lane.shutdown_now()


def test_the_budget_reads_back_and_is_the_same_only_as_itself() -> None:
    limit = RateLimit.per_minute(500)
    budget = SharedBudget("llm", 16, rate_limit=limit)
    assert (budget.name, budget.slots, budget.rate_limit) == ("llm", 16, limit)
    assert SharedBudget("x", 1).rate_limit is None
    assert SharedBudget("x", 1, rate_limit=RateLimit.unlimited()).rate_limit is None
    config = LaneConfig(max_concurrency=2, budget=budget)
    assert config.budget is budget
    assert LaneConfig().budget is None
    assert config == LaneConfig(max_concurrency=2, budget=budget)
    assert hash(config) == hash(LaneConfig(max_concurrency=2, budget=budget))
    assert config != LaneConfig(max_concurrency=2, budget=SharedBudget("llm", 16, rate_limit=limit))
    assert config != LaneConfig(max_concurrency=2)
    assert budget == budget and budget != SharedBudget("llm", 16)
    assert len({budget, budget}) == 1
    assert "budget=SharedBudget('llm', 16, rate_limit=RateLimit.token_bucket(" in repr(config)
    assert budget.status() == budget.status()
    assert repr(SharedBudget("x", 1).status()) == "BudgetStatus(name='x', slots=1, in_use=0, waiting=0, started=0)"
    with pytest.raises(AttributeError):
        budget.slots = 3  # type: ignore[misc]


def test_bad_input_is_refused_with_the_cores_reason() -> None:
    with pytest.raises(ConfigError, match="0 slots would never start a command"):
        SharedBudget("llm", 0)
    with pytest.raises(ConfigError, match="a shared budget needs a name"):
        SharedBudget("", 1)
    with pytest.raises(ConfigError, match="a shared budget needs a name"):
        SharedBudget("  ", 1)
    with pytest.raises(ValueError, match="slots must be an int >= 0, got -1"):
        SharedBudget("llm", -1)
    with pytest.raises(
        ConfigError,
        match=r"shared budget 'llm': the rate limit must be a token bucket \(RateLimit.per_second",
    ):
        SharedBudget("llm", 1, rate_limit=RateLimit.sliding_window(10, 1))
    with pytest.raises(TypeError, match="name must be a str, got int"):
        SharedBudget(3, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="slots"):
        SharedBudget("llm", "2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate_limit must be a RateLimit"):
        SharedBudget("llm", 1, rate_limit=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be a SharedBudget"):
        LaneConfig(budget="llm")  # type: ignore[arg-type]


def test_a_redis_queue_refuses_a_lane_with_a_budget() -> None:
    url = redis_url()
    budget = SharedBudget("llm", 2)
    config = LaneConfig(priority=0, max_concurrency=2, budget=budget)
    with pytest.raises(ConfigError, match="a shared budget .*not supported by the Redis engine"):
        RedisQueue(url, {"work": config}, key_prefix=unique_prefix("budget"))
    queue = RedisQueue(url, {"other": LaneConfig(priority=0)}, key_prefix=unique_prefix("budget"))
    try:
        with pytest.raises(ConfigError, match="a shared budget .*not supported by the Redis engine"):
            queue.declare_lane("work", config)
    finally:
        queue.clear()
