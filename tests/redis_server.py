"""A real `redis-server` for the tests, on a free loopback port, that tests can kill.

`redis_server` is one server for the whole test run (tests keep apart by channel prefix);
`own_redis_server` is a server for one test, to kill and restart (Redis going away).
Both skip when Debian's `redis-server` is not installed, except in CI, where they fail.
Registered in conftest.py by importing the fixtures.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One `redis-server` process: no persistence, loopback only, a fixed port across
    restarts (so clients reconnect to the same URL)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        assert not self.running
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer in {timeout}s: {self.log()}")
            time.sleep(0.01)
        return self

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: connections drop at once, as when a Redis host dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()


def _require_redis_server() -> None:
    from conftest import require  # conftest imports this module: import it late

    require(shutil.which("redis-server") is not None, "redis-server (apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the test run; do not kill it (use `own_redis_server`)."""
    _require_redis_server()
    with tempfile.TemporaryDirectory(prefix="collab-redis-") as directory:
        server = RedisServer(Path(directory)).start()
        yield server
        server.kill()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, to kill and restart."""
    _require_redis_server()
    server = RedisServer(tmp_path).start()
    yield server
    server.kill()
