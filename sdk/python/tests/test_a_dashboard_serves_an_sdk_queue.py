"""`serve_dashboard()` serves the web dashboard of a Lane or a RedisQueue in the
background: its JSON API lists the lanes, an action needs the bearer token (without it
the lane stays as it was), `/metrics` is Prometheus text, read-only refuses every action,
and once closed (by `close()`, the context manager, `shutdown()` or the queue being
collected) the port no longer answers. Bad arguments are ConfigError / TypeError, a port
in use an OSError naming the address.

The Redis test needs a Redis server (A3S_LANE_REDIS_URL)."""

from __future__ import annotations

import gc
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from a3s_lane import ConfigError, Dashboard, Lane, LaneConfig, RedisQueue, RedisWorker, ShutdownError
from conftest import wait_for


def request(url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, str, str]:
    """The status, content type and body of one request (errors included)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = b"" if method == "POST" else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def answers(url: str) -> bool:
    """Whether anything accepts a connection at the dashboard's address."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False


def started_lane(**options: object) -> Lane:
    lane = Lane({"jobs": LaneConfig(priority=1), "bulk": LaneConfig(priority=5)}, **options)  # type: ignore[arg-type]

    @lane.handler("double")
    def double(payload: int) -> int:
        return payload * 2

    lane.start()
    return lane


def test_a_lane_s_dashboard_lists_lanes_and_acts_only_with_the_token(capfd: pytest.CaptureFixture[str]) -> None:
    lane = started_lane(metrics=True)
    assert lane.submit("jobs", "double", 21) == 42
    dashboard = lane.serve_dashboard(port=0, title="orders")
    assert isinstance(dashboard, Dashboard)
    assert dashboard.url.startswith("http://127.0.0.1:") and dashboard.url.endswith("/")
    assert dashboard.token is not None and len(dashboard.token) >= 32
    assert dashboard.token not in dashboard.url and dashboard.token not in repr(dashboard)
    assert not dashboard.closed
    printed = capfd.readouterr()
    assert dashboard.token not in printed.out and dashboard.token not in printed.err

    status, content_type, body = request(dashboard.url + "api/lanes")
    assert status == 200 and content_type.startswith("application/json")
    lanes = json.loads(body)["lanes"]
    assert sorted(view["id"] for view in lanes) == ["bulk", "jobs"]
    jobs = next(view for view in lanes if view["id"] == "jobs")
    assert jobs["paused"] is False
    assert "metrics" in jobs  # Lane(metrics=True) reaches the dashboard

    status, _, overview = request(dashboard.url + "api/overview")
    assert status == 200 and json.loads(overview)["title"] == "orders"

    # An action without the token, or with a wrong one, is refused and changes nothing.
    pause = dashboard.url + "api/lanes/jobs/pause"
    assert request(pause, method="POST")[0] == 401
    assert request(pause, method="POST", token="not-the-token")[0] == 401
    assert lane.stats().lanes["jobs"].paused is False
    # A GET of an action is not allowed either.
    assert request(pause)[0] == 405

    status, _, body = request(pause, method="POST", token=dashboard.token)
    assert status == 200 and json.loads(body) == {"lane": "jobs", "paused": True}
    assert lane.stats().lanes["jobs"].paused is True
    assert lane.stats().lanes["bulk"].paused is False
    status, _, _ = request(dashboard.url + "api/lanes/jobs/resume", method="POST", token=dashboard.token)
    assert status == 200 and lane.stats().lanes["jobs"].paused is False

    status, content_type, metrics = request(dashboard.url + "metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'a3s_lane_lane_pending{lane="jobs"}' in metrics
    assert "# TYPE" in metrics
    assert "lane_commands_completed_total" in metrics  # the queue's own metrics series

    url = dashboard.url
    dashboard.close()
    assert dashboard.closed and not answers(url)
    dashboard.close()  # again: nothing to do
    lane.shutdown()


def test_read_only_refuses_every_action_whatever_the_token() -> None:
    lane = started_lane()
    with lane.serve_dashboard(port=0, read_only=True) as dashboard:
        # A token is generated in read-only mode too: it unlocks payloads and results.
        assert isinstance(dashboard.token, str) and len(dashboard.token) >= 32
        assert request(dashboard.url + "api/lanes")[0] == 200
        for path in ["api/lanes/jobs/pause", "api/lanes/bulk/resume", "api/dead-letters/purge", "api/commands/1/cancel"]:
            assert request(dashboard.url + path, method="POST")[0] == 403, path
            assert request(dashboard.url + path, method="POST", token="anything")[0] == 403, path
    with lane.serve_dashboard(port=0, read_only=True, token="a-secret-of-ours") as dashboard:
        assert dashboard.token == "a-secret-of-ours"
        status, _, _ = request(dashboard.url + "api/lanes/jobs/pause", method="POST", token="a-secret-of-ours")
        assert status == 403
    assert lane.stats().lanes["jobs"].paused is False
    assert dashboard.closed and not answers(dashboard.url)
    lane.shutdown()


def test_a_read_only_dashboard_shows_a_dead_letter_s_payload_only_with_its_token() -> None:
    lane = Lane({"jobs": LaneConfig(priority=1)}, dead_letters=10)

    @lane.handler("charge")
    def charge(payload: dict[str, str]) -> None:
        raise RuntimeError("gateway down")

    lane.start()
    with pytest.raises(RuntimeError):
        lane.submit("jobs", "charge", {"card": "4111-secret"})
    [letter] = lane.dead_letters()
    with lane.serve_dashboard(port=0, read_only=True) as dashboard:
        url = f"{dashboard.url}api/dead-letters/{letter.command_id}"
        status, _, body = request(url)
        assert status == 200, body
        assert "4111-secret" not in body
        assert json.loads(body)["payload_hidden"] is True
        status, _, body = request(url, token=dashboard.token)
        assert status == 200, body
        assert json.loads(body)["payload"] == {"card": "4111-secret"}
    lane.shutdown()


def test_another_host_is_refused() -> None:
    lane = started_lane()
    with lane.serve_dashboard(port=0) as dashboard:
        host, port = dashboard.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        for name, expected in [("evil.example", 421), ("localhost", 200), (host, 200)]:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", "/api/lanes", headers={"Host": f"{name}:{port}"})
            response = connection.getresponse()
            response.read()
            connection.close()
            assert response.status == expected, name
    lane.shutdown()


def test_a_given_token_is_the_one_actions_need() -> None:
    lane = started_lane()
    with lane.serve_dashboard(port=0, token="a-long-random-secret") as dashboard:
        assert dashboard.token == "a-long-random-secret"
        pause = dashboard.url + "api/lanes/bulk/pause"
        assert request(pause, method="POST", token="another")[0] == 401
        assert request(pause, method="POST", token="a-long-random-secret")[0] == 200
        assert lane.stats().lanes["bulk"].paused is True
    lane.shutdown()


def test_shutdown_and_collection_close_the_dashboards() -> None:
    lane = started_lane()
    first = lane.serve_dashboard(port=0)
    second = lane.serve_dashboard(port=0)
    assert first.url != second.url and answers(first.url) and answers(second.url)
    lane.shutdown()
    assert first.closed and second.closed
    assert not answers(first.url) and not answers(second.url)
    with pytest.raises(ShutdownError):
        lane.serve_dashboard(port=0)

    def serve_and_forget() -> Dashboard:
        return Lane().serve_dashboard(port=0)

    dashboard = serve_and_forget()
    gc.collect()
    wait_for(lambda: dashboard.closed, timeout=10)
    assert not answers(dashboard.url)


def test_close_ends_open_event_streams_at_once() -> None:
    lane = started_lane()
    dashboard = lane.serve_dashboard(port=0)
    host, port = dashboard.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
    assert response.readline().startswith(b"event:")  # the first `stats` message, at once
    started = time.monotonic()
    dashboard.close()  # does not wait for the page to go away
    assert time.monotonic() - started < 5
    rest = b""
    try:
        while chunk := response.read1(65536):
            rest += chunk
    except (ConnectionError, http.client.IncompleteRead):
        pass
    assert not answers(dashboard.url)
    connection.close()
    lane.shutdown()


def test_bad_arguments_say_what_to_give() -> None:
    lane = Lane()
    bad: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: lane.serve_dashboard(port=65536), ConfigError, "port must be from 0 to 65535"),
        (lambda: lane.serve_dashboard(port=-1), ConfigError, "port must be from 0 to 65535"),
        (lambda: lane.serve_dashboard(port="9090"), TypeError, "port must be an int"),  # type: ignore[arg-type]
        (lambda: lane.serve_dashboard(port=True), TypeError, "port must be an int"),
        (lambda: lane.serve_dashboard(host="localhost"), ConfigError, "host must be an IP address"),
        (lambda: lane.serve_dashboard(host=127), TypeError, "host must be a str"),  # type: ignore[arg-type]
        (lambda: lane.serve_dashboard(token=""), ConfigError, "token must not be empty"),
        (lambda: lane.serve_dashboard(token=b"x"), TypeError, "token must be a str"),  # type: ignore[arg-type]
        (lambda: lane.serve_dashboard(read_only=1), TypeError, "read_only must be True or False"),  # type: ignore[arg-type]
        (lambda: lane.serve_dashboard(title=3), TypeError, "title must be a str"),  # type: ignore[arg-type]
        (lambda: lane.serve_dashboard(0), TypeError, "positional"),  # type: ignore[call-arg, arg-type]
    ]
    for call, error, words in bad:
        with pytest.raises(error, match=words):
            call()

    # A port in use: an OSError naming the address, and what to do.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*port=0"):
            lane.serve_dashboard(port=port)


def test_a_redis_queue_s_dashboard_shows_and_pauses_its_lanes(queues: Callable[..., RedisQueue]) -> None:
    queue = queues({"jobs": LaneConfig(priority=1), "bulk": LaneConfig(priority=5)})
    worker = RedisWorker(queue, slots=2)

    @worker.handler("double")
    def double(payload: int) -> int:
        return payload * 2

    worker.start()
    try:
        assert queue.submit("jobs", "double", 4).result(timeout=30) == 8
        with queue.serve_dashboard(port=0) as dashboard:
            status, _, body = request(dashboard.url + "api/lanes")
            assert status == 200
            assert sorted(view["id"] for view in json.loads(body)["lanes"]) == ["bulk", "jobs"]
            pause = dashboard.url + "api/lanes/jobs/pause"
            assert request(pause, method="POST")[0] == 401
            assert queue.stats().lanes["jobs"].paused is False
            assert request(pause, method="POST", token=dashboard.token)[0] == 200
            assert queue.stats().lanes["jobs"].paused is True
            status, content_type, metrics = request(dashboard.url + "metrics")
            assert status == 200 and content_type.startswith("text/plain")
            assert 'a3s_lane_lane_paused{lane="jobs"} 1' in metrics
            queue.resume_lane("jobs")
        assert not answers(dashboard.url)
    finally:
        worker.shutdown(timeout=10)
