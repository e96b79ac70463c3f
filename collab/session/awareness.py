"""Awareness: who is here, as y-protocols keeps it (client id -> clock and JSON state).

The table is the server's copy of every awareness state its peers announced, so that a
peer that joins learns who is already here, and a peer that leaves takes its states with
it (no ghost cursors). Each connection may speak for a bounded number of client ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collab.yjs.protocol import MAX_VAR_UINT, AwarenessEntry

MAX_AWARENESS_PER_PEER = 64  # client ids one connection may speak for


class TooManyStates(Exception):
    """A connection tried to speak for more awareness client ids, or hold more bytes of
    awareness state (its own, or the document's in total), than allowed."""

    def __init__(self, reason: str = "too many awareness states") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AwarenessChange:
    """What one awareness message changed."""

    changed: bool = False
    updated: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # new states
    removed: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    """Client ids whose state is gone, with the state they had."""


class AwarenessTable:
    """Every known awareness state, and which connection speaks for which client id."""

    def __init__(self, max_peer_bytes: int = 0, max_total_bytes: int = 0) -> None:
        """`max_peer_bytes` / `max_total_bytes`: caps on the JSON length of the states one
        connection holds and of all states together (0: no cap)."""
        self.states: dict[int, tuple[int, dict[str, Any] | None]] = {}
        self.max_peer_bytes = max_peer_bytes
        self.max_total_bytes = max_total_bytes
        self.sizes: dict[int, int] = {}  # client id -> length of its state as received
        self.total_bytes = 0

    def _resize(self, client_id: int, size: int) -> None:
        self.total_bytes += size - self.sizes.pop(client_id, 0)
        if size:
            self.sizes[client_id] = size

    def _check_bytes(self, owned: set[int], client_id: int, size: int) -> None:
        grows = size - self.sizes.get(client_id, 0)
        if grows <= 0:
            return
        if self.max_total_bytes and self.total_bytes + grows > self.max_total_bytes:
            raise TooManyStates(
                f"awareness states of this document over {self.max_total_bytes} bytes"
            )
        if self.max_peer_bytes:
            held = sum(self.sizes.get(owned_id, 0) for owned_id in owned)
            if client_id not in owned:
                held += size
            else:
                held += grows
            if held > self.max_peer_bytes:
                raise TooManyStates(
                    f"awareness states of this connection over {self.max_peer_bytes} bytes"
                )

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
            if entry.state is None and known is None:  # nothing to remove: echoes of
                owned.discard(entry.client_id)  # a removal everyone already heard of
                continue
            change.changed = True
            if entry.state is None:
                _, old = self.states.pop(entry.client_id, (0, None))
                self._resize(entry.client_id, 0)
                owned.discard(entry.client_id)
                change.removed.append((entry.client_id, old))
                continue
            if entry.client_id not in owned and limit is not None and len(owned) >= limit:
                raise TooManyStates
            self._check_bytes(owned, entry.client_id, entry.size)
            self.states[entry.client_id] = (entry.clock, entry.state)
            self._resize(entry.client_id, entry.size)
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
            self._resize(client_id, 0)
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
