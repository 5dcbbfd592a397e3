"""A script that submits and returns without waiting loses nothing: at exit the queue
gets a bounded time (A3S_LANE_EXIT_DRAIN_SECONDS, 5 s by default) to finish the
accepted commands; what is still unfinished after it is reported on stderr. Never a
panic, never a silent exit with lost work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

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
