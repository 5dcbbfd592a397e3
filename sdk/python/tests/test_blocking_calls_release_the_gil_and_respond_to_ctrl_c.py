"""Blocking calls wait without the GIL (other Python threads keep running) and return
to Python on Ctrl-C: the interrupted submit cancels its command."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

from a3s_lane import Lane, LaneConfig


def test_a_blocking_submit_lets_other_threads_run_python() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})
    gate = threading.Event()

    @lane.handler("wait")
    def wait(payload: object) -> str:
        assert gate.wait(30)
        return "released"

    lane.start()
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(lane.submit("q", "wait")))
    caller.start()
    # This thread needs the GIL to compute and to open the gate; a submit that held it
    # while waiting would deadlock here.
    total = sum(i * i for i in range(200_000))
    gate.set()
    caller.join(30)
    assert not caller.is_alive()
    assert results == ["released"] and total > 0


# The child installs Python's Ctrl-C handler itself: a process started in the background
# by a non-interactive shell (`cmd &`) inherits SIGINT as ignored, and Python then leaves
# it ignored, so the signal would never reach the blocking call under test.
CHILD = """
import signal
import threading
from a3s_lane import CancelledError, Lane, LaneConfig

signal.signal(signal.SIGINT, signal.default_int_handler)

lane = Lane({"q": LaneConfig(priority=0)})
started = threading.Event()
stopped = threading.Event()

@lane.handler("forever")
def forever(payload, ctx):
    started.set()
    while not ctx.is_cancelled():
        threading.Event().wait(0.01)
    stopped.set()

lane.start()
threading.Thread(target=lambda: (started.wait(), print("running", flush=True)), daemon=True).start()
try:
    lane.submit("q", "forever")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    print("handler stopped" if stopped.wait(10) else "handler still running", flush=True)
"""


def test_ctrl_c_interrupts_a_blocking_submit_and_cancels_its_command() -> None:
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD)], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "running"
            child.send_signal(signal.SIGINT)
            out, _ = child.communicate(timeout=30)
        finally:
            child.kill()
    assert out.split() == ["interrupted", "handler", "stopped"]
    assert child.returncode == 0
