"""Where documents live between sessions: the `Store` protocol and two stores.

`FileStore` keeps each document as snapshot + append-only log segments (layout and byte
formats in docs/storage.md); `MemoryStore` keeps the same thing in dicts, for tests and
embedding. Both follow the contract in docs/architecture.md ("Store contract").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import struct
import threading
import time
import uuid
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from pycrdt import Doc, Text

from collab.config import Settings
from collab.crdt import InvalidUpdateError, apply_update
from collab.names import storage_key
from collab.records import (
    MIN_BODY,
    RECORD_HEADER,
    Record,
    RecordFormatError,
    decode_records,
    encode_records,
)

log = logging.getLogger(__name__)

#: Header of a log segment file: magic, format version.
LOG_HEADER = struct.Struct("<4sI")
LOG_MAGIC = b"CLOG"
LOG_VERSION = 1
#: Header of a snapshot file: magic, format version, rev, crc32(state), len(state).
SNAPSHOT_HEADER = struct.Struct("<4sIQIQ")
SNAPSHOT_MAGIC = b"CSNP"
SNAPSHOT_VERSION = 1

NAME_FILE = "name"
_REV = struct.Struct("<Q")
_SEGMENT_FILE = re.compile(r"(snapshot|log)-(\d{12})\.(ysnap|ylog)")


# --- Contract --------------------------------------------------------------------------------


class StoreError(Exception):
    """Something went wrong storing or loading a document."""


class CorruptDocumentError(StoreError):
    """A document's files cannot be read; nothing was returned and nothing was changed."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at offset {offset}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


class CompactionError(StoreError):
    """A snapshot was refused: it is not the state of the log it should replace."""


@dataclass
class StoredDocument:
    snapshot: bytes | None  # full state at snapshot_rev (None: no snapshot yet)
    snapshot_rev: int  # 0 when there is no snapshot
    records: list[Record]  # every record after snapshot_rev, in order
    log_bytes: int  # size of the current log segment's records (drives compaction)
    snapshot_meta: bytes = b""  # the session's metadata saved with the snapshot

    @property
    def rev(self) -> int:
        """The last revision stored."""
        return self.records[-1].rev if self.records else self.snapshot_rev


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    size_bytes: int  # bytes on disk (FileStore: every file kept, history included)
    rev: int


class Store(Protocol):
    async def load(self, name: str) -> StoredDocument | None:
        """None: never stored. Raises CorruptDocumentError, never returns partial data."""
        ...

    async def append(self, name: str, records: Sequence[Record]) -> None:
        """Durable on return (with fsync): all records, one fsync."""
        ...

    async def compact(self, name: str, snapshot: bytes, rev: int) -> None:
        """snapshot = full state (Doc.get_update()) including every record up to rev."""
        ...

    async def list(self) -> list[DocumentInfo]: ...

    async def delete(self, name: str) -> None: ...

    async def release(self, name: str) -> None:
        """The document left memory: close what is held open for it (files, handles)."""
        ...

    async def close(self) -> None: ...


# --- Checks shared by both stores --------------------------------------------------------------


def check_next_revs(last_rev: int, records: Sequence[Record]) -> None:
    """Refuse records that do not continue the log at last_rev + 1, + 2, ..."""
    for expected, record in enumerate(records, start=last_rev + 1):
        if record.rev != expected:
            raise ValueError(f"record rev {record.rev} does not follow rev {expected - 1}")


def verify_snapshot(
    old_snapshot: bytes | None, records: Sequence[Record], new_snapshot: bytes
) -> None:
    """Raise CompactionError unless `new_snapshot` holds the same document as old + records.

    Compares what a full-state encoding cannot hide: the state vector (which changes exist),
    the delete set (which of them were deleted), the root names, and the text of each root
    read as a Y.Text. Byte equality of the two updates would be too strict: the same state
    has several valid encodings.
    """
    expected = Doc()
    if old_snapshot is not None:
        _apply(expected, old_snapshot, "the current snapshot")
    for record in records:
        _apply(expected, record.update, f"the update of rev {record.rev}")
    candidate = Doc()
    _apply(candidate, new_snapshot, "the new snapshot")
    if _fingerprint(expected) != _fingerprint(candidate):
        raise CompactionError("the snapshot differs from the log it should replace")


def _apply(doc: Doc, update: bytes, what: str) -> None:
    try:
        apply_update(doc, update)
    except InvalidUpdateError as error:
        raise CompactionError(f"cannot apply {what}: {error}") from None


def _fingerprint(doc: Doc) -> tuple[object, ...]:
    """What makes two documents the same, for `verify_snapshot` (consumes `doc`'s roots)."""
    state = _read_state_vector(doc.get_state())
    # An update relative to the full state vector holds no items, only the delete set.
    deletes = _read_delete_set(doc.get_update(doc.get_state()))
    names = sorted(doc.keys())
    texts = [str(doc.get(name, type=Text)) for name in names]
    return state, deletes, names, texts


def _read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _read_state_vector(data: bytes) -> dict[int, int]:
    count, pos = _read_var_uint(data, 0)
    clocks = {}
    for _ in range(count):
        client, pos = _read_var_uint(data, pos)
        clocks[client], pos = _read_var_uint(data, pos)
    return clocks


def _read_delete_set(update: bytes) -> dict[int, list[tuple[int, int]]]:
    """The delete set of an item-less update, as merged (start, end) ranges per client."""
    structs, pos = _read_var_uint(update, 0)
    if structs:
        raise CompactionError("unexpected items in a delete-set update")
    clients, pos = _read_var_uint(update, pos)
    result: dict[int, list[tuple[int, int]]] = {}
    for _ in range(clients):
        client, pos = _read_var_uint(update, pos)
        count, pos = _read_var_uint(update, pos)
        ranges = []
        for _ in range(count):
            clock, pos = _read_var_uint(update, pos)
            length, pos = _read_var_uint(update, pos)
            ranges.append((clock, clock + length))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        if merged:
            result[client] = merged
    return result


# --- MemoryStore ----------------------------------------------------------------------------


@dataclass
class _MemoryDocument:
    snapshot: bytes | None = None
    snapshot_rev: int = 0
    records: list[Record] = field(default_factory=list)
    log_bytes: int = 0


class MemoryStore:
    """Documents in dicts: the same contract as FileStore, nothing durable."""

    def __init__(self) -> None:
        self._docs: dict[str, _MemoryDocument] = {}

    async def load(self, name: str) -> StoredDocument | None:
        storage_key(name)  # the same names as FileStore are refused
        doc = self._docs.get(name)
        if doc is None:
            return None
        return StoredDocument(doc.snapshot, doc.snapshot_rev, list(doc.records), doc.log_bytes)

    async def append(self, name: str, records: Sequence[Record]) -> None:
        storage_key(name)
        if not records:
            return
        doc = self._docs.get(name) or _MemoryDocument()
        last = doc.records[-1].rev if doc.records else doc.snapshot_rev
        check_next_revs(last, records)
        doc.records.extend(records)
        doc.log_bytes += len(encode_records(records))
        self._docs[name] = doc

    async def compact(self, name: str, snapshot: bytes, rev: int) -> None:
        doc = self._docs.get(name)
        if doc is None:
            raise CompactionError(f"no document {name!r} to compact")
        stored = StoredDocument(doc.snapshot, doc.snapshot_rev, doc.records, doc.log_bytes)
        replaced = _replaced_by(stored, snapshot, rev)
        if replaced is None:
            return
        doc.records = doc.records[replaced:]
        doc.snapshot, doc.snapshot_rev = snapshot, rev
        doc.log_bytes = len(encode_records(doc.records))

    async def list(self) -> list[DocumentInfo]:
        return [
            DocumentInfo(name, _memory_size(doc), _last_rev(doc.snapshot_rev, doc.records))
            for name, doc in self._docs.items()
        ]

    async def delete(self, name: str) -> None:
        self._docs.pop(name, None)

    async def release(self, name: str) -> None:
        """Nothing to release (FileStore closes the document's log handle)."""

    async def close(self) -> None:
        pass


def _memory_size(doc: _MemoryDocument) -> int:
    return len(doc.snapshot or b"") + doc.log_bytes


def _last_rev(snapshot_rev: int, records: Sequence[Record]) -> int:
    return records[-1].rev if records else snapshot_rev


def _replaced_by(stored: StoredDocument, snapshot: bytes, rev: int) -> int | None:
    """How many of `stored`'s records a snapshot at `rev` replaces, once it is checked to
    hold exactly them; None when there is nothing to compact."""
    snapshot_rev, records = stored.snapshot_rev, stored.records
    last = _last_rev(snapshot_rev, records)
    if rev == snapshot_rev:
        return None
    if not snapshot_rev < rev <= last:
        raise CompactionError(f"cannot compact at rev {rev}: the log holds {snapshot_rev}..{last}")
    count = rev - snapshot_rev
    verify_snapshot(stored.snapshot, records[:count], snapshot)
    return count


# --- FileStore: files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One retained snapshot/log pair of a document, as `FileStore.segments` lists them.

    The log holds records with rev > start_rev. After a compaction at rev R that found
    records past R, those records are in both this log and the next one: readers take a
    segment's records only up to the next segment's start_rev.
    """

    start_rev: int
    snapshot: Path | None  # None for the first segment of a document (start_rev 0)
    log: Path


def _snapshot_path(directory: Path, rev: int) -> Path:
    return directory / f"snapshot-{rev:012d}.ysnap"


def _log_path(directory: Path, rev: int) -> Path:
    return directory / f"log-{rev:012d}.ylog"


def _scan(directory: Path) -> tuple[set[int], set[int]]:
    """The revs of the snapshot files and of the log files in a document's directory."""
    snapshots: set[int] = set()
    logs: set[int] = set()
    for entry in os.listdir(directory):
        match = _SEGMENT_FILE.fullmatch(entry)
        if match and match[3] == ("ysnap" if match[1] == "snapshot" else "ylog"):
            (snapshots if match[1] == "snapshot" else logs).add(int(match[2]))
    return snapshots, logs


def encode_snapshot(rev: int, state: bytes) -> bytes:
    header = SNAPSHOT_HEADER.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_VERSION, rev, zlib.crc32(state), len(state)
    )
    return header + state


def read_snapshot_file(path: Path, rev: int | None = None) -> bytes:
    """The Yjs state in a snapshot file; CorruptDocumentError if it is damaged in any way."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorruptDocumentError(path, 0, f"cannot read snapshot: {error}") from None
    if len(data) < SNAPSHOT_HEADER.size:
        raise CorruptDocumentError(path, 0, "snapshot shorter than its header")
    magic, version, file_rev, crc, length = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptDocumentError(path, 0, f"not a snapshot file (magic {magic!r})")
    if version != SNAPSHOT_VERSION:
        raise CorruptDocumentError(path, 4, f"unknown snapshot version {version}")
    if rev is not None and file_rev != rev:
        raise CorruptDocumentError(path, 8, f"snapshot says rev {file_rev}, file name {rev}")
    state = data[SNAPSHOT_HEADER.size :]
    if len(state) != length:
        raise CorruptDocumentError(path, 24, f"state is {len(state)} bytes, header says {length}")
    if zlib.crc32(state) != crc:
        raise CorruptDocumentError(path, SNAPSHOT_HEADER.size, "snapshot CRC mismatch")
    return state


def check_log_header(path: Path, header: bytes) -> None:
    """Raise CorruptDocumentError unless `header` is a log file's header of our version."""
    if len(header) < LOG_HEADER.size:
        raise CorruptDocumentError(path, 0, "log shorter than its header")
    magic, version = LOG_HEADER.unpack(header)
    if magic != LOG_MAGIC:
        raise CorruptDocumentError(path, 0, f"not a log file (magic {magic!r})")
    if version != LOG_VERSION:
        raise CorruptDocumentError(path, 4, f"unknown log version {version}")


def _decode_log(path: Path, data: bytes) -> tuple[list[Record], list[int], int, str | None]:
    """Records, their offsets, the end of the last good one, and why the rest is torn."""
    check_log_header(path, data[: LOG_HEADER.size])
    try:
        decoded = decode_records(data, LOG_HEADER.size)
    except RecordFormatError as error:
        raise CorruptDocumentError(path, error.offset, error.reason) from None
    return decoded.records, decoded.offsets, decoded.end, decoded.torn


def read_log_file(path: Path) -> list[Record]:
    """Every good record in a log file, e.g. one copied elsewhere; never changes the file.

    A torn tail is skipped with a warning; damage in the middle raises CorruptDocumentError.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorruptDocumentError(path, 0, f"cannot read log: {error}") from None
    records, _, end, torn = _decode_log(path, data)
    if torn is not None:
        log.warning("%s: ignoring a torn tail at offset %d (%s)", path, end, torn)
    return records


def _check_contiguous(
    path: Path, start_rev: int, records: Sequence[Record], offsets: Sequence[int]
) -> None:
    for expected, record, offset in zip(
        range(start_rev + 1, start_rev + 1 + len(records)), records, offsets, strict=True
    ):
        if record.rev != expected:
            raise CorruptDocumentError(path, offset, f"rev {record.rev}, expected {expected}")


# --- FileStore ----------------------------------------------------------------------------------


@dataclass
class _OpenLog:
    """What the store knows about a document's current log segment while it works on it."""

    path: Path
    last_rev: int
    size: int  # bytes in the file, header included
    handle: BinaryIO | None = None


# An append (write + fsync) that usually takes less than this runs on the event loop: a
# fast disk's fsync (tens of microseconds) costs less than the hop to a worker thread. A
# slower disk's moves to a thread, so it never stalls the other documents.
INLINE_APPEND_SECONDS = 0.0005


class FileStore:
    """Snapshot + append-only log per document, in `data_dir/docs/<storage_key>/`.

    Blocking file I/O runs in worker threads; one asyncio lock per document keeps its
    operations in order. `fsync=False` skips every fsync (tests and benchmarks only).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        keep_history: bool = True,
        max_open_logs: int = 128,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.docs_dir = self.data_dir / "docs"
        self.fsync = fsync
        self.keep_history = keep_history
        self.max_open_logs = max_open_logs
        self._logs: OrderedDict[str, _OpenLog] = OrderedDict()  # by storage key, LRU order
        self._logs_lock = threading.Lock()  # guards the dict itself, never held during I/O
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._append_seconds = 0.0  # moving average of one append, fsync included

    @classmethod
    def from_settings(cls, settings: Settings) -> FileStore:
        """The store `settings` ask for (data_dir, fsync, keep_history)."""
        return cls(
            settings.data_dir,
            fsync=settings.fsync == "always",
            keep_history=settings.keep_history,
        )

    # -- async API --

    async def load(self, name: str) -> StoredDocument | None:
        key = storage_key(name)
        async with self._lock(key):
            return await asyncio.to_thread(self._load, name, key)

    async def append(self, name: str, records: Sequence[Record]) -> None:
        key = storage_key(name)
        if not records:
            return
        async with self._lock(key):
            if self._append_seconds < INLINE_APPEND_SECONDS:
                seconds = self._timed_append(name, key, records)
            else:
                seconds = await asyncio.to_thread(self._timed_append, name, key, records)
            self._append_seconds = 0.8 * self._append_seconds + 0.2 * seconds
        self._close_idle_handles()

    async def compact(self, name: str, snapshot: bytes, rev: int) -> None:
        key = storage_key(name)
        async with self._lock(key):
            await asyncio.to_thread(self._compact, name, key, snapshot, rev)

    async def list(self) -> list[DocumentInfo]:
        return await asyncio.to_thread(self._list)

    async def delete(self, name: str) -> None:
        key = storage_key(name)
        async with self._lock(key):
            await asyncio.to_thread(self._delete, key)

    async def release(self, name: str) -> None:
        """Close the document's log handle (e.g. when its session unloads)."""
        key = storage_key(name)
        async with self._lock(key):
            self._forget(key)

    async def close(self) -> None:
        for key in list(self._logs):
            async with self._lock(key):
                self._forget(key)

    def segments(self, name: str) -> list[Segment]:
        """Every retained snapshot/log pair of a document, oldest first ([] if none)."""
        directory = self.docs_dir / storage_key(name)
        if not directory.is_dir():
            return []
        snapshots, logs = _scan(directory)
        return [
            Segment(rev, _snapshot_path(directory, rev) if rev else None, _log_path(directory, rev))
            for rev in sorted(logs)
            if rev == 0 or rev in snapshots
        ]

    def _close_idle_handles(self) -> None:
        """Keep at most `max_open_logs` log files open, closing the least recently used.

        Runs on the event loop: a handle is used only by a worker thread that runs while its
        document's lock is held, and locks are taken only on the loop, so an unlocked
        document's handle cannot be in use while this runs.
        """
        with self._logs_lock:
            open_logs = [(k, s) for k, s in self._logs.items() if s.handle is not None]
            for key, state in open_logs[: max(0, len(open_logs) - self.max_open_logs)]:
                lock = self._locks.get(key)
                if (lock is None or not lock.locked()) and state.handle is not None:
                    state.handle.close()
                    state.handle = None

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # -- helpers --

    def _sync(self, fd: int) -> None:
        if self.fsync:
            os.fsync(fd)

    def _sync_dir(self, directory: Path) -> None:
        if self.fsync:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_new_file(self, path: Path, data: bytes) -> None:
        """Write `path` atomically: temp file, fsync, rename, fsync the directory."""
        temp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        try:
            with open(temp, "xb") as file:
                file.write(data)
                file.flush()
                self._sync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        self._sync_dir(path.parent)

    def _forget(self, key: str) -> None:
        with self._logs_lock:
            state = self._logs.pop(key, None)
        if state is not None and state.handle is not None:
            state.handle.close()

    def _current(self, directory: Path) -> int:
        """The rev of the current segment: the newest log (a log is written after its
        snapshot, so a snapshot without its log is a compaction that never finished)."""
        snapshots, logs = _scan(directory)
        if not logs:
            raise CorruptDocumentError(directory, 0, "no log segment")
        rev = max(logs)
        if rev and rev not in snapshots:
            raise CorruptDocumentError(_snapshot_path(directory, rev), 0, "snapshot missing")
        return rev

    def _check_name(self, directory: Path, name: str) -> None:
        path = directory / NAME_FILE
        try:
            stored = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CorruptDocumentError(path, 0, f"cannot read the name: {error}") from None
        if stored != name:
            raise CorruptDocumentError(path, 0, f"holds the name {stored[:50]!r}, not {name!r}")

    # -- load --

    def _load(self, name: str, key: str) -> StoredDocument | None:
        directory = self.docs_dir / key
        if not directory.is_dir():
            return None
        self._check_name(directory, name)
        rev = self._current(directory)
        snapshot = read_snapshot_file(_snapshot_path(directory, rev), rev) if rev else None
        path = _log_path(directory, rev)
        records, end = self._read_current_log(path, rev)
        self._remember(key, _OpenLog(path, _last_rev(rev, records), end))
        return StoredDocument(snapshot, rev, records, end - LOG_HEADER.size)

    def _read_current_log(self, path: Path, start_rev: int) -> tuple[list[Record], int]:
        """The records of the current log, cutting a torn tail off the file (only once
        everything before it is known to be good)."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CorruptDocumentError(path, 0, f"cannot read log: {error}") from None
        records, offsets, end, torn = _decode_log(path, data)
        _check_contiguous(path, start_rev, records, offsets)
        if torn is not None:
            log.warning(
                "%s: torn last record at offset %d (%s): cutting %d bytes",
                path,
                end,
                torn,
                len(data) - end,
            )
            with open(path, "r+b") as file:
                file.truncate(end)
                self._sync(file.fileno())
        return records, end

    def _remember(self, key: str, state: _OpenLog) -> None:
        old = self._logs.get(key)
        if old is not None and old.handle is not None and old.path == state.path:
            state.handle = old.handle
        elif old is not None:
            self._forget(key)
        with self._logs_lock:
            self._logs[key] = state
            self._logs.move_to_end(key)

    # -- append --

    def _timed_append(self, name: str, key: str, records: Sequence[Record]) -> float:
        start = time.perf_counter()
        self._append(name, key, records)
        return time.perf_counter() - start

    def _append(self, name: str, key: str, records: Sequence[Record]) -> None:
        directory = self.docs_dir / key
        state = self._logs.get(key)
        if state is None:
            if not directory.is_dir():
                self._create(name, key)
            stored = self._load(name, key)
            assert stored is not None
            state = self._logs[key]
        check_next_revs(state.last_rev, records)
        data = encode_records(records)
        handle = self._handle(key, state)
        try:
            _write_all(handle, data)
            self._sync(handle.fileno())
        except BaseException:
            self._undo_append(key, state)
            raise
        state.size += len(data)
        state.last_rev = records[-1].rev

    def _handle(self, key: str, state: _OpenLog) -> BinaryIO:
        """The open log file of a document (kept open between appends)."""
        with self._logs_lock:
            self._logs.move_to_end(key)
        if state.handle is None:
            state.handle = open(state.path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        return state.handle

    def _undo_append(self, key: str, state: _OpenLog) -> None:
        """After a failed write or fsync: cut a partial write, and re-read the log next time
        (after a failed fsync nobody knows what reached the disk)."""
        try:
            with open(state.path, "r+b") as file:
                file.truncate(state.size)
        except OSError as error:  # the next load finds the torn tail and cuts it
            log.warning(
                "%s: cannot cut a failed write at byte %d: %s", state.path, state.size, error
            )
        self._forget(key)

    def _create(self, name: str, key: str) -> None:
        """Make the document's directory with its name and an empty log, all at once:
        everything is written in a temp directory that is then renamed into place."""
        if not self.docs_dir.is_dir():
            self.docs_dir.mkdir(parents=True, exist_ok=True)
            self._sync_dir(self.data_dir)
        temp = self.docs_dir / f".new-{uuid.uuid4().hex}"
        temp.mkdir()
        try:
            self._write_new_file(temp / NAME_FILE, name.encode("utf-8"))
            self._write_new_file(_log_path(temp, 0), LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION))
            os.rename(temp, self.docs_dir / key)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._sync_dir(self.docs_dir)

    # -- compact --

    def _compact(self, name: str, key: str, snapshot: bytes, rev: int) -> None:
        stored = self._load(name, key)
        if stored is None:
            raise CompactionError(f"no document {name!r} to compact")
        replaced = _replaced_by(stored, snapshot, rev)
        if replaced is None:
            return
        directory = self.docs_dir / key
        self._forget(key)
        self._write_new_file(_snapshot_path(directory, rev), encode_snapshot(rev, snapshot))
        log_data = LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION) + encode_records(
            stored.records[replaced:]
        )
        self._write_new_file(_log_path(directory, rev), log_data)
        self._remember(key, _OpenLog(_log_path(directory, rev), stored.rev, len(log_data)))
        if not self.keep_history:
            self._remove_before(directory, rev)

    def _remove_before(self, directory: Path, rev: int) -> None:
        snapshots, logs = _scan(directory)
        for old in sorted(snapshots | logs):
            if old < rev:
                _snapshot_path(directory, old).unlink(missing_ok=True)
                _log_path(directory, old).unlink(missing_ok=True)
        self._sync_dir(directory)

    # -- list, delete --

    def _list(self) -> list[DocumentInfo]:
        if not self.docs_dir.is_dir():
            return []
        infos = []
        for entry in sorted(os.listdir(self.docs_dir)):
            if entry.startswith("."):
                continue  # a document being created or deleted
            try:
                infos.append(self._info(entry))
            except (OSError, UnicodeDecodeError, CorruptDocumentError) as error:
                log.warning("%s: skipped in the document list: %s", self.docs_dir / entry, error)
        return infos

    def _info(self, key: str) -> DocumentInfo:
        directory = self.docs_dir / key
        name = (directory / NAME_FILE).read_bytes().decode("utf-8")
        size = sum(entry.stat().st_size for entry in os.scandir(directory) if entry.is_file())
        state = self._logs.get(key)
        if state is not None:
            return DocumentInfo(name, size, state.last_rev)
        rev = self._current(directory)
        return DocumentInfo(name, size, _scan_last_rev(_log_path(directory, rev), rev))

    def _delete(self, key: str) -> None:
        self._forget(key)
        directory = self.docs_dir / key
        if not directory.is_dir():
            return
        doomed = self.docs_dir / f".deleted-{uuid.uuid4().hex}"
        os.rename(directory, doomed)
        self._sync_dir(self.docs_dir)
        shutil.rmtree(doomed)


def _write_all(handle: BinaryIO, data: bytes) -> None:
    """Write everything to an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) :]


def _scan_last_rev(path: Path, start_rev: int) -> int:
    """The rev of the last complete record of a log, read from the headers only (for list)."""
    data = path.read_bytes()
    rev = start_rev
    pos = LOG_HEADER.size
    while pos + RECORD_HEADER.size + MIN_BODY <= len(data):
        length, _ = RECORD_HEADER.unpack_from(data, pos)
        body = pos + RECORD_HEADER.size
        if length < MIN_BODY or body + length > len(data):
            break
        (rev,) = _REV.unpack_from(data, body + 9)  # after the version byte and the time
        pos = body + length
    return rev
