"""`MemoryStore`: the store contract kept in dicts, for tests and embedding.

It is a `SharedStore` too: several hubs in one process (tests of the multi-process
design, with `collab.bus.MemoryBus`) may share one, each commit holding the document's lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from collab.access.names import storage_key
from collab.storage.contract import (
    DocumentCommit,
    DocumentInfo,
    Record,
    RevisionsGoneError,
    Snapshot,
    StoredDocument,
    check_next_revs,
    last_rev,
    replaced_by,
)
from collab.storage.errors import CompactionError
from collab.storage.format import encode_records
from collab.storage.generations import Generation


@dataclass
class _MemoryDocument:
    snapshot: Snapshot | None = None
    records: list[Record] = field(default_factory=list)
    log_bytes: int = 0  # what the records would take in a log file

    @property
    def rev(self) -> int:
        return last_rev(self.snapshot.rev if self.snapshot else 0, self.records)

    @property
    def size(self) -> int:
        return len(self.snapshot.state if self.snapshot else b"") + self.log_bytes

    def stored(self) -> StoredDocument:
        """A copy of what is stored, as `load` returns it."""
        if self.snapshot is None:
            return StoredDocument(None, 0, list(self.records), self.log_bytes)
        snapshot = self.snapshot
        return StoredDocument(
            snapshot.state, snapshot.rev, list(self.records), self.log_bytes, snapshot.meta
        )


class MemoryStore:
    """Documents in dicts: the same contract as FileStore, nothing durable."""

    def __init__(self) -> None:
        self._docs: dict[str, _MemoryDocument] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._generations: dict[str, Generation] = {}

    async def start(self) -> None:
        pass

    async def load(self, name: str) -> StoredDocument | None:
        storage_key(name)  # the same names as FileStore are refused
        doc = self._docs.get(name)
        return None if doc is None else doc.stored()

    async def append(self, name: str, records: Sequence[Record]) -> None:
        storage_key(name)
        if not records:
            return
        doc = self._docs.get(name) or _MemoryDocument()
        check_next_revs(doc.rev, records)
        doc.records.extend(records)
        doc.log_bytes += len(encode_records(records))
        self._docs[name] = doc

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        doc = self._docs.get(name)
        if doc is None:
            raise CompactionError(f"no document {name!r} to compact")
        replaced = replaced_by(doc.stored(), snapshot)
        if replaced is None:
            return
        doc.records = doc.records[replaced:]
        doc.snapshot = snapshot
        doc.log_bytes = len(encode_records(doc.records))

    async def list(self) -> list[DocumentInfo]:
        return [DocumentInfo(name, doc.size, doc.rev) for name, doc in self._docs.items()]

    @asynccontextmanager
    async def commit(self, name: str) -> AsyncIterator[DocumentCommit]:
        storage_key(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            commit = _MemoryCommit(self, name)
            yield commit
            for records in commit.pending:
                await self.append(name, records)

    async def records_after(self, name: str, rev: int) -> list[Record]:
        doc = self._docs.get(name)
        if doc is None:
            return []
        first = doc.snapshot.rev if doc.snapshot else 0
        if rev < first:
            raise RevisionsGoneError(f"{name!r}: revisions up to {first} were compacted")
        return doc.records[rev - first :]

    async def delete(self, name: str) -> None:
        self._docs.pop(name, None)

    async def generation(self, name: str) -> Generation:
        return self._generations.get(name, Generation())

    async def set_generation(self, name: str, generation: Generation) -> None:
        self._generations[name] = generation

    async def release(self, name: str) -> None:
        """Nothing to release (FileStore closes the document's log handle)."""

    async def close(self) -> None:
        pass


class _MemoryCommit:
    """A commit of one document: its records are stored when the block ends."""

    def __init__(self, store: MemoryStore, name: str) -> None:
        self.store, self.name = store, name
        self.pending: list[Sequence[Record]] = []

    async def records_after(self, rev: int) -> list[Record]:
        return await self.store.records_after(self.name, rev)

    async def append(self, records: Sequence[Record]) -> None:
        self.pending.append(records)
