"""Shared helpers for the a3s_lane test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from a3s_lane import LaneConfig, RedisQueue

HERE = Path(__file__).resolve().parent


def run_python(code: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (the same virtualenv) and returns the result."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
        check=False,
    )


REDIS_HINT = (
    "the Redis tests need a Redis server and A3S_LANE_REDIS_URL is not set. "
    "Run sdk/python/scripts/test.sh (or scripts/test.sh at the repository root), which "
    "starts a throwaway redis-server, or set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a "
    "running one (install one with `apt-get install redis-server` or `brew install redis`)."
)


def redis_url() -> str:
    """The Redis server of the tests; a test that needs one fails (never skips) without it."""
    url = os.environ.get("A3S_LANE_REDIS_URL", "")
    if not url:
        pytest.fail(REDIS_HINT, pytrace=False)
    return url


REDIS_CLUSTER_HINT = (
    "the Redis Cluster tests need a Redis Cluster and A3S_LANE_REDIS_CLUSTER_URLS is not set. "
    "Run scripts/test.sh (or sdk/python/scripts/test.sh), which starts a throwaway "
    "three-node cluster, or set A3S_LANE_REDIS_CLUSTER_URLS=redis://HOST:PORT,redis://HOST:PORT,... "
    "to the nodes of a running one."
)


def redis_cluster_urls() -> list[str]:
    """The seed nodes of the test Redis Cluster; a test that needs one fails (never skips) without it."""
    urls = [url.strip() for url in os.environ.get("A3S_LANE_REDIS_CLUSTER_URLS", "").split(",") if url.strip()]
    if not urls:
        pytest.fail(REDIS_CLUSTER_HINT, pytrace=False)
    return urls


def unique_prefix(name: str) -> str:
    """A key prefix no other test (or earlier run) uses."""
    return f"a3s-lane-py-{name}-{uuid.uuid4().hex[:12]}"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Waits until `condition()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the timeout")
        time.sleep(0.01)


@pytest.fixture
def queues(request: pytest.FixtureRequest) -> Iterator[Callable[..., RedisQueue]]:
    """Makes RedisQueues on a key prefix of this test's own; deletes its keys afterwards."""
    url = redis_url()
    prefix = unique_prefix(request.node.name[:40])
    made: list[RedisQueue] = []

    def make(lanes: dict[str, LaneConfig] | None = None) -> RedisQueue:
        queue = RedisQueue(url, lanes, key_prefix=prefix)
        made.append(queue)
        return queue

    yield make
    if made:
        made[0].clear()
