"""A connection as the session sees it, with its protocol state made explicit."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from collab.access.limits import TokenBucket

PeerId = Hashable


class PeerKind(StrEnum):
    YJS = "yjs"  # speaks y-websocket on /yjs/{name}
    TEXT = "text"  # speaks the text-operation protocol on /ot/{name}


class PeerState(Enum):
    CONNECTED = "connected"  # a Yjs peer syncing, or a text peer that has not said hello
    JOINED = "joined"  # a text peer after hello: it has a client id and presence
    CLOSING = "closing"  # the driver was asked to close it: its messages are ignored


@dataclass(slots=True)
class Peer:
    id: PeerId
    kind: PeerKind
    user: str | None
    readonly: bool
    state: PeerState = PeerState.CONNECTED
    awareness_ids: set[int] = field(default_factory=set)  # client ids it speaks for
    client: str | None = None  # a joined text peer's public client id
    presence: dict[str, Any] | None = None  # a joined text peer's user and selection
    sync_status: bool = False  # a Hocuspocus peer: its sync messages are answered (SyncStatus)
    current_copy: bool = False  # a Yjs peer whose sync step 1 held no earlier generation
    sync_asks: TokenBucket | None = None  # its sync step 1s (SyncAnswers.answer_peer)

    @property
    def joined(self) -> bool:
        return self.state is PeerState.JOINED

    @property
    def closing(self) -> bool:
        return self.state is PeerState.CLOSING

    def shown_user(self, user: dict[str, str]) -> dict[str, str]:
        """The user a text peer's presence shows: with a verified user (a token's, the
        authenticate hook's) that name, whatever name the client said; its colour stays."""
        if self.user is None:
            return user
        return {**user, "name": self.user[:64]}
