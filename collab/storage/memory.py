"""`MemoryStore`: the store contract kept in dicts, for tests and embedding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from collab.names import storage_key
from collab.storage.contract import (
    DocumentInfo,
    Record,
    Snapshot,
    StoredDocument,
    check_next_revs,
    last_rev,
    replaced_by,
)
from collab.storage.errors import CompactionError
from collab.storage.format import encode_records


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

    async def delete(self, name: str) -> None:
        self._docs.pop(name, None)

    async def release(self, name: str) -> None:
        """Nothing to release (FileStore closes the document's log handle)."""

    async def close(self) -> None:
        pass
