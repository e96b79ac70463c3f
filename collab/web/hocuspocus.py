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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from collab.access.limits import TokenBucket, Unproven
from collab.access.names import InvalidNameError
from collab.hooks import Access, AccessDenied, OnStateless
from collab.hub import DocumentRunner, PeerChannel
from collab.metrics import Tally, wire_length
from collab.session import PeerId
from collab.web.connection import StarletteConnection, Unavailable
from collab.web.receive import RECEIVE_EXTENSION, PeerReader
from collab.wire import CloseCode
from collab.yjs import hocuspocus as hp

if TYPE_CHECKING:
    from collab.web.app import WebApp

log = logging.getLogger(__name__)

DOOR = "hocuspocus"
TOKEN_SCOPE_KEY = "collab.token"
"""Where the authenticate hook finds the token a provider sent for the document:
``connection.scope["collab.token"]`` (the hook is called once per document)."""

RECONNECT_CODES = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.INTERNAL, CloseCode.TRY_LATER, CloseCode.TOO_SLOW}
)
"""Closes a provider must answer by reconnecting: they close the whole socket."""


class HocuspocusDoor:
    """The ``/hocuspocus`` endpoint of one `WebApp`, and who is on which document."""

    def __init__(self, web: WebApp, on_stateless: OnStateless | None = None) -> None:
        self.web = web
        self.on_stateless = on_stateless
        self.links: dict[str, set[DocumentLink]] = {}  # document -> its Hocuspocus peers
        self.hook_tasks: set[asyncio.Task[Any]] = set()  # async on_stateless calls running

    async def endpoint(self, websocket: WebSocket) -> None:
        web = self.web
        why = web.origins.check(websocket.headers.get("origin"), websocket.headers.get("host"))
        if why is not None:
            await web.deny(websocket, 403, "origin", why)
            return
        await websocket.accept()
        await HocuspocusSocket(self, websocket).serve()

    def hook_done(self, task: asyncio.Task[Any]) -> None:
        self.hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_stateless hook failed", exc_info=task.exception())

    def broadcast(self, name: str, payload: str, sender: DocumentLink | None = None) -> None:
        """A Stateless message to every Hocuspocus peer of document `name` but `sender`."""
        for link in list(self.links.get(name, ())):
            if link is not sender:
                link.socket.send(hp.encode(hp.Stateless(link.key, payload)))


class DocumentLink:
    """One document of a Hocuspocus socket, as its runner's `Connection`: what the session
    sends gets the document's name in front (y-websocket messages and SyncStatus)."""

    __slots__ = ("key", "name", "prefix", "socket")

    def __init__(self, socket: HocuspocusSocket, key: str, name: str) -> None:
        self.socket = socket
        self.key = key  # what the provider routes by: the name (+ "\0" + its session id)
        self.name = name
        self.prefix = hp.name_prefix(key)

    def send_now(self, data: bytes | str) -> bool:
        return self.socket.connection.send_now(self.prefix + data)  # type: ignore[operator]

    async def send(self, data: bytes | str) -> None:
        await self.socket.connection.send(self.prefix + data)  # type: ignore[operator]

    async def close(self, code: int, reason: str) -> None:
        self.socket.document_closed(self, code, reason)

    def abort(self) -> None:
        self.socket.connection.abort()

    def buffered(self) -> int:
        return self.socket.connection.buffered()


@dataclass
class _Pending:
    """A document whose token is being checked; what the provider sent meanwhile."""

    held: list[tuple[hp.Message, int]] = field(default_factory=list)
    held_bytes: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class _Open:
    runner: DocumentRunner
    peer_id: PeerId
    reader: PeerReader
    link: DocumentLink
    access: Access


_REFUSED = "refused"  # a document refused or closed on this socket: its messages are dropped
_State = _Pending | _Open | str


class HocuspocusSocket:
    """One provider's WebSocket and the documents it has open."""

    def __init__(self, door: HocuspocusDoor, websocket: WebSocket) -> None:
        self.door = door
        self.web = door.web
        self.hub = door.web.hub
        self.settings = settings = door.web.hub.settings
        self.websocket = websocket
        metrics = door.web.metrics
        self.connection = StarletteConnection(websocket, metrics, DOOR)
        self.counters = metrics.received[DOOR]
        self.out = PeerChannel(
            DOOR,
            self.connection,
            settings.send_queue_bytes,
            self._overflowed,
            settings.close_timeout,
        )
        self.bucket = TokenBucket(settings.max_messages_per_second, settings.message_burst)
        self.unproven: Unproven | None = Unproven(
            settings.preauth_max_bytes, settings.preauth_max_messages
        )
        self.documents: dict[str, _State] = {}
        self.held_bytes = 0
        self.closed = False

    # ------------------------------------------------------------------ the socket

    async def serve(self) -> None:
        """Read frames until the socket closes; then leave every document."""
        loop = asyncio.get_running_loop()
        overdue = loop.call_later(self.settings.first_message_timeout, self._overdue)
        pings = asyncio.create_task(self._ping(self.settings.ping_interval / 2))
        extension = self.websocket.scope.get("extensions", {}).get(RECEIVE_EXTENSION)
        gauge = self.web.metrics.open[DOOR]
        gauge.inc()
        try:
            if extension is not None:
                extension["receive_directly"](self.on_frame)
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                self.on_frame(message.get("text", "") if data is None else data)
        finally:
            overdue.cancel()
            pings.cancel()
            if extension is not None:
                extension["receive_directly"](None)
            self.closed = True
            self.out.abandon()  # a close frame already on its way still goes out
            for key in list(self.documents):
                self._leave(key)
            gauge.dec()

    def send(self, frame: bytes) -> None:
        """A message from the door itself (answers, Close, Stateless, Ping), bounded."""
        if not self.closed:
            self.out.send(frame)

    def close(self, code: int, reason: str) -> None:
        """Close the whole socket (every document on it)."""
        if not self.closed:
            self.closed = True
            self.out.close(code, reason)

    def _refuse_socket(self, reason: str, why: str, code: int) -> None:
        self.web.refuse(reason, why, self.websocket)
        self.close(code, why)

    def _overflowed(self, channel: PeerChannel) -> None:
        self._refuse_socket("too-slow", "too slow: send queue overflowed", CloseCode.TOO_SLOW)

    def _overdue(self) -> None:
        if self.unproven is not None:
            seconds = self.settings.first_message_timeout
            why = f"no document authenticated in {seconds:g} s"
            self._refuse_socket("first-message-timeout", why, CloseCode.TIMEOUT)

    async def _ping(self, interval: float) -> None:
        """The provider reconnects after 30 s without a message: ping a quiet socket."""
        while not self.closed:
            await asyncio.sleep(interval)
            self.send(hp.PING)

    # ------------------------------------------------------------------ frames

    def on_frame(self, data: bytes | str) -> None:
        """One frame: the socket's checks, then its document's."""
        if self.closed:
            return
        received, received_bytes = self.counters
        received.inc()
        received_bytes.inc(wire_length(data))
        if not self.bucket.take():
            rate = self.settings.max_messages_per_second
            self._refuse_socket(
                "message-rate", f"more than {rate:g} messages per second", CloseCode.POLICY
            )
            return
        try:
            message = hp.decode(data)
        except hp.HocuspocusError as error:
            if not self._unproven_allows(None, len(data)):
                return
            if error.name is None:
                self._refuse_socket("protocol", error.reason, error.close_code)
            else:
                self._refuse_document(error.name, error.close_code, error.reason)
            return
        if not self._unproven_allows(message, len(data)):
            return
        if isinstance(message, hp.Ping):
            self.send(hp.PONG)
        elif not isinstance(message, hp.Pong):
            self._dispatch(message, len(data))

    def _unproven_allows(self, message: hp.Message | None, size: int) -> bool:
        """Until a document is authenticated, what the socket sends counts against the
        pre-auth budget, except tokens (at most --max-documents-per-socket checked at
        once) and what waits for a token's answer (held within that budget): a provider
        attaching many documents at once sends three messages each before any answer."""
        if self.unproven is None or isinstance(message, hp.Token):
            return True
        name = getattr(message, "name", None)  # None: unreadable, or Ping/Pong
        if name is not None and isinstance(self.documents.get(name), _Pending):
            return True
        why = self.unproven.add(size)
        if why is not None:
            self._refuse_socket("unproven", why, CloseCode.POLICY)
            return False
        return True

    def _dispatch(self, message: hp.Message, size: int) -> None:
        key = message.name  # type: ignore[union-attr]
        if len(key) > 4 * self.settings.max_name_length:  # not worth echoing back
            why = f"document name over {self.settings.max_name_length} characters"
            self._refuse_socket("name", why, CloseCode.BAD_NAME)
            return
        state = self.documents.get(key)
        if isinstance(message, hp.Token):
            self._authenticate(key, message.token, state)
        elif isinstance(message, hp.Close):
            self._leave(key)
        elif isinstance(state, _Open):
            self._deliver(key, state, message, size)
        elif isinstance(state, _Pending):
            self._hold(key, state, message, size)
        elif state is None:
            self._deny(key, "authenticate first: send a token for this document")

    def _deliver(self, key: str, state: _Open, message: hp.Message, size: int) -> None:
        if isinstance(message, hp.Forward):
            state.reader.on_message(message.body)
            return
        if not isinstance(message, hp.Stateless | hp.BroadcastStateless):
            what = type(message).__name__
            state.runner.close_peer(state.peer_id, CloseCode.UNSUPPORTED, f"{what} from a client")
            return
        limit = self.settings.max_message_bytes
        if size > limit:
            why = f"message of {size} bytes is over {limit}"
            state.runner.close_peer(state.peer_id, CloseCode.TOO_BIG, why)
        elif isinstance(message, hp.BroadcastStateless):
            self.door.broadcast(state.link.name, message.payload, sender=state.link)
        elif self.door.on_stateless is not None:
            self._call_stateless(state.link.name, message.payload, state.access)

    def _call_stateless(self, name: str, payload: str, access: Access) -> None:
        hook = self.door.on_stateless
        assert hook is not None
        try:
            result = hook(name, payload, access)
        except Exception:
            log.exception("%s: on_stateless hook failed", name)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.create_task(result)
            self.door.hook_tasks.add(task)
            task.add_done_callback(self.door.hook_done)

    def _hold(self, key: str, state: _Pending, message: hp.Message, size: int) -> None:
        """Keep what comes before the Auth answer, within the unproven budget."""
        settings = self.settings
        if (
            len(state.held) >= settings.preauth_max_messages
            or self.held_bytes + size > settings.preauth_max_bytes
        ):
            self._deny(key, "too much sent before the Auth answer")
            return
        state.held.append((message, size))
        state.held_bytes += size
        self.held_bytes += size

    # ------------------------------------------------------------------ documents

    def _authenticate(self, key: str, token: str, state: _State | None) -> None:
        if state is not None:
            self._leave(key)  # the provider attached again: start afresh
        open_now = sum(1 for s in self.documents.values() if s is not _REFUSED)
        limit = self.settings.max_documents_per_socket
        if open_now >= limit:
            self._deny(key, f"more than {limit} documents on one connection")
            return
        try:
            name = self.hub.validate(key.partition("\0")[0])  # "\0": the provider's session
        except InvalidNameError as error:
            self.web.refuse("name", str(error), self.websocket)
            self._deny(key, f"invalid document name: {error.reason}")
            return
        pending = _Pending()
        self.documents[key] = pending
        pending.task = asyncio.create_task(self._open(key, name, token, pending))

    async def _open(self, key: str, name: str, token: str, pending: _Pending) -> None:
        """Check the token, load the document, then connect it (or refuse it)."""
        web = self.web
        scope = {**self.websocket.scope, TOKEN_SCOPE_KEY: token}
        try:
            access = await asyncio.wait_for(
                web.access(HTTPConnection(scope), name, token), self.settings.upgrade_timeout
            )
            runner = await web.open_document(name, self.websocket)
        except AccessDenied as denied:
            web.refuse("token" if web.secret else "authenticate", denied.reason, self.websocket)
            self._deny(key, denied.reason, pending)
            return
        except TimeoutError:
            web.refuse("upgrade-timeout", "authentication took too long", self.websocket)
            self._deny(key, "authentication took too long", pending)
            return
        except Unavailable as error:
            if error.code == CloseCode.GOING_AWAY:
                self.close(error.code, error.reason)
            self._deny(key, error.reason, pending)
            return
        except Exception:  # a bug costs this document, never a pending state forever
            log.exception("%s: cannot open for a Hocuspocus peer", name)
            self._deny(key, "internal error opening the document", pending)
            return
        if self.documents.get(key) is pending and not self.closed:
            self._connect(key, name, access, runner, pending)

    def _connect(
        self, key: str, name: str, access: Access, runner: DocumentRunner, pending: _Pending
    ) -> None:
        scope = hp.Scope.READONLY if access.readonly else hp.Scope.READ_WRITE
        self.send(hp.encode(hp.Authenticated(key, scope)))
        link = DocumentLink(self, key, name)
        peer_id = runner.connect(link, DOOR, access.user, access.readonly)
        reader = PeerReader(
            runner,
            peer_id,
            DOOR,
            _UNCOUNTED,  # counted once, by the socket
            lambda kind, data: True,  # its token proved it
            lambda reason, why: self.web.refuse(reason, why, self.websocket),
        )
        opened = _Open(runner, peer_id, reader, link, access)
        self.documents[key] = opened
        self.door.links.setdefault(name, set()).add(link)
        self.unproven = None
        self.held_bytes -= pending.held_bytes
        for message, size in pending.held:
            self._deliver(key, opened, message, size)

    def _deny(self, key: str, reason: str, pending: _Pending | None = None) -> None:
        """Refuse a document that is not open: PermissionDenied, its messages dropped.

        `pending`: only if the document is still that authentication (not left since)."""
        state = self.documents.get(key)
        if pending is not None and state is not pending:
            return
        if isinstance(state, _Pending | _Open):
            self._leave(key)
        if len(self.documents) < 2 * self.settings.max_documents_per_socket:
            self.documents[key] = _REFUSED  # answered once, not for every message
        self.send(hp.encode(hp.PermissionDenied(key, reason)))

    def _refuse_document(self, key: str, code: int, reason: str) -> None:
        """A message about `key` that cannot be read: close that document only."""
        state = self.documents.get(key)
        if isinstance(state, _Open):
            state.runner.close_peer(state.peer_id, code, reason)
        elif state is not _REFUSED:
            self._deny(key, reason)

    def document_closed(self, link: DocumentLink, code: int, reason: str) -> None:
        """The runner closed a document of this socket (a check, a refused change, the
        server going away): the provider hears a Close message for it, or, when it must
        reconnect, the whole socket closes."""
        state = self.documents.get(link.key)
        if isinstance(state, _Open) and state.link is link:
            self._leave(link.key)
            self.documents[link.key] = _REFUSED
        if code in RECONNECT_CODES:
            self.close(code, reason)
            return
        self.web.metrics.closed(code)
        self.send(hp.encode(hp.Close(link.key, f"{code}: {reason}")))

    def _leave(self, key: str) -> None:
        """The provider left a document (or the socket closed): forget it."""
        state = self.documents.pop(key, None)
        if isinstance(state, _Open):
            state.runner.disconnect(state.peer_id)
            links = self.door.links.get(state.link.name)
            if links is not None:
                links.discard(state.link)
                if not links:
                    del self.door.links[state.link.name]
        elif isinstance(state, _Pending):
            if state.task is not None and state.task is not asyncio.current_task():
                state.task.cancel()
            self.held_bytes -= state.held_bytes


_UNCOUNTED = (Tally(), Tally())
