"""Compaction in a worker process, with real processes: kill -9 of the worker or of the
server while it runs, a worker that runs out of memory, a disk that fills. The log is kept,
nothing acknowledged is lost, the error is logged once and the compaction is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess
from pyclient import YClient

from collab.access.names import storage_key

NAME = "big 📚"
CHUNK = "👩‍👩‍👧 中文 e\u0301\r\n" * 2_000  # ~60 KB of UTF-8: emoji, ZWJ, CJK, combining, CRLF
FAILED = re.compile(r"compaction at rev \d+ failed")
COMPACT_AT = ("--compact-log-records", "1000000", "--compact-log-bytes", "1000000")


def has_all(client: YClient, tokens: list[str]) -> Callable[[], bool]:
    wanted = list(tokens)
    return lambda: all(token in client.text for token in wanted)


async def until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` without blocking the peers' sockets (they run on this loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def worker_pids(parent: int) -> list[int]:
    """The compaction workers `parent` started (their command line names the module)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if b"collab.storage.worker" in command and ppid == parent:
                found.append(int(entry))
    return found


def new_segments(server: ServerProcess) -> list[str]:
    """The compactions that worked: segments after the first (a snapshot without its log,
    left by a worker killed at the wrong moment, is no segment)."""
    directory = server.data_dir / "docs" / storage_key(NAME)
    return sorted(
        p.name for p in directory.glob("log-*.ylog") if p.name != "log-" + "0" * 12 + ".ylog"
    )


async def write_chunks(client: YClient, count: int, tag: str) -> list[str]:
    """Append `count` big chunks, each with a token; returns the tokens."""
    tokens = []
    for n in range(count):
        token = f"<{tag}-{n}>"
        client.append(token + CHUNK)
        tokens.append(token)
    return tokens


async def write_until_compacted(client: YClient, server: ServerProcess, tag: str) -> list[str]:
    """Go on editing (a failed compaction is tried again with a batch after a pause) until
    a snapshot is written; returns the tokens written."""
    tokens: list[str] = []
    deadline = time.monotonic() + 60
    while not new_segments(server):
        assert time.monotonic() < deadline, "no compaction worked again in 60 s"
        tokens += await write_chunks(client, 2, f"{tag}{len(tokens)}")
        await client.until(has_all(client, tokens), 20, "own edits")
        await asyncio.sleep(0.2)  # a pace for the writer, not a synchronisation
    return tokens


async def text_of(server: ServerProcess) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{server.http_url}/api/docs/{NAME}/text")
    assert response.status_code == 200, response.text
    return response.text


async def fill_and_catch_worker(server: ServerProcess, client: YClient) -> tuple[list[str], int]:
    """Write until a compaction worker runs; returns the tokens seen by a second peer and
    the worker's pid."""
    assert server.process is not None
    tokens = await write_chunks(client, 20, "a")  # ~1.2 MB: past --compact-log-bytes
    await client.until(lambda: all(t in client.text for t in tokens), 20, "own edits")
    pids: list[int] = []

    def caught() -> bool:
        pids.extend(worker_pids(server.process.pid))  # type: ignore[union-attr]
        return bool(pids)

    await until(caught, 20, "a compaction worker to start")
    watcher = await YClient.connect(f"{server.ws_url}/yjs/{NAME}")
    await watcher.until(lambda: all(t in watcher.text for t in tokens), 20, "the edits")
    await watcher.close()
    return tokens, pids[0]


async def test_a_worker_killed_mid_compaction_costs_nothing_and_is_retried(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(*COMPACT_AT)
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        tokens, pid = await fill_and_catch_worker(server, client)
        os.kill(pid, signal.SIGKILL)
        await until(lambda: FAILED.search(server.log()), 20, "the failure to be logged")
        assert new_segments(server) == []
        tokens += await write_until_compacted(client, server, "b")
        await client.until(lambda: all(t in client.text for t in tokens), 20, "own edits")
    text = await text_of(server)
    assert all(text.count(token) == 1 for token in tokens)
    assert len(FAILED.findall(server.log())) == 1, server.log()
    server.stop()
    server.start()
    assert await text_of(server) == text


async def test_the_server_killed_mid_compaction_loses_nothing_and_its_worker_goes(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(*COMPACT_AT)
    assert server.process is not None
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        tokens, pid = await fill_and_catch_worker(server, client)
        server.process.kill()  # the server only: its worker must notice and stop
        server.process.wait(10)

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)

    await until(gone, 20, "the orphaned worker to exit")
    server.start()
    text = await text_of(server)
    assert all(text.count(token) == 1 for token in tokens)
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        tokens += await write_until_compacted(client, server, "b")
        await client.until(lambda: all(t in client.text for t in tokens), 20, "own edits")
    server.stop()
    server.start()
    text = await text_of(server)
    assert all(text.count(token) == 1 for token in tokens)


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


def failures(server: ServerProcess) -> int:
    metrics = httpx.get(f"{server.http_url}/metrics").text
    found = re.search(r"^collab_compaction_failures_total (\S+)", metrics, re.M)
    return int(float(found[1])) if found else 0


async def test_a_worker_out_of_memory_keeps_the_log_and_logs_once(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(*COMPACT_AT, "--compaction-memory-bytes", str(64 * 1024 * 1024))
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        tokens: list[str] = []
        for round_no in range(40):  # a compaction is due after each: until two have failed
            tokens += await write_chunks(client, 5, f"r{round_no}")
            await client.until(has_all(client, tokens), 20, "own edits")
            if failures(server) >= 2:
                break
            await asyncio.sleep(0.25)  # a pace for the writer, not a synchronisation
    assert failures(server) >= 2
    assert new_segments(server) == []
    assert len(FAILED.findall(server.log())) == 1, server.log()
    text = await text_of(server)
    assert all(text.count(token) == 1 for token in tokens)
    server.stop()
    server.start()
    assert await text_of(server) == text


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 24 MiB tmpfs for the data directory (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_fails_the_compaction_not_the_edits_and_it_is_retried(
    start_server: Callable[..., ServerProcess], small_disk: Path
) -> None:
    server = start_server(*COMPACT_AT, data_dir=small_disk / "data")
    filler = small_disk / "filler"
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * (free - 1_500_000))  # room for the log, not a snapshot too
        tokens = await write_chunks(client, 18, "a")  # ~1.1 MB: a compaction is due
        await client.until(has_all(client, tokens), 20, "own edits")
        await until(lambda: FAILED.search(server.log()), 20, "the failure to be logged")
        assert new_segments(server) == []
        filler.unlink()
        tokens += await write_until_compacted(client, server, "c")
        await client.until(lambda: all(t in client.text for t in tokens), 20, "own edits")
    assert len(FAILED.findall(server.log())) == 1, server.log()
    assert "works again" in server.log()
    server.stop()
    server.start()
    text = await text_of(server)
    assert all(text.count(token) == 1 for token in tokens)


async def test_compaction_time_size_and_loop_lag_are_on_metrics(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(*COMPACT_AT)
    async with await YClient.connect(f"{server.ws_url}/yjs/{NAME}") as client:
        await client.synced()
        tokens = await write_chunks(client, 20, "a")
        await until(lambda: new_segments(server), 30, "a compaction")
        await client.until(lambda: all(t in client.text for t in tokens), 20, "own edits")
    async with httpx.AsyncClient() as http:
        for _ in range(100):
            metrics = (await http.get(f"{server.http_url}/metrics")).text
            if "collab_compaction_seconds_count 1" in metrics:
                break
            await asyncio.sleep(0.05)
    assert "collab_compaction_seconds_count 1" in metrics
    size = re.search(r"^collab_compaction_state_bytes_sum (\S+)", metrics, re.M)
    assert size is not None and float(size[1]) > 1_000_000, metrics
    assert re.search(r"collab_event_loop_lag_seconds_count [1-9]", metrics), metrics
