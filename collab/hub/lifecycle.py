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
from collab.wire import CloseCode, OriginPrefix

IMPORT = OriginPrefix.IMPORT.value


class DocumentNotFoundError(LookupError):
    """The document has never been stored and the caller did not ask to create it."""


class DocumentExistsError(Exception):
    """The document exists and the caller did not ask to replace it."""


DELETED = "the document was deleted"
RESTORED = "the document was restored from a backup: reconnect"

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.hub.channel import PeerChannel
    from collab.hub.context import DocumentContext
    from collab.hub.registry import Hub
    from collab.session import PeerId


class RunnerLifecycle:
    context: DocumentContext
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

    def deleted(self, reason: str) -> None:
        """Another process deleted or restored the document (BusListener): its peers
        are closed, and it leaves memory unsaved."""
        code = CloseCode.RESTORED if reason == RESTORED else CloseCode.DELETED
        task = asyncio.create_task(self.drop(code, reason))
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
            self.context.forget(self)  # type: ignore[arg-type]
            return self._session.document.doc.get_state()


# ---------------------------------------------------------------------- create, import


async def exists(hub: Hub, name: str) -> bool:
    """Whether document `name` holds anything (a document only opened holds nothing)."""
    try:
        return (await hub.open(name, create=False)).rev > 0
    except DocumentNotFoundError:
        return False


async def put(
    hub: Hub, name: str, content: str | bytes, *, replace: bool = False, user: str | None = None
) -> tuple[int, bool, str]:
    """Make document `name` hold `content`: a text (str) or a Yjs update (bytes). An
    existing one raises `DocumentExistsError` unless `replace`, which makes its text the
    content's in one new revision. Returns (revision, created, generation). Raises
    `ChangeRefused` for content that does not fit; a document made for it is then not kept.
    """
    existed = await exists(hub, name)
    if existed and not replace:
        raise DocumentExistsError(name)
    if isinstance(content, bytes) and existed:  # checked before the document is touched
        content = await asyncio.to_thread(text_of, content, name, hub.settings)
    runner = await hub.open(name)
    try:
        if isinstance(content, bytes):
            rev = await runner.apply_update(content, IMPORT, user)
        else:
            rev = await runner.set_text(content, IMPORT, user)
    except Exception:
        if runner.rev == 0 and not runner.peer_count:  # made for this: not kept
            await runner.drop(CloseCode.TRY_LATER, "the document could not be made")
        raise
    return rev, not existed, runner.generation


def text_of(update: bytes, name: str, settings: Settings) -> str:
    """The shared text a Yjs update holds, checked as a peer's update is (ChangeRefused)."""
    session = Session(name, settings)
    session.apply_update(update, IMPORT)
    return session.mirror
