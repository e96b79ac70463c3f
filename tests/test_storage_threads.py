"""The store's fsync threads: answers on the loop, errors kept, nothing left running."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import pytest

from collab.storage.threads import FsyncThreads


def fsync_threads() -> set[threading.Thread]:
    """The fsync threads alive now (other tests' stores may be stopping theirs)."""
    return {t for t in threading.enumerate() if t.name.startswith("collab-fsync")}


async def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_many_fsyncs_in_flight_all_answer(tmp_path: Path) -> None:
    before = fsync_threads()
    threads = FsyncThreads(4)
    fds = [os.open(tmp_path / f"log-{n}", os.O_WRONLY | os.O_CREAT) for n in range(10)]
    try:
        for fd in fds:
            os.write(fd, "👩‍👩‍👧 中e\u0301\r\n".encode())
        await asyncio.wait_for(asyncio.gather(*(threads.sync(fd) for fd in fds)), 10)
    finally:
        for fd in fds:
            os.close(fd)
    threads.close()
    assert not fsync_threads() - before  # close() joined its own


async def test_a_failed_fsync_fails_its_future_only(tmp_path: Path) -> None:
    threads = FsyncThreads(2)
    good = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    bad = os.open(tmp_path / "closed", os.O_WRONLY | os.O_CREAT)
    os.close(bad)  # fsync of a closed descriptor: EBADF
    try:
        failed, synced = threads.sync(bad), threads.sync(good)
        with pytest.raises(OSError):
            await asyncio.wait_for(failed, 10)
        await asyncio.wait_for(synced, 10)
    finally:
        os.close(good)
        threads.close()


async def test_threads_stop_when_nobody_closed_the_store(tmp_path: Path) -> None:
    before = fsync_threads()
    threads = FsyncThreads(3)
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    try:
        await asyncio.wait_for(threads.sync(fd), 10)
    finally:
        os.close(fd)
    started = fsync_threads() - before
    assert len(started) == 3
    del threads
    gc.collect()
    await wait_until(lambda: not any(t.is_alive() for t in started))


async def test_an_fsync_that_raises_other_than_oserror_still_answers(tmp_path: Path) -> None:
    """os.fsync raises ValueError (a negative descriptor), OverflowError (one past C's int):
    the thread must answer and live on, or the append waits for ever holding its document's
    lock (`FileStore._fsync_append` waits until the fsync is done, even when cancelled)."""
    threads = FsyncThreads(1)
    good = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    os.write(good, "🇫🇷 中文 e\u0301\r\n".encode())
    try:
        with pytest.raises(ValueError):
            await asyncio.wait_for(threads.sync(-1), 10)
        with pytest.raises(OverflowError):
            await asyncio.wait_for(threads.sync(1 << 70), 10)
        await asyncio.wait_for(threads.sync(good), 10)  # its only thread is still there
    finally:
        os.close(good)
        threads.close()
