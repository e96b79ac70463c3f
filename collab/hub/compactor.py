"""When and how a document's log is replaced by a snapshot.

The runner counts what it commits; once the log passes `--compact-log-records` or
`--compact-log-bytes`, a snapshot at the batch's revision is written beside the batches.
A store that builds snapshots itself (`SnapshotBuilder`: FileStore, PostgresStore) does it
in a worker process from what it holds, so the event loop never encodes nor checks a whole
state; other stores get the state taken at that instant. One compaction at a time per
document. One that fails keeps the log, is logged once (until one works again) and is
tried again after a pause that doubles up to `RETRY_MAX` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collab.config import Settings
from collab.hub.accounting import LogSize
from collab.session import Session
from collab.session.kept import KEPT_FROM
from collab.storage.contract import Record, Snapshot, SnapshotBuilder
from collab.storage.errors import CompactionError
from collab.yjs import protocol

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0  # seconds before a failed compaction is tried again, doubled each time
RETRY_MAX = 300.0


@dataclass(frozen=True)
class Due:
    """A compaction to make: at `rev`, with the session's `meta`; `state` only for stores
    that do not build snapshots themselves."""

    rev: int
    meta: bytes
    state: bytes | None = None
    clocks: dict[int, int] | None = None  # the state vector at `rev`


async def framed_off_loop(state: bytes) -> bytes | None:
    """A big snapshot's state framed as the sync update its new peers get first, in a
    thread (bytes.join copies without the GIL): not a 64 MiB copy on the loop. None for a
    small one (under `KEPT_FROM`): the session frames it, quicker than a thread's round trip."""
    if len(state) < KEPT_FROM:
        return None
    return await asyncio.to_thread(protocol.encode_sync_update, state)


class Compactor:
    """One document's log accounting and snapshot writing."""

    def __init__(
        self,
        name: str,
        store: Any,
        session: Session,
        log_size: LogSize,
        settings: Settings,
        metrics: Any = None,
    ) -> None:
        self.name = name
        self.store = store
        self.session = session
        self.log_size = log_size
        self.settings = settings
        self.metrics = metrics  # collab.metrics.Metrics, or None
        self.builds = isinstance(store, SnapshotBuilder)
        self.running: asyncio.Task[None] | None = None  # a snapshot being written
        self.failures = 0  # in a row
        self.retry_at = 0.0  # time.monotonic() before which none is started by a batch

    def committed(self, records: Sequence[Record], settings: Settings) -> Due | None:
        """Records were committed: the compaction to start now, if one is due (taken at
        this instant, it holds exactly what is committed)."""
        self.log_size.add(records)
        if (
            self.running is None
            and self.log_size.due(settings)
            and time.monotonic() >= self.retry_at
        ):
            return self.snapshot()
        return None

    def snapshot(self) -> Due:
        session = self.session
        state = None if self.builds else session.state
        return Due(session.rev, session.snapshot_meta, state, dict(session.document.state_vector()))

    def start(self, due: Due) -> None:
        """Compact at `due` beside the batches. The log counts again from it; if the write
        fails, the count it had comes back, so it is tried again after a later batch."""

        async def compact() -> None:
            try:
                await self.write(due)
            finally:
                self.running = None

        self.running = asyncio.create_task(compact(), name=f"compact-{self.name[:40]}")

    async def wait(self) -> None:
        """Until no compaction runs."""
        while self.running is not None:
            await asyncio.shield(self.running)

    async def write(self, due: Due) -> bool:
        """Compact at `due` now; False (logged) when the store refused it."""
        if due.rev == self.session.document.base_rev:  # the log starts there already
            return True
        counted, self.log_size = self.log_size, LogSize()
        started = time.perf_counter()
        try:
            snapshot = await self._compact(due)
        except Exception as error:
            self.log_size.merge(counted)
            self._failed(due.rev, error)
            return False
        if self.failures:
            log.info("%s: compaction works again after %d failures", self.name, self.failures)
        self.failures, self.retry_at = 0, 0.0
        if snapshot is not None:
            if self.metrics is not None:
                self.metrics.compacted(time.perf_counter() - started, len(snapshot.state))
            framed = await framed_off_loop(snapshot.state)
            self.session.compacted(snapshot.rev, snapshot.state, framed, clocks=due.clocks)
        return True

    async def _compact(self, due: Due) -> Snapshot | None:
        if due.state is None:
            limit = self.settings.compaction_memory_bytes
            return await self.store.compact_at(self.name, due.rev, due.meta, limit)  # type: ignore[no-any-return]
        snapshot = Snapshot(due.rev, due.state, due.meta)
        await self.store.compact(self.name, snapshot)
        return snapshot

    def _failed(self, rev: int, error: Exception) -> None:
        """Log the first failure of a run (the others would repeat it), and pause."""
        self.failures += 1
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        if self.metrics is not None:
            self.metrics.compaction_failures.inc()
        if self.failures == 1:
            log.error(
                "%s: compaction at rev %d failed; the log is kept and it is tried again "
                "(failures are not logged again until one works): %s",
                self.name,
                rev,
                error,
                exc_info=not isinstance(error, CompactionError),
            )
        else:
            log.debug("%s: compaction failed again (%d): %s", self.name, self.failures, error)
