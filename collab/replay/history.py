"""The history index: every retained revision's metadata, and the text at any of them.

A document's history is every revision and snapshot the store kept, oldest first: read
from a `RevisionHistory` store (`StoreHistoryCache`, what the server uses, for FileStore
and PostgresStore alike) or from segment files (`LogReader`, `HistoryCache`).
`DocumentHistory` indexes it once: the metadata of every revision, the Yjs updates in one
compact buffer, and **checkpoints** — the full Yjs state — kept in a temporary file. A
checkpoint is written after at least `CHECKPOINT_INTERVAL` revisions *and* once the updates
since the last one add up to that checkpoint's size: replaying them then costs about what
loading a checkpoint does, and the checkpoints together take at most about twice the log's
bytes on disk (a large document with many small edits gets few checkpoints, instead of a
full copy per 1,000 revisions). The text at revision R costs one checkpoint load plus
the updates since, never a replay from the start; a forward step from the last revision
asked for applies only the updates in between.
New revisions are read from where the index stopped (`refresh`), so the index grows
with the document. A document of `replay_below` bytes or more is not replayed at all (each
pycrdt call on a long text holds the GIL tens of ms, in a thread too): its index keeps the
metadata only, and its texts are built by a worker process (`worker_texts.py`).

Applying the records between two checkpoints in one transaction is slower, not faster:
replaying 64 MiB written in 256 KB records took 39 s that way against 8.5 s one transaction
per record (bench/README.md, "HTTP readers of a big document").

Why checkpoints of Yjs state rather than text + code-point ops: applying a stored update
to a bare `Doc` costs ~10 µs, while deriving its op (text events, as `Session` does) costs
0.4-3 ms per revision on a long, fragmented text — minutes for 100,000 revisions.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import math
import os
import sys
import tempfile
import threading
import weakref
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collab.replay.rebuild import DocReplay
from collab.storage.contract import Record, RevisionHistory, RevisionsGoneError, Segment
from collab.storage.errors import FileFormatError
from collab.storage.logs import LogReader, RevisionNotFoundError
from collab.text import ops as textops
from collab.text.positions import delta_to_op

CHECKPOINT_INTERVAL = 1000


class NotReplayedError(LookupError):
    """The index keeps only metadata: its document grew past `replay_below` bytes."""


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


@dataclass(frozen=True)
class RevisionChange:
    """What one revision did: its metadata, the text before it, and its op on that text."""

    info: RevisionInfo
    text_before: str
    op: textops.Op  # code points, on `text_before`

    def as_json(self) -> dict[str, Any]:
        return {**self.info.as_json(), "op": self.op, "text_before": self.text_before}


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


# ---------------------------------------------------------------------- the index


class DocumentHistory:
    """The retained history of one document, indexed for random access (thread-safe)."""

    def __init__(
        self,
        reader: LogReader | None = None,  # None: fed with `begin` and `add` instead
        text_name: str = "text",
        interval: int = CHECKPOINT_INTERVAL,
        replay_below: int | None = None,
    ) -> None:
        """`replay_below`: bytes of state (the last checkpoint's and the updates' since)
        from which the index stops replaying (None: never stops; 0: never replays)."""
        self.reader = reader
        self.text_name = text_name
        self.interval = interval
        self.replay_below = replay_below
        self.replays = replay_below != 0  # False: metadata only (`text_at` raises)
        self.base_rev = 0
        self._begun = False
        self._update_bytes = 0  # every indexed update's size, added up
        self._lock = threading.RLock()
        self._times = array("d")
        self._max_times = array("d")  # running maximum: clocks may step back
        self._origins: list[str] = []
        self._users: list[str | None] = []
        self._interned: dict[str, str] = {}
        self._updates = bytearray()
        self._update_ends = array("Q")
        self._checkpoints: dict[int, tuple[int, int]] = {}  # rev -> (offset, length)
        self._checkpoint_revs: list[int] = []  # sorted
        self._bytes_since_checkpoint = 0
        self._checkpoint_file = tempfile.TemporaryFile(prefix="collab-history-")  # noqa: SIM115
        # Closed by `close`, or when the last holder lets go of the index (a cache that
        # evicts an index does not close it: a request may still be reading it).
        self._closer = weakref.finalize(self, self._checkpoint_file.close)
        self._tail: DocReplay | None = None  # at the last revision indexed
        self._cursor: DocReplay | None = None  # at the last revision asked for

    def close(self) -> None:
        self._closer()

    @property
    def last_rev(self) -> int:
        return self.base_rev + len(self._times)

    @property
    def exists(self) -> bool:
        """Whether the document has any history at all (after a `refresh`)."""
        return self._begun

    def refresh(self) -> int:
        """Index the revisions added since the last call (from the reader); returns how many."""
        assert self.reader is not None, "a history without a reader is fed with begin/add"
        with self._lock:
            records = self.reader.read_new()
            if self.reader.base_rev is None:
                return 0  # no such document (yet)
            if not self._begun:
                self.begin(self.reader.base_rev, self.reader.base_state)
            self.add(records)
            return len(records)

    def begin(self, base_rev: int, base_state: bytes | None) -> None:
        """Start the index at `base_rev`, the oldest revision whose state is kept."""
        with self._lock:
            self.base_rev = base_rev
            self._begun = True
            if self.replays and len(base_state or b"") >= (self.replay_below or sys.maxsize):
                self._stop_replaying()
            if self.replays:
                self._tail = DocReplay(self.text_name, base_state, base_rev)
                self._save_checkpoint(base_rev, self._tail.state())

    def add(self, records: list[Record]) -> None:
        """Index the records that follow `last_rev` (after `begin`)."""
        with self._lock:
            for record in records:
                if record.rev != self.last_rev + 1:
                    reason = f"rev {record.rev} where rev {self.last_rev + 1} was expected"
                    raise RevisionsGoneError(reason)
                self._add(record)

    def _add(self, record: Record) -> None:
        previous = self._max_times[-1] if self._max_times else record.time
        self._times.append(record.time)
        self._max_times.append(max(previous, record.time))
        self._origins.append(self._interned.setdefault(record.origin, record.origin))
        user = record.user
        self._users.append(None if user is None else self._interned.setdefault(user, user))
        self._update_bytes += len(record.update)
        self._update_ends.append(self._update_bytes)
        if self.replays:
            self._replay(record)

    def _replay(self, record: Record) -> None:
        """Move the tail on by `record`, keep its update, write a checkpoint when due;
        past `replay_below`, stop replaying instead."""
        last = self._checkpoint_revs[-1]
        self._bytes_since_checkpoint += len(record.update)
        size = self._checkpoints[last][1] + self._bytes_since_checkpoint
        if self.replay_below is not None and size >= self.replay_below:
            self._stop_replaying()
            return
        assert self._tail is not None
        self._tail.apply(record.update, record.rev)
        self._updates += record.update
        if (
            record.rev - last >= self.interval
            and self._bytes_since_checkpoint >= self._checkpoints[last][1]
        ):
            self._save_checkpoint(record.rev, self._tail.state())

    def _stop_replaying(self) -> None:
        """The document grew too big to replay here: keep only the metadata (its texts
        are built elsewhere: `collab.replay.worker_texts`)."""
        self.replays = False
        self._tail = self._cursor = None
        self._updates = bytearray()
        self._checkpoints.clear()
        self._checkpoint_revs.clear()
        self.close()

    def _save_checkpoint(self, rev: int, state: bytes) -> None:
        file = self._checkpoint_file
        offset = file.seek(0, os.SEEK_END)
        file.write(state)
        file.flush()
        self._checkpoints[rev] = (offset, len(state))
        self._checkpoint_revs.append(rev)
        self._bytes_since_checkpoint = 0

    def _load_checkpoint(self, rev: int) -> bytes:
        offset, length = self._checkpoints[rev]
        return os.pread(self._checkpoint_file.fileno(), length, offset)

    def _update(self, rev: int) -> bytes:
        """A replayed index keeps every update since its base in `_updates`."""
        index = rev - self.base_rev - 1
        start = self._update_ends[index - 1] if index else 0
        return bytes(self._updates[start : self._update_ends[index]])

    # ------------------------------------------------------------------ queries

    def _check_rev(self, rev: int) -> None:
        if not self.exists:
            raise RevisionNotFoundError("the document has no history")
        if not self.replays:
            raise NotReplayedError(f"the text is too big to replay here ({self.replay_below} B)")
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
            revs = self._checkpoint_revs
            checkpoint = revs[bisect.bisect_right(revs, rev) - 1]
            if cursor is None or not checkpoint <= cursor.rev <= rev:
                cursor = DocReplay(self.text_name, self._load_checkpoint(checkpoint), checkpoint)
            for step in range(cursor.rev + 1, rev + 1):
                cursor.apply(self._update(step), step)
            self._cursor = cursor
            return str(cursor.text)

    def change(self, rev: int) -> RevisionChange:
        """Revision `rev` (after the base revision): who, when, and what it changed.

        The op comes from the text event of applying the stored update to the text before
        it (so a revision that edited two places is two edits, not one large replace).
        """
        with self._lock:
            info = self.info(rev)
            before = self.text_at(rev - 1)
            cursor = self._cursor
            assert cursor is not None and cursor.rev == rev - 1
            deltas: list[list[dict[str, Any]]] = []
            subscription = cursor.text.observe(lambda event: deltas.append(list(event.delta)))
            try:
                cursor.apply(self._update(rev), rev)
            finally:
                cursor.text.unobserve(subscription)
            return RevisionChange(info, before, op_of(before, deltas, str(cursor.text)))

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


def op_of(before: str, deltas: list[list[dict[str, Any]]], after: str) -> textops.Op:
    """The text events of one update as one op on `before` (a diff if they do not fit)."""
    op: textops.Op = [len(before)] if before else []
    text = before
    try:
        for delta in deltas:
            step = delta_to_op(text, delta)
            op, text = textops.compose(op, step), textops.apply(text, step)
    except (textops.OpError, ValueError):
        text = ""
    return textops.normalize(op) if text == after else textops.diff(before, after)


# ---------------------------------------------------------------------- a cache of indexes


def _evict(histories: dict[str, DocumentHistory], keep: int) -> None:
    """Forget the least recently used indexes beyond `keep`. They are not closed: a request
    that got one may still be reading it; its file goes with the last reference to it (so
    at most `keep` + the requests served at once are alive)."""
    while len(histories) > keep:
        del histories[next(iter(histories))]


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
            _evict(self._histories, self.max_documents)
        try:
            history.refresh()
        except FileFormatError:
            with self._lock:
                if self._histories.get(name) is history:
                    del self._histories[name]
            if fresh:
                raise
            return self.get(name)  # the files changed under the index (history removed)
        return history

    def _new(self, name: str) -> DocumentHistory:
        return DocumentHistory(LogReader(lambda: self.list_segments(name)), self.text_name)


@dataclass
class StoreHistoryCache:
    """One `DocumentHistory` per document, read from a `RevisionHistory` store (the server's).

    Records are fetched with the store's async API, `batch` at a time, and indexed in a
    worker thread; the most recently used `max_documents` indexes are kept. An index
    replays its document (pycrdt) only while it is smaller than `replay_below` bytes (None:
    always); past it, it keeps the metadata only.
    """

    store: RevisionHistory
    text_name: str = "text"
    max_documents: int = 8
    batch: int = 10_000
    replay_below: int | None = None
    _histories: dict[str, DocumentHistory] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one refresh at a time

    async def get(self, name: str, replay: bool = True) -> DocumentHistory:
        """The index of `name`, brought up to date with the store. A new one made with
        `replay` False (the caller knows the document is big) keeps only metadata."""
        for _ in range(3):
            history = self._histories.pop(name, None)
            fresh = history is None
            if history is None:
                below = self.replay_below if replay else 0
                history = DocumentHistory(None, self.text_name, replay_below=below)
            self._histories[name] = history  # most recent last
            _evict(self._histories, self.max_documents)
            try:
                async with self._lock:
                    await self._refresh(name, history)
                return history
            except (RevisionsGoneError, FileFormatError) as error:
                # The history changed under the index (compacted away): start again once.
                if self._histories.get(name) is history:
                    del self._histories[name]
                if fresh and isinstance(error, FileFormatError):
                    raise
        raise RevisionsGoneError(f"{name!r}: the history keeps changing under the index")

    async def _refresh(self, name: str, history: DocumentHistory) -> None:
        if not history.exists:
            start = await self.store.history_start(name)
            if start is None:
                return  # no such document (yet)
            if not history.replays:  # only metadata: the state is not needed
                history.begin(start, None)
            else:
                await self._begin(name, history, start)
        while True:
            records = await self.store.history_records(name, history.last_rev, self.batch)
            if records:
                await asyncio.to_thread(history.add, records)
            if len(records) < self.batch:
                return

    async def _begin(self, name: str, history: DocumentHistory, start: int) -> None:
        snapshot = await self.store.snapshot_at_or_before(name, start) if start else None
        if start and (snapshot is None or snapshot.rev != start):
            raise RevisionsGoneError(f"{name!r}: the snapshot at rev {start} is gone")
        await asyncio.to_thread(history.begin, start, snapshot.state if snapshot else None)
