"""`FileStore`: each document as snapshot + append-only log segments in a directory.

The byte formats and the layout are in `collab.storage.format` and docs/storage.md; this
module is the I/O: one asyncio lock per document, log handles kept open between appends,
group commit (one write + one fsync per append call), recovery of a torn tail on load,
and compaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from collab.access.names import storage_key
from collab.config import Settings
from collab.storage.contract import (
    DocumentInfo,
    Record,
    Segment,
    Snapshot,
    StoredDocument,
    check_next_revs,
    last_rev,
)
from collab.storage.dirlock import DirectoryLock
from collab.storage.durable import append_bytes, sync_dir, write_new_directory
from collab.storage.errors import CompactionError, CorruptDocumentError
from collab.storage.format import (
    DOCS_DIR,
    LOG_HEADER,
    check_contiguous,
    current_segment,
    decode_log,
    encode_log,
    encode_records,
    last_rev_in_log,
    log_path,
    read_snapshot_file,
    segment_of_file,
    snapshot_path,
)
from collab.storage.logs import SegmentRevisions, document_segments
from collab.storage.next_log import NextLog
from collab.storage.snapshots import (
    check_and_write_snapshot,
    remove_partial_snapshots,
    remove_segments_before,
    write_file_snapshot,
)
from collab.storage.threads import FsyncThreads, in_thread
from collab.storage.worker import WorkerError, run_in_process

log = logging.getLogger(__name__)

MAX_OPEN_LOGS = 1024  # log files kept open (appends reuse them); past it, the LRU close
NAME_FILE = "name"

# Appends fsync inline while fsyncs are fast and few (`FsyncPlan`), else on this many writer
# threads, apart from loads and compactions (which can take seconds) so they never queue
# behind them. Several documents' fsyncs in flight at once share the filesystem's journal
# commits: on ext4, ten concurrent fsyncs cost a third of the CPU and a quarter of the time
# of ten in a row (measured 22 µs against 73 µs of CPU each).
APPEND_THREADS = 8


@dataclass
class _OpenLog:
    """What the store knows about a document's current log segment while it works on it."""

    path: Path
    last_rev: int
    size: int  # bytes in the file, header included
    handle: BinaryIO | None = None
    lock: asyncio.Lock | None = None  # the document's lock, kept alive while its log is open


class FileStore:
    """Snapshot + append-only log per document, in `data_dir/docs/<storage_key>/`.

    Loading runs in worker threads, compaction in threads or a worker process. An append
    writes on the event loop (a write of a few hundred bytes to the page cache costs less
    than the hop to a thread) and fsyncs inline or on a writer thread (`FsyncPlan` decides
    by the fsyncs' length and rate). One asyncio lock per document keeps its order.
    `fsync=False` skips every fsync (tests and benchmarks only). A `HistoryStore` and a
    `RevisionHistory`: every segment is kept unless `keep_history=False`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        keep_history: bool = True,
        max_open_logs: int = MAX_OPEN_LOGS,
        exclusive: bool = True,
    ) -> None:
        """`exclusive` (the default) holds the data directory for this process (created if
        needed): another store on it raises `DataDirectoryError`. Readers of a live
        server's files (`collab replay`) pass False and never write."""
        self.data_dir = Path(data_dir)
        self._dir_lock = DirectoryLock(self.data_dir) if exclusive else None
        self.docs_dir = self.data_dir / DOCS_DIR
        self.fsync = fsync
        self.keep_history = keep_history
        self.max_open_logs = max_open_logs
        self._logs: OrderedDict[str, _OpenLog] = OrderedDict()  # by storage key, LRU order
        self._logs_lock = threading.Lock()  # guards the dict and the count, never held during I/O
        self._open_handles = 0  # logs with an open handle: past max_open_logs, the LRU close
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._compaction_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._fsyncs = FsyncThreads(APPEND_THREADS)  # started on the first fsynced append
        self._revisions = SegmentRevisions(self.segments)

    @classmethod
    def from_settings(cls, settings: Settings) -> FileStore:
        """The store `settings` ask for (--store as a path, or data_dir; fsync; history)."""
        return cls(
            Path(settings.store) if settings.store else settings.data_dir,
            fsync=settings.fsync == "always",
            keep_history=settings.keep_history,
        )

    # -- async API --

    async def load(self, name: str) -> StoredDocument | None:
        key = storage_key(name)
        async with self._lock(key):
            return await in_thread(self._load, name, key)

    async def append(self, name: str, records: Sequence[Record]) -> None:
        key = storage_key(name)
        if not records:
            return
        async with self._lock(key):
            state, written = self._logs.get(key), False
            if state is None:  # first append since load or restart: read the log's end
                state, written = await in_thread(self._open_log, name, key, records)
            if not written:  # (a new document's log is made with its first records)
                handle, size = await self._write(key, state, records)
                if self.fsync:
                    await self._fsync_append(key, state, handle)
                state.size = size
                state.last_rev = records[-1].rev
        if self._open_handles > self.max_open_logs:
            self._close_idle_handles()

    async def _fsync_append(self, key: str, state: _OpenLog, handle: BinaryIO) -> None:
        """fsync (inline or on a writer thread), the lock held until it returns, even when
        the caller is cancelled meanwhile (the write is then cut, as after a failure)."""
        synced = self._fsyncs.sync(handle.fileno())
        try:
            await asyncio.shield(synced)
        except BaseException:
            while not synced.done():  # cancelled again meanwhile: still wait for it
                with contextlib.suppress(BaseException):
                    await asyncio.shield(synced)
            self._undo_append(key, state)
            raise

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        """Start a new segment at `snapshot` (checked against the log in a thread). Appends
        wait only while the log is read and while segments switch. One compaction (or
        delete) of a document at a time (the compaction lock); a thread at work is awaited
        even when the caller is cancelled (docs/storage.md, "Compaction")."""
        key = storage_key(name)
        async with self._compaction_lock(key):
            async with self._lock(key):
                stored = await in_thread(self._load, name, key)
                if stored is None:
                    raise CompactionError(f"no document {name!r} to compact")
                read = self._logs[key]
                log_file, read_size = read.path, read.size
            directory, fsync = self.docs_dir / key, self.fsync
            replaced = await in_thread(check_and_write_snapshot, directory, stored, snapshot, fsync)
            if replaced is None:
                return
            kept = stored.records[replaced:]
            await self._switch_segment(key, snapshot.rev, kept, log_file, read_size)

    async def compact_at(
        self, name: str, rev: int, meta: bytes, memory_limit: int = 0
    ) -> Snapshot | None:
        """`compact` with the snapshot built from the files by a worker process; returns
        it (read back in a thread), or None when the log starts at `rev` already."""
        key = storage_key(name)
        directory = self.docs_dir / key
        async with self._compaction_lock(key):
            async with self._lock(key):
                if key not in self._logs and await in_thread(self._load, name, key) is None:
                    raise CompactionError(f"no document {name!r} to compact")
                log_file = self._logs[key].path
            start = segment_of_file(log_file).start_rev
            if rev == start:
                return None
            try:
                after = await run_in_process(
                    write_file_snapshot,
                    directory,
                    start,
                    rev,
                    meta,
                    self.fsync,
                    memory_limit=memory_limit,
                )
            except WorkerError as error:
                await in_thread(remove_partial_snapshots, directory, rev)
                raise CompactionError(f"{name!r}: snapshot at rev {rev}: {error}") from None
            await self._switch_segment(key, rev, [], log_file, after)
            return await in_thread(read_snapshot_file, snapshot_path(directory, rev), rev)

    async def list(self) -> list[DocumentInfo]:
        return await asyncio.to_thread(self._list)

    async def delete(self, name: str) -> None:
        key = storage_key(name)
        async with self._compaction_lock(key), self._lock(key):
            await in_thread(self._delete, key)

    async def release(self, name: str) -> None:
        """Close the document's log handle (e.g. when its session unloads)."""
        key = storage_key(name)
        async with self._lock(key):
            self._forget(key)

    async def start(self) -> None:
        """Nothing to do: the data directory was taken when the store was made."""

    async def close(self) -> None:
        for compacting in list(self._compaction_locks.values()):
            async with compacting:  # a compaction under way ends before the store does
                pass
        for key in list(self._logs):
            async with self._lock(key):
                self._forget(key)
        self._fsyncs.close()
        if self._dir_lock is not None:
            self._dir_lock.release()

    def segments(self, name: str) -> list[Segment]:
        """Every retained snapshot/log pair of a document, oldest first ([] if none)."""
        return document_segments(self.data_dir, name)

    # -- RevisionHistory: read from the segments, in worker threads --

    async def history_start(self, name: str) -> int | None:
        storage_key(name)
        return await asyncio.to_thread(self._revisions.start, name)

    async def history_records(
        self, name: str, after_rev: int, limit: int | None = None
    ) -> list[Record]:
        storage_key(name)
        return await asyncio.to_thread(self._revisions.records, name, after_rev, limit)

    async def snapshot_at_or_before(self, name: str, rev: int) -> Snapshot | None:
        storage_key(name)
        return await asyncio.to_thread(self._revisions.snapshot_at_or_before, name, rev)

    def _close_idle_handles(self) -> None:
        """Past `max_open_logs` open log files, close the least recently used down to 3/4
        of it: one scan per group, not one scan, close and reopen per append.

        Runs on the event loop: a handle is used only while its document's lock is held
        (by a worker thread, or inline on the loop), and locks are taken only on the loop,
        so an unlocked document's handle cannot be in use while this runs.
        """
        with self._logs_lock:
            open_logs = [(k, s) for k, s in self._logs.items() if s.handle is not None]
            for key, state in open_logs[: max(0, len(open_logs) - self.max_open_logs * 3 // 4)]:
                lock = self._locks.get(key)
                if (lock is None or not lock.locked()) and state.handle is not None:
                    state.handle.close()
                    state.handle = None
                    self._open_handles -= 1

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _compaction_lock(self, key: str) -> asyncio.Lock:
        """Held by a compaction from its read to its switch, and by a delete (taken
        before the document's lock)."""
        lock = self._compaction_locks.get(key)
        if lock is None:
            lock = self._compaction_locks[key] = asyncio.Lock()
        return lock

    # -- helpers --

    def _sync(self, fd: int) -> None:
        if self.fsync:
            os.fsync(fd)

    def _forget(self, key: str) -> None:
        with self._logs_lock:
            state = self._logs.pop(key, None)
            if state is not None and state.handle is not None:
                self._open_handles -= 1
        if state is not None and state.handle is not None:
            state.handle.close()

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
        rev = current_segment(directory)
        snapshot = read_snapshot_file(snapshot_path(directory, rev), rev) if rev else None
        path = log_path(directory, rev)
        records, end = self._read_current_log(path, rev)
        self._remember(key, _OpenLog(path, last_rev(rev, records), end))
        state, meta = (snapshot.state, snapshot.meta) if snapshot else (None, b"")
        return StoredDocument(state, rev, records, end - LOG_HEADER.size, meta)

    def _read_current_log(self, path: Path, start_rev: int) -> tuple[list[Record], int]:
        """The records of the current log, cutting a torn tail off the file (only once
        everything before it is known to be good)."""
        decoded = decode_log(path)
        check_contiguous(path, start_rev, decoded)
        if decoded.torn is not None:
            with open(path, "r+b") as file:
                size = file.seek(0, os.SEEK_END)
                log.warning(
                    "%s: torn last record at offset %d (%s): cutting %d bytes",
                    path,
                    decoded.end,
                    decoded.torn,
                    size - decoded.end,
                )
                file.truncate(decoded.end)
                self._sync(file.fileno())
        return decoded.records, decoded.end

    def _remember(self, key: str, state: _OpenLog) -> None:
        # Callers hold the document's lock: the log keeps it alive (the dictionary of locks
        # is weak, so that names only looked up leave nothing behind).
        state.lock = self._locks.get(key)
        old = self._logs.get(key)
        if old is not None and old.handle is not None and old.path == state.path:
            state.handle = old.handle
        elif old is not None:
            self._forget(key)
        with self._logs_lock:
            self._logs[key] = state
            self._logs.move_to_end(key)

    # -- append --

    def _open_log(self, name: str, key: str, records: Sequence[Record]) -> tuple[_OpenLog, bool]:
        """The document's current log, read to its end, and whether it holds `records`: a
        new document's log is made with them (no fsync of its own for its first append)."""
        if (self.docs_dir / key).is_dir():
            stored = self._load(name, key)
            assert stored is not None
            return self._logs[key], False
        check_next_revs(0, records)
        data = encode_log(records)
        self._create(name, key, data)
        self._remember(key, _OpenLog(log_path(self.docs_dir / key, 0), records[-1].rev, len(data)))
        self._handle(key, self._logs[key])  # opened for the next appends, as a write does
        return self._logs[key], True

    async def _write(
        self, key: str, state: _OpenLog, records: Sequence[Record]
    ) -> tuple[BinaryIO, int]:
        """Write `records` at the log's end (not yet synced): its handle and new size."""
        check_next_revs(state.last_rev, records)
        handle = self._handle(key, state)
        size = sum(len(record.update) for record in records)
        try:
            written = await append_bytes(handle, partial(encode_records, records), size)
        except BaseException:
            self._undo_append(key, state)
            raise
        return handle, state.size + written

    def _handle(self, key: str, state: _OpenLog) -> BinaryIO:
        """The open log file of a document (kept open between appends)."""
        with self._logs_lock:
            self._logs.move_to_end(key)
        if state.handle is None:
            state.handle = open(state.path, "ab", buffering=0)  # noqa: SIM115 (kept open)
            with self._logs_lock:
                self._open_handles += 1
        return state.handle

    def _undo_append(self, key: str, state: _OpenLog) -> None:
        """After a failed write or fsync: cut a partial write, and re-read the log next time
        (after a failed fsync nobody knows what reached the disk)."""
        try:
            with open(state.path, "r+b") as file:
                file.truncate(state.size)
                self._sync(file.fileno())  # else the cut record may be back after a crash
        except OSError as error:  # the next load finds the torn tail and cuts it
            log.warning(
                "%s: cannot cut a failed write at byte %d: %s", state.path, state.size, error
            )
        self._forget(key)

    def _create(self, name: str, key: str, log_data: bytes) -> None:
        """Make the document's directory with its name and its log, all at once."""
        if not self.docs_dir.is_dir():
            self.docs_dir.mkdir(parents=True, exist_ok=True)
            sync_dir(self.data_dir, self.fsync)
        files = {NAME_FILE: name.encode("utf-8"), log_path(Path(), 0).name: log_data}
        write_new_directory(self.docs_dir / key, files, self.fsync)

    # -- compact --

    async def _switch_segment(
        self, key: str, rev: int, kept: list[Record], log_file: Path, offset: int
    ) -> None:
        """Start the segment at `rev` (its snapshot written) with `kept`, then `log_file` from
        byte `offset` on, copied while appends go on (`NextLog`); failed, its snapshot goes."""
        next_log = NextLog(self.docs_dir / key, rev)
        state = self._logs.get(key)
        synced = state.size if state is not None and state.path == log_file else offset
        try:
            await in_thread(next_log.start, kept, log_file, offset, synced, self.fsync)
            async with self._lock(key):
                await in_thread(self._commit_segment, key, next_log, log_file)
        except BaseException:
            next_log.discard()
            if not next_log.path.exists():  # else committed: the snapshot is its
                with contextlib.suppress(OSError):
                    snapshot_path(next_log.directory, rev).unlink()
            raise

    def _commit_segment(self, key: str, next_log: NextLog, log_file: Path) -> None:
        """Under the document's lock: finish the new log (the commit point) and use it."""
        state = self._logs.get(key)
        if state is None or state.path != log_file:
            raise CompactionError(f"{log_file}: the log changed while the snapshot was checked")
        self._forget(key)
        next_log.finish(log_file, state.size, state.last_rev, self.fsync)
        self._remember(key, _OpenLog(next_log.path, next_log.last_rev, next_log.size))
        if not self.keep_history:
            remove_segments_before(next_log.directory, next_log.rev, self.fsync)

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
        rev = current_segment(directory)
        return DocumentInfo(name, size, last_rev_in_log(log_path(directory, rev), rev))

    def _delete(self, key: str) -> None:
        self._forget(key)
        directory = self.docs_dir / key
        if not directory.is_dir():
            return
        doomed = self.docs_dir / f".deleted-{uuid.uuid4().hex}"
        os.rename(directory, doomed)
        sync_dir(self.docs_dir, self.fsync)
        shutil.rmtree(doomed)
