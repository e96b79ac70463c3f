"""The document list's view of each document: how much text it holds and when it was last
edited (the store's sizes count every revision kept, not the text).

Read from the store once per (name, revision), off the event loop, and kept for the most
recently listed documents; a document whose revision has not moved since costs nothing.
A small document is replayed in a thread; a big one (`--text-worker-bytes`) in a worker
process that reads the store itself (`WorkerTexts.count`), one at a time: pycrdt holds the
GIL for its whole replay (~100 ms and more at 64 MiB), and so would hold the event loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pycrdt import Doc, Text

from collab.replay.worker_texts import WorkerTexts
from collab.storage.contract import StoredDocument

KEEP = 4096
"""Summaries kept (one per document listed)."""


@dataclass(frozen=True)
class Summary:
    chars: int  # code points of text
    last_edit: float | None  # the time of the last stored revision (None: only a snapshot)


def summarize(stored: StoredDocument, text_name: str) -> Summary:
    """The text's length and the last revision's time, from a document as stored."""
    doc = Doc()
    text = doc.get(text_name, type=Text)
    if stored.snapshot:
        doc.apply_update(stored.snapshot)
    for record in stored.records:
        doc.apply_update(record.update)
    last = stored.records[-1].time if stored.records else None
    return Summary(len(str(text)), last)


class DocumentSummaries:
    """Each listed document's text size and last edit, read from the store once per
    revision (`load`: what the store holds of a document, as `Hub.load_stored` reads it).
    `texts`: the worker processes that count documents of `worker_from` bytes or more
    (None: every document is replayed in a thread)."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[StoredDocument | None]],
        text_name: str,
        keep: int = KEEP,
        texts: WorkerTexts | None = None,
        worker_from: int = 0,
    ) -> None:
        self.load = load
        self.text_name = text_name
        self.keep = keep
        self.texts = texts
        self.worker_from = worker_from
        self._cache: OrderedDict[str, tuple[int, Summary]] = OrderedDict()
        self._one_worker = asyncio.Lock()  # a listing of many big documents: one process

    async def get(self, name: str, rev: int, size_bytes: int = 0) -> Summary | None:
        """The summary of `name` at revision `rev` or later; None if it is not stored.
        `size_bytes`: its size, which says where it is counted."""
        hit = self._kept(name, rev)
        if hit is not None:
            return hit
        if self.texts is not None and 0 < self.worker_from <= size_bytes:
            async with self._one_worker:
                hit = self._kept(name, rev)  # counted meanwhile for another listing
                if hit is not None:
                    return hit
                counted = await self.texts.count(name)
            if counted is None:
                return None
            return self._keep(name, counted.rev, Summary(counted.chars, counted.last_edit))
        stored = await self.load(name)
        if stored is None:
            return None
        summary = await asyncio.to_thread(summarize, stored, self.text_name)
        return self._keep(name, stored.rev, summary)

    def _kept(self, name: str, rev: int) -> Summary | None:
        hit = self._cache.get(name)
        if hit is None or hit[0] < rev:
            return None
        self._cache.move_to_end(name)
        return hit[1]

    def _keep(self, name: str, rev: int, summary: Summary) -> Summary:
        self._cache[name] = (rev, summary)
        self._cache.move_to_end(name)
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return summary
