"""Awareness: who is here, as y-protocols keeps it (client id -> clock and JSON state).

The table is the server's copy of every awareness state its peers announced, so that a
peer that joins learns who is already here, and a peer that leaves takes its states with
it (no ghost cursors). Each connection may speak for a bounded number of client ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collab.protocol import MAX_VAR_UINT, AwarenessEntry

MAX_AWARENESS_PER_PEER = 64  # client ids one connection may speak for


class TooManyStates(Exception):
    """A connection tried to speak for more awareness client ids than allowed."""


@dataclass
class AwarenessChange:
    """What one awareness message changed."""

    changed: bool = False
    updated: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # new states
    removed: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    """Client ids whose state is gone, with the state they had."""


class AwarenessTable:
    """Every known awareness state, and which connection speaks for which client id."""

    def __init__(self) -> None:
        self.states: dict[int, tuple[int, dict[str, Any] | None]] = {}

    def receive(
        self,
        owned: set[int],
        entries: Iterable[AwarenessEntry],
        limit: int | None = MAX_AWARENESS_PER_PEER,
    ) -> AwarenessChange:
        """Entries from the connection that owns the client ids in `owned` (updated here).

        Entries older than what is known are ignored. Raises `TooManyStates` when the
        connection would speak for more than `limit` client ids; the entries before the
        offending one are kept. (Another process's peers: no limit here, theirs applied.)
        """
        change = AwarenessChange()
        for entry in entries:
            known = self.states.get(entry.client_id)
            if known is not None and entry.clock < known[0]:
                continue
            change.changed = True
            if entry.state is None:
                _, old = self.states.pop(entry.client_id, (0, None))
                owned.discard(entry.client_id)
                change.removed.append((entry.client_id, old))
                continue
            if entry.client_id not in owned and limit is not None and len(owned) >= limit:
                raise TooManyStates
            self.states[entry.client_id] = (entry.clock, entry.state)
            owned.add(entry.client_id)
            change.updated.append((entry.client_id, entry.state))
        return change

    def set(self, client_id: int, state: dict[str, Any]) -> AwarenessEntry | None:
        """The server sets a state (a text client mirrored); None when it is unchanged."""
        clock, known = self.states.get(client_id, (0, None))
        if state == known:
            return None
        clock = _next(clock)
        self.states[client_id] = (clock, state)
        return AwarenessEntry(client_id, clock, state)

    def renew(self, client_id: int) -> AwarenessEntry | None:
        """The same state again with a newer clock, so that peers do not time it out."""
        known = self.states.get(client_id)
        if known is None or known[1] is None:
            return None
        clock = _next(known[0])
        self.states[client_id] = (clock, known[1])
        return AwarenessEntry(client_id, clock, known[1])

    def remove(self, client_ids: Iterable[int]) -> list[AwarenessEntry]:
        """Forget these states; returns the entries that tell the others they are gone."""
        gone = []
        for client_id in sorted(client_ids):
            known = self.states.pop(client_id, None)
            if known is not None:
                gone.append(AwarenessEntry(client_id, _next(known[0]), None))
        return gone

    def entries(self) -> list[AwarenessEntry]:
        """Every state known, for a peer that joins or asks."""
        return [
            AwarenessEntry(client_id, clock, state)
            for client_id, (clock, state) in self.states.items()
            if state is not None
        ]


def _next(clock: int) -> int:
    """The clock after `clock`, never past what a varUint can carry: encoding must not
    raise (a peer's "gone" message is encoded when it leaves, before the idle unload).
    `protocol.decode` refuses clocks from 2**53 - 1 up, so this only guards."""
    return min(clock + 1, MAX_VAR_UINT)
