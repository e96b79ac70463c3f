"""Reading a document's whole retained history: revisions, the text at any of them, verify.

A document's history is every log segment the store kept (docs/storage.md), oldest first.
`DocumentHistory` indexes it once: the metadata of every revision, the Yjs updates in one
compact buffer, and a **checkpoint** — the full Yjs state — every `CHECKPOINT_INTERVAL`
revisions, kept in a temporary file. The text at revision R then costs one checkpoint
load plus at most `CHECKPOINT_INTERVAL - 1` updates, never a replay from the start; a
forward step from the last revision asked for applies only the updates in between.
New revisions are read from where the index stopped (`refresh`), so the index grows
with the document.

Why checkpoints of Yjs state rather than text + code-point ops: applying a stored update
to a bare `Doc` costs ~10 µs, while deriving its op (text events, as `Session` does) costs
0.4-3 ms per revision on a long, fragmented text — minutes for 100,000 revisions.
"""

from __future__ import annotations

import bisect
import datetime
import math
import os
import re
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

from collab.crdt import InvalidUpdateError, apply_update
from collab.records import RECORD_HEADER, Record, RecordFormatError, decode_records
from collab.store import (
    LOG_HEADER,
    CompactionError,
    CorruptDocumentError,
    FileStore,
    Segment,
    check_log_header,
    read_snapshot_file,
    verify_snapshot,
)

CHECKPOINT_INTERVAL = 1000
_SEGMENT_FILE = re.compile(r"log-(\d{12})\.ylog")


class HistoryError(Exception):
    """The history cannot be read: `path`, byte `offset` and what is wrong."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at byte {offset}: {reason}")
        self.path, self.offset, self.reason = Path(path), offset, reason


class RevisionNotFoundError(LookupError):
    """The revision is not in the retained history (too new, or no longer kept)."""


@dataclass(frozen=True)
class RevisionInfo:
    """What the history view shows of one revision."""

    rev: int
    time: float
    origin: str
    user: str | None
    size: int  # bytes of the Yjs update

    def as_json(self) -> dict[str, Any]:
        return {
            "rev": self.rev,
            "time": iso_time(self.time),
            "unix_time": self.time,
            "origin": self.origin,
            "user": self.user,
            "size": self.size,
        }


def iso_time(unix: float) -> str:
    """`2025-01-31T12:00:00.123Z`, rounded up to the millisecond: asking for the text at
    a revision's listed time then includes that revision."""
    moment = datetime.datetime.fromtimestamp(math.ceil(unix * 1000) / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Unix time of an ISO-8601 date or date-time (UTC unless it names a zone)."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


# ---------------------------------------------------------------------- finding segments


def segments_at(path: Path) -> list[Segment]:
    """The segments at `path`: a document's directory, or one log file (e.g. a copy).

    A log file named ``log-R.ylog`` with R > 0 takes ``snapshot-R.ysnap`` beside it as
    its starting state, when there is one.
    """
    path = Path(path)
    if path.is_dir():
        logs = sorted(path.glob("log-*.ylog"))
        found = [_segment_for(log) for log in logs if _SEGMENT_FILE.fullmatch(log.name)]
        return [segment for segment in found if segment.start_rev == 0 or segment.snapshot]
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return [_segment_for(path)]


def _segment_for(log: Path) -> Segment:
    match = _SEGMENT_FILE.fullmatch(log.name)
    start = int(match[1]) if match else _first_rev(log) - 1
    snapshot = log.with_name(f"snapshot-{start:012d}.ysnap")
    return Segment(start, snapshot if start and snapshot.exists() else None, log)


def _first_rev(log: Path) -> int:
    """The revision of the first record in a log file (1 when it has none)."""
    data = _read_log_bytes(log, 0)
    try:
        decoded = decode_records(data[: RECORD_HEADER.size + _first_length(data)])
    except RecordFormatError:
        return 1
    return decoded.records[0].rev if decoded.records else 1


def _first_length(data: bytes) -> int:
    return RECORD_HEADER.unpack_from(data)[0] if len(data) >= RECORD_HEADER.size else 0


def document_segments(data_dir: Path, name: str) -> list[Segment]:
    """The segments of document `name` in a `collab serve --data-dir`."""
    return FileStore(Path(data_dir), fsync=False).segments(name)


# ---------------------------------------------------------------------- reading the log


def _read_log_bytes(path: Path, offset: int) -> bytes:
    """The bytes of a log from `offset` (checking the header when reading from the start)."""
    try:
        with open(path, "rb") as file:
            if offset <= LOG_HEADER.size:
                try:
                    check_log_header(path, file.read(LOG_HEADER.size))
                except CorruptDocumentError as error:
                    raise HistoryError(path, error.offset, error.reason) from None
                offset = LOG_HEADER.size
            file.seek(offset)
            return file.read()
    except OSError as error:
        raise HistoryError(path, offset, f"cannot read: {error}") from None


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
            first = segments[0]
            if first.snapshot is not None:
                self.base_state = read_snapshot_file(first.snapshot, first.start_rev)
            elif first.start_rev:
                reason = (
                    f"the log starts after rev {first.start_rev}: it needs "
                    f"snapshot-{first.start_rev:012d}.ysnap beside it"
                )
                raise HistoryError(first.log, 0, reason)
            self.base_rev = self.last_rev = first.start_rev
            self._log, self._offset = first.log, 0
        records: list[Record] = []
        index = self._position(segments)
        while True:
            following = segments[index + 1] if index + 1 < len(segments) else None
            records += self._read_segment(None if following is None else following.start_rev)
            if following is None:
                return records
            index += 1
            self._log, self._offset = following.log, 0

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
        data = _read_log_bytes(path, self._offset)
        start = max(self._offset, LOG_HEADER.size)
        try:
            decoded = decode_records(data)
        except RecordFormatError as error:
            raise HistoryError(path, start + error.offset, error.reason) from None
        records = []
        for record, offset in zip(decoded.records, decoded.offsets, strict=True):
            if record.rev <= self.last_rev:
                continue
            if limit is not None and record.rev > limit:
                break
            if record.rev != self.last_rev + 1:
                reason = f"rev {record.rev} where rev {self.last_rev + 1} was expected"
                raise HistoryError(path, start + offset, reason)
            records.append(record)
            self.last_rev = record.rev
        self._offset = start + decoded.end
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


def read_history(segments: list[Segment]) -> RetainedLog:
    """Every kept record of a document, across its segments, oldest first."""
    reader = LogReader(lambda: segments)
    records = reader.read_new()
    return RetainedLog(reader.base_rev or 0, reader.base_state, records)


# ---------------------------------------------------------------------- the index


@dataclass
class _Cursor:
    """A document positioned at one revision, kept to serve the next step forward cheaply."""

    rev: int
    doc: Doc
    text: Text


class DocumentHistory:
    """The retained history of one document, indexed for random access (thread-safe)."""

    def __init__(
        self,
        reader: LogReader,
        text_name: str = "text",
        interval: int = CHECKPOINT_INTERVAL,
    ) -> None:
        self.reader = reader
        self.text_name = text_name
        self.interval = interval
        self.base_rev = 0
        self._lock = threading.RLock()
        self._times = array("d")
        self._max_times = array("d")  # running maximum: clocks may step back
        self._origins: list[str] = []
        self._users: list[str | None] = []
        self._interned: dict[str, str] = {}
        self._updates = bytearray()
        self._update_ends = array("Q")
        self._checkpoints: dict[int, tuple[int, int]] = {}  # rev -> (offset, length)
        self._checkpoint_file = tempfile.TemporaryFile(prefix="collab-history-")  # noqa: SIM115
        self._tail: Doc | None = None
        self._cursor: _Cursor | None = None

    def close(self) -> None:
        self._checkpoint_file.close()

    @property
    def last_rev(self) -> int:
        return self.base_rev + len(self._times)

    @property
    def exists(self) -> bool:
        """Whether the document has any history at all (after a `refresh`)."""
        return self._tail is not None

    def refresh(self) -> int:
        """Index the revisions added since the last call; returns how many."""
        with self._lock:
            records = self.reader.read_new()
            if self.reader.base_rev is None:
                return 0  # no such document (yet)
            if self._tail is None:
                self._start()
            for record in records:
                self._add(record)
            return len(records)

    def _start(self) -> None:
        self.base_rev = self.reader.base_rev or 0
        self._tail = Doc()
        self._tail.get(self.text_name, type=Text)
        if self.reader.base_state:
            self._apply(self._tail, self.reader.base_state, self.base_rev)
        self._save_checkpoint(self.base_rev, self._tail.get_update())

    def _add(self, record: Record) -> None:
        assert self._tail is not None
        self._apply(self._tail, record.update, record.rev)
        previous = self._max_times[-1] if self._max_times else record.time
        self._times.append(record.time)
        self._max_times.append(max(previous, record.time))
        self._origins.append(self._interned.setdefault(record.origin, record.origin))
        user = record.user
        self._users.append(None if user is None else self._interned.setdefault(user, user))
        self._updates += record.update
        self._update_ends.append(len(self._updates))
        if record.rev % self.interval == 0:
            self._save_checkpoint(record.rev, self._tail.get_update())

    def _save_checkpoint(self, rev: int, state: bytes) -> None:
        file = self._checkpoint_file
        offset = file.seek(0, os.SEEK_END)
        file.write(state)
        file.flush()
        self._checkpoints[rev] = (offset, len(state))

    def _load_checkpoint(self, rev: int) -> bytes:
        offset, length = self._checkpoints[rev]
        return os.pread(self._checkpoint_file.fileno(), length, offset)

    @staticmethod
    def _apply(doc: Doc, update: bytes, rev: int) -> None:
        try:
            apply_update(doc, update)
        except InvalidUpdateError as error:
            message = f"the update of rev {rev} does not apply: {error}"
            raise HistoryError("log", 0, message) from None

    def _update(self, rev: int) -> bytes:
        index = rev - self.base_rev - 1
        start = self._update_ends[index - 1] if index else 0
        return bytes(self._updates[start : self._update_ends[index]])

    # ------------------------------------------------------------------ queries

    def _check_rev(self, rev: int) -> None:
        if not self.exists:
            raise RevisionNotFoundError("the document has no history")
        if rev > self.last_rev:
            raise RevisionNotFoundError(f"no revision {rev}: the latest is {self.last_rev}")
        if rev < self.base_rev:
            raise RevisionNotFoundError(
                f"revision {rev} is no longer kept: history starts at {self.base_rev}"
            )

    def text_at(self, rev: int) -> str:
        """The text as it was right after revision `rev` (the base revision: before any)."""
        with self._lock:
            self._check_rev(rev)
            cursor = self._cursor
            checkpoint = max(self.base_rev, rev - rev % self.interval)
            if cursor is None or not checkpoint <= cursor.rev <= rev:
                doc = Doc()
                text = doc.get(self.text_name, type=Text)
                self._apply(doc, self._load_checkpoint(checkpoint), checkpoint)
                cursor = _Cursor(checkpoint, doc, text)
            for step in range(cursor.rev + 1, rev + 1):
                self._apply(cursor.doc, self._update(step), step)
            cursor.rev = rev
            self._cursor = cursor
            return str(cursor.text)

    def rev_at_time(self, unix: float) -> int:
        """The last revision made at or before `unix` (the base revision if none was)."""
        with self._lock:
            return self.base_rev + bisect.bisect_right(self._max_times, unix)

    def info(self, rev: int) -> RevisionInfo:
        with self._lock:
            if not self.base_rev < rev <= self.last_rev:
                raise RevisionNotFoundError(f"no revision {rev} in the kept history")
            index = rev - self.base_rev - 1
            start = self._update_ends[index - 1] if index else 0
            size = self._update_ends[index] - start
            user = self._users[index]
            return RevisionInfo(rev, self._times[index], self._origins[index], user, size)

    def page(self, before: int | None = None, limit: int = 50) -> list[RevisionInfo]:
        """Up to `limit` revisions older than `before` (default: from the latest), newest first."""
        with self._lock:
            top = self.last_rev if before is None else min(before - 1, self.last_rev)
            bottom = max(self.base_rev, top - max(limit, 0))
            return [self.info(rev) for rev in range(top, bottom, -1)]


# ---------------------------------------------------------------------- a cache of indexes


@dataclass
class HistoryCache:
    """One `DocumentHistory` per document, the most recently used kept (for the server).

    Call `get` from a worker thread: building an index reads the whole log.
    """

    list_segments: Callable[[str], list[Segment]]
    text_name: str = "text"
    max_documents: int = 8
    _histories: dict[str, DocumentHistory] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str) -> DocumentHistory:
        """The index of `name`, brought up to date with what is on disk."""
        with self._lock:
            history = self._histories.pop(name, None)
            fresh = history is None
            if history is None:
                history = self._new(name)
            self._histories[name] = history  # most recent last
            while len(self._histories) > self.max_documents:
                self._histories.pop(next(iter(self._histories))).close()
        try:
            history.refresh()
        except HistoryError:
            with self._lock:
                if self._histories.get(name) is history:
                    del self._histories[name]
            if fresh:
                raise
            return self.get(name)  # the files changed under the index (history removed)
        return history

    def _new(self, name: str) -> DocumentHistory:
        return DocumentHistory(LogReader(lambda: self.list_segments(name)), self.text_name)


# ---------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Problem:
    """Something wrong in a document's files, and where."""

    path: Path
    offset: int
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        kind = "error" if self.fatal else "warning"
        return f"{self.path}: byte {self.offset}: {kind}: {self.message}"


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    segments: int = 0
    records: int = 0
    snapshots: int = 0
    last_rev: int = 0

    @property
    def ok(self) -> bool:
        return not any(problem.fatal for problem in self.problems)


def verify(
    segments: list[Segment],
    text_name: str = "text",
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check a document's files: headers and checksums of every log record and snapshot,
    revisions that follow each other, updates that apply, and that replaying the log from
    the start gives each snapshot's document. Reports every problem it can find."""
    report = VerifyReport(segments=len(segments))
    doc: Doc | None = None  # the replay, at revision `replayed`
    replayed = 0
    for index, segment in enumerate(segments):
        limit = segments[index + 1].start_rev if index + 1 < len(segments) else None
        if segment.snapshot is not None:
            state = _check_snapshot(report, segment, doc, replayed)
            if state is not None and (doc is None or replayed != segment.start_rev):
                doc = _new_doc(text_name, state)  # replay on from the snapshot
                replayed = segment.start_rev
        elif doc is None:
            doc = _new_doc(text_name, None)
        replayed = _verify_log(report, segment, doc, replayed, limit, progress)
    report.last_rev = replayed
    return report


def _new_doc(text_name: str, state: bytes | None) -> Doc:
    doc = Doc()
    doc.get(text_name, type=Text)
    if state:
        doc.apply_update(state)
    return doc


def _check_snapshot(
    report: VerifyReport, segment: Segment, doc: Doc | None, replayed: int
) -> bytes | None:
    """Read one snapshot file and compare it with the replay, when the replay reached it."""
    assert segment.snapshot is not None
    report.snapshots += 1
    try:
        state = read_snapshot_file(segment.snapshot, segment.start_rev)
    except CorruptDocumentError as error:
        report.problems.append(Problem(error.path, error.offset, error.reason))
        return None
    if doc is None:
        return state  # the oldest segment kept: nothing to compare with
    if replayed != segment.start_rev:
        message = f"the log before it ends at rev {replayed}, not at {segment.start_rev}"
        report.problems.append(Problem(segment.snapshot, 0, message))
        return state
    try:
        verify_snapshot(doc.get_update(), [], state)
    except CompactionError as error:
        message = f"differs from the replay of the log up to rev {segment.start_rev}: {error}"
        report.problems.append(Problem(segment.snapshot, 0, message))
    return state


def _verify_log(
    report: VerifyReport,
    segment: Segment,
    doc: Doc | None,
    expected: int,
    limit: int | None,
    progress: Callable[[int], None] | None,
) -> int:
    path = segment.log
    try:
        data = _read_log_bytes(path, 0)
    except HistoryError as error:
        report.problems.append(Problem(error.path, error.offset, error.reason))
        return expected
    base = LOG_HEADER.size
    try:
        decoded = decode_records(data)
    except RecordFormatError as error:
        report.problems.append(Problem(path, base + error.offset, error.reason))
        decoded = decode_records(data[: error.offset])  # check what comes before it
    if decoded.torn is not None:
        what = "a torn last record (a crash during a write; cut when the document loads)"
        report.problems.append(
            Problem(path, base + decoded.end, f"{what}: {decoded.torn}", fatal=limit is not None)
        )
    if decoded.records and decoded.records[0].rev != segment.start_rev + 1:
        message = f"first record is rev {decoded.records[0].rev}, not {segment.start_rev + 1}"
        report.problems.append(Problem(path, base + decoded.offsets[0], message))
    for record, offset in zip(decoded.records, decoded.offsets, strict=True):
        if record.rev <= expected:
            continue  # already replayed from the previous segment (carried over)
        if limit is not None and record.rev > limit:
            break
        if record.rev != expected + 1:
            message = f"rev {record.rev} follows rev {expected}: revisions are missing"
            report.problems.append(Problem(path, base + offset, message))
        try:
            if doc is not None:
                apply_update(doc, record.update)
        except InvalidUpdateError as error:
            message = f"the update of rev {record.rev} does not apply: {error}"
            report.problems.append(Problem(path, base + offset, message))
        expected = record.rev
        report.records += 1
        if progress is not None:
            progress(record.rev)
    return expected


# ---------------------------------------------------------------------- stepping


def texts(log: RetainedLog, text_name: str = "text") -> Iterator[tuple[Record, str]]:
    """Each record with the text right after it, replaying from the start of `log`."""
    doc = _new_doc(text_name, log.base_state)
    text = doc.get(text_name, type=Text)
    for record in log.records:
        DocumentHistory._apply(doc, record.update, record.rev)
        yield record, str(text)


def rev_at_time(log: RetainedLog, unix_time: float) -> int:
    """The last revision made at or before `unix_time` (clocks that step back count as
    the latest time seen so far)."""
    latest = float("-inf")
    rev = log.base_rev
    for record in log.records:
        latest = max(latest, record.time)
        if latest > unix_time:
            break
        rev = record.rev
    return rev


def replay_text(
    log: RetainedLog,
    rev: int | None = None,
    text_name: str = "text",
    progress: Callable[[int], None] | None = None,
) -> str:
    """The text at `rev` (default: the last), in one pass over the log.

    Raises `RevisionNotFoundError` for a revision outside the kept history.
    """
    target = log.last_rev if rev is None else rev
    if target > log.last_rev:
        raise RevisionNotFoundError(f"no revision {target}: the latest is {log.last_rev}")
    if target < log.base_rev:
        message = f"revision {target} is no longer kept: history starts at {log.base_rev}"
        raise RevisionNotFoundError(message)
    doc = _new_doc(text_name, log.base_state)
    for record in log.records[: target - log.base_rev]:
        DocumentHistory._apply(doc, record.update, record.rev)
        if progress is not None:
            progress(record.rev - log.base_rev)
    return str(doc.get(text_name, type=Text))
