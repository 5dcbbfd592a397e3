"""With storage, an accepted command survives the death of its process: the next Lane
on the same directory runs the unfinished commands, in order, once their handlers are
registered. A second process cannot open a store in use."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import a3s_lane
from a3s_lane import Lane, LaneConfig

CHILD = """
import sys, threading
from a3s_lane import Lane, LaneConfig
lane = Lane({"jobs": LaneConfig(priority=0)}, storage=sys.argv[1])
started = threading.Event()

@lane.handler("job")
def job(payload):
    if payload == 0:
        started.set()
        threading.Event().wait()   # the first one is running when the process dies

lane.start()
for i in range(4):
    lane.submit_nowait("jobs", "job", i)
started.wait()
print("submitted", flush=True)
threading.Event().wait()
"""


def test_commands_of_a_killed_process_run_in_order_on_the_next_start(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(store)],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "submitted"
            # Refused while the first process holds the store.
            with pytest.raises(a3s_lane.StorageError, match="locked|in use|already"):
                Lane(storage=store)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)

    lane = Lane({"jobs": LaneConfig(priority=0)}, storage=store)
    seen: list[int] = []

    @lane.handler("job")
    def job(payload: int) -> None:
        seen.append(payload)

    lane.start()
    lane.drain(timeout=30)
    # The one that was running runs again (at least once), then the rest in order.
    assert seen == [0, 1, 2, 3]


def test_a_durable_lane_accepts_from_coroutines_and_keeps_nothing_once_done(tmp_path: Path) -> None:
    async def first() -> list[object]:
        lane = Lane({"jobs": LaneConfig(priority=0, max_concurrency=4)}, storage=os.fspath(tmp_path))

        @lane.handler("job")
        async def job(payload: int) -> int:
            return payload + 1

        lane.start()
        futures = [lane.submit_async("jobs", "job", i) for i in range(20)]
        results = await asyncio.gather(*futures)
        assert all(f.id is not None for f in futures)
        lane.shutdown()
        await lane.drain_async(timeout=30)
        return results

    assert asyncio.run(first()) == list(range(1, 21))
    lane = Lane({"jobs": LaneConfig(priority=0)}, storage=tmp_path)
    seen: list[object] = []
    lane.register_handler("job", seen.append)
    lane.start()
    lane.drain(timeout=30)
    assert seen == []


def test_a_missing_parent_directory_is_an_error_not_an_empty_queue(tmp_path: Path) -> None:
    with pytest.raises(a3s_lane.StorageError):
        Lane(storage=tmp_path / "no" / "such" / "dir")
