"""The servers the benchmarks compare, started the same way, pinned to a core, measured from /proc.

| name | server |
|---|---|
| baseline | `bench/bare_relay.py`: Starlette + uvicorn + websockets relaying bytes, nothing else |
| pycrdt   | `bench/pycrdt_server.py`: pycrdt-websocket's WebsocketServer under uvicorn, in memory |
| node     | `@y/websocket-server` 0.1.1 (yjs 13) from `bench/node/`, in memory |
| hocuspocus | `@hocuspocus/server` 4.7.0 (`bench/node/hocuspocus-server.mjs`), in memory |
| durable  | `collab serve --fsync always` |
| fast     | `collab serve --fsync never` |

Each is a fresh subprocess on a free loopback port, run under `taskset -c <server cpu>`; the
load generators pin themselves to the other core (`pin`). CPU is utime + stime of the
server's process tree (all threads) from /proc; RSS from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
NODE_SERVER = BENCH / "node" / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
HOCUSPOCUS_SERVER = BENCH / "node" / "hocuspocus-server.mjs"
ALL_TARGETS = ("baseline", "pycrdt", "node", "hocuspocus", "durable", "hp-durable", "fast")
COLLAB_TARGETS = ("durable", "hp-durable", "fast")
HOCUSPOCUS_TARGETS = ("hocuspocus", "hp-durable")
"""Rows whose clients speak the Hocuspocus protocol (on /hocuspocus) instead of y-websocket."""
DEFAULT_COLLAB = f"{shlex.quote(sys.executable)} -m collab serve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu: int | None) -> None:
    """Run this process (and what it starts) on one core only, when the machine has it."""
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def missing(target: str) -> str | None:
    """Why a target cannot run here (not installed), or None."""
    if target in ("node", "hocuspocus"):
        if shutil.which("node") is None:
            return "node is not installed"
        if not NODE_SERVER.exists():
            return "the Node server is not installed: (cd bench/node && npm ci)"
    if target == "hocuspocus":
        if shutil.which("node") is None:
            return "node is not installed"
        if not (BENCH / "node" / "node_modules" / "@hocuspocus" / "server").exists():
            return "@hocuspocus/server is not installed: (cd bench/node && npm ci)"
    if target == "pycrdt":
        try:
            import pycrdt.websocket  # noqa: F401
        except ImportError:
            return "pycrdt-websocket is not installed: pip install -c constraints.txt -e '.[bench]'"
    return None


class Server:
    """One server under test as a subprocess; stopped with SIGTERM on exit.

    `target` is one of ALL_TARGETS, or a collab variant `name` whose extra flags are given
    in `extra` (started with --fsync always unless they say otherwise).
    """

    def __init__(
        self,
        target: str,
        workdir: Path,
        *,
        label: str = "",
        cpu: int | None = 0,
        collab_command: str = DEFAULT_COLLAB,
        extra: list[str] | None = None,
    ) -> None:
        self.target = target
        self.port = free_port()
        self.log_path = workdir / f"{target}{label}.log"
        self.env = dict(os.environ)
        extra = list(extra or [])
        if target == "baseline":
            command = [sys.executable, str(BENCH / "bare_relay.py")]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
        elif target == "pycrdt":
            command = [sys.executable, str(BENCH / "pycrdt_server.py")]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
        elif target == "node":
            command = ["node", str(NODE_SERVER)]
            self.env.update(HOST="127.0.0.1", PORT=str(self.port))
        elif target == "hocuspocus":
            command = ["node", str(HOCUSPOCUS_SERVER)]
            self.env.update(HOST="127.0.0.1", PORT=str(self.port))
        else:
            data_dir = workdir / f"data-{target}{label}"
            command = [*shlex.split(collab_command), "--data-dir", str(data_dir)]
            if not any(a.startswith("--fsync") for a in extra):
                command += ["--fsync", "never" if target == "fast" else "always"]
            command += [*extra, "--host", "127.0.0.1", "--port", str(self.port)]
        if cpu is not None and shutil.which("taskset") and cpu < (os.cpu_count() or 1):
            command = ["taskset", "-c", str(cpu), *command]
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env
            )
        deadline = time.monotonic() + 30
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.target} did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's own pid (under taskset, which execs it: the same process)."""
        assert self.process is not None
        return self.process.pid

    @property
    def handshakes(self) -> bool:
        """Whether the server answers a sync step 1 (the bare relay never does)."""
        return self.target != "baseline"

    def cpu(self) -> float:
        return cpu_seconds(process_tree(self.pid))

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in process_tree(self.pid))


TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rfind(")") + 2 :].split()  # fields from 3 (state) on


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn might run workers in child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def load_average() -> float:
    return os.getloadavg()[0]
