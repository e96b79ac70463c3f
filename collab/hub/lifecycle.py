"""What the document lifecycle asks of a runner: changes from services, and a drop.

A mixin of `DocumentRunner` (its inbox, server edits and delivery lock are the runner's):
a service's text op (over HTTP) is transformed and acked like a text client's, a Yjs
update from server code is checked like a peer's, and a deleted document leaves memory
without being saved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from collab.session import Session
from collab.session.text_messages import OpMessage
from collab.wire import CloseCode

DELETED = "the document was deleted"

if TYPE_CHECKING:
    from collab.hub.channel import PeerChannel
    from collab.hub.registry import Hub
    from collab.session import PeerId


class RunnerLifecycle:
    hub: Hub
    _session: Session
    _edits: list[asyncio.Future[int]]
    _channels: dict[PeerId, PeerChannel]
    _delivering: asyncio.Lock
    _inbox: deque[Callable[[Session], None]]
    _dropping: asyncio.Task[bytes] | None = None

    if TYPE_CHECKING:  # the runner's

        def _enqueue(self, event: Callable[[Session], None]) -> None: ...

        async def flush(self) -> None: ...

    @property
    def generation(self) -> str:
        """The document's generation (changes when it is deleted and made again)."""
        return self._session.generation.id

    async def submit(self, client: str, message: OpMessage, user: str | None) -> int:
        """A text op without a connection, transformed like a text client's; the revision
        that acks it once it is on disk (a repeated (client, seq) is acked again with its
        revision, never applied twice). Raises `ChangeRefused`."""
        acked: list[int] = []
        await self._server_change(lambda s: acked.append(s.submit_op(client, message, user)))
        return acked[0]

    async def apply_update(self, update: bytes, origin: str, user: str | None) -> int:
        """A Yjs update from server code, checked like a peer's; the revision once on disk.
        Raises `ChangeRefused` for one that does not apply."""
        return await self._server_change(lambda s: s.apply_update(update, origin, user))

    async def _server_change(self, change: Callable[[Session], object]) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._edits.append(done)

        def changed(session: Session) -> None:
            try:
                change(session)
            except Exception as error:  # the batch settles the others, not this one
                done.set_exception(error)

        self._enqueue(changed)
        await self.flush()
        return await done

    def deleted(self) -> None:
        """Another process deleted the document (BusListener): close, drop unsaved."""
        task = asyncio.create_task(self.drop(CloseCode.DELETED, DELETED))
        self._dropping = task  # kept referenced until it ends

    async def drop(self, code: int, reason: str) -> bytes:
        """Leave memory without saving (the document is being deleted): peers are closed
        with `code`, events not yet committed are dropped. Returns the state vector of
        what was committed."""
        async with self._delivering:
            self._inbox.clear()
            edits, self._edits = self._edits, []
            for done in edits:
                if not done.done():
                    done.set_exception(RuntimeError(reason))
            for channel in list(self._channels.values()):
                channel.close(code, reason)
            self.hub.forget(self)  # type: ignore[arg-type]
            return self._session.document.doc.get_state()
