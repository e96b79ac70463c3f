"""The file store's hold on its data directory: one process at a time.

Two processes writing one directory would each number revisions on their own and
overwrite each other's log (an acknowledged edit lost, and `--verify` none the wiser).
The lock is an `flock` on ``<data-dir>/lock``, released by the kernel when the process
dies however it dies; the file names the holder's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"


class DataDirectoryError(RuntimeError):
    """The data directory cannot be used: not creatable, or held by another process."""


class DirectoryLock:
    """An exclusive hold on a data directory, created if needed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise DataDirectoryError(
                f"cannot use data directory {directory}: {error.strerror or error}"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            raise DataDirectoryError(_in_use(directory, holder)) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else ""


def _in_use(directory: Path, holder: str) -> str:
    if holder == str(os.getpid()):
        who = "another store of this process"
    else:
        who = f"another collab process{f' (pid {holder})' if holder else ''}"
    return (
        f"data directory {directory} is in use by {who}: one process per directory; to run "
        "several, share a PostgreSQL store and a Redis bus (README: 'Running several servers')"
    )
