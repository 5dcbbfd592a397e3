"""A RedisQueue over TLS with an ACL user and a client certificate, behind Redis
Sentinel, and across a restart of Redis itself: servers of the test's own (redis-server
with TLS or AOF, a sentinel), certificates made with openssl. Passwords never appear in
errors. The same stem in the Node suite checks the same things."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from a3s_lane import ConfigError, LaneConfig, RedisQueue, RedisWorker, StorageError

PASSWORD = "py-s3cret-Pa55"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not on the PATH: these tests start their own servers; install it "
            "(Debian: apt-get install redis-server openssl) or run scripts/test.sh",
            pytrace=False,
        )
    return path


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout} s") from None
            time.sleep(0.02)


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run([_need("openssl"), *args], cwd=directory, check=True, capture_output=True)


def _certificates(directory: Path) -> None:
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=a3s-lane py test CA")
    for name in ("server", "client"):
        _openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}")
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="a3s-lane-py-") as name:
        yield Path(name)


@pytest.fixture
def tls_server(workdir: Path) -> Iterator[int]:
    _certificates(workdir)
    port = _free_port()
    server = subprocess.Popen(
        [_need("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt",
         "--tls-auth-clients", "yes", "--save", "", "--user", "app", "on", f">{PASSWORD}", "~*", "&*",
         "+@all", "--user", "default", "off"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield port
    finally:
        server.kill()
        server.wait()


def test_a_queue_runs_over_tls_with_an_acl_user_and_a_client_certificate(workdir: Path, tls_server: int) -> None:
    queue = RedisQueue(
        f"rediss://app:{PASSWORD}@127.0.0.1:{tls_server}",
        {"jobs": LaneConfig(priority=0, max_concurrency=2)},
        tls_ca=workdir / "ca.crt",
        tls_cert=(workdir / "client.crt").read_bytes(),
        tls_key=(workdir / "client.key").read_text(),
    )
    worker = RedisWorker(queue, slots=2)

    @worker.handler("echo")
    def echo(payload: object) -> object:
        return payload

    worker.start()
    try:
        assert queue.submit("jobs", "echo", {"secure": True}).result(timeout=30) == {"secure": True}
    finally:
        worker.shutdown(timeout=10)


def test_refusals_say_why_and_never_show_the_password(workdir: Path, tls_server: int) -> None:
    with pytest.raises(StorageError) as wrong:
        RedisQueue(
            f"rediss://app:wrong-pass@127.0.0.1:{tls_server}",
            tls_ca=workdir / "ca.crt",
            tls_cert=workdir / "client.crt",
            tls_key=workdir / "client.key",
            connect_timeout=3,
        )
    assert "wrong-pass" not in str(wrong.value)
    assert "credentials" in str(wrong.value)
    with pytest.raises(StorageError) as untrusted:
        RedisQueue(f"rediss://app:{PASSWORD}@127.0.0.1:{tls_server}", connect_timeout=3)
    assert PASSWORD not in str(untrusted.value)
    assert "certificate" in str(untrusted.value).lower()
    with pytest.raises(ConfigError, match="rediss://"):
        RedisQueue(f"redis://app:{PASSWORD}@127.0.0.1:{tls_server}", tls_ca=workdir / "ca.crt")
    with pytest.raises(TypeError, match="tls_cert and tls_key go together"):
        RedisQueue(f"rediss://127.0.0.1:{tls_server}", tls_cert=workdir / "client.crt")
    with pytest.raises(TypeError, match="PEM text"):
        RedisQueue(f"rediss://127.0.0.1:{tls_server}", tls_ca="ca.crt")
    with pytest.raises(ConfigError, match="reconnect backoff"):
        RedisQueue("redis://127.0.0.1:1", reconnect_min_delay=2, reconnect_max_delay=1)


def _aof_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [_need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_port(port)
    return server


def test_handles_answer_after_redis_restarts_and_submits_wait_for_it(workdir: Path) -> None:
    port = _free_port()
    server = _aof_server(workdir, port)
    try:
        url = f"redis://127.0.0.1:{port}"

        def connect(lanes: dict[str, LaneConfig] | None = None) -> RedisQueue:
            return RedisQueue(url, lanes, response_timeout=1, reconnect_wait=10, reconnect_max_delay=0.2)

        queue = connect({"jobs": LaneConfig(priority=0, max_concurrency=4)})
        worker = RedisWorker(connect(), slots=4)

        @worker.handler("slow")
        def slow(payload: int) -> int:
            time.sleep(0.3)
            return payload * 2

        worker.start()
        handles = [queue.submit("jobs", "slow", n) for n in range(8)]
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(1)
        server = _aof_server(workdir, port)
        # Accepted before the restart: every handle answers, once.
        assert [h.result(timeout=30) for h in handles] == [n * 2 for n in range(8)]
        # And a submit made now goes through.
        assert queue.submit("jobs", "slow", 21).result(timeout=30) == 42
        worker.shutdown(timeout=10)
    finally:
        server.kill()
        server.wait()


def test_a_queue_behind_sentinel_finds_its_master(workdir: Path) -> None:
    port = _free_port()
    server = _aof_server(workdir, port)
    sentinel_port = _free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {port} 1\n"
    )
    sentinel = subprocess.Popen([_need("redis-server"), str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(sentinel_port)
        queue = RedisQueue.sentinel(
            "redis://mymaster", [f"redis://127.0.0.1:{sentinel_port}"],
            {"jobs": LaneConfig(priority=0, max_concurrency=2)},
        )
        worker = RedisWorker(queue, slots=2)

        @worker.handler("echo")
        def echo(payload: object) -> object:
            return payload

        worker.start()
        assert queue.submit("jobs", "echo", "via sentinel").result(timeout=30) == "via sentinel"
        worker.shutdown(timeout=10)
        with pytest.raises(TypeError, match="list of sentinel URLs"):
            RedisQueue.sentinel("redis://mymaster", f"redis://127.0.0.1:{sentinel_port}")
        with pytest.raises(StorageError, match="nosuchmaster"):
            RedisQueue.sentinel("redis://nosuchmaster", [f"redis://127.0.0.1:{sentinel_port}"], connect_timeout=2)
    finally:
        sentinel.kill()
        sentinel.wait()
        server.kill()
        server.wait()
