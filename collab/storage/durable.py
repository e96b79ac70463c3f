"""Writing files so that they survive a crash: whole, renamed into place, synced.

`fsync=False` skips every sync (tests and benchmarks only); everything else is the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from collab.storage.threads import in_thread


def sync_dir(directory: Path, fsync: bool = True) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    if not fsync:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


SYNC_STEP = 1 << 20
"""A big file is written and synced this many bytes at a time (see `write_new_file`)."""
WRITE_ON_LOOP = 64 * 1024
"""Bytes: a bigger append is written by a thread. While another file's fsync commits the
journal (a compaction's 64 MiB snapshot), a 256 KB write on the loop waited 20-54 ms."""


def write_new_file(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write `path` atomically: temp file, fsync, rename, fsync the directory.

    A big file (a snapshot of many MB) is synced every `SYNC_STEP` bytes as it is written:
    one fsync of 30 MB holds the file system's journal while it flushes, and every
    document's append fsync waits behind it (44-58 ms in bench/scenarios.py's slow-peer
    run with compaction); synced in steps, each waits for one step at most."""
    temp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(temp, "xb", buffering=0) as file:
            write_synced(file, data, fsync)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    sync_dir(path.parent, fsync)


def write_new_directory(path: Path, files: Mapping[str, bytes], fsync: bool = True) -> None:
    """Make the directory `path` holding `files` (name -> bytes) atomically: written in a
    temp directory beside it, each file synced once and the directory once (no temp file
    and rename per file: nobody else sees the temp directory), renamed into place, then its
    parent synced. A crash leaves all of it or none."""
    temp = path.with_name(f".new-{uuid.uuid4().hex}")
    temp.mkdir()
    try:
        for name, data in files.items():
            with open(temp / name, "xb", buffering=0) as file:
                write_all(file, data)
                if fsync:
                    os.fsync(file.fileno())
        sync_dir(temp, fsync)
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    sync_dir(path.parent, fsync)


def write_synced(handle: BinaryIO, data: bytes | memoryview, fsync: bool = True) -> None:
    """Write `data` at the end of an unbuffered file and sync it, `SYNC_STEP` bytes at a
    time (see `write_new_file`)."""
    view = memoryview(data)
    for start in range(0, len(view), SYNC_STEP):
        write_all(handle, view[start : start + SYNC_STEP])
        if fsync and start + SYNC_STEP < len(view):
            os.fdatasync(handle.fileno())
    if fsync:
        os.fsync(handle.fileno())


async def append_bytes(handle: BinaryIO, encode: Callable[[], bytes], size: int) -> int:
    """Write `encode()` at the end of an unbuffered file; the bytes written. A small append
    is encoded and written on the loop (it lands in the page cache); a big one (`size` past
    `WRITE_ON_LOOP`) in a thread: encoding 256 KB records (their copies and CRCs) held the
    loop 12-26 ms a batch."""
    if size > WRITE_ON_LOOP:
        return await in_thread(_encode_and_write, handle, encode)
    return _encode_and_write(handle, encode)


def _encode_and_write(handle: BinaryIO, encode: Callable[[], bytes]) -> int:
    data = encode()
    write_all(handle, data)
    return len(data)


def write_all(handle: BinaryIO, data: bytes | memoryview) -> None:
    """Write everything to an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]
