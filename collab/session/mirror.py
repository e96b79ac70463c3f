"""Carets across the doors: text clients' selections as Yjs cursors, and back.

A text client is shown to Yjs peers as an awareness state (`presence.awareness_state`)
whose ``cursor`` is what y-codemirror and other Yjs editors read: ``{anchor, head}``, each
the JSON form of a ``Y.RelativePosition`` (``{type, tname, item: {client, clock}, assoc}``)
naming the character the caret sits before, so it stays there as others type. A Yjs
peer's ``cursor`` is resolved the other way, to code points at the current revision.

`TextAwareness` sends those states: at most one per text client per `COALESCE_SECONDS`
(the rest waits for `tick`), and renewed every `RENEW_SECONDS` while the client stays,
since y-protocols drops a state nobody renewed for 30 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collab.session.awareness import AwarenessTable
from collab.session.presence import Selection, awareness_id_for, awareness_state
from collab.yjs.items import TextItems
from collab.yjs.protocol import MAX_VAR_UINT, AwarenessEntry

COALESCE_SECONDS = 0.05
"""At most one awareness update per text client per this many seconds."""
RENEW_SECONDS = 15.0
"""A text client's state is sent again this often (y-protocols' timeout is 30 s); the
default of `Settings.awareness_renew_seconds`."""


def relative_position(items: TextItems, index: int, tname: str) -> dict[str, Any]:
    """``Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text, index))``."""
    found = items.id_at(index)
    item = None if found is None else {"client": found[0], "clock": found[1]}
    return {"type": None, "tname": tname, "item": item, "assoc": 0}


def cursor_of(items: TextItems, selection: Selection | None, tname: str) -> dict[str, Any] | None:
    """A text client's main selection as a Yjs awareness ``cursor``; None without one."""
    if not selection:
        return None
    anchor, head = selection[0]
    return {
        "anchor": relative_position(items, anchor, tname),
        "head": relative_position(items, head, tname),
    }


def selection_of(items: TextItems, cursor: object, tname: str) -> Selection | None:
    """A Yjs awareness ``cursor`` as a code-point selection; None when it does not name a
    place in this text (malformed, another type, or items this document lacks)."""
    if not isinstance(cursor, dict):
        return None
    anchor = _index(items, cursor.get("anchor"), tname)
    head = _index(items, cursor.get("head"), tname)
    if anchor is None or head is None:
        return None
    return [[anchor, head]]


def _index(items: TextItems, rpos: object, tname: str) -> int | None:
    if not isinstance(rpos, dict):
        return None
    assoc = rpos.get("assoc", 0)
    if assoc is None:
        assoc = 0
    if not _is_int(assoc):
        return None
    item = rpos.get("item")
    if item is None:  # the start or the end of a type
        if rpos.get("type") is not None or rpos.get("tname") != tname:
            return None
        return items.length() if assoc >= 0 else 0
    if not isinstance(item, dict):
        return None
    client, clock = item.get("client"), item.get("clock")
    if not (_is_uint(client) and _is_uint(clock)):
        return None
    return items.index_of(client, clock, assoc)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uint(value: object) -> bool:
    return _is_int(value) and 0 <= value <= MAX_VAR_UINT  # type: ignore[operator]


@dataclass
class _Mirrored:
    shown: dict[str, Any]  # the text peer's {"user", "selection"}, kept current by the session
    sent_at: float = -math.inf  # when its state last went out
    pending: bool = False  # it changed since


class TextAwareness:
    """The awareness states the server speaks for text clients: sent, coalesced, renewed."""

    def __init__(self, table: AwarenessTable, tname: str, renew: float = RENEW_SECONDS) -> None:
        self.table = table
        self.tname = tname
        self.renew = renew
        self._clients: dict[str, _Mirrored] = {}

    def changed(
        self, client: str, shown: dict[str, Any], now: float, items: Callable[[], TextItems]
    ) -> AwarenessEntry | None:
        """A text client's user or selection changed: its entry when it may go out now."""
        mirrored = self._clients.get(client)
        if mirrored is None:
            mirrored = self._clients[client] = _Mirrored(shown)
        mirrored.shown = shown
        if now - mirrored.sent_at < COALESCE_SECONDS:
            mirrored.pending = True
            return None
        return self._send(client, mirrored, now, items)

    def due(self, now: float) -> bool:
        """Whether `tick` has something to send at `now`."""
        return any(self._due(m, now) for m in self._clients.values())

    def next_due(self) -> float | None:
        """When `tick` will next have something to send; None while no text client is
        here (then nothing is due until one changes)."""
        if not self._clients:  # asked after every batch: documents with only Yjs peers
            return None
        return min(
            (
                m.sent_at + (COALESCE_SECONDS if m.pending else self.renew)
                for m in self._clients.values()
            ),
            default=None,
        )

    def tick(self, now: float, items: Callable[[], TextItems]) -> list[AwarenessEntry]:
        """What is due: changes held back by the coalescing, renewals of the others."""
        out = []
        for client, mirrored in self._clients.items():
            if not self._due(mirrored, now):
                continue
            entry = self._send(client, mirrored, now, items) if mirrored.pending else None
            if entry is None and now - mirrored.sent_at >= self.renew:
                entry = self.table.renew(awareness_id_for(client))  # same state, newer clock
                mirrored.sent_at = now
            if entry is not None:
                out.append(entry)
        return out

    def forget(self, client: str) -> None:
        self._clients.pop(client, None)

    def _due(self, mirrored: _Mirrored, now: float) -> bool:
        since = now - mirrored.sent_at
        return since >= self.renew or (mirrored.pending and since >= COALESCE_SECONDS)

    def _send(
        self, client: str, mirrored: _Mirrored, now: float, items: Callable[[], TextItems]
    ) -> AwarenessEntry | None:
        mirrored.pending = False
        selection = mirrored.shown["selection"]
        cursor = cursor_of(items(), selection, self.tname) if selection else None
        state = awareness_state(client, mirrored.shown["user"], cursor)
        entry = self.table.set(awareness_id_for(client), state)
        if entry is not None:
            mirrored.sent_at = now
        return entry
