"""Per-command cost in three submission patterns, each side by side with an asyncio
baseline doing the same work in the same run (an `async def` no-op handler).

- shallow: 64 clients, each submitting one command and awaiting it before the next
  (never more than 64 pending), each command in a lane of random priority;
- burst: 20,000 commands submitted at once, then awaited with one `asyncio.gather`;
- deep: a backlog of 20,000 commands of mixed priorities queued while the queue is
  paused, then released and awaited.

a3s_lane: four lanes (priorities 0..3) under a global budget of WORKERS, started in the
loop. Baseline: an `asyncio.PriorityQueue` of (priority, seq, payload, future) feeding
WORKERS worker tasks (`pause` = workers not started yet). Rounds alternate which side
goes first; figures are medians, and ratio = a3s_lane / asyncio (>= 1.0: as fast).

Measure the release build: `sdk/python/scripts/bench.sh` (a separate virtualenv with
`maturin develop --release`). The debug build of `scripts/test.sh` is several times
slower and its figures mean nothing.

    python benches/patterns.py                 # every pattern, 5 rounds each
    python benches/patterns.py --pattern burst --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from a3s_lane import Lane, LaneConfig

PRIORITIES = 4
CLIENTS = 64


async def noop(payload: Any) -> Any:
    return None


Submit = Callable[[int, int], Awaitable[Any]]


async def drive(pattern: str, n: int, submit: Submit, release: Callable[[], None]) -> int:
    """Submits n commands in `pattern` and awaits them; returns how many finished."""
    rng = random.Random(7)
    if pattern == "shallow":

        async def client(count: int) -> int:
            for i in range(count):
                await submit(rng.randrange(PRIORITIES), i)
            return count

        release()
        return sum(await asyncio.gather(*(client(n // CLIENTS) for _ in range(CLIENTS))))
    if pattern == "burst":
        release()
        return len(await asyncio.gather(*(submit(rng.randrange(PRIORITIES), i) for i in range(n))))
    # deep: the whole backlog first, then the queue is released.
    futures = [submit(rng.randrange(PRIORITIES), i) for i in range(n)]
    release()
    return len(await asyncio.gather(*futures))


async def run_baseline(pattern: str, n: int, workers: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    queue: asyncio.PriorityQueue[tuple[int, int, Any, asyncio.Future[Any]]] = asyncio.PriorityQueue()
    sequence = itertools.count()
    tasks: list[asyncio.Task[None]] = []

    async def worker() -> None:
        while True:
            _, _, payload, future = await queue.get()
            try:
                result = await noop(payload)
            except BaseException as error:  # noqa: BLE001 - the same work as the queue
                if not future.cancelled():
                    future.set_exception(error)
            else:
                if not future.cancelled():
                    future.set_result(result)

    def submit(priority: int, i: int) -> asyncio.Future[Any]:
        future = loop.create_future()
        queue.put_nowait((priority, next(sequence), {"i": i}, future))
        return future

    def release() -> None:
        tasks.extend(asyncio.create_task(worker()) for _ in range(workers))

    began = time.perf_counter()
    done = await drive(pattern, n, submit, release)
    elapsed = time.perf_counter() - began
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed, done


async def run_lane(pattern: str, n: int, workers: int) -> tuple[float, int]:
    lanes = {f"p{p}": LaneConfig(priority=p, max_concurrency=workers) for p in range(PRIORITIES)}
    lane = Lane(lanes, max_concurrency=workers)
    lane.register_handler("noop", noop)
    lane.start()
    lane.pause()

    def submit(priority: int, i: int) -> Awaitable[Any]:
        return lane.submit_async(f"p{priority}", "noop", {"i": i})

    began = time.perf_counter()
    done = await drive(pattern, n, submit, lane.resume)
    elapsed = time.perf_counter() - began
    lane.shutdown()
    await lane.drain_async(timeout=60.0)
    return elapsed, done


async def measure(pattern: str, n: int, rounds: int, workers: int) -> tuple[float, float]:
    await run_lane(pattern, min(n, 2_000), workers)  # warm up both paths
    await run_baseline(pattern, min(n, 2_000), workers)
    times: dict[str, list[float]] = {"a3s_lane": [], "asyncio": []}
    sides: list[tuple[str, Callable[[str, int, int], Awaitable[tuple[float, int]]]]] = [
        ("a3s_lane", run_lane),
        ("asyncio", run_baseline),
    ]
    for round_ in range(rounds):
        for name, run in sides if round_ % 2 == 0 else sides[::-1]:
            gc.collect()
            elapsed, done = await run(pattern, n, workers)
            times[name].append(elapsed / done)
            print(f"{pattern:>7} round {round_ + 1} {name:>8}: {done / elapsed:>10,.0f} commands/s", file=sys.stderr)
    return 1 / statistics.median(times["a3s_lane"]), 1 / statistics.median(times["asyncio"])


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pattern", choices=["shallow", "burst", "deep", "all"], default="all")
    parser.add_argument("--n", type=int, default=20_000, help="commands per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side")
    parser.add_argument("--workers", type=int, default=64, help="concurrency of both sides")
    args = parser.parse_args()
    patterns = ["shallow", "burst", "deep"] if args.pattern == "all" else [args.pattern]
    rows = [(p, *await measure(p, args.n, args.rounds, args.workers)) for p in patterns]
    print(f"{'pattern':<8} {'a3s_lane/s':>12} {'asyncio/s':>12} {'ratio':>6}")
    for pattern, lane_rate, base_rate in rows:
        print(f"{pattern:<8} {lane_rate:>12,.0f} {base_rate:>12,.0f} {lane_rate / base_rate:>5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
