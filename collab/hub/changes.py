"""The change feed: durable changes handed to the on_change hook, in order, off the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from collab.hooks import Change, OnChange, call_hook
from collab.session import Output

log = logging.getLogger(__name__)

HOOK_DRAIN_SECONDS = 10.0


class ChangeFeed:
    """Queues durable changes for the hook; a slow hook delays later calls, never peers."""

    def __init__(self, on_change: OnChange) -> None:
        self.on_change = on_change
        self._changes: asyncio.Queue[Change] | None = None
        self._task: asyncio.Task[None] | None = None

    def publish(self, name: str, output: Output) -> None:
        """The records of `output` are on disk: queue one `Change` each."""
        if not output.records:
            return
        if self._changes is None:
            self._changes = asyncio.Queue()
            self._task = asyncio.create_task(self._run(self._changes))
        for record, revision in zip(output.records, output.revisions, strict=True):
            self._changes.put_nowait(
                Change(
                    name,
                    record.rev,
                    record.time,
                    record.origin,
                    record.user,
                    record.update,
                    revision.op,
                )
            )

    async def _run(self, changes: asyncio.Queue[Change]) -> None:
        while True:
            change = await changes.get()
            try:
                await call_hook(self.on_change, change)
            except Exception:
                log.exception("%s: on_change hook failed at rev %d", change.name, change.rev)
            finally:
                changes.task_done()

    async def close(self) -> None:
        """The hook hears about every change made before (within a time limit)."""
        if self._changes is None or self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changes.join(), HOOK_DRAIN_SECONDS)
        self._task.cancel()
