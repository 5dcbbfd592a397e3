"""Every option object, made with no optional arguments, defaults to what the core's table
says (a3s_lane.DEFAULTS, built by a3s_lane::defaults() in Rust, the table Node exposes
too): one set of defaults for Rust, Python and Node. The table gives durations in
milliseconds (keys ending in "_ms"), Python takes seconds; None is "none" in both.

The Redis part needs a Redis server (A3S_LANE_REDIS_URL)."""

from __future__ import annotations

from typing import Any

from a3s_lane import DEFAULT_LANES, DEFAULTS, Lane, LaneConfig, RedisQueue, RedisWorker, RetryPolicy
from conftest import redis_url, unique_prefix


def seconds(millis: Any) -> float | None:
    """A duration of the table in seconds, as Python takes it."""
    return None if millis is None else float(millis) / 1000


def test_the_table_covers_every_option_object() -> None:
    assert set(DEFAULTS) == {"lane", "retry_policy", "queue", "redis_queue", "redis_worker"}


def test_lane_config_defaults() -> None:
    table = DEFAULTS["lane"]
    config = LaneConfig()
    assert config.min_concurrency == table["min_concurrency"]
    assert config.timeout == seconds(table["timeout_ms"])
    assert config.pressure_threshold == table["pressure_threshold"]
    assert config.cancel_grace == seconds(table["cancel_grace_ms"])
    assert config.retry is None and table["retry_policy"] is None
    assert config.rate_limit is None and table["rate_limit"] is None
    assert config.priority_boost is None and table["priority_boost"] is None
    assert config.max_waiting == table["max_waiting"]
    assert config.when_full == table["when_full"]
    assert config.full_wait_timeout is None  # only with when_full="wait"
    assert config.keep_last == table["keep_last"]
    assert config.keep_for == seconds(table["keep_for_ms"])
    assert config.group_max_concurrency == table["group_max_concurrency"]
    assert config.group_rate_limit is None and table["group_rate_limit"] is None
    assert config.group_overrides == {}
    assert config.budget is None and table["budget"] is None
    # Priority and cap default per lane (`None` until the lane is known): a lane that is
    # not one of the default lanes gets the table's cap.
    assert config.priority is None and config.max_concurrency is None
    status = Lane({"jobs": LaneConfig(priority=0)}).stats().lanes["jobs"]
    assert (status.min_concurrency, status.max_concurrency) == (table["min_concurrency"], table["max_concurrency"])


def test_retry_policy_defaults() -> None:
    table = DEFAULTS["retry_policy"]
    policy = RetryPolicy()
    assert policy.max_retries == table["max_retries"]
    assert policy.initial_delay == seconds(table["initial_delay_ms"])
    assert policy.multiplier == table["multiplier"]
    assert policy.max_delay == seconds(table["max_delay_ms"])
    assert policy.jitter == table["jitter"]


def test_queue_defaults() -> None:
    table = DEFAULTS["queue"]
    lane = Lane()
    assert lane.event_capacity == table["event_capacity"]
    assert table["max_concurrency"] is None  # no global budget unless given
    lanes = lane.stats().lanes
    assert [
        {"id": id, "priority": s.priority, "max_concurrency": s.max_concurrency, "min_concurrency": s.min_concurrency}
        for id, s in ((id, lanes[id]) for id in lane.lanes)
    ] == table["default_lanes"]
    assert [(d["id"], d["priority"], d["max_concurrency"]) for d in table["default_lanes"]] == DEFAULT_LANES


def test_redis_queue_defaults() -> None:
    table = DEFAULTS["redis_queue"]
    # Connecting without lanes declares nothing, so the default prefix is safe to use.
    queue = RedisQueue(redis_url())
    assert queue.key_prefix == table["key_prefix"]
    # result_ttl, response_timeout, connect_timeout and the event capacity of events()
    # are passed to the core unset and not read back: the core's defaults apply.
    assert {
        "result_ttl_ms",
        "response_timeout_ms",
        "connect_timeout_ms",
        "event_capacity",
        "reconnect_wait_ms",
        "reconnect_min_delay_ms",
        "reconnect_max_delay_ms",
    } <= set(table)


def test_redis_worker_defaults() -> None:
    table = DEFAULTS["redis_worker"]
    worker = RedisWorker(RedisQueue(redis_url(), key_prefix=unique_prefix("defaults")))
    assert worker.slots == table["slots"]
    assert worker.lease_ttl == seconds(table["lease_ttl_ms"])
    assert worker.heartbeat_interval == seconds(table["heartbeat_interval_ms"])
    assert worker.block_timeout == seconds(table["block_timeout_ms"])
