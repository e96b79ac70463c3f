"""The outbox: messages for peers, kept until the driver takes them, updates merged; and
the `Output` the driver takes from a session (records, messages, closes).

Yjs updates queued for one peer in a row go out as one merged update message, and every
peer of a batch gets the very same message object (merged and encoded once). Only small
ones are merged (`MERGE_BYTES`): pycrdt's merge holds the GIL, and merging a batch of
256 KB updates held the loop ~18 ms for no saving (each is one item already).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from pycrdt import merge_updates

from collab.yjs import protocol

if TYPE_CHECKING:
    from collab.session.revision import Revision
    from collab.session.sync_answers import KeptAnswer
    from collab.session.welcome import LongMessage
    from collab.storage.contract import Record

MERGE_BYTES = 64 * 1024
"""A run of updates merged into one message holds at most this many bytes (or one update)."""

PeerId = Hashable
Message: TypeAlias = "bytes | str | KeptAnswer | LongMessage"  # the last two: part by part


@dataclass
class _Updates:
    """Yjs updates queued for one peer, sent as one merged update message.

    A peer's own updates are included (as the reference server echoes them) so that
    every peer of a batch gets the very same message; a peer whose batch holds only its
    own updates is sent nothing.
    """

    updates: list[bytes]
    only_own: bool
    size: int


class Outbox:
    """Messages per peer, in order, until `take`."""

    def __init__(self) -> None:
        self._out: dict[PeerId, list[Message | _Updates]] = {}

    def send(self, peer_id: PeerId, data: Message) -> None:
        self._out.setdefault(peer_id, []).append(data)

    def send_update(self, peer_ids: Iterable[PeerId], update: bytes, sender: PeerId) -> None:
        """Queue a Yjs update for each of `peer_ids` (the hot path: kept lean)."""
        out = self._out
        for peer_id in peer_ids:
            own = peer_id == sender
            items = out.get(peer_id)
            last = items[-1] if items else None
            if isinstance(last, _Updates) and last.size + len(update) <= MERGE_BYTES:
                last.updates.append(update)
                last.only_own = last.only_own and own
                last.size += len(update)
            elif items is None:
                out[peer_id] = [_Updates([update], own, len(update))]
            else:
                items.append(_Updates([update], own, len(update)))

    def replace(self, peer_id: PeerId, messages: list[Message]) -> None:
        """Drop what is queued for a peer and queue `messages` instead (a resync)."""
        self._out[peer_id] = list(messages)

    def drop(self, peer_id: PeerId) -> None:
        self._out.pop(peer_id, None)

    def take(self) -> list[tuple[PeerId, Message]]:
        """Every queued message, in order per peer; the outbox is empty after."""
        merged: dict[object, bytes] = {}
        messages: list[tuple[PeerId, Message]] = []
        for peer_id, items in self._out.items():
            for item in items:
                if type(item) is _Updates:
                    if not item.only_own:  # type: ignore[union-attr]
                        messages.append((peer_id, _merged_message(item, merged)))  # type: ignore[arg-type]
                else:
                    messages.append((peer_id, item))  # type: ignore[arg-type]
        self._out = {}
        return messages


def _merged_message(item: _Updates, cache: dict[object, bytes]) -> bytes:
    """One update message per distinct run of updates, shared by the peers that get it."""
    updates = item.updates
    key: object = id(updates[0]) if len(updates) == 1 else tuple(map(id, updates))
    message = cache.get(key)
    if message is None:
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        message = cache[key] = protocol.encode_sync_update(update)
    return message


@dataclass
class Output:
    """What the driver must do, in this order: persist, send, close."""

    records: list[Record] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)  # the records as text changes
    messages: list[tuple[PeerId, Message]] = field(default_factory=list)
    closes: list[tuple[PeerId, int, str]] = field(default_factory=list)
    awareness: list[bytes] = field(default_factory=list)  # for the other processes (bus)

    def __bool__(self) -> bool:
        return bool(self.records or self.messages or self.closes or self.awareness)
