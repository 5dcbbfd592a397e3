"""Payloads and results cross the queue as JSON; a value JSON cannot hold is refused
with a NotJsonError (code "NOT_JSON", also a TypeError and a ValueError) whose `path`
says where it is, like `payload.items[3].x` (the same rule and format as the Node SDK,
see sdk/python/README.md). A handler's raised exception reaches the submitter itself."""

from __future__ import annotations

import math
from typing import Any

import pytest

from a3s_lane import Lane, LaneConfig, LaneError, NotJsonError


@pytest.fixture
def lane() -> Lane:
    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("echo")
    def echo(payload: Any) -> Any:
        return payload

    @lane.handler("returns")
    def returns(what: str) -> Any:
        return {"ok": [1, {"bad": {"nan": math.nan, "set": {1}, "bytes": b"x"}[what]}]}

    @lane.handler("raises")
    def raises(_: None) -> None:
        raise KeyError("missing")

    lane.start()
    return lane


@pytest.mark.parametrize(
    ("payload", "path", "detail"),
    [
        ({"items": [0, 1, 2, {"x": math.nan}]}, "payload.items[3].x", "the float nan"),
        ({"x": math.inf}, "payload.x", "the float inf"),
        ([-math.inf], "payload[0]", "the float -inf"),
        ({"my key": {1, 2}}, 'payload["my key"]', "a value of type 'set'"),
        ({"k": {1: "a"}}, "payload.k", "it has a key of type 'int'"),
        ({"raw": b"bytes"}, "payload.raw", "a value of type 'bytes'"),
        ({"big": 2**64}, "payload.big", "does not fit in 64 bits"),
        (object(), "payload", "a value of type 'object'"),
    ],
)
def test_a_payload_json_cannot_hold_is_refused_at_submit(lane: Lane, payload: Any, path: str, detail: str) -> None:
    with pytest.raises(NotJsonError) as raised:
        lane.submit("q", "echo", payload)
    error = raised.value
    assert (error.code, error.path) == ("NOT_JSON", path)
    assert str(error).startswith(f"{path} is not JSON: ")
    assert detail in str(error)
    assert isinstance(error, LaneError) and isinstance(error, TypeError) and isinstance(error, ValueError)
    assert lane.stats().total_pending == 0, "nothing was queued"


@pytest.mark.parametrize(("what", "detail"), [("nan", "nan"), ("set", "'set'"), ("bytes", "'bytes'")])
def test_a_result_json_cannot_hold_fails_the_command_for_good(lane: Lane, what: str, detail: str) -> None:
    with pytest.raises(NotJsonError) as raised:
        lane.submit("q", "returns", what)
    assert raised.value.path == "result.ok[1].bad"
    assert "handler 'returns' returned result.ok[1].bad is not JSON" in str(raised.value)
    assert detail in str(raised.value)


def test_a_raised_exception_reaches_the_submitter_itself(lane: Lane) -> None:
    with pytest.raises(KeyError, match="missing"):
        lane.submit("q", "raises")
