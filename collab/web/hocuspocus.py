"""The Hocuspocus door: ``ws://HOST:PORT/hocuspocus``, many documents on one WebSocket.

`@hocuspocus/provider` (TipTap's collaboration extension and the apps built on it)
connects unchanged. Every document a socket opens is one peer of that document's runner,
exactly like a y-websocket peer (after the name, the messages are y-websocket messages),
so these are the same documents as ``/yjs/{name}`` and ``/ot/{name}``.

Per socket: the Origin check at the upgrade, a message rate, the bytes and messages it
may send before its first document is authenticated and a deadline for that, and at most
`max_documents_per_socket` documents. Per document: its token (an Auth message), checked
as the other doors check theirs (`WebApp.access`), then the checks every message passes
(`PeerReader`). What a provider sends before the Auth answer (its sync step 1, its
awareness) is held and handed on once the document is authenticated, or dropped with
the refusal.

Bad input about one document (a malformed message, an unknown type, an invalid name, a
message before its token) refuses that document (PermissionDenied before it is open, a
Close message after) and the socket's other documents carry on. Only what cannot be
pinned on one document (a frame without a readable name, the rate, the unproven budget)
closes the socket, and so do closes the provider must answer by reconnecting (the server
going away, a storage failure, a peer too slow): a Close message would end that document
for good on the provider's side.

SyncStatus means durable: the session answers a document's sync messages in the output
that holds their records, and the runner sends a batch's messages only after its commit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from collab.hooks import Access, OnStateless
from collab.web.hocuspocus_socket import DocumentLink, HocuspocusSocket
from collab.yjs import hocuspocus as hp

if TYPE_CHECKING:
    from collab.web.app import WebApp

log = logging.getLogger(__name__)


class HocuspocusDoor:
    """The ``/hocuspocus`` endpoint of one `WebApp`, and who is on which document."""

    def __init__(self, web: WebApp, on_stateless: OnStateless | None = None) -> None:
        self.web = web
        self.on_stateless = on_stateless
        self.links: dict[str, set[DocumentLink]] = {}  # document -> its Hocuspocus peers
        self.hook_tasks: set[asyncio.Task[Any]] = set()  # async on_stateless calls running

    async def endpoint(self, websocket: WebSocket) -> None:
        web = self.web
        headers = websocket.headers
        scheme = websocket.scope.get("scheme", "http")  # as `websocket.url.scheme`, unparsed
        why = web.origins.check(headers.get("origin"), headers.get("host"), scheme)
        if why is not None:
            await web.deny(websocket, 403, "origin", why)
            return
        await websocket.accept()
        await HocuspocusSocket(self, websocket).serve()

    def stateless(self, name: str, payload: str, access: Access) -> None:
        """A provider's Stateless message: to the on_stateless hook, if there is one (a
        hook that fails is logged, nothing else)."""
        hook = self.on_stateless
        if hook is None:
            return
        try:
            result = hook(name, payload, access)
        except Exception:
            log.exception("%s: on_stateless hook failed", name)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.create_task(result)
            self.hook_tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[Any]) -> None:
        self.hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_stateless hook failed", exc_info=task.exception())

    def broadcast(self, name: str, payload: str, sender: DocumentLink | None = None) -> None:
        """A Stateless message to every Hocuspocus peer of document `name` but `sender`."""
        for link in list(self.links.get(name, ())):
            if link is not sender:
                link.socket.send(hp.encode(hp.Stateless(link.key, payload)))
