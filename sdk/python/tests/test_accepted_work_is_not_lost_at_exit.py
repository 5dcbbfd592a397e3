"""A script that submits and returns without waiting loses nothing: at exit the queue
gets a bounded time (A3S_LANE_EXIT_DRAIN_SECONDS, 5 s by default) to finish the
accepted commands; what is still unfinished after it is reported on stderr. Never a
panic, never a silent exit with lost work.

The same holds for the Redis engine: a RedisQueue submit still on its way to Redis is
waited for, and a RedisWorker still running handlers is shut down gracefully (what
outlasts the bound is handed back to Redis for another worker). Those tests need a Redis
server (A3S_LANE_REDIS_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

from a3s_lane import CommandState, RedisQueue, RedisWorker
from conftest import redis_url, unique_prefix, wait_for

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from a3s_lane import Lane, LaneConfig

    lane = Lane({"sync": LaneConfig(priority=0, max_concurrency=4),
                 "async": LaneConfig(priority=1, max_concurrency=4)})

    @lane.handler("plain")
    def plain(i):
        time.sleep(0.002)
        sys.stdout.write(f"done plain {i}\\n")

    @lane.handler("coro")
    async def coro(i):
        await asyncio.sleep(0.002)
        sys.stdout.write(f"done coro {i}\\n")

    lane.start()
    for i in range(10):
        lane.submit_nowait("sync", "plain", i)
        lane.submit_nowait("async", "coro", i)
    # returns without draining
    """
)


def run_child(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_script_that_returns_without_draining_loses_nothing_in_100_runs() -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(lambda _: run_child(CHILD), range(100)))
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "panic" not in run.stderr, run.stderr
        assert run.stderr == "", run.stderr
        done = sorted(line for line in run.stdout.splitlines() if line.startswith("done"))
        expected = sorted([f"done plain {i}" for i in range(10)] + [f"done coro {i}" for i in range(10)])
        assert done == expected


def test_work_unfinished_within_the_bound_is_reported_not_lost_silently() -> None:
    code = textwrap.dedent(
        """
        import time
        from a3s_lane import Lane, LaneConfig
        lane = Lane({"q": LaneConfig(priority=0, max_concurrency=1)})

        @lane.handler("slow")
        def slow(_):
            time.sleep(3)

        lane.start()
        for i in range(3):
            lane.submit_nowait("q", "slow", i)
        """
    )
    run = run_child(code, {"A3S_LANE_EXIT_DRAIN_SECONDS": "0.2"})
    assert "panic" not in run.stderr, run.stderr
    assert "a3s_lane: 3 accepted command(s) were dropped at exit" in run.stderr, run.stderr


def test_a_lane_never_started_is_reported() -> None:
    code = textwrap.dedent(
        """
        from a3s_lane import Lane, LaneConfig
        lane = Lane({"q": LaneConfig(priority=0)})
        lane.register_handler("echo", lambda p: p)
        lane.submit_nowait("q", "echo", 1)
        lane.submit_nowait("q", "echo", 2)
        """
    )
    run = run_child(code)
    assert run.returncode == 0
    assert "a3s_lane: 2 accepted command(s) were dropped at exit: 1 lane(s) holding commands were never started" in run.stderr, run.stderr


def test_a_drained_script_prints_nothing() -> None:
    code = textwrap.dedent(
        """
        from a3s_lane import Lane, LaneConfig
        lane = Lane({"q": LaneConfig(priority=0)})
        lane.register_handler("echo", lambda p: p)
        lane.start()
        assert lane.submit("q", "echo", 1) == 1
        lane.shutdown()
        lane.drain(timeout=10)
        """
    )
    run = run_child(code)
    assert (run.returncode, run.stderr) == (0, "")


# A RedisQueue that submits without waiting for Redis's answers, then exits: from a
# coroutine (futures never awaited) and from a daemon thread (killed at exit mid-submit).
REDIS_SUBMITTER = textwrap.dedent(
    """
    import asyncio, os, sys, threading
    from a3s_lane import LaneConfig, RedisQueue

    queue = RedisQueue(os.environ["URL"], {"q": LaneConfig(priority=0)}, key_prefix=os.environ["PREFIX"])

    def submit_forever():
        while True:
            handle = queue.submit("q", "noop", "thread")
            sys.stdout.write(f"acknowledged {handle.id}\\n")
            sys.stdout.flush()

    async def fire_and_forget():
        # Never awaited: each submit is still on its way to Redis when the loop closes.
        return [queue.submit_async("q", "noop", i) for i in range(300)]

    threading.Thread(target=submit_forever, daemon=True).start()
    futures = asyncio.run(fire_and_forget())
    """
)


def test_redis_submits_in_flight_at_exit_reach_redis_in_10_runs() -> None:
    url = redis_url()
    prefixes = [unique_prefix("exit-submit") for _ in range(10)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        runs = list(pool.map(lambda prefix: run_child(REDIS_SUBMITTER, {"URL": url, "PREFIX": prefix}), prefixes))
    for prefix, run in zip(prefixes, runs):
        queue = RedisQueue(url, key_prefix=prefix)
        try:
            assert run.returncode == 0, run.stderr
            assert "panic" not in run.stderr, run.stderr
            assert run.stderr == "", run.stderr
            acknowledged = [int(line.split()[1]) for line in run.stdout.splitlines() if line.startswith("acknowledged")]
            # Every acknowledged command is in Redis, and so is every fire-and-forget one.
            for command_id in acknowledged:
                status = queue.command(command_id)
                assert status is not None and status.state == CommandState.PENDING, (command_id, status)
            assert queue.stats().total_pending >= 300 + len(acknowledged)
        finally:
            queue.clear()


def redis_worker_child(handler_seconds: float, is_async: bool) -> str:
    """A script whose RedisWorker runs 4 commands (of 6) when it exits without a shutdown."""
    if is_async:
        handler = f"""
    @worker.handler("slow")
    async def slow(i):
        await asyncio.sleep({handler_seconds})
        return i
"""
    else:
        handler = f"""
    @worker.handler("slow")
    def slow(i):
        time.sleep({handler_seconds})
        return i
"""
    return textwrap.dedent(
        """
    import asyncio, os, sys, time
    from a3s_lane import LaneConfig, RedisQueue, RedisWorker

    queue = RedisQueue(os.environ["URL"], {"q": LaneConfig(priority=0, max_concurrency=8)}, key_prefix=os.environ["PREFIX"])
    worker = RedisWorker(queue, slots=4)
"""
        + handler
        + """
    worker.start()
    ids = [queue.submit("q", "slow", i).id for i in range(6)]
    print(" ".join(map(str, ids)), flush=True)
    deadline = time.monotonic() + 30
    while worker.running < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    print("running", worker.running, flush=True)
    # returns without worker.shutdown()
"""
    )


def finished_or_waiting(queue: RedisQueue, ids: list[int]) -> dict[int, CommandState]:
    """Each command's state: completed (finished here) or pending (handed back); never
    lost, never stuck as running."""
    states: dict[int, CommandState] = {}
    for command_id in ids:
        status = queue.command(command_id)
        assert status is not None, f"command {command_id} was lost"
        assert status.state in (CommandState.COMPLETED, CommandState.PENDING), status
        states[command_id] = status.state
    return states


def completed(queue: RedisQueue, command_id: int) -> bool:
    status = queue.command(command_id)
    return status is not None and status.state == CommandState.COMPLETED


def test_a_redis_worker_running_at_exit_finishes_its_commands_in_10_runs() -> None:
    url = redis_url()
    cases = [(unique_prefix("exit-worker"), index % 2 == 1) for index in range(10)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        runs = list(
            pool.map(
                lambda case: run_child(redis_worker_child(0.3, case[1]), {"URL": url, "PREFIX": case[0]}),
                cases,
            )
        )
    for (prefix, is_async), run in zip(cases, runs):
        queue = RedisQueue(url, key_prefix=prefix)
        try:
            assert run.returncode == 0, run.stderr
            assert "panic" not in run.stderr, run.stderr
            assert run.stderr == "", run.stderr
            lines = run.stdout.splitlines()
            assert lines[1] == "running 4", (is_async, run.stdout)
            ids = [int(word) for word in lines[0].split()]
            states = finished_or_waiting(queue, ids)
            # The four running at exit finished there; the two waiting stayed in Redis.
            assert list(states.values()).count(CommandState.COMPLETED) >= 4, states
        finally:
            queue.clear()


def test_a_redis_worker_whose_commands_outlast_the_bound_hands_them_back() -> None:
    url = redis_url()
    for is_async in (False, True):
        prefix = unique_prefix("exit-handback")
        queue = RedisQueue(url, key_prefix=prefix)
        try:
            run = run_child(
                redis_worker_child(30, is_async),
                {"URL": url, "PREFIX": prefix, "A3S_LANE_EXIT_DRAIN_SECONDS": "0.3"},
            )
            assert run.returncode == 0, run.stderr
            assert "panic" not in run.stderr, run.stderr
            assert "was running 4 command(s) at exit" in run.stderr, run.stderr
            assert "handed back to Redis for another worker" in run.stderr, run.stderr
            ids = [int(word) for word in run.stdout.splitlines()[0].split()]
            assert set(finished_or_waiting(queue, ids).values()) == {CommandState.PENDING}
            # Another worker runs every one of them.
            worker = RedisWorker(queue, slots=8)
            worker.register_handler("slow", lambda i: i)
            worker.start()
            try:
                wait_for(lambda: all(completed(queue, command_id) for command_id in ids))
            finally:
                worker.shutdown(timeout=10)
        finally:
            queue.clear()

