"""Reading a document's records across its retained segments, oldest first.

A document's history is every segment the store kept (docs/storage.md): `segments_at`
finds them in a directory or for one copied log file, `LogReader` reads their records in
order and then whatever is appended, and `read_history` reads them all at once.
`SegmentRevisions` answers the store-neutral `RevisionHistory` questions from segments
(FileStore's history); `read_store_history` reads a whole history from any such store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collab.access.names import storage_key
from collab.storage.contract import Record, RevisionHistory, RevisionsGoneError, Segment, Snapshot
from collab.storage.errors import HistoryError
from collab.storage.format import (
    DOCS_DIR,
    decode_log,
    list_segments,
    read_snapshot_file,
    segment_of_file,
)


class RevisionNotFoundError(LookupError):
    """The revision is not in the retained history (too new, or no longer kept)."""


def segments_at(path: Path) -> list[Segment]:
    """The segments at `path`: a document's directory, or one log file (e.g. a copy).

    A log file named ``log-R.ylog`` with R > 0 takes ``snapshot-R.ysnap`` beside it as
    its starting state, when there is one.
    """
    path = Path(path)
    if path.is_dir():
        return list_segments(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return [segment_of_file(path)]


def document_segments(data_dir: Path, name: str) -> list[Segment]:
    """The segments of document `name` in a `collab serve --data-dir` (read only: no lock)."""
    directory = Path(data_dir) / DOCS_DIR / storage_key(name)
    return list_segments(directory) if directory.is_dir() else []


class LogReader:
    """Reads a document's records across its segments, oldest first, then what is added.

    `list_segments` is asked again on every `read_new`, so compactions that happen in
    between (a new segment starts) are followed. A torn last record (an append still
    being written, or a crash) ends the reading; it is read again next time.
    """

    def __init__(self, list_segments: Callable[[], list[Segment]]) -> None:
        self.list_segments = list_segments
        self.base_rev: int | None = None  # the first revision whose state is known
        self.base_state: bytes | None = None
        self.last_rev = 0
        self._log: Path | None = None
        self._offset = 0  # where unread records start in `_log`

    def read_new(self) -> list[Record]:
        segments = self.list_segments()
        if not segments:
            return []
        if self.base_rev is None:
            self._begin(segments[0])
        records: list[Record] = []
        index = self._position(segments)
        while True:
            following = segments[index + 1] if index + 1 < len(segments) else None
            records += self._read_segment(None if following is None else following.start_rev)
            if following is None:
                return records
            index += 1
            self._log, self._offset = following.log, 0

    def _begin(self, first: Segment) -> None:
        """Start at the oldest segment kept, from its snapshot."""
        if first.snapshot is not None:
            self.base_state = read_snapshot_file(first.snapshot, first.start_rev).state
        elif first.start_rev:
            reason = (
                f"the log starts after rev {first.start_rev}: it needs "
                f"snapshot-{first.start_rev:012d}.ysnap beside it"
            )
            raise HistoryError(first.log, 0, reason)
        self.base_rev = self.last_rev = first.start_rev
        self._log, self._offset = first.log, 0

    def _position(self, segments: list[Segment]) -> int:
        """Which segment to go on reading: ours, or the newest that covers what comes next."""
        for index, segment in enumerate(segments):
            if segment.log == self._log:
                return index
        for index in range(len(segments) - 1, -1, -1):
            if segments[index].start_rev <= self.last_rev:
                self._log, self._offset = segments[index].log, 0
                return index
        raise HistoryError(segments[0].log, 0, f"history after rev {self.last_rev} was removed")

    def _read_segment(self, limit: int | None) -> list[Record]:
        assert self._log is not None
        path = self._log
        decoded = decode_log(path, self._offset)
        records = []
        for record, offset in zip(decoded.records, decoded.offsets, strict=True):
            if record.rev <= self.last_rev:
                continue
            if limit is not None and record.rev > limit:
                break
            if record.rev != self.last_rev + 1:
                reason = f"rev {record.rev} where rev {self.last_rev + 1} was expected"
                raise HistoryError(path, offset, reason)
            records.append(record)
            self.last_rev = record.rev
        self._offset = decoded.end
        return records


@dataclass(frozen=True)
class RetainedLog:
    """A document's whole retained history, read at once."""

    base_rev: int  # the history starts right after this revision
    base_state: bytes | None  # the document at `base_rev` (None: empty, base_rev 0)
    records: list[Record]  # every revision after `base_rev`, in order

    @property
    def last_rev(self) -> int:
        return self.records[-1].rev if self.records else self.base_rev

    def check_rev(self, rev: int) -> None:
        """Raise RevisionNotFoundError unless `rev` is in this history."""
        if rev > self.last_rev:
            raise RevisionNotFoundError(f"no revision {rev}: the latest is {self.last_rev}")
        if rev < self.base_rev:
            message = f"revision {rev} is no longer kept: history starts at {self.base_rev}"
            raise RevisionNotFoundError(message)

    def rev_at_time(self, unix_time: float) -> int:
        """The last revision made at or before `unix_time` (clocks that step back count as
        the latest time seen so far)."""
        latest = float("-inf")
        rev = self.base_rev
        for record in self.records:
            latest = max(latest, record.time)
            if latest > unix_time:
                break
            rev = record.rev
        return rev


def read_history(segments: list[Segment]) -> RetainedLog:
    """Every kept record of a document, across its segments, oldest first."""
    reader = LogReader(lambda: segments)
    records = reader.read_new()
    return RetainedLog(reader.base_rev or 0, reader.base_state, records)


# ---------------------------------------------------------------------- by revision number


class SegmentRevisions:
    """The `RevisionHistory` questions answered from a store's segments (thread-safe).

    Reading on from where the previous call stopped costs only the new records: a cursor
    (log file, offset, rev) per recently read document remembers where that was.
    """

    def __init__(self, list_segments: Callable[[str], list[Segment]], cursors: int = 32) -> None:
        self.list_segments = list_segments
        self.max_cursors = cursors
        self._cursors: OrderedDict[str, tuple[Path, int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, name: str) -> int | None:
        segments = self.list_segments(name)
        if not segments:
            return None
        first = segments[0]
        if first.snapshot is None and first.start_rev:
            raise HistoryError(first.log, 0, f"no snapshot at rev {first.start_rev}")
        return first.start_rev

    def snapshot_at_or_before(self, name: str, rev: int) -> Snapshot | None:
        kept = [s for s in self.list_segments(name) if s.snapshot and s.start_rev <= rev]
        if not kept:
            return None
        segment = kept[-1]
        assert segment.snapshot is not None
        return read_snapshot_file(segment.snapshot, segment.start_rev)

    def records(self, name: str, after_rev: int, limit: int | None = None) -> list[Record]:
        segments = self.list_segments(name)
        if not segments:
            return []
        if after_rev < segments[0].start_rev:
            raise RevisionsGoneError(f"{name!r}: history starts at {segments[0].start_rev}")
        index = max(i for i, s in enumerate(segments) if s.start_rev <= after_rev)
        with self._lock:
            cursor = self._cursors.pop(name, None)
        offset = 0
        if cursor is not None and cursor[0] == segments[index].log and cursor[2] == after_rev:
            offset = cursor[1]
        records: list[Record] = []
        last = after_rev
        while True:
            path = segments[index].log
            following = segments[index + 1].start_rev if index + 1 < len(segments) else None
            decoded = decode_log(path, offset)
            ends = [*decoded.offsets[1:], decoded.end] if decoded.records else []
            offset = decoded.end
            for record, start, end in zip(decoded.records, decoded.offsets, ends, strict=True):
                if record.rev <= last:
                    continue
                if following is not None and record.rev > following:
                    break
                if record.rev != last + 1:
                    raise HistoryError(
                        path, start, f"rev {record.rev} where {last + 1} was expected"
                    )
                records.append(record)
                last = record.rev
                if limit is not None and len(records) >= limit:
                    offset = end
                    following = None  # stop here
                    break
            if following is None:
                self._remember(name, (path, offset, last))
                return records
            index, offset = index + 1, 0

    def _remember(self, name: str, cursor: tuple[Path, int, int]) -> None:
        with self._lock:
            self._cursors[name] = cursor
            while len(self._cursors) > self.max_cursors:
                self._cursors.popitem(last=False)


async def read_store_history(
    store: RevisionHistory, name: str, batch: int = 10_000
) -> RetainedLog | None:
    """A document's whole kept history from any `RevisionHistory` store (None: no document)."""
    for attempt in range(3):  # a compaction that drops history may race the reading
        try:
            start = await store.history_start(name)
            if start is None:
                return None
            snapshot = await store.snapshot_at_or_before(name, start) if start else None
            if start and (snapshot is None or snapshot.rev != start):
                raise RevisionsGoneError(f"{name!r}: the snapshot at rev {start} is gone")
            records: list[Record] = []
            while True:
                after = records[-1].rev if records else start
                more = await store.history_records(name, after, batch)
                records += more
                if len(more) < batch:
                    break
            return RetainedLog(start, snapshot.state if snapshot else None, records)
        except RevisionsGoneError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
