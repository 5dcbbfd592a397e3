"""`Lane(metrics=True)` records what the queue did: a known workload gives exactly its
counters, per lane and in total, latency histograms with one value per run, and the
same numbers in the Prometheus text. Without `metrics=True` there is nothing to read,
and asking says how to turn it on."""

from __future__ import annotations

import asyncio

import pytest

from a3s_lane import (
    CommandContext,
    HistogramStats,
    Lane,
    LaneConfig,
    LaneError,
    LaneMetrics,
    MetricsSnapshot,
    RetryPolicy,
)


def test_ten_commands_three_raising_give_exactly_those_counters() -> None:
    lane = Lane({"api": LaneConfig(priority=0, max_concurrency=4), "idle": LaneConfig(priority=1)}, metrics=True)

    @lane.handler("maybe_fail")
    def maybe_fail(payload: int) -> int:
        if payload % 3 == 0 and payload > 0:
            raise ValueError(f"bad {payload}")
        return payload

    lane.start()
    handles = [lane.submit_nowait("api", "maybe_fail", i) for i in range(10)]
    failures = 0
    for handle in handles:
        try:
            handle.result(timeout=30)
        except ValueError:
            failures += 1
    assert failures == 3  # 3, 6 and 9
    lane.drain(timeout=30)  # the last reports are in after drain

    snapshot = lane.metrics()
    assert isinstance(snapshot, MetricsSnapshot)
    expected = {
        "lane.commands.submitted": 10,
        "lane.commands.started": 10,
        "lane.commands.completed": 7,
        "lane.commands.failed": 3,
        "lane.commands.timed_out": 0,
        "lane.commands.retried": 0,
        "lane.commands.dead_lettered": 0,
        "lane.commands.cancelled": 0,
    }
    assert {name: snapshot.counters.get(name, 0) for name in expected} == expected
    assert snapshot.counter("lane.commands.failed") == 3
    assert snapshot.counter("no.such.counter") == 0
    api = snapshot.lanes["api"]
    assert isinstance(api, LaneMetrics)
    assert {name: api.counter(name) for name in expected} == expected
    assert snapshot.gauges["lane.queue.depth"] == 0.0
    assert snapshot.gauges["lane.commands.active"] == 0.0
    latency = snapshot.histograms["lane.command.latency_ms"]
    assert isinstance(latency, HistogramStats)
    assert latency.count == 10
    assert 0.0 <= latency.min <= latency.p50 <= latency.p90 <= latency.p95 <= latency.p99 <= latency.max
    assert latency.min <= latency.mean <= latency.max
    assert snapshot.histograms["lane.command.wait_ms"].count == 10
    assert api.histograms["lane.command.latency_ms"].count == 10
    assert snapshot.timestamp > 0

    text = lane.metrics_prometheus()
    assert 'lane_commands_submitted_total{lane="api"} 10\n' in text
    assert 'lane_commands_completed_total{lane="api"} 7\n' in text
    assert 'lane_commands_failed_total{lane="api"} 3\n' in text
    assert "# TYPE lane_commands_submitted_total counter" in text
    assert 'lane_command_latency_ms_count{lane="api"} 10\n' in text
    assert snapshot.to_prometheus() == text  # nothing ran in between


def test_retries_timeouts_and_cancels_are_counted() -> None:
    async def main() -> None:
        lane = Lane(
            {
                "flaky": LaneConfig(priority=0, retry=RetryPolicy.fixed(2, 0)),
                "slow": LaneConfig(priority=1, timeout=0.05),
                "long": LaneConfig(priority=2),
            },
            metrics=True,
            dead_letters=10,
        )
        started = asyncio.Event()

        @lane.handler("flaky")
        def flaky(payload: None, ctx: CommandContext) -> str:
            if ctx.attempt < 3:
                raise ConnectionError("503")
            return "ok"

        @lane.handler("slow")
        async def slow(payload: None) -> None:
            await asyncio.sleep(3600)

        @lane.handler("long")
        async def long(payload: None) -> None:
            started.set()
            await asyncio.sleep(3600)

        lane.start()
        assert await lane.submit_async("flaky", "flaky") == "ok"
        with pytest.raises(TimeoutError):
            await lane.submit_async("slow", "slow")
        future = lane.submit_async("long", "long")
        await started.wait()
        future.cancel()
        await lane.drain_async(timeout=30)
        snapshot = lane.metrics()
        assert snapshot.lanes["flaky"].counter("lane.commands.retried") == 2
        assert snapshot.lanes["flaky"].counter("lane.commands.started") == 3
        assert snapshot.lanes["flaky"].counter("lane.commands.completed") == 1
        assert snapshot.lanes["slow"].counter("lane.commands.timed_out") == 1
        assert snapshot.lanes["slow"].counter("lane.commands.dead_lettered") == 1
        assert snapshot.lanes["long"].counter("lane.commands.cancelled") == 1
        assert snapshot.counter("lane.commands.submitted") == 3

    asyncio.run(main())


def test_without_metrics_asking_for_them_says_how_to_turn_them_on() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    with pytest.raises(LaneError, match=r"records no metrics; create it with Lane\(\.\.\., metrics=True\)"):
        lane.metrics()
    with pytest.raises(LaneError, match="metrics=True"):
        lane.metrics_prometheus()
    with pytest.raises(TypeError, match="metrics"):
        Lane(metrics=1)  # type: ignore[arg-type]


def test_group_metrics_count_per_group_within_their_bound() -> None:
    lane = Lane(
        {"tenants": LaneConfig(priority=0, max_concurrency=4)},
        metrics=True,
        group_metrics=2,
        group_metrics_always=["vip"],
    )

    @lane.handler("job")
    def job(payload: str) -> str:
        return payload

    lane.start()
    try:
        handles = [
            lane.submit_nowait("tenants", "job", group, group=group)
            for group in ["a", "a", "b", "c", "d", "d", "vip"]
        ]
        assert [h.result(timeout=30) for h in handles] == ["a", "a", "b", "c", "d", "d", "vip"]
        snapshot = lane.metrics()
        assert sorted(snapshot.groups["tenants"]) == ["a", "b", "vip"]
        a = snapshot.groups["tenants"]["a"]
        assert (a.counter("group.commands.started"), a.counter("group.commands.completed")) == (2, 2)
        assert a.histograms["group.command.wait_ms"].count == 2
        other = snapshot.other_groups["tenants"]
        assert other.counter("group.commands.completed") == 3, "c and d together"
        text = lane.metrics_prometheus()
        assert 'group_commands_completed_total{lane="tenants",group="a"} 2\n' in text
        assert 'group_commands_completed_total{lane="tenants",group_other="true"} 3\n' in text
    finally:
        lane.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_metrics": 0}, "use 1 to 10000"),
        ({"group_metrics": 10_001}, "use 1 to 10000"),
        ({"group_metrics": 5, "metrics": False}, "pass metrics=True too"),
        ({"group_metrics_always": ["vip"]}, "needs group_metrics=N"),
        ({"group_metrics": 5, "group_metrics_always": [""]}, "group"),
    ],
)
def test_bad_group_metrics_are_a_config_error(kwargs: dict[str, object], message: str) -> None:
    from a3s_lane import ConfigError

    args: dict[str, object] = {"metrics": True, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Lane({"jobs": LaneConfig(priority=0)}, **args)  # type: ignore[arg-type]


def test_group_metrics_always_must_be_a_list_of_strings() -> None:
    with pytest.raises(TypeError, match="not one string"):
        Lane({"jobs": LaneConfig(priority=0)}, metrics=True, group_metrics=5, group_metrics_always="vip")
