"""The document list's view of each document: how much text it holds and when it was last
edited (the store's sizes count every revision kept, not the text).

Read from the store once per (name, revision), off the event loop, and kept for the most
recently listed documents; a document whose revision has not moved since costs nothing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pycrdt import Doc, Text

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
    revision (`load`: what the store holds of a document, as `Hub.load_stored` reads it)."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[StoredDocument | None]],
        text_name: str,
        keep: int = KEEP,
    ) -> None:
        self.load = load
        self.text_name = text_name
        self.keep = keep
        self._cache: OrderedDict[str, tuple[int, Summary]] = OrderedDict()

    async def get(self, name: str, rev: int) -> Summary | None:
        """The summary of `name` at revision `rev` or later; None if it is not stored."""
        hit = self._cache.get(name)
        if hit is not None and hit[0] >= rev:
            self._cache.move_to_end(name)
            return hit[1]
        stored = await self.load(name)
        if stored is None:
            return None
        summary = await asyncio.to_thread(summarize, stored, self.text_name)
        self._cache[name] = (stored.rev, summary)
        self._cache.move_to_end(name)
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return summary
