"""A handler's exception reaches whoever waits for the command as that very exception
object, with the handler's frames in its traceback, through every submit API; queue
errors raise the LaneError hierarchy."""

from __future__ import annotations

import asyncio
import traceback

import pytest

import a3s_lane
from a3s_lane import Lane, LaneConfig


class PaymentDeclined(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"declined with code {code}")
        self.code = code


def frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


def make_lane(raised: list[BaseException]) -> Lane:
    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("sync_charge")
    def sync_charge(payload: int) -> None:
        error = PaymentDeclined(payload)
        raised.append(error)
        raise error

    @lane.handler("async_charge")
    async def async_charge(payload: int) -> None:
        await asyncio.sleep(0)
        error = PaymentDeclined(payload)
        raised.append(error)
        raise error

    return lane


@pytest.mark.parametrize("command_type", ["sync_charge", "async_charge"])
def test_blocking_submit_raises_the_handlers_own_exception(command_type: str) -> None:
    raised: list[BaseException] = []
    lane = make_lane(raised)
    lane.start()
    with pytest.raises(PaymentDeclined) as caught:
        lane.submit("q", command_type, 51)
    assert caught.value is raised[0]
    assert caught.value.code == 51
    assert command_type in frames(caught.value)


@pytest.mark.parametrize("command_type", ["sync_charge", "async_charge"])
def test_awaited_submit_raises_the_handlers_own_exception(command_type: str) -> None:
    async def main() -> None:
        raised: list[BaseException] = []
        lane = make_lane(raised)
        lane.start()
        with pytest.raises(PaymentDeclined) as caught:
            await lane.submit_async("q", command_type, 7)
        assert caught.value is raised[0]
        assert command_type in frames(caught.value)
        handle = lane.submit_nowait("q", command_type, 8)
        with pytest.raises(PaymentDeclined) as again:
            await handle
        assert again.value is raised[1]

    asyncio.run(main())


def test_a_handle_raises_the_exception_to_every_waiter() -> None:
    raised: list[BaseException] = []
    lane = make_lane(raised)
    lane.start()
    handle = lane.submit_nowait("q", "sync_charge", 3)
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as caught:
            handle.result(timeout=10)
        assert caught.value is raised[0]
    assert handle.done()


def test_a_result_that_is_not_json_fails_with_a_type_error_naming_the_handler() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})

    @lane.handler("sets")
    def sets(payload: object) -> object:
        return {"tags": {"a", "b"}}

    lane.start()
    with pytest.raises(TypeError, match=r"handler 'sets' returned result\.tags is not JSON"):
        lane.submit("q", "sets")


def test_a_plain_handler_that_returns_a_coroutine_is_told_to_use_async_def() -> None:
    lane = Lane({"q": LaneConfig(priority=0)})

    async def inner() -> int:
        return 1

    def wrapper(payload: object) -> object:
        return inner()

    lane.register_handler("wrapped", wrapper)
    lane.start()
    with pytest.raises(TypeError, match="async def"):
        lane.submit("q", "wrapped")


def test_queue_errors_form_a_hierarchy_under_lane_error() -> None:
    assert issubclass(a3s_lane.LaneNotFoundError, LookupError)
    assert issubclass(a3s_lane.HandlerNotFoundError, LookupError)
    assert issubclass(a3s_lane.ConfigError, ValueError)
    assert issubclass(a3s_lane.CommandTimeoutError, TimeoutError)
    for error in (
        a3s_lane.LaneNotFoundError,
        a3s_lane.HandlerNotFoundError,
        a3s_lane.ConfigError,
        a3s_lane.CommandTimeoutError,
        a3s_lane.CancelledError,
        a3s_lane.ShutdownError,
        a3s_lane.StorageError,
        a3s_lane.CommandError,
    ):
        assert issubclass(error, a3s_lane.LaneError)
        assert error.__module__ == "a3s_lane"
    assert not issubclass(a3s_lane.CancelledError, asyncio.CancelledError)

    lane = Lane()
    lane.register_handler("anything", print)
    lane.start()
    with pytest.raises(a3s_lane.LaneNotFoundError, match="lane 'promt' not found; known lanes: system, control"):
        lane.submit("promt", "anything")
    with pytest.raises(a3s_lane.HandlerNotFoundError, match="no handler registered for command type 'nope'"):
        lane.submit("prompt", "nope")
