"""`GET /metrics`: what the server is doing, in the Prometheus text format.

Each engine has its own registry (several engines in one process do not mix). Counters on
the hot path are label children resolved once, so a message costs two increments.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collab.storage.contract import (
    DocumentCommit,
    Record,
    SharedStore,
    Snapshot,
    StoredDocument,
)

DOORS = ("yjs", "text")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "collab_connections", "open WebSocket connections", ["door"], registry=registry
        )
        self.documents_loaded = Gauge(
            "collab_documents_loaded", "documents in memory", registry=registry
        )
        messages_in = Counter(
            "collab_messages_received", "WebSocket messages received", ["door"], registry=registry
        )
        bytes_in = Counter(
            "collab_received_bytes", "WebSocket bytes received", ["door"], registry=registry
        )
        messages_out = Counter(
            "collab_messages_sent", "WebSocket messages sent", ["door"], registry=registry
        )
        bytes_out = Counter(
            "collab_sent_bytes", "WebSocket bytes sent", ["door"], registry=registry
        )
        self.received = {door: (messages_in.labels(door), bytes_in.labels(door)) for door in DOORS}
        self.sent = {door: (messages_out.labels(door), bytes_out.labels(door)) for door in DOORS}
        self.open = {door: self.connections.labels(door) for door in DOORS}
        self.revisions = Counter(
            "collab_revisions_committed", "revisions written to the store", registry=registry
        )
        self.commit_seconds = Histogram(
            "collab_commit_seconds",
            "time to write one batch of records (fsync included)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.batch_records = Histogram(
            "collab_commit_batch_records",
            "records per write (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.store_errors = Counter(
            "collab_store_errors", "store writes that failed", registry=registry
        )
        overflows = Counter(
            "collab_send_queue_overflows",
            "peers whose send queue overflowed: resynced (Yjs) or dropped",
            ["action"],
            registry=registry,
        )
        self.resyncs, self.drops = overflows.labels("resync"), overflows.labels("drop")
        self.refusals = Counter(
            "collab_refusals",
            "requests and connections refused, by reason (origin, host, token, caps...)",
            ["reason"],
            registry=registry,
        )
        self.closes = Counter(
            "collab_closes",
            "WebSocket closes sent by the server, by code",
            ["code"],
            registry=registry,
        )

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def closed(self, code: int) -> None:
        self.closes.labels(str(int(code))).inc()

    def overflowed(self, resynced: bool) -> None:
        (self.resyncs if resynced else self.drops).inc()

    def loaded_documents_from(self, count: Callable[[], int]) -> None:
        self.documents_loaded.set_function(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MeteredStore:
    """A store that counts its writes and remembers whether the last one failed.

    Everything else is the wrapped store's (`isinstance(store, HistoryStore)` still
    answers for the wrapped one, through attribute lookup).
    """

    def __init__(
        self, store: Any, metrics: Metrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def load(self, name: str) -> StoredDocument | None:
        return await self._store.load(name)

    async def append(self, name: str, records: Sequence[Record]) -> None:
        start = self._clock()
        try:
            await self._store.append(name, records)
        except Exception:
            self._failed()
            raise
        self._committed(start, len(records))

    def _failed(self) -> None:
        self.failing = True
        self._metrics.store_errors.inc()

    def _committed(self, start: float, records: int) -> None:
        self.failing = False
        self._metrics.commit_seconds.observe(self._clock() - start)
        self._metrics.batch_records.observe(records)
        self._metrics.revisions.inc(records)

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        await self._store.compact(name, snapshot)

    async def list(self) -> Any:
        return await self._store.list()

    async def release(self, name: str) -> None:
        await self._store.release(name)

    async def delete(self, name: str) -> None:
        await self._store.delete(name)

    async def close(self) -> None:
        await self._store.close()


class MeteredSharedStore(MeteredStore):
    """A `MeteredStore` over a `SharedStore`: its commits are timed and counted too."""

    @contextlib.asynccontextmanager
    async def commit(self, name: str) -> AsyncIterator[DocumentCommit]:
        start = self._clock()
        counted = _CountedCommit()
        try:
            async with self._store.commit(name) as commit:
                counted.commit = commit
                yield counted
        except Exception:
            self._failed()
            raise
        if counted.records:
            self._committed(start, counted.records)

    async def records_after(self, name: str, rev: int) -> list[Record]:
        return await self._store.records_after(name, rev)


class _CountedCommit:
    """A commit that counts the records appended through it."""

    def __init__(self) -> None:
        self.commit: Any = None
        self.records = 0

    async def records_after(self, rev: int) -> list[Record]:
        return await self.commit.records_after(rev)

    async def append(self, records: Sequence[Record]) -> None:
        await self.commit.append(records)
        self.records += len(records)


def metered(store: Any, metrics: Metrics) -> MeteredStore:
    """The store, counted: a shared store keeps its commit lock and transaction."""
    if isinstance(store, SharedStore):
        return MeteredSharedStore(store, metrics)
    return MeteredStore(store, metrics)
