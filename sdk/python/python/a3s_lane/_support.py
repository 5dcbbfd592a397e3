"""Pure-Python helpers of the native module (private)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any


def describe_handler(func: Any, command_type: str) -> tuple[bool, bool]:
    """Returns (is_async, takes_context) for a handler, or raises TypeError."""
    target = func
    if not (inspect.isfunction(func) or inspect.ismethod(func)) and not inspect.isbuiltin(func):
        call = getattr(type(func), "__call__", None)
        if call is not None and inspect.iscoroutinefunction(call):
            target = call
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(target)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return is_async, False
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [
        p.name
        for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    usage = "a handler takes (payload) or (payload, context)"
    if keyword_only:
        raise TypeError(
            f"handler for {command_type!r} has required keyword-only parameters "
            f"{keyword_only}; {usage}"
        )
    if len(required) > 2:
        raise TypeError(
            f"handler for {command_type!r} requires {len(required)} arguments; {usage}"
        )
    if not positional and not varargs:
        raise TypeError(f"handler for {command_type!r} takes no arguments; {usage}")
    return is_async, len(positional) >= 2 or varargs


class LoopThread:
    """An event loop on a daemon thread, for async handlers of a lane started outside
    any running loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name="a3s-lane-asyncio", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(
                        asyncio.gather(*tasks, return_exceptions=True)
                    )
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
