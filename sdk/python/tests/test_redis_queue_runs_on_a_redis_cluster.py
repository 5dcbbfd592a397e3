"""RedisQueue.cluster: a queue on a Redis Cluster whose slot lives on a node other than
the first URL's (the first node answers MOVED for its keys), so the queue's scripts and
its workers' blocking listeners work only when routed through the cluster.

Needs a Redis Cluster (A3S_LANE_REDIS_CLUSTER_URLS); each test uses keys of its own."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import pytest

from a3s_lane import ConfigError, LaneConfig, RedisQueue, RedisWorker
from conftest import redis_cluster_urls, unique_prefix


def first_reply_line(url: str, *args: str) -> str:
    """Sends one command to the node at `url` over plain RESP (no cluster redirection)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=10) as conn:
        commands = []
        if parts.password is not None:
            auth = [unquote(parts.username), unquote(parts.password)] if parts.username else [unquote(parts.password)]
            commands.append(["AUTH", *auth])
        commands.append(list(args))
        stream = conn.makefile("rb")
        line = b""
        for command in commands:
            encoded = b"".join(
                f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n" for arg in command
            )
            conn.sendall(f"*{len(command)}\r\n".encode() + encoded)
            line = stream.readline()
        return line.decode().strip()


def prefix_on_another_node(first_url: str, base: str) -> str:
    """A prefix whose slot the first node does not hold: it redirects its keys (MOVED)."""
    for i in range(10_000):
        prefix = f"{base}-{i}"
        reply = first_reply_line(first_url, "EXISTS", f"{{{prefix}}}:probe")
        if reply.startswith("-MOVED"):
            return prefix
        assert reply == ":0", reply
    raise AssertionError("every prefix tried lives on the first node: is this a cluster?")


def test_a_queue_on_another_node_runs_commands_on_a_worker() -> None:
    urls = redis_cluster_urls()
    prefix = prefix_on_another_node(urls[0], unique_prefix("cluster"))
    queue = RedisQueue.cluster(urls, {"jobs": LaneConfig(priority=0, max_concurrency=4)}, key_prefix=prefix, connect_timeout=5)
    try:
        worker = RedisWorker(queue, slots=2)

        @worker.handler("double")
        def double(payload: int) -> int:
            return payload * 2

        worker.start()
        handles = [queue.submit("jobs", "double", i) for i in range(5)]
        assert [h.result(timeout=30) for h in handles] == [0, 2, 4, 6, 8]
        assert queue.stats().counter("completed") == 5
        worker.shutdown(timeout=30)
    finally:
        queue.clear()


def test_cluster_nodes_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least one of its nodes"):
        RedisQueue.cluster([])
    with pytest.raises(ConfigError, match="'http://127.0.0.1:7000'"):
        RedisQueue.cluster(["http://127.0.0.1:7000"])
    with pytest.raises(TypeError, match="list of node URLs"):
        RedisQueue.cluster("redis://127.0.0.1:7000")
    with pytest.raises(ConfigError, match="connect_timeout"):
        RedisQueue.cluster(["redis://127.0.0.1:7000"], connect_timeout=0)
