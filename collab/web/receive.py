"""What a WebSocket peer sends, checked and handed to its document.

Every message passes the same checks, in order: the access's end (a token's ``exp``: 4401
once it passed), the size limit, the message rate, and, until the peer has sent one valid
message, the bytes and messages it may send unproven and the deadline for that first valid
one. A message that fails a check closes the peer with its code and reason, and what
follows from it is dropped. A frame that is not a whole message (ping, pong, continuation)
costs a message of the rate and of the unproven budget too (`PeerReader.on_frame`), where
the server shows the app its frames (`collab serve`); under another ASGI server the app
never sees them.

`collab serve`'s protocol hands each message to `PeerReader.on_message` as it is parsed
(`RECEIVE_EXTENSION`): no ASGI queue, no task waking per message, no pause and resume of
the socket's reading (two epoll calls). Under another ASGI server the same method is fed
from `websocket.receive()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from collab.access.limits import TokenBucket, Unproven
from collab.access.live import EXPIRED, Ticket
from collab.config import Settings
from collab.hub import DocumentRunner
from collab.metrics import wire_length
from collab.wire import CloseCode

RECEIVE_EXTENSION = "collab.receive"
"""The ASGI scope extension through which a server hands the app each message at once:
``scope["extensions"][RECEIVE_EXTENSION]["receive_directly"](callback)``; the callback gets
``bytes`` or ``str``, and messages already queued are handed to it first, in order. The
app's ``receive()`` then only sees the disconnect. An optional second argument,
``on_frame(size) -> bool``, is asked about every ping, pong and continuation frame (False:
the frame is dropped and a ping goes unanswered)."""


class PeerReader:
    """The checks one peer's messages go through before its document hears them."""

    ticket: Ticket | None = None  # its access (a token's exp: 4401 after; collab.access.live)
    renew: Callable[[bytes | str], bool] | None = None  # takes a fresh token (web/renewal.py)

    def __init__(
        self,
        runner: DocumentRunner,
        settings: Settings,
        peer_id: Any,
        kind: str,
        counters: tuple[Any, Any],
        is_valid_first: Callable[[str, bytes | str], bool],
        refuse: Callable[[str, str], None],
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.peer_id = peer_id
        self.kind = kind
        self.limit = settings.max_message_bytes
        self.received, self.received_bytes = counters
        self.bucket = TokenBucket(settings.max_messages_per_second, settings.message_burst)
        self.unproven: Unproven | None = Unproven(
            settings.preauth_max_bytes, settings.preauth_max_messages
        )
        self.is_valid_first = is_valid_first
        self.refuse = refuse

    def on_message(self, data: bytes | str) -> None:
        """One message: checked, then handed to the document (or the peer is closed)."""
        if not self.runner.is_open(self.peer_id):  # closed (by a check or else): dropped
            return
        self.received.inc()
        self.received_bytes.inc(wire_length(data))
        if self.ticket is not None and self.ticket.expired():
            self._refuse_and_close("token", EXPIRED, CloseCode.UNAUTHORIZED)
            return
        if len(data) > self.limit:
            self._close(CloseCode.TOO_BIG, f"message of {len(data)} bytes is over {self.limit}")
            return
        if not self.bucket.take():
            self._refuse_rate()
            return
        if self.renew is not None and self.renew(data):
            return
        if self.unproven is not None:
            if self.is_valid_first(self.kind, data):
                self.unproven = None
            else:
                why = self.unproven.add(len(data))
                if why is not None:
                    self._refuse_and_close("unproven", why)
                    return
        self.runner.receive(self.peer_id, data)

    def on_frame(self, size: int) -> bool:
        """A ping, pong or continuation frame of `size` bytes: it costs a message of the
        rate and, before a valid message, of the unproven budget. False once the peer is
        closed (by this check or else): the frame is dropped, a ping goes unanswered."""
        if not self.runner.is_open(self.peer_id):
            return False
        if not self.bucket.take():
            self._refuse_rate()
            return False
        if self.unproven is not None:
            why = self.unproven.add(size)
            if why is not None:
                self._refuse_and_close("unproven", why)
                return False
        return True

    def _refuse_rate(self) -> None:
        rate = self.settings.max_messages_per_second
        self._refuse_and_close("message-rate", f"more than {rate:g} messages per second")

    def first_message_overdue(self) -> None:
        """The deadline for a first valid message passed: closed unless one came."""
        if self.unproven is None or not self.runner.is_open(self.peer_id):
            return
        seconds = self.settings.first_message_timeout
        why = f"no valid message in {seconds:g} s"
        self._refuse_and_close("first-message-timeout", why, CloseCode.TIMEOUT)

    def _refuse_and_close(self, reason: str, why: str, code: int = CloseCode.POLICY) -> None:
        self.refuse(reason, why)
        self._close(code, why)

    def _close(self, code: int, why: str) -> None:
        self.runner.close_peer(self.peer_id, code, why)


async def read_peer(websocket: WebSocket, reader: PeerReader) -> None:
    """Feed the peer's messages to `reader` until it disconnects (or, once a check closed
    it, until its close frame is out or the close timeout passes)."""
    runner = reader.runner
    settings = reader.settings
    loop = asyncio.get_running_loop()
    overdue = loop.call_later(settings.first_message_timeout, reader.first_message_overdue)
    extension = websocket.scope.get("extensions", {}).get(RECEIVE_EXTENSION)
    try:
        if extension is not None:
            extension["receive_directly"](reader.on_message, reader.on_frame)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            reader.on_message(message.get("text", "") if data is None else data)
            if not runner.is_open(reader.peer_id):
                # A slow peer's close frame waits for its socket to drain: give it time,
                # or the peer only sees the connection drop (1006) and not why.
                await runner.wait_closed(reader.peer_id, settings.close_timeout)
                return
    finally:
        overdue.cancel()
        if extension is not None:
            extension["receive_directly"](None)
