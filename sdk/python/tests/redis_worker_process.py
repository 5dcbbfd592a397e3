"""A RedisWorker in a process of its own, for the cross-process tests.

    python redis_worker_process.py REDIS_URL KEY_PREFIX [LEASE_TTL_SECONDS]

Prints `ready <pid>` once the worker is registered, runs commands until its standard
input is closed, then shuts the worker down and prints `stopped`.
"""

from __future__ import annotations

import asyncio
import os
import sys

from a3s_lane import CommandContext, RedisQueue, RedisWorker


def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    lease_ttl = float(sys.argv[3]) if len(sys.argv) > 3 else None
    queue = RedisQueue(url, key_prefix=prefix)
    worker = RedisWorker(queue, slots=4, worker_id=f"subprocess-{os.getpid()}", lease_ttl=lease_ttl)

    @worker.handler("whoami")
    def whoami(payload: object, ctx: CommandContext) -> dict[str, object]:
        return {"pid": os.getpid(), "payload": payload, "lane": ctx.lane}

    @worker.handler("fail")
    def fail(payload: str) -> None:
        raise KeyError(payload)

    @worker.handler("wait_for_cancel")
    async def wait_for_cancel(payload: None) -> str:
        print("handler started", flush=True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("handler cancelled", flush=True)
            raise
        return "not cancelled"

    worker.start()
    print("ready", os.getpid(), flush=True)
    sys.stdin.read()
    worker.shutdown(timeout=30)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
