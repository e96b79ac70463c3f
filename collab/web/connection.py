"""A Starlette WebSocket as the hub's `Connection`, and the extensions a server may offer.

`collab serve`'s uvicorn protocol offers two ASGI scope extensions that ASGI itself lacks:
writing to the socket at once (no task, no await) and aborting a connection.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketState

from collab.metrics import Metrics, wire_length
from collab.session.welcome import LongMessage
from collab.yjs.protocol import close_reason

FRAGMENT_BYTES = 1 << 20
"""A big binary message goes out in fragments of this size (~0.3 ms to frame and write)."""

log = logging.getLogger("collab.web")

ABORT_EXTENSION = "collab.abort"
"""The ASGI scope extension through which a server lets the app drop a connection at once
(`collab serve` sets it, see `collab.server.websocket.WebSocketProtocol`): ``scope["extensions"]
[ABORT_EXTENSION]["abort"]()``. ASGI itself has no way to abort a WebSocket."""

SEND_EXTENSION = "collab.send"
"""The ASGI scope extension through which a server lets the app write a message without
awaiting (`collab serve` sets it, see `collab.server.websocket.WebSocketProtocol`):
``scope["extensions"][SEND_EXTENSION]["send_now"](data) -> bool`` (False: not written, the
socket's buffer is full or it is closing), ``["buffered"]() -> int`` (bytes written and
not yet taken by the peer) and ``await ["send_fragment"](utf8, first, last, binary=False)``
(one fragment of a text message, its UTF-8 bytes, or of a binary message)."""


class Unavailable(Exception):
    """A document a peer cannot have now: the close code and reason to give it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StarletteConnection:
    """A Starlette WebSocket as the hub's `Connection` (counted in the metrics)."""

    __slots__ = (
        "_send_fragment",
        "_send_now",
        "buffered",
        "metrics",
        "sent_bytes",
        "sent_messages",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, metrics: Metrics, door: str) -> None:
        self.websocket = websocket
        self.metrics = metrics
        self.sent_messages, self.sent_bytes = metrics.sent[door]
        extension = websocket.scope.get("extensions", {}).get(SEND_EXTENSION)
        if extension is not None:  # the server writes for us at once, no task, no await
            self._send_now = extension["send_now"]
            self.buffered = extension["buffered"]
            self._send_fragment = extension["send_fragment"]
        else:
            self._send_now = _cannot_send_now
            self.buffered = _nothing_buffered
            self._send_fragment = None

    def send_now(self, data: bytes | str) -> bool:
        """Write to the socket at once if it can take it (no task); False otherwise."""
        if not self._send_now(data):
            return False
        self.sent_messages.inc()
        self.sent_bytes.inc(wire_length(data))
        return True

    async def send(self, data: bytes | str) -> None:
        self.sent_messages.inc()
        self.sent_bytes.inc(wire_length(data))
        if isinstance(data, bytes):
            await self.websocket.send_bytes(data)
        else:
            await self.websocket.send_text(data)

    async def send_long(self, message: LongMessage) -> None:
        """One long text message, encoded part by part and sent as fragments when the
        server can (`collab serve`); through another ASGI server, joined and sent whole
        (encoded on the loop at once, as any message)."""
        if self._send_fragment is None:
            await self.send(message.whole())
            return
        for index, (part, last) in enumerate(message):
            payload = part.encode()
            await self._send_fragment(payload, index == 0, last)
            self.sent_bytes.inc(len(payload))
            await asyncio.sleep(0)  # a part per turn: a socket that takes all never waits
        self.sent_messages.inc()

    async def send_big(self, data: bytes) -> None:
        """One big binary message (a big document's snapshot), sent as fragments of
        `FRAGMENT_BYTES`, one per loop turn, when the server can: no copy of the whole (its
        frame, the socket's buffer) holds the loop. Through another ASGI server, `send`."""
        if self._send_fragment is None or len(data) <= FRAGMENT_BYTES:
            await self.send(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), FRAGMENT_BYTES):
            last = start + FRAGMENT_BYTES >= len(data)
            fragment = bytes(view[start : start + FRAGMENT_BYTES])
            await self._send_fragment(fragment, start == 0, last, True)
            await asyncio.sleep(0)
        self.sent_bytes.inc(wire_length(data))
        self.sent_messages.inc()

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state != WebSocketState.DISCONNECTED:
            self.metrics.closed(code)
            await self.websocket.close(code, close_reason(reason))

    def abort(self) -> None:
        """Drop the TCP connection now, when the server offers a way to (else only log).

        Without it, a peer that stopped reading keeps its socket and write buffer until
        the server's own timeouts end it (uvicorn: the keepalive ping).
        """
        extension = self.websocket.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if extension is None:
            log.warning("cannot abort a stuck peer: the ASGI server has no %s", ABORT_EXTENSION)
            return
        extension["abort"]()


def _cannot_send_now(data: bytes | str) -> bool:
    return False


def _nothing_buffered() -> int:
    return 0
