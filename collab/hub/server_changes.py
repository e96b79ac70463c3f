"""Changes made by server code and services, not by a connected peer.

`Collab.edit`/`set_text`, a service's op or Yjs update over HTTP, and an import all go
through the document's inbox like a peer's message: applied in order, committed with the
batch, sent to the peers, and answered with the revision once on disk. A change that does
not fit raises to its caller alone; the batch and the other peers go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from collab.session import Session
from collab.session.ot_server import refuse_if_too_big
from collab.text import ops as textops

if TYPE_CHECKING:
    from collab.replay.recording import Recorder
    from collab.session.text_messages import OpMessage


class ServerChanges:
    """One document's changes from server code (a part its `DocumentRunner` holds)."""

    def __init__(
        self,
        session: Session,
        track: Callable[[asyncio.Future[int]], None],
        enqueue: Callable[[Callable[[Session], None]], None],
        flush: Callable[[], Awaitable[None]],
        recorder: Recorder | None,
    ) -> None:
        """`track`: the runner settles the future with the batch's revision once it is
        committed (or with why not); `enqueue` and `flush`: the runner's inbox."""
        self._session = session
        self._track = track
        self._enqueue = enqueue
        self._flush = flush
        self._recorder = recorder

    async def edit(self, op: list[int | str], origin: str, user: str | None) -> int:
        """A text op on the current text. Returns the document's revision once the change
        is on disk and sent; raises `textops.OpError` or `ChangeRefused` when it does not
        fit the text."""
        textops.check(op)

        def edited(session: Session) -> None:
            session.edit_text(op, origin=origin, user=user)
            if self._recorder is not None:
                self._recorder.edit(session.name, op, origin, user)

        return await self._change(edited)

    async def set_text(self, text: str, origin: str, user: str | None) -> int:
        """Make the text equal to `text` with the smallest single change (see `edit`). Both
        texts are compared on the loop, and pycrdt's text changed there: refused when
        either is too big for text clients (`too_big_for_text`)."""
        await self._flush()
        document = self._session.document
        growth = max(0, len(text.encode()) - document.state_bytes)  # the bigger of the two
        refuse_if_too_big(document, growth, joining=True)
        return await self.edit(textops.diff(self._session.mirror, text), origin, user)

    async def submit(self, client: str, message: OpMessage, user: str | None) -> int:
        """A text op without a connection, transformed like a text client's; the revision
        that acks it once it is on disk (a repeated (client, seq) is acked again with its
        revision, never applied twice). Raises `ChangeRefused`."""
        acked: list[int] = []
        await self._change(lambda session: acked.append(session.submit_op(client, message, user)))
        return acked[0]

    async def apply_update(self, update: bytes, origin: str, user: str | None) -> int:
        """A Yjs update from server code, checked like a peer's; the revision once on disk.
        Raises `ChangeRefused` for one that does not apply."""
        return await self._change(lambda session: session.apply_update(update, origin, user))

    async def _change(self, change: Callable[[Session], object]) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._track(done)

        def changed(session: Session) -> None:
            try:
                change(session)
            except Exception as error:  # the batch settles the others, not this one
                done.set_exception(error)

        self._enqueue(changed)
        await self._flush()
        return await done
