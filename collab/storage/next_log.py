"""A compaction's new log, written while the appends go on (`FileStore`'s segment switch).

Once the snapshot at `rev` is written, the new segment's log must hold every record after
`rev`: those the snapshot's builder read past it, and all that were appended while it
worked. On a busy document that is seconds of appends (3 MB, 1,500 records in
bench/scenarios.py's slow-peer run), and decoding, checking, encoding and syncing them
under the document's lock held every append for 8-19 ms. So the copy has two steps:

- `start`, without the lock: the records up to the old log's synced end (appends go on
  past it meanwhile), checked and synced into a temp file;
- `finish`, under the lock: what was appended since (a few records), synced, then the
  rename that commits the new segment.

Records are copied as they are on disk, once decoded (frames, CRCs, bodies) and checked to
follow on from `rev`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from collab.storage.contract import Record, check_next_revs, last_rev
from collab.storage.durable import sync_dir, write_synced
from collab.storage.errors import CompactionError
from collab.storage.format import (
    LOG_HEADER,
    decode_records,
    encode_log,
    log_path,
    read_log_bytes,
)


class NextLog:
    """The log of the segment at `rev`, being written beside the current one."""

    def __init__(self, directory: Path, rev: int) -> None:
        self.directory = directory
        self.rev = rev
        self.path = log_path(directory, rev)  # its name once committed
        self.temp = self.path.with_name(f".tmp-{uuid.uuid4().hex}-{self.path.name}")
        self.last_rev = rev
        self.size = 0  # bytes written to the temp file
        self.copied_to = 0  # offset in the old log up to which its records are copied

    def start(
        self, kept: Sequence[Record], old_log: Path, offset: int, end: int, fsync: bool
    ) -> None:
        """The header, `kept`, then the old log's records from byte `offset` to `end` (all
        appended and synced before `end` was read), synced. Needs no lock."""
        check_next_revs(self.last_rev, kept)
        data = encode_log(kept)
        with open(self.temp, "xb", buffering=0) as file:
            write_synced(file, data, fsync)
        self.last_rev, self.size = last_rev(self.last_rev, kept), len(data)
        self.copied_to = max(offset, LOG_HEADER.size)
        self._copy(old_log, end, fsync)

    def finish(self, old_log: Path, end: int, end_rev: int, fsync: bool) -> None:
        """Under the document's lock: the records appended since `start`, up to `end`
        (the old log's end, at `end_rev`), then the rename: the commit point."""
        self._copy(old_log, end, fsync)
        if self.last_rev != end_rev:
            raise CompactionError(f"{old_log}: records end at rev {self.last_rev}, not {end_rev}")
        os.replace(self.temp, self.path)
        sync_dir(self.directory, fsync)

    def discard(self) -> None:
        """Remove the temp file (a failed or abandoned switch)."""
        with contextlib.suppress(OSError):
            self.temp.unlink()

    def _copy(self, old_log: Path, end: int, fsync: bool) -> None:
        """Append the old log's records from `copied_to` to `end`, checked, and sync."""
        if end <= self.copied_to:
            return
        data = memoryview(read_log_bytes(old_log, self.copied_to))[: end - self.copied_to]
        decoded = decode_records(data, path=old_log, base=self.copied_to)
        if decoded.torn is not None or decoded.end != end:
            raise CompactionError(f"{old_log}: no whole record ends at byte {end}")
        check_next_revs(self.last_rev, decoded.records)
        with open(self.temp, "ab", buffering=0) as file:
            write_synced(file, data, fsync)
        self.last_rev = last_rev(self.last_rev, decoded.records)
        self.size += len(data)
        self.copied_to = end
