"""A user-style file type-checks under `mypy --strict`: generic handles and futures
(`CommandHandle[int]`, `CommandFuture[str]`), typed event payloads per key, the helpers,
and `asyncio.create_task(lane.submit_async(...))`. The test runs mypy and fails on any
error; a second file with deliberate mistakes must be rejected (so the check bites)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

GOOD = textwrap.dedent(
    """
    from __future__ import annotations

    import asyncio
    from datetime import datetime, timedelta, timezone
    from typing import Any, Literal

    from a3s_lane import (
        CommandCompletedPayload,
        CommandDeduplicatedPayload,
        ExpiredError,
        LaneFullError,
        CommandFuture,
        CommandHandle,
        Lane,
        LaneConfig,
        NotJsonError,
        QueueClient,
        RedisQueue,
        ScheduleFiredPayload,
        ScheduleInfo,
        ScheduleSkippedPayload,
    )

    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("double")
    def double(n: int) -> int:
        return n * 2

    bounded = LaneConfig(priority=1, max_waiting=10, when_full="wait", full_wait_timeout=2.5)
    when_full: Literal["reject", "wait"] = bounded.when_full

    def timing_use() -> int:
        later: CommandHandle[int] = lane.submit_nowait("q", "double", 1, delay=timedelta(seconds=1))
        at: CommandHandle[int] = lane.submit_nowait(
            "q", "double", 1, run_at=datetime.now(timezone.utc), start_within=30
        )
        try:
            lane.submit_nowait("q", "double", 1, start_by=datetime.now(timezone.utc), delay=0.5)
        except LaneFullError as full:
            limit: int = full.limit
            name: str = full.lane
            print(limit, name, full.code)
        except ExpiredError as expired:
            print(expired.code)
        delayed: int = lane.stats().lanes["q"].delayed
        bound: int | None = lane.stats().lanes["q"].max_waiting
        return later.id + at.id + delayed + (bound or 0)

    def key_use() -> bool:
        first: CommandHandle[int] = lane.submit_nowait("q", "double", 1, key="double-1")
        again: CommandHandle[int] = lane.submit_nowait("q", "double", 1, key=None)
        value: int = lane.submit("q", "double", 1, key="double-1")
        for event in lane.events("queue.command.deduplicated"):
            payload: CommandDeduplicatedPayload = event.payload
            key: str = payload["key"]
            holder: int = payload["command_id"]
            print(key, holder, payload["command_type"])
        duplicate: bool = first.is_duplicate or again.is_duplicate
        return duplicate and value > 0

    def schedule_use(client: QueueClient) -> int:
        info: ScheduleInfo = client.put_schedule("tick", "q", "double", 1, every=timedelta(minutes=5))
        nightly: ScheduleInfo = client.put_schedule(
            "nightly", "q", "double", cron="0 3 * * *", time_zone="Europe/Berlin", missed="run_once", jitter=30
        )
        every: timedelta | None = info.every
        at: datetime | None = nightly.next_fire_at
        missed: Literal["skip", "run_once"] = nightly.missed
        listed: list[ScheduleInfo] = client.schedules()
        client.pause_schedule("tick")
        client.resume_schedule("tick")
        removed: bool = client.remove_schedule("tick")
        for fired in client.events("queue.schedule.fired"):
            payload: ScheduleFiredPayload = fired.payload
            instant: int = payload["instant_ms"]
            print(instant, payload["schedule"], payload["command_id"])
        for skipped in client.events("queue.schedule.skipped"):
            gap: ScheduleSkippedPayload = skipped.payload
            print(gap["from_ms"], gap["until_ms"], gap["reason"])
        print(every, at, missed, removed)
        return len(listed) + info.fired + info.skipped

    async def async_key_use() -> bool:
        future: CommandFuture[int] = lane.submit_async("q", "double", 1, key="double-1")
        await future
        return future.is_duplicate

    def sync_use() -> int:
        lane.start()
        handle: CommandHandle[int] = lane.submit_nowait("q", "double", 2)
        result: int = handle.result(timeout=1.0)
        size: int = lane.size
        running: int = lane.running
        lane.pause()
        lane.resume()
        try:
            lane.submit("q", "double", float("nan"))
        except NotJsonError as error:
            where: str = error.path
            code: str = error.code
            print(where, code)
        return result + size + running

    async def async_use() -> str:
        future: CommandFuture[int] = lane.submit_async("q", "double", 1)
        task: asyncio.Task[int] = asyncio.create_task(future)
        value: int = await task
        async with asyncio.TaskGroup() as group:
            other = group.create_task(lane.submit_async("q", "double", 3))
        await lane.on_idle()
        await lane.on_empty()
        await lane.on_size_less_than(10)
        await lane.on_size_less_than(1, "q")
        shared: QueueClient = lane
        await shared.on_size_less_than(5)
        remote: RedisQueue = RedisQueue("redis://127.0.0.1:6379", {"q": LaneConfig(priority=0)})
        await remote.on_size_less_than(100, "q")
        for event in lane.events("queue.command.completed"):
            payload: CommandCompletedPayload = event.payload
            took: float = payload["duration_ms"]
            lane_id: str = payload["lane_id"]
            return f"{value} {other.result()} {took} {lane_id}"
        for expired in lane.events("queue.command.expired"):
            start_by_ms: int = expired.payload["start_by_ms"]
            print(start_by_ms)
        anything = lane.events(["queue.command.started", "queue.command.failed"])
        for some in anything:
            fields: Any = some.payload.get("lane_id")
            print(fields)
        return ""
    """
)

BAD = textwrap.dedent(
    """
    from a3s_lane import CommandHandle, Lane, LaneConfig, RedisQueue

    lane = Lane({"q": LaneConfig(priority=0)})
    handle: CommandHandle[int] = lane.submit_nowait("q", "double", 2)
    wrong: str = handle.result()
    lane.submit_nowait("q", "double", 2, run_at=5)
    LaneConfig(when_full="block")
    lane.on_size_less_than("3")
    RedisQueue("redis://127.0.0.1:6379").on_size_less_than(1, 2)
    lane.submit_nowait("q", "double", 2, key=5)
    flag: str = handle.is_duplicate
    lane.put_schedule("s", "q", "double", every=60, missed="never")
    lane.put_schedule("s", "q", "double", every="60")
    for event in lane.events("queue.command.completed"):
        nope: str = event.payload["duration_ms"]
        missing = event.payload["no_such_field"]
    """
)


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "user_code.py"
    file.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )


def test_user_style_code_passes_mypy_strict(tmp_path: Path) -> None:
    checked = mypy(tmp_path, GOOD)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_mistakes_are_caught(tmp_path: Path) -> None:
    checked = mypy(tmp_path, BAD)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in checked.stdout
    assert 'Incompatible types in assignment (expression has type "float", variable has type "str")' in checked.stdout
    assert '"no_such_field"' in checked.stdout
    assert 'Argument "run_at" to "submit_nowait" of "Lane" has incompatible type "int"' in checked.stdout
    # One method of the shared surface, checked the same on both engines.
    assert 'Argument 1 to "on_size_less_than" of "QueueClient" has incompatible type "str"; expected "int"' in checked.stdout
    assert 'Argument 2 to "on_size_less_than" of "QueueClient" has incompatible type "int"; expected "str | None"' in checked.stdout
    assert 'Argument "when_full" to "LaneConfig" has incompatible type' in checked.stdout
    assert 'Argument "key" to "submit_nowait" of "Lane" has incompatible type "int"; expected "str | None"' in checked.stdout
    assert 'Incompatible types in assignment (expression has type "bool", variable has type "str")' in checked.stdout
    assert 'Argument "missed" to "put_schedule" of "QueueClient" has incompatible type' in checked.stdout
    assert 'Argument "every" to "put_schedule" of "QueueClient" has incompatible type "str"' in checked.stdout
