"""What every store promises (docs/architecture.md, "Store contract"), and its data types.

`Store` is the contract the hub relies on; `SharedStore` the one of a store several
processes write at once. `RevisionHistory` is the optional capability of a store that keeps
old revisions and snapshots (FileStore, PostgresStore), which the history view and `collab
replay --store` read; `HistoryStore` is FileStore's own: its segments as files. The checks
at the end are the rules every built-in store enforces in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from collab.storage.errors import CompactionError
from collab.storage.fingerprint import verify_snapshot


@dataclass(frozen=True)
class Record:
    """One revision: the Yjs update of exactly one change, and who made it when.

    `origin` says which peer or protocol made the change: ``yjs:<connection>``,
    ``ot:<client>:<seq>``, ``server:<tag>`` or ``import``.
    """

    rev: int
    time: float
    origin: str
    user: str | None
    update: bytes


@dataclass(frozen=True)
class Snapshot:
    """The full state of a document at `rev`, and opaque session metadata kept with it."""

    rev: int
    state: bytes  # Doc.get_update(): every change up to and including `rev`
    meta: bytes = b""  # the store keeps it and gives it back; it never looks inside


@dataclass
class StoredDocument:
    snapshot: bytes | None  # full state at snapshot_rev (None: no snapshot yet)
    snapshot_rev: int  # 0 when there is no snapshot
    records: list[Record]  # every record after snapshot_rev, in order
    log_bytes: int  # size of the current log segment's records (drives compaction)
    snapshot_meta: bytes = b""  # the `Snapshot.meta` of the snapshot (b"" without one)
    # Not the store's: the snapshot framed as the sync update new peers of a big document
    # get, when the hub's loader framed it off the event loop (a copy of the whole state).
    snapshot_message: bytes | None = None

    @property
    def rev(self) -> int:
        """The last revision stored."""
        return last_rev(self.snapshot_rev, self.records)


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    size_bytes: int  # bytes on disk (FileStore: every file kept, history included)
    rev: int


@dataclass(frozen=True)
class Segment:
    """One retained snapshot/log pair of a document, as `HistoryStore.segments` lists them.

    The log holds records with rev > start_rev. After a compaction at rev R that found
    records past R, those records are in both this log and the next one: readers take a
    segment's records only up to the next segment's start_rev.
    """

    start_rev: int
    snapshot: Path | None  # None for the first segment of a document (start_rev 0)
    log: Path


class Store(Protocol):
    async def start(self) -> None:
        """Connect or open what the store needs, once, before the first load (idempotent)."""
        ...

    async def load(self, name: str) -> StoredDocument | None:
        """None: never stored. Raises CorruptDocumentError, never returns partial data."""
        ...

    async def append(self, name: str, records: Sequence[Record]) -> None:
        """Durable on return (with fsync): all records, one fsync."""
        ...

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        """Replace the records up to `snapshot.rev` by the snapshot (CompactionError if it
        does not hold exactly them); `load` returns its meta from then on."""
        ...

    async def list(self) -> list[DocumentInfo]: ...

    async def delete(self, name: str) -> None: ...

    async def release(self, name: str) -> None:
        """The document left memory: close what is held open for it (files, handles)."""
        ...

    async def close(self) -> None: ...


class DocumentCommit(Protocol):
    """One commit of a document in a `SharedStore`, under the document's write lock."""

    async def records_after(self, rev: int) -> list[Record]:
        """What other writers committed after `rev`, in order: apply it before writing."""
        ...

    async def append(self, records: Sequence[Record]) -> None:
        """Add records that continue the log; they are committed when the block ends."""
        ...


@runtime_checkable
class SharedStore(Store, Protocol):
    """A store several processes write at once (PostgreSQL): one order per document.

    A writer holds the document's lock from `records_after` to the end of the block, so
    revision numbers are global and never reused; a text client's (client, seq) is unique
    per document in the store itself, so an op is never stored twice.
    """

    def commit(self, name: str) -> AbstractAsyncContextManager[DocumentCommit]:
        """The document's write lock and transaction: committed (durable) when the block
        ends without an error, rolled back otherwise."""
        ...

    async def records_after(self, name: str, rev: int) -> list[Record]:
        """Committed records after `rev`, in order, without taking the lock (catching up
        after a missed publish). Raises `RevisionsGoneError` when they were compacted away."""
        ...


class RevisionsGoneError(LookupError):
    """The records asked for are no longer kept one by one (compacted into a snapshot)."""


class CommitConflictError(ValueError):
    """The store refused records another writer already holds: the revision number is taken,
    or a text client's (client, seq) is already stored. Nothing of the commit was stored."""


class StoreUnavailableError(ConnectionError):
    """The store cannot be reached (a database that is down, a connection lost).

    Nothing of the operation was stored, except for a `CommitOutcomeUnknownError`."""


class CommitOutcomeUnknownError(StoreUnavailableError):
    """The connection was lost while the store was committing: the records may or may not
    be stored. `records_after` tells, once the store is back."""


@runtime_checkable
class RevisionHistory(Store, Protocol):
    """A store that keeps old revisions and snapshots, read by revision number.

    What the history index (`collab.replay.history`), `collab replay --store` and
    `collab.replay.verify.verify_revisions` read, whatever the store keeps them in.
    """

    async def history_start(self, name: str) -> int | None:
        """The first revision whose full state is kept: 0 (every revision is kept) or the
        rev of the oldest snapshot every later record is kept after. None: no document."""
        ...

    async def history_records(
        self, name: str, after_rev: int, limit: int | None = None
    ) -> list[Record]:
        """Kept records after `after_rev`, in order, at most `limit` of them ([] past the
        end). Raises `RevisionsGoneError` when the record after `after_rev` is not kept."""
        ...

    async def snapshot_at_or_before(self, name: str, rev: int) -> Snapshot | None:
        """The newest kept snapshot whose rev is at most `rev` (None if there is none)."""
        ...


@runtime_checkable
class SnapshotBuilder(Store, Protocol):
    """A store that builds a compaction's snapshot itself, from what it holds, in a worker
    process (FileStore, PostgresStore): the server never encodes or checks a whole state."""

    async def compact_at(
        self, name: str, rev: int, meta: bytes, memory_limit: int = 0
    ) -> Snapshot | None:
        """`compact` at `rev` with the state of the records stored up to `rev`; returns the
        snapshot written, None when there was nothing to do (raises CompactionError). The
        worker may use at most `memory_limit` bytes (0: no limit)."""
        ...


@runtime_checkable
class HistoryStore(Store, Protocol):
    """A store that keeps every snapshot/log segment it writes, readable as files."""

    def segments(self, name: str) -> list[Segment]:
        """Every retained segment of a document, oldest first ([] if none)."""
        ...


# --- Checks both stores make ----------------------------------------------------------------


def last_rev(snapshot_rev: int, records: Sequence[Record]) -> int:
    return records[-1].rev if records else snapshot_rev


def check_next_revs(last: int, records: Sequence[Record]) -> None:
    """Refuse records that do not continue the log at last + 1, + 2, ..."""
    for expected, record in enumerate(records, start=last + 1):
        if record.rev != expected:
            raise ValueError(f"record rev {record.rev} does not follow rev {expected - 1}")


def replaced_by(stored: StoredDocument, snapshot: Snapshot) -> int | None:
    """How many of `stored`'s records `snapshot` replaces, once it is checked to hold
    exactly them; None when there is nothing to compact (it is at the stored snapshot)."""
    rev, first = snapshot.rev, stored.snapshot_rev
    if rev == first:
        return None
    if not first < rev <= stored.rev:
        raise CompactionError(f"cannot compact at rev {rev}: the log holds {first}..{stored.rev}")
    count = rev - first
    verify_snapshot(stored.snapshot, stored.records[:count], snapshot.state)
    return count
