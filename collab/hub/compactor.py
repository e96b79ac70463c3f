"""When and how a document's log is replaced by a snapshot.

The runner counts what it commits; once the log passes `--compact-log-records` or
`--compact-log-bytes`, the next batch's state becomes a snapshot, written beside the
batches (checking a snapshot of a long log against it and writing it takes seconds, and
the document's edits go on meanwhile). One compaction at a time per document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from collab.config import Settings
from collab.hub.accounting import LogSize
from collab.session import Session
from collab.storage.contract import Record, Snapshot

log = logging.getLogger(__name__)


class Compactor:
    """One document's log accounting and snapshot writing."""

    def __init__(self, name: str, store: Any, session: Session, log_size: LogSize) -> None:
        self.name = name
        self.store = store
        self.session = session
        self.log_size = log_size
        self.running: asyncio.Task[None] | None = None  # a snapshot being written

    def committed(self, records: Sequence[Record], settings: Settings) -> Snapshot | None:
        """Records were committed: the snapshot to write now, if one is due (taken at this
        instant, it holds exactly what is committed)."""
        self.log_size.add(records)
        if self.running is None and self.log_size.due(settings):
            return self.snapshot()
        return None

    def snapshot(self) -> Snapshot:
        session = self.session
        return Snapshot(session.rev, session.state, session.snapshot_meta)

    def start(self, snapshot: Snapshot) -> None:
        """Write `snapshot` beside the batches. The log counts again from it; if the write
        fails, the count it had comes back, so it is tried again after a later batch."""

        async def compact() -> None:
            try:
                await self.write(snapshot)
            finally:
                self.running = None

        self.running = asyncio.create_task(compact(), name=f"compact-{self.name[:40]}")

    async def wait(self) -> None:
        """Until no compaction runs."""
        while self.running is not None:
            await asyncio.shield(self.running)

    async def write(self, snapshot: Snapshot) -> bool:
        """Write `snapshot` now; False (logged) when the store refused it."""
        if snapshot.rev == self.session.document.base_rev:  # the log starts there already
            return True
        counted, self.log_size = self.log_size, LogSize()
        try:
            await self.store.compact(self.name, snapshot)
        except Exception:
            log.exception(
                "%s: compaction at rev %d failed; the log is kept", self.name, snapshot.rev
            )
            self.log_size.merge(counted)
            return False
        self.session.compacted(snapshot.rev, snapshot.state)
        return True
