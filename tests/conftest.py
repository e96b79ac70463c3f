"""Shared fixtures: a real `collab serve` process on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pg_server import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from redis_server import own_redis_server, redis_server  # noqa: F401 (fixtures)

IN_CI = bool(os.environ.get("CI"))
REPO = Path(__file__).resolve().parent.parent

EDGES = ("fast", "public")
"""`collab serve`'s two paths: uvicorn's protocols subclassed (the fast path), or its stock
protocols (the public ASGI path, taken when `collab.server.internals` finds a member
missing or an untested version: tests/public_edge.py makes it so)."""
both_edges = pytest.mark.parametrize("edge", EDGES, indirect=True)
"""Run a test that starts servers with `start_server` or `server` on both paths."""


def require(condition: bool, what: str) -> None:
    """Skip a test that needs a real outside part, except in CI, where a missing part fails."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: .ci/run must install it")
    pytest.skip(f"{what} is not installed")


def v1_snapshot(rev: int, state: bytes) -> bytes:
    """A snapshot file as format version 1 wrote it (docs/storage.md): no meta section."""
    return struct.pack("<4sIQIQ", b"CSNP", 1, rev, zlib.crc32(state), len(state)) + state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)


@dataclass
class ServerProcess:
    """A `collab serve` subprocess. `args` are extra CLI flags."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    edge: str = "fast"  # "public": on uvicorn's stock protocols (tests/public_edge.py)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        launcher = ["-m", "collab"] if self.edge == "fast" else [str(REPO / "tests/public_edge.py")]
        command = [sys.executable, *launcher, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        self.process = subprocess.Popen(  # its own process group: --workers children too
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        log.close()
        wait_until(self._healthy, timeout, f"server on port {self.port} ({self.log()})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}: {self.log()}")
        try:
            with urllib.request.urlopen(self.http_url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL to the server and any worker processes it started: the crash case."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the graceful case. Returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout)
        return self.process.returncode

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()


@pytest.fixture
def edge(request: pytest.FixtureRequest) -> str:
    """The path the servers of a test run on: "fast" unless `both_edges` says otherwise."""
    return getattr(request, "param", "fast")


@pytest.fixture
def start_server(tmp_path: Path, edge: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start `collab serve` subprocesses; `start_server("--fsync", "never")`."""
    servers: list[ServerProcess] = []

    def start(*args: str, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", list(args), edge=edge)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """One running server with durable writes off (fast) and default limits."""
    return start_server("--fsync", "never")


def node_available() -> bool:
    return shutil.which("node") is not None and (REPO / "tests/node/node_modules/yjs").is_dir()


def run_node_script(script: str, request: object) -> object:
    """Run tests/node/<script> with `request` as JSON on stdin; its JSON answer (skipped,
    or failed in CI, without Node and the npm packages)."""
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    out = subprocess.run(
        ["node", str(REPO / "tests/node" / script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    ).stdout
    return json.loads(out)
