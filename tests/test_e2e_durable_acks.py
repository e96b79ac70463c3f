"""Durable before acknowledged, with `--fsync always` over real sockets, now that a fast
disk's fsyncs run inline on the event loop (collab/storage/fsync_plan.py): a text client's
ack and a Yjs peer's edit seen by another come only once the edit's log bytes were
fsync'd, and a kill -9 right after the ack loses nothing."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from pathlib import Path

import httpx
import pytest
from pyclient import YClient, url_name
from test_e2e_exactly_once import Line, server_text
from test_e2e_hocuspocus import served_here
from websockets.exceptions import ConnectionClosed

from collab.config import Settings
from collab.storage import threads
from collab.storage.fsync_plan import FsyncPlan
from collab.text.client import TextClient

PIECES = ["HÉLLO 👨‍👩‍👧 ", "🇫🇷 中文 ", "e\u0301 ", "👍🏽\r\n"]
NAME = "durable/中 😀"
OFF_THE_LOOP = ("collab-fsync", "asyncio_", "MainThread")  # writer threads, to_thread, tests


class SyncedLogs:
    """os.fsync watched: each file's bytes as they were when its last fsync returned,
    and on which thread each fsync ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes: dict[str, bytes] = {}
        self.on_loop: list[bool] = []
        self._lock = threading.Lock()
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            name = threading.current_thread().name
            path = os.readlink(f"/proc/self/fd/{fd}")
            content = Path(path).read_bytes() if path.endswith(".ylog") else b""
            with self._lock:
                self.bytes[path] = content
                self.on_loop.append(not name.startswith(OFF_THE_LOOP))

        monkeypatch.setattr(os, "fsync", fsync)

    def holds(self, text: str) -> bool:
        """Whether some log's fsync'd bytes hold `text` (Yjs updates carry it as UTF-8)."""
        with self._lock:
            return any(text.encode() in content for content in self.bytes.values())


async def test_acks_and_relays_come_after_the_fsync_and_fast_ones_run_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = SyncedLogs(monkeypatch)
    # This shared machine's disk is sometimes slow (fsyncs of several ms, which go to the
    # threads, or hold them there after a hiccup): the plan takes any fsync as fast here,
    # so that the inline path is the one under test whatever the neighbours do.
    monkeypatch.setattr(
        threads,
        "FsyncPlan",
        functools.partial(FsyncPlan, slow=10.0, share=10.0, turn=10.0, stall=math.inf),
    )
    settings = Settings(data_dir=tmp_path / "data", fsync="always", log_level="warning")
    with served_here(settings) as (url, _):
        client = TextClient()
        line = await Line.open(f"{url}/ot/{url_name(NAME)}", client)
        async with (
            await YClient.connect(f"{url}/yjs/{url_name(NAME)}") as writer,
            await YClient.connect(f"{url}/yjs/{url_name(NAME)}") as watcher,
        ):
            await writer.synced()
            await watcher.synced()
            for n, piece in enumerate(PIECES):
                typed = f"{n}:{piece}"
                await line.send(client.edit([len(client.text), typed] if client.text else [typed]))
                await line.synced()  # acked
                assert synced.holds(typed), f"acked before its fsync: {typed!r}"
                seen = f"<{n}{piece}>"
                writer.append(seen)
                await watcher.until(lambda seen=seen: seen in watcher.text, 10, "the relay")
                assert synced.holds(seen), f"relayed before its fsync: {seen!r}"
        await line.close()
    assert synced.on_loop.count(True) >= len(PIECES), "no fsync ran inline"


async def test_an_acked_edit_survives_kill_9(start_server) -> None:
    server = start_server("--fsync", "always")
    client = TextClient()
    for n, piece in enumerate(PIECES):
        line = await Line.open(f"{server.ws_url}/ot/{url_name(NAME)}", client)
        await line.send(client.edit([len(client.text), piece] if client.text else [piece]))
        await line.synced()
        server.kill()  # right after the ack
        with contextlib.suppress(ConnectionClosed):
            await line.close()
        server.start()
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert await server_text(http, NAME) == "".join(PIECES[: n + 1])
