"""Red team of the inline fsync plan (collab/storage/fsync_plan.py) over real sockets: a disk
that turns slow now and then mid-run (a journal commit behind a big compaction's
snapshot, a network disk's hiccup) must not stall the event loop on each hiccup, and an
fsync that fails inline must leave nothing acknowledged and nothing stored damaged."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from pyclient import url_name
from test_e2e_durable_acks import OFF_THE_LOOP
from test_e2e_exactly_once import Line
from test_e2e_hocuspocus import served_here, stored_text

from collab.config import Settings
from collab.storage.fsync_plan import FsyncPlan
from collab.text.client import TextClient

NAME = "slow-disk/中 😀"
PIECES = ["a", "é", "😀", "中", "e\u0301", "👍🏽", "🇫🇷", "\r\n"]


class HiccupDisk:
    """os.fsync as a disk whose every `every`-th fsync takes `hiccup` seconds (the others
    0.2 ms): records, per hiccup, whether it ran on the event loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, every: int, hiccup: float) -> None:
        self.hiccups_on_loop: list[bool] = []
        self.fail_with: int | None = None  # an errno every fsync raises, once set
        self._count = 0
        self._lock = threading.Lock()
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            with self._lock:
                self._count += 1
                slow = self._count % every == 0
                failure = self.fail_with
            if failure is not None:
                raise OSError(failure, os.strerror(failure))
            real_fsync(fd)
            time.sleep(hiccup if slow else 0.0002)  # the disk's latency, not a wait on state
            if slow:
                on_loop = not threading.current_thread().name.startswith(OFF_THE_LOOP)
                with self._lock:
                    self.hiccups_on_loop.append(on_loop)

        monkeypatch.setattr(os, "fsync", fsync)


async def type_pieces(line: Line, client: TextClient, count: int) -> str:
    """Type `count` pieces one at a time, each acked before the next; the text typed."""
    typed = ""
    for n in range(count):
        piece = PIECES[n % len(PIECES)]
        await line.send(client.edit([len(client.text), piece] if client.text else [piece]))
        await line.synced()
        typed += piece
    return typed


async def test_a_disk_that_hiccups_now_and_then_does_not_stall_the_loop_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = HiccupDisk(monkeypatch, every=16, hiccup=0.1)
    settings = Settings(data_dir=tmp_path / "data", fsync="always", log_level="warning")
    with served_here(settings) as (url, _):
        client = TextClient()
        line = await Line.open(f"{url}/ot/{url_name(NAME)}", client)
        typed = await type_pieces(line, client, 100)
        await line.close()
    assert client.text == typed
    assert len(disk.hiccups_on_loop) >= 5
    # One hiccup inline is the price of finding out; each later one stalls every document.
    assert disk.hiccups_on_loop.count(True) <= 1, disk.hiccups_on_loop


async def test_an_fsync_that_fails_inline_acks_nothing_and_damages_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = HiccupDisk(monkeypatch, every=10**9, hiccup=0.0)
    settings = Settings(data_dir=tmp_path / "data", fsync="always", log_level="warning")
    with served_here(settings) as (url, _):
        client = TextClient()
        line = await Line.open(f"{url}/ot/{url_name(NAME)}", client)
        typed = await type_pieces(line, client, 20)  # fast fsyncs: inline by now
        disk.fail_with = errno.EIO
        await line.send(client.edit([len(client.text), "✗ lost 😀"]))
        with pytest.raises(Exception):  # noqa: B017 - closed (storage failure), never acked
            await line.synced()
        disk.fail_with = None
        other = TextClient()
        again = await Line.open(f"{url}/ot/{url_name(NAME)}", other)
        assert other.text == typed  # the failed edit is nowhere
        await again.close()
    assert await stored_text(tmp_path / "data", NAME) == typed


def test_the_plan_runs_a_hiccup_inline_at_most_once_a_minute() -> None:
    """100 fsyncs a second, 0.2 ms each but every `every`-th 200 ms: over ten minutes, at
    most one such fsync a minute is asked for inline."""
    for every in (10, 20, 50, 1000, 10_000):
        plan, inline_hiccups = FsyncPlan(), 0
        plan.measured(0.0002)
        for n in range(60_000):
            hiccup = n % every == every - 1
            inline = plan.inline(n / 100)
            inline_hiccups += hiccup and inline
            plan.measured(0.2 if hiccup else 0.0002)
        assert inline_hiccups <= 10, (every, inline_hiccups)
    plan = FsyncPlan()
    plan.measured(0.0002)
    plan.measured(0.005)  # slow, not a hiccup: back inline once the average is fast again
    for _ in range(20):
        plan.measured(0.0002)
    assert plan.inline(1.0)
