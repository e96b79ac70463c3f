"""Writing files so that they survive a crash: whole, renamed into place, synced.

`fsync=False` skips every sync (tests and benchmarks only); everything else is the same.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO


def sync_dir(directory: Path, fsync: bool = True) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    if not fsync:
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write `path` atomically: temp file, fsync, rename, fsync the directory."""
    temp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(temp, "xb") as file:
            file.write(data)
            file.flush()
            if fsync:
                os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    sync_dir(path.parent, fsync)


def write_all(handle: BinaryIO, data: bytes) -> None:
    """Write everything to an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]
