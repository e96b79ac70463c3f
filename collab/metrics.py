"""`GET /metrics`: what the server is doing, in the Prometheus text format.

Each engine has its own registry (several engines in one process do not mix). The counters
every message touches (messages and bytes, in and out, per door) are plain `Tally` numbers
read when /metrics is scraped: a prometheus_client `Counter.inc` takes a lock and cost ~1 µs
each, four times per delivery.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from collab.storage.contract import (
    DocumentCommit,
    Record,
    SharedStore,
    Snapshot,
    StoredDocument,
)

DOORS = ("yjs", "text", "hocuspocus")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Tally:
    """A counter for the event loop's hot path: one attribute, no lock (only the loop
    thread adds to it; a scrape reads a number, never a torn one)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


def wire_length(data: bytes | str) -> int:
    """The bytes a message takes on the wire: a text message's UTF-8, not its characters."""
    if type(data) is bytes or data.isascii():  # type: ignore[union-attr]
        return len(data)
    return len(data.encode())  # type: ignore[union-attr]


class _TallyFamily:
    """A Prometheus counter family by door, read from `Tally`s when /metrics is scraped."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.by_door = {door: Tally() for door in DOORS}

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["door"])
        for door, tally in self.by_door.items():
            family.add_metric([door], tally.value)
        return [family]

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation, labels=["door"])]


class _TallyHistogram:
    """A Prometheus histogram observed once per commit on the event loop: bucket counts in
    a list, no lock (prometheus_client's `Histogram.observe` costs ~2 µs)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> list[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, count in zip(
            map(floatToGoString, (*self.bounds, math.inf)), self.counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        return [
            HistogramMetricFamily(
                self.name, self.documentation, buckets=buckets, sum_value=self.sum
            )
        ]

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]


class _TallyCounter(Tally):
    """A Prometheus counter without labels, kept as a `Tally`."""

    __slots__ = ("documentation", "name")

    def __init__(self, name: str, documentation: str) -> None:
        super().__init__()
        self.name = name
        self.documentation = documentation

    def collect(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation, value=self.value)]

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation)]


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "collab_connections", "open WebSocket connections", ["door"], registry=registry
        )
        self.documents_loaded = Gauge(
            "collab_documents_loaded", "documents in memory", registry=registry
        )
        messages_in = _TallyFamily("collab_messages_received", "WebSocket messages received")
        bytes_in = _TallyFamily("collab_received_bytes", "WebSocket bytes received")
        messages_out = _TallyFamily("collab_messages_sent", "WebSocket messages sent")
        bytes_out = _TallyFamily("collab_sent_bytes", "WebSocket bytes sent")
        for family in (messages_in, bytes_in, messages_out, bytes_out):
            registry.register(family)  # type: ignore[arg-type]
        self.received = {
            door: (messages_in.by_door[door], bytes_in.by_door[door]) for door in DOORS
        }
        self.sent = {door: (messages_out.by_door[door], bytes_out.by_door[door]) for door in DOORS}
        self.open = {door: self.connections.labels(door) for door in DOORS}
        self.revisions = _TallyCounter(
            "collab_revisions_committed", "revisions written to the store"
        )
        self.commit_seconds = _TallyHistogram(
            "collab_commit_seconds",
            "time to write one batch of records (fsync included)",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.batch_records = _TallyHistogram(
            "collab_commit_batch_records",
            "records per write (group commit)",
            (1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.loop_lag = _TallyHistogram(
            "collab_event_loop_lag_seconds",
            "how late the event loop woke a timer (sampled every 20 ms): a stall of every document",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.compaction_seconds = _TallyHistogram(
            "collab_compaction_seconds",
            "time to build, check and write one snapshot and switch the log (worker process)",
            (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60),
        )
        self.compaction_bytes = _TallyHistogram(
            "collab_compaction_state_bytes",
            "size of each snapshot written",
            tuple(float(4**n * 1024) for n in range(1, 10)),  # 4 KiB .. 256 MiB
        )
        self.compaction_failures = _TallyCounter(
            "collab_compaction_failures", "compactions that failed (the log is kept; retried)"
        )
        for collector in (
            self.revisions,
            self.commit_seconds,
            self.batch_records,
            self.loop_lag,
            self.compaction_seconds,
            self.compaction_bytes,
            self.compaction_failures,
        ):
            registry.register(collector)  # type: ignore[arg-type]
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
        self.peer_errors = Counter(
            "collab_peer_internal_errors",
            "peers closed with 1011 because the server failed on one of their messages "
            "(a bug), by stage: handling or sending",
            ["stage"],
            registry=registry,
        )
        self.document_restarts = Counter(
            "collab_document_restarts",
            "documents whose pump failed: every peer closed with 1011, reloaded from the store",
            registry=registry,
        )

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def closed(self, code: int) -> None:
        self.closes.labels(str(int(code))).inc()

    def overflowed(self, resynced: bool) -> None:
        (self.resyncs if resynced else self.drops).inc()

    def compacted(self, seconds: float, state_bytes: int) -> None:
        self.compaction_seconds.observe(seconds)
        self.compaction_bytes.observe(state_bytes)

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
