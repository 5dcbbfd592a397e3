"""RedisWorkers in other processes run the commands submitted here: results, handler
exceptions (by type and message) and cancels cross the process boundary, workers in two
processes share one queue, and a killed worker's command runs again on another worker
once its lease expires.

Needs a Redis server (A3S_LANE_REDIS_URL); each test uses keys of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import a3s_lane
from a3s_lane import CommandContext, CommandError, LaneConfig, RedisQueue, RedisWorker
from conftest import redis_url

WORKER_SCRIPT = Path(__file__).resolve().parent / "redis_worker_process.py"


class WorkerProcess:
    """A RedisWorker running in a child process (tests/redis_worker_process.py)."""

    def __init__(self, prefix: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), redis_url(), prefix, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("ready "), f"worker process did not start: {line!r} {self.stop()}"
        self.pid = int(line.split()[1])

    def readline(self) -> str:
        """The next line it prints (the suite's timeout ends a wait for one that never comes)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def kill(self) -> None:
        """Kills it (SIGKILL) and closes its pipes."""
        self.process.kill()
        self.process.communicate(timeout=60)

    def stop(self) -> str:
        """Closes its input (it shuts down) and returns everything it printed."""
        out, err = self.process.communicate(input="", timeout=60)
        return out + err


def test_a_worker_in_another_process_runs_the_commands(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4)})
    child = WorkerProcess(queue.key_prefix)
    try:
        results = [queue.submit("jobs", "whoami", i) for i in range(5)]
        for i, handle in enumerate(results):
            assert handle.result(timeout=30) == {"pid": child.pid, "payload": i, "lane": "jobs"}
        assert child.pid != os.getpid()

        # The handler's exception in the other process reaches this one by type and message.
        failing = queue.submit("jobs", "fail", "missing-key")
        with pytest.raises(CommandError, match="KeyError: 'missing-key'"):
            failing.result(timeout=30)

        # A cancel reaches the command running in the other process.
        running = queue.submit("jobs", "wait_for_cancel")
        assert child.readline() == "handler started\n"
        assert queue.stats().lanes["jobs"].active == 1
        assert running.cancel() is True
        with pytest.raises(a3s_lane.CancelledError):
            running.result(timeout=30)
        assert running.cancel() is False  # finished already
    finally:
        output = child.stop()
    assert "handler cancelled" in output
    assert "stopped" in output



def test_workers_in_two_processes_share_one_queue(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=8)})
    child = WorkerProcess(queue.key_prefix)
    worker = RedisWorker(queue, slots=4)
    ran_here = threading.Event()

    @worker.handler("whoami")
    def whoami(payload: object) -> dict[str, object]:
        ran_here.set()
        return {"pid": os.getpid(), "payload": payload}

    worker.start()
    try:
        assert queue.stats().workers == 2
        # Commands submitted here run in both processes; every result comes back here.
        results: list[dict[str, object]] = []
        while not (ran_here.is_set() and any(r["pid"] == child.pid for r in results)):
            batch = [queue.submit("jobs", "whoami", i) for i in range(20)]
            results += [h.result(timeout=30) for h in batch]
            assert len(results) < 2000, "one of the workers never got a command"
        assert {r["pid"] for r in results} == {os.getpid(), child.pid}
    finally:
        worker.shutdown(timeout=30)
        child.stop()



def test_a_killed_worker_process_loses_its_command_to_another_worker(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=0, max_concurrency=4)})
    child = WorkerProcess(queue.key_prefix, "0.5")  # lease_ttl 0.5 s
    handle = queue.submit("jobs", "wait_for_cancel")
    assert child.readline() == "handler started\n"
    child.kill()  # no shutdown, no goodbye: only the lease tells
    worker = RedisWorker(queue, slots=1, lease_ttl=0.5, heartbeat_interval=0.1)

    @worker.handler("wait_for_cancel")
    def rescue(payload: None, ctx: CommandContext) -> dict[str, object]:
        return {"rescued": True, "attempt": ctx.attempt}

    worker.start()
    result = handle.result(timeout=30)  # the same command, run again here
    assert result == {"rescued": True, "attempt": 2}
    assert queue.stats().counter("workers_lost") == 1
    worker.shutdown(timeout=30)
