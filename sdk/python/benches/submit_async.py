"""100,000 `submit_async` calls of an `async def` no-op handler, against pure asyncio.

Both sides do the same work in the same process and the same run, on one event loop:

- a3s_lane: one lane (max_concurrency=WORKERS), the lane started inside the loop so
  its async handler runs there; every command is submitted with `submit_async`.
- baseline: an `asyncio.PriorityQueue` of (priority, seq, payload, future) feeding
  WORKERS worker tasks that await the same handler and settle each future (result or
  exception); `submit` puts an item and returns its future.

Two submission patterns (`--pattern`): `gather` submits all N at once and awaits them
with one `asyncio.gather` (N commands pending at once); `clients` runs WORKERS client
tasks that each submit and await N / WORKERS commands one after another (request
handlers awaiting their own commands; at most WORKERS pending).

Rounds alternate between the two; the figure is the median of each side's rounds and
their ratio (a3s_lane throughput / baseline throughput; >= 1.0 means at least as fast).
Wall-clock throughput is the figure; throughput per CPU-second of the whole process (all
threads) is printed too, as it is less disturbed by other load on the machine.

    python benches/submit_async.py            # 100,000 commands, 5 rounds each
    python benches/submit_async.py --pattern clients
    python benches/submit_async.py --n 20000 --rounds 3 --workers 64
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from a3s_lane import Lane, LaneConfig


async def noop(payload: Any) -> Any:
    return None


class Timing:
    """Wall-clock and process CPU seconds of one round."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


async def submit_all(submit: Callable[[int], Awaitable[Any]], n: int, clients: int, pattern: str) -> list[Any]:
    """Submits n commands in the given pattern and returns their results."""
    if pattern == "gather":
        return await asyncio.gather(*(submit(i) for i in range(n)))

    async def client(first: int, count: int) -> list[Any]:
        return [await submit(i) for i in range(first, first + count)]

    per_client = n // clients
    batches = await asyncio.gather(*(client(c * per_client, per_client) for c in range(clients)))
    return [result for batch in batches for result in batch]


async def run_baseline(n: int, workers: int, pattern: str) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    queue: asyncio.PriorityQueue[tuple[int, int, Any, asyncio.Future[Any]]] = (
        asyncio.PriorityQueue()
    )
    sequence = itertools.count()

    async def worker() -> None:
        while True:
            _, _, payload, future = await queue.get()
            try:
                result = await noop(payload)
            except BaseException as error:  # noqa: BLE001 - same work as the queue
                if not future.cancelled():
                    future.set_exception(error)
            else:
                if not future.cancelled():
                    future.set_result(result)

    def submit(priority: int, payload: Any) -> asyncio.Future[Any]:
        future = loop.create_future()
        queue.put_nowait((priority, next(sequence), payload, future))
        return future

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)
    timing = Timing()
    results = await submit_all(lambda i: submit(2, {"i": i}), n, workers, pattern)
    elapsed = timing.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(results) == n
    return elapsed


async def run_lane(n: int, workers: int, pattern: str) -> tuple[float, float]:
    lane = Lane({"bench": LaneConfig(priority=2, max_concurrency=workers)})
    lane.register_handler("noop", noop)
    lane.start()
    timing = Timing()
    results = await submit_all(lambda i: lane.submit_async("bench", "noop", {"i": i}), n, workers, pattern)
    elapsed = timing.stop()
    assert len(results) == n // workers * workers if pattern == "clients" else len(results) == n
    assert results[-1] is None
    lane.shutdown()
    await lane.drain_async(timeout=30.0)
    return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="commands per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side")
    parser.add_argument("--workers", type=int, default=100, help="concurrency of both sides")
    parser.add_argument("--pattern", choices=["gather", "clients"], default="gather")
    args = parser.parse_args()

    # Warm up both paths (imports, allocator, the runtime's threads).
    await run_lane(min(args.n, 5_000), args.workers, args.pattern)
    await run_baseline(min(args.n, 5_000), args.workers, args.pattern)

    lane_times: list[tuple[float, float]] = []
    base_times: list[tuple[float, float]] = []
    for round_ in range(args.rounds):
        sides = [("a3s_lane", run_lane, lane_times), ("asyncio", run_baseline, base_times)]
        if round_ % 2:
            sides.reverse()
        for name, run, times in sides:
            gc.collect()
            wall, cpu = await run(args.n, args.workers, args.pattern)
            times.append((wall, cpu))
            print(
                f"round {round_ + 1} {name:>8}: {args.n / wall:>10,.0f} commands/s, "
                f"{args.n / cpu:>10,.0f} per CPU-second",
                file=sys.stderr,
            )

    def rates(times: list[tuple[float, float]]) -> tuple[float, float]:
        return (
            args.n / statistics.median(wall for wall, _ in times),
            args.n / statistics.median(cpu for _, cpu in times),
        )

    lane_wall, lane_cpu = rates(lane_times)
    base_wall, base_cpu = rates(base_times)
    print(
        f"submit_async x {args.n:,} ({args.pattern}, async def no-op, concurrency {args.workers}, median of "
        f"{args.rounds}): a3s_lane {lane_wall:,.0f}/s, asyncio PriorityQueue {base_wall:,.0f}/s, "
        f"ratio {lane_wall / base_wall:.2f}x (per CPU-second: {lane_cpu:,.0f} vs {base_cpu:,.0f}, "
        f"{lane_cpu / base_cpu:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
