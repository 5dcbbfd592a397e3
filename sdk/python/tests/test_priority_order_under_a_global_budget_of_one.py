"""With a global budget of one slot, waiting commands start strictly by lane priority
(lower first) and in submission order inside a lane, whatever order they arrived in."""

from __future__ import annotations

import asyncio
import threading

from a3s_lane import Lane, LaneConfig


def make_lane() -> Lane:
    return Lane(
        {
            "urgent": LaneConfig(priority=0, min_concurrency=0, max_concurrency=4),
            "normal": LaneConfig(priority=3, min_concurrency=0, max_concurrency=4),
            "batch": LaneConfig(priority=7, min_concurrency=0, max_concurrency=4),
        },
        max_concurrency=1,
    )


def test_plain_handlers_start_by_priority_then_fifo() -> None:
    lane = make_lane()
    started = threading.Event()
    gate = threading.Event()
    order: list[str] = []

    @lane.handler("block")
    def block(payload: object) -> None:
        started.set()
        assert gate.wait(30)

    @lane.handler("record")
    def record(payload: str) -> str:
        order.append(payload)
        return payload

    lane.start()
    blocker = lane.submit_nowait("batch", "block")
    assert started.wait(30)
    arrivals = ["batch", "normal", "urgent", "batch", "urgent", "normal", "batch", "urgent"]
    handles = [lane.submit_nowait(name, "record", f"{name}-{i}") for i, name in enumerate(arrivals)]
    assert lane.stats().total_pending == len(arrivals)
    gate.set()
    assert [h.result(timeout=30) for h in handles] == [f"{n}-{i}" for i, n in enumerate(arrivals)]
    blocker.result(timeout=30)
    assert order == [
        "urgent-2",
        "urgent-4",
        "urgent-7",
        "normal-1",
        "normal-5",
        "batch-0",
        "batch-3",
        "batch-6",
    ]


def test_async_handlers_start_by_priority_then_fifo() -> None:
    async def main() -> list[str]:
        lane = make_lane()
        started = asyncio.Event()
        gate = asyncio.Event()
        order: list[str] = []

        @lane.handler("block")
        async def block(payload: object) -> None:
            started.set()
            await gate.wait()

        @lane.handler("record")
        async def record(payload: str) -> None:
            order.append(payload)

        lane.start()
        blocker = lane.submit_async("batch", "block")
        await started.wait()
        futures = [
            lane.submit_async(name, "record", f"{name}-{i}")
            for i, name in enumerate(["batch", "urgent", "normal", "urgent", "batch"])
        ]
        gate.set()
        await asyncio.gather(blocker, *futures)
        return order

    assert asyncio.run(main()) == ["urgent-1", "urgent-3", "normal-2", "batch-0", "batch-4"]


def test_a_reserved_slot_lets_a_low_priority_lane_run_beside_a_busy_urgent_one() -> None:
    lane = Lane(
        {
            "control": LaneConfig(priority=0, min_concurrency=0, max_concurrency=2),
            "prompt": LaneConfig(priority=5, min_concurrency=1, max_concurrency=1),
        },
        max_concurrency=2,
    )
    gate = threading.Event()
    running: set[str] = set()
    both = threading.Event()
    lock = threading.Lock()

    @lane.handler("hold")
    def hold(payload: str) -> None:
        with lock:
            running.add(payload)
            if {"control-0", "prompt-0"} <= running:
                both.set()
        assert gate.wait(30)

    lane.start()
    handles = [lane.submit_nowait("control", "hold", f"control-{i}") for i in range(3)]
    handles.append(lane.submit_nowait("prompt", "hold", "prompt-0"))
    # The shared slot goes to control, the reserved one stays with prompt.
    assert both.wait(30)
    stats = lane.stats()
    assert stats.lanes["control"].active == 1
    assert stats.lanes["prompt"].active == 1
    gate.set()
    for handle in handles:
        handle.result(timeout=30)
