"""One Hocuspocus WebSocket: its documents (each a `DocumentLink`, one peer of its
document's runner), the socket's checks, what waits for a token's answer, and refusals.
The door around it, and why it works as it does: `collab.web.hocuspocus`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from collab.access.limits import TokenBucket, Unproven
from collab.access.live import Ticket
from collab.access.names import InvalidNameError
from collab.access.revocations import REVOKED
from collab.hooks import Access, AccessDenied
from collab.hub import DocumentRunner, PeerChannel
from collab.metrics import Tally, wire_length
from collab.session import PeerId
from collab.web.admission import ticket_for
from collab.web.connection import StarletteConnection, Unavailable
from collab.web.receive import RECEIVE_EXTENSION, PeerReader
from collab.wire import CloseCode
from collab.yjs import hocuspocus as hp

if TYPE_CHECKING:
    from collab.web.hocuspocus import HocuspocusDoor

log = logging.getLogger(__name__)

DOOR = "hocuspocus"
TOKEN_SCOPE_KEY = "collab.token"
"""Where the authenticate hook finds the token a provider sent for the document:
``connection.scope["collab.token"]`` (the hook is called once per document)."""

RECONNECT_CODES = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.INTERNAL, CloseCode.TRY_LATER, CloseCode.TOO_SLOW}
)
"""Closes a provider must answer by reconnecting: they close the whole socket."""


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

    async def send_big(self, data: bytes) -> None:
        """Whole: the socket carries other documents' messages, which fragments would hold up."""
        await self.send(data)

    async def close(self, code: int, reason: str) -> None:
        self.socket.document_closed(self, code, reason)

    def abort(self) -> None:
        self.socket.connection.abort()

    def buffered(self) -> int:
        return self.socket.connection.buffered()


@dataclass
class _Pending:
    """A document whose token is being checked (or awaited: no task yet); what the
    provider sent meanwhile."""

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
    ticket: Ticket  # its access as the hub's LiveAccess watches it (expiry, revocation)


_REFUSED = "refused"  # a document refused or closed on this socket: its messages are dropped
_State = _Pending | _Open | str


class HocuspocusSocket:
    """One provider's WebSocket and the documents it has open."""

    def __init__(self, door: HocuspocusDoor, websocket: WebSocket) -> None:
        self.door = door
        self.web = door.web
        self.hub = door.web.hub
        self.settings = settings = door.web.settings
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
            elif self._echoable(error.name):
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
        once; a refused one spends the budget then) and what waits for a token's answer
        (held within that budget): a provider attaching many documents at once sends
        three messages each before any answer."""
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

    def _echoable(self, key: str) -> bool:
        """Whether a name is short enough to answer by; a longer one closes the socket."""
        limit = self.settings.max_name_length
        if len(key) <= 4 * limit:
            return True
        self._refuse_socket("name", f"document name over {limit} characters", CloseCode.BAD_NAME)
        return False

    def _dispatch(self, message: hp.Message, size: int) -> None:
        key = message.name  # type: ignore[union-attr]
        if not self._echoable(key):
            return
        state = self.documents.get(key)
        if isinstance(message, hp.Token):
            self._authenticate(key, message.token, state)
        elif isinstance(message, hp.Close):
            self._leave(key)
        elif isinstance(state, _Open):
            self._deliver(key, state, message, size)
        elif isinstance(state, _Pending) and (state.task is not None or _early(message)):
            self._hold(key, state, message, size)
        elif state is None and _early(message):
            why = self._no_room()
            if why is not None:
                self._deny(key, why)
                return
            pending = _Pending()  # awaiting its token
            self.documents[key] = pending
            self._hold(key, pending, message, size)
        elif state is not _REFUSED:
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
        else:
            self.door.stateless(state.link.name, message.payload, state.access)

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
        """Check a document's token; what it sent before is kept for the answer."""
        pending = state if isinstance(state, _Pending) else None
        if pending is None:
            if state is not None:
                self._leave(key)  # the provider attached again: start afresh
            why = self._no_room()
            if why is not None:
                self._deny(key, why)
                return
        try:
            name = self.hub.validate_address(key.partition("\0")[0])  # "\0": the provider's session
        except InvalidNameError as error:
            self.web.refuse("name", str(error), self.websocket)
            self._deny(key, f"invalid document name: {error.reason}")
            return
        if pending is None:
            pending = self.documents[key] = _Pending()
        elif pending.task is not None:
            pending.task.cancel()  # a newer token wins
        pending.task = asyncio.create_task(self._open(key, name, token, pending))

    def _no_room(self) -> str | None:
        """Why no other document may start on this socket, or None."""
        limit = self.settings.max_documents_per_socket
        if sum(1 for state in self.documents.values() if state is not _REFUSED) >= limit:
            return f"more than {limit} documents on one connection"
        return None

    async def _open(self, key: str, name: str, token: str, pending: _Pending) -> None:
        """Check the token, load the document, then connect it (or refuse it)."""
        web = self.web
        scope = {**self.websocket.scope, TOKEN_SCOPE_KEY: token}
        refusal: str | None = None
        try:
            access = await asyncio.wait_for(
                web.access(HTTPConnection(scope), name, token), self.settings.upgrade_timeout
            )
            runner = await web.open_document(name, self.websocket)
        except AccessDenied as denied:
            web.refuse("token" if web.secret else "authenticate", denied.reason, self.websocket)
            refusal = denied.reason
        except TimeoutError:
            refusal = "authentication took too long"
            web.refuse("upgrade-timeout", refusal, self.websocket)
        except Unavailable as error:
            if error.code == CloseCode.GOING_AWAY:
                self.close(error.code, error.reason)
            refusal = error.reason
        except Exception:  # a bug costs this document, never a pending state forever
            log.exception("%s: cannot open for a Hocuspocus peer", name)
            refusal = "internal error opening the document"
        current = self.documents.get(key) is pending and pending.task is asyncio.current_task()
        if not current or self.closed:  # it left, or a newer token took over
            return
        if refusal is not None:
            self._deny(key, refusal)
        else:
            self._connect(key, name, access, runner, pending)

    def _connect(
        self, key: str, name: str, access: Access, runner: DocumentRunner, pending: _Pending
    ) -> None:
        scope = hp.Scope.READONLY if access.readonly else hp.Scope.READ_WRITE
        self.send(hp.encode(hp.Authenticated(key, scope)))
        link = DocumentLink(self, key, name)
        peer_id = runner.connect(link, DOOR, access.user, access.readonly)
        reader = PeerReader(
            runner=runner,
            settings=self.settings,
            peer_id=peer_id,
            kind=DOOR,
            counters=_UNCOUNTED,  # counted once, by the socket
            is_valid_first=lambda kind, data: True,  # its token proved it
            refuse=lambda reason, why: self.web.refuse(reason, why, self.websocket),
        )
        reader.ticket = ticket = ticket_for(runner, peer_id, access)
        if not self.web.hub.live.admit(ticket):  # revoked while its document loaded
            runner.close_peer(peer_id, CloseCode.UNAUTHORIZED, REVOKED)
        opened = _Open(runner, peer_id, reader, link, access, ticket)
        self.documents[key] = opened
        self.door.links.setdefault(name, set()).add(link)
        self.unproven = None
        self.held_bytes -= pending.held_bytes
        for message, size in pending.held:
            self._deliver(key, opened, message, size)

    def _deny(self, key: str, reason: str) -> None:
        """Refuse a document that is not open: PermissionDenied, its messages dropped."""
        state = self.documents.get(key)
        if isinstance(state, _Pending | _Open):
            self._leave(key)
        if len(self.documents) < 2 * self.settings.max_documents_per_socket:
            self.documents[key] = _REFUSED  # answered once, not for every message
        self.send(hp.encode(hp.PermissionDenied(key, reason)))
        if self.unproven is not None:  # refused tokens spend the pre-auth budget
            held = state.held_bytes if isinstance(state, _Pending) else 0
            why = self.unproven.add(held)
            if why is not None:
                self._refuse_socket("unproven", why, CloseCode.POLICY)

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
        if not (isinstance(state, _Open) and state.link is link):
            return  # the provider left meanwhile (or attached again: a new link)
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
            self.web.hub.live.forget(state.ticket)
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


def _early(message: hp.Message) -> bool:
    """What a provider may send for a document before its token: its awareness (set
    right after the provider is made, sent before the token goes out), Stateless."""
    if isinstance(message, hp.Forward):
        return message.body[:1] in (b"\x01", b"\x03")  # Awareness, QueryAwareness
    return isinstance(message, hp.Stateless | hp.BroadcastStateless)
