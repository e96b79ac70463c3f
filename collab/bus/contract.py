"""What a bus between collab processes promises, and what it tells the documents.

The bus carries what is already decided: revisions committed in the shared store (so the
other processes show them at once instead of on their next commit) and awareness (who is
here, which is never stored). It is allowed to lose messages: a process that sees a gap
in revision numbers, or that was told its subscription was lost, fetches the revisions it
missed from the store, and awareness is renewed by its owners. So a lost publish delays
delivery; it never loses an edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from collab.storage.contract import Record


class BusListener(Protocol):
    """One document's end of the bus (its runner)."""

    def records(self, records: Sequence[Record]) -> None:
        """Revisions another process committed, in order (possibly with gaps or repeats)."""
        ...

    def committed(self, rev: int) -> None:
        """Another process committed revisions up to `rev` that were too large to send on
        the bus: fetch the ones this process lacks from the store."""
        ...

    def awareness(self, process: str, message: bytes) -> None:
        """An awareness message (y-websocket encoding) from another process's peers."""
        ...

    def process_gone(self, process: str) -> None:
        """A process stopped (or stopped answering): its peers' awareness goes with it."""
        ...

    def deleted(self, reason: str) -> None:
        """Another process deleted (or restored) the document: close its peers, drop it
        unsaved; `reason` says which."""
        ...

    def resubscribed(self) -> None:
        """The subscription was lost and is back: whatever was published meanwhile is lost,
        so catch up from the store. A bus whose subscriptions take effect later than
        `Bus.subscribe` returns (Redis) also calls it once a new subscription is active."""
        ...


class Bus(Protocol):
    """Publish and subscribe per document, between processes sharing one store."""

    @property
    def process(self) -> str:
        """This process's id on the bus (unique among the processes)."""
        ...

    async def start(self) -> None: ...

    def subscribe(self, name: str, listener: BusListener) -> None:
        """Deliver the document's messages from other processes to `listener` (never this
        process's own)."""
        ...

    def unsubscribe(self, name: str, listener: BusListener) -> None: ...

    async def publish_records(self, name: str, records: Sequence[Record]) -> None:
        """Tell the others about committed revisions (best effort). A batch too large for
        one message reaches them as `BusListener.committed(last rev)` instead."""
        ...

    async def publish_awareness(self, name: str, message: bytes) -> None:
        """Tell the others about awareness changes of this process's peers (best effort)."""
        ...

    async def publish_deleted(self, name: str, reason: str) -> None:
        """Tell the others the document was deleted (best effort)."""
        ...

    async def close(self) -> None:
        """Leave: the others forget this process's awareness."""
        ...
