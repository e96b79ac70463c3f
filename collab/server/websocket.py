"""uvicorn's sans-I/O WebSocket protocol, made safe against peers that misbehave, and fast:
messages handed straight to the app, frames written straight to the socket.

Every private member of uvicorn and websockets used here is listed in
`collab.server.internals`; `collab serve` uses this class only when they check out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.protocol import State

from collab.server.connections import current_gate
from collab.server.frames import FrameCache, fragment_frame
from collab.server.lean import LeanEvent, LeanQueue
from collab.web.connection import ABORT_EXTENSION, SEND_EXTENSION
from collab.web.receive import RECEIVE_EXTENSION
from collab.wire import CloseCode

log = logging.getLogger("collab")

# One per process: the event loop sends a broadcast's message to its peers one after another.
_broadcast_frames = FrameCache()

# uvicorn and websockets log three INFO lines per WebSocket (accepted, open, closed): ~80 µs
# of a connection's set-up, and noise at ten thousand peers. They go to this logger, quiet
# unless `--connection-log` or `--log-level debug`. (Not a child of "uvicorn.error": uvicorn's
# dictConfig resets the levels of those.)
CONNECTION_LOG = logging.getLogger("collab.server.connections")
CONNECTION_LOG.setLevel(logging.WARNING)


class _AbortingTransport:
    """A transport whose `close` turns into `abort` when the buffer does not drain in time.

    asyncio's `close` waits for the write buffer to drain before the connection goes: a
    peer that stopped reading would keep its socket and buffer (megabytes: a sync step 2)
    for ever, however uvicorn decided to close it (close handshake, ping timeout).
    """

    __slots__ = ("_abort_timer", "_loop", "_timeout", "_transport")

    def __init__(self, transport: Any, loop: Any, timeout: float) -> None:
        self._transport = transport
        self._loop = loop
        self._timeout = timeout
        self._abort_timer: Any = None

    def close(self) -> None:
        self._transport.close()
        if self._abort_timer is None:
            self._abort_timer = self._loop.call_later(self._timeout, self._transport.abort)

    def lost(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, made safe against peers that misbehave.

    - uvicorn 0.54 drops the response websockets prepares for an upgrade request it cannot
      parse (414 for a URL over 8 KiB) and leaves the socket open and silent: any client
      could hold connections that way. We send that response, or a 400, and hang up.
    - A connection being closed is aborted after `close_timeout` seconds when its buffer
      does not drain (`_AbortingTransport`), and the app may abort one at once through the
      scope extension `collab.web.ABORT_EXTENSION` (a close frame that cannot be sent).
    - Every frame costs its sender: pings, pongs and continuation frames go through the
      app's frame check (`receive_directly`'s `on_frame`: the message rate, the budget
      before a valid message), and a pong is written only while what the peer has not
      read stays within its send budget (`send_queue_bytes`); past it the peer is closed
      with 4001. Past our close, pings go unanswered. Before the app reads the peer, at
      most `preauth_max_messages` such frames are taken (1008 beyond).

    A module-level class (`--workers` hands it to the processes it spawns); the close
    timeout and the frame caps are set on the class by `serve` or `worker_app` in each
    process.
    """

    close_timeout_setting = 10.0
    send_budget_setting = 4 * 1024 * 1024
    early_frames_setting = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_timeout_setting  # uvicorn's wait for a close frame
        self.logger = self.conn.logger = CONNECTION_LOG
        self.queue = LeanQueue()  # type: ignore[assignment]
        self.writable = LeanEvent()  # type: ignore[assignment]
        self.writable.set()

    _raw_transport: Any = None
    _fragmenting = False  # a text message is being sent in fragments: nothing else now
    _receiver: Callable[[bytes | str], None] | None = None
    _on_frame: Callable[[int], bool] | None = None
    _early_frames = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._raw_transport = transport
        aborting = _AbortingTransport(transport, self.loop, self.close_timeout_setting)
        self.transport = aborting  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport.lost()  # type: ignore[attr-defined]
        gate = current_gate()
        if gate is not None:  # counted since accept, across the switch from HTTP
            gate.release(self.transport._transport)  # type: ignore[attr-defined]
        super().connection_lost(exc)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # One dict for both extensions: a few hundred bytes less per idle connection.
            socket = {"abort": self.transport.abort, "send_now": self.send_now}
            socket["buffered"] = self.buffered
            socket["send_fragment"] = self.send_fragment
            socket["receive_directly"] = self.receive_directly
            extensions = scope["extensions"]
            extensions[ABORT_EXTENSION] = extensions[SEND_EXTENSION] = socket
            extensions[RECEIVE_EXTENSION] = socket

    def start_keepalive(self) -> None:
        """Called once the 101 response is written: uvicorn keeps the parsed request and the
        response (their headers) for the connection's whole life, and websockets' parser
        keeps the request too; nothing reads them again (the scope has its own copy of the
        headers). Dropped and emptied, an idle connection costs about 4 KB less."""
        super().start_keepalive()
        if self.request is not None:  # websockets' parser keeps the request for ever
            self.request.headers.clear()
        self.request = self.response = None  # type: ignore[assignment]

    def send_now(self, data: bytes | str) -> bool:
        """Write one message now, as uvicorn's `send` would, without its awaits (the hub's
        broadcast path: no task per peer); False when it cannot be written now (the buffer
        is over its high-water mark, or the connection is not open). Without extensions
        the frame is built once for all the peers a message goes to (`collab.server.frames`)."""
        if (
            self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
            or self._raw_transport.is_closing()
            or self._fragmenting
        ):
            return False
        conn = self.conn
        if not conn.extensions and not conn.writes and not conn.expect_continuation_frame:
            if conn.state is not State.OPEN:
                return False
            self._raw_transport.write(_broadcast_frames.frame(data))
            return True
        try:
            if type(data) is bytes:
                conn.send_binary(data)
            else:
                conn.send_text(data.encode())  # type: ignore[union-attr]
        except InvalidState:
            return False
        self._raw_transport.write(b"".join(conn.data_to_send()))
        return True

    async def send_fragment(
        self, data: bytes, first: bool, last: bool, binary: bool = False
    ) -> None:
        """Write one fragment of a text message, its UTF-8 `data`, or of a binary message
        (`binary`: `fragment_frame`), after waiting until the socket's buffer is under its
        high-water mark. Between the first and the last, `send_now` writes nothing (a data
        frame may not come between fragments; a ping's pong or a close may). Raises
        ConnectionError once the connection is closing."""
        if not self.writable.is_set():
            await self.writable.wait()
        if self.close_sent or self.disconnected or self._raw_transport.is_closing():
            raise ConnectionError("the WebSocket is closing")
        conn = self.conn
        if conn.extensions:  # compressed: websockets frames it
            opening = conn.send_binary if binary else conn.send_text
            send = opening if first else conn.send_continuation
            send(data, fin=last)
            self._raw_transport.write(b"".join(conn.data_to_send()))
        else:
            self._raw_transport.write(fragment_frame(data, first, last, binary))
        self._fragmenting = not last

    def receive_directly(
        self,
        receiver: Callable[[bytes | str], None] | None,
        on_frame: Callable[[int], bool] | None = None,
    ) -> None:
        """From now on hand each message to `receiver` as soon as it is parsed (None: back
        to the ASGI queue). What is queued already goes to it first, in order; the queue
        keeps only the disconnect. No task wakes per message and reading is never paused:
        the receiver only checks a message and puts it in its document's inbox.

        `on_frame(size)` is asked about every frame that is not a whole message (ping,
        pong, continuation); False drops it (the peer is being closed). It stays in force
        after the receiver is taken back: the connection is ending then."""
        self._receiver = receiver
        if on_frame is not None:
            self._on_frame = on_frame
        if receiver is None:
            return
        queue: LeanQueue = self.queue  # type: ignore[assignment]
        for event in queue.take_all():
            if event["type"] == "websocket.receive":
                data = event.get("bytes")
                receiver(event.get("text", "") if data is None else data)
            else:
                queue.put_nowait(event)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def send_receive_event_to_app(self) -> None:
        """One whole message: to the receiver, or (before the app gave one) to the ASGI
        queue as uvicorn would. Text that is not UTF-8 closes with 1007, on either path,
        unless the peer's own close came in the same read: the connection is closing
        already (websockets refuses a second close: uvicorn's code raised out of
        `data_received`, logged as a fatal error), the message is dropped and that close
        is answered."""
        data: bytes | str = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:  # as uvicorn: past our close, messages are dropped
            return
        if self.curr_msg_data_type == "text":
            try:
                data = bytes(data).decode()
            except UnicodeDecodeError:
                if self.conn.state is State.OPEN:
                    self.conn.send_close(1007, "invalid UTF-8")
                    self.handle_parser_exception()
                return
        else:
            data = bytes(data)
        receiver = self._receiver
        if receiver is None:
            if type(data) is str:
                self.queue.put_nowait({"type": "websocket.receive", "text": data})
            else:
                self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
            if not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            return
        try:
            receiver(data)
        except Exception:
            log.exception("a message could not be handled; the connection is dropped")
            self._receiver = None
            self.transport.abort()

    def _frame_allowed(self, size: int) -> bool:
        """Whether a ping, pong or continuation frame is taken: the app's `on_frame` says,
        once it reads the peer; before that (authentication, the document loading) at
        most `early_frames_setting` are (1008 beyond)."""
        on_frame = self._on_frame
        if on_frame is not None:
            return on_frame(size)
        self._early_frames += 1
        if self._early_frames <= self.early_frames_setting:
            return True
        why = f"{self._early_frames} frames before the server read a message"
        self._fail("early-frames", CloseCode.POLICY, f"{why} (limit {self.early_frames_setting})")
        return False

    def handle_cont(self, event: Any) -> None:
        """A continuation frame costs a message (an endless message of empty frames
        was counted by nothing); once refused, the message's frames are dropped."""
        if self._frame_allowed(len(event.data)):
            super().handle_cont(event)
        else:
            self.frames = []

    def handle_pong(self, event: Any) -> None:
        if self._frame_allowed(len(event.data)):
            super().handle_pong(event)

    def handle_ping(self) -> None:
        """Write this ping's pong (websockets queued one per ping, in order) if the peer
        may still have one: it costs a message of the peer's rate and bytes of its send
        budget; past our close (a refused token, a broken cap) pings go unanswered."""
        writes = self.conn.writes
        pong = writes.pop(0) if writes else b""
        if not self._frame_allowed(len(pong)) or self.close_sent:
            return
        if self.buffered() + len(pong) > self.send_budget_setting:
            why = "too slow: unread pongs over the send budget"
            self._fail("unread-pongs", CloseCode.TOO_SLOW, why)
            return
        self.transport.write(pong)

    def _fail(self, refusal: str, code: int, reason: str) -> None:
        """Close with `code` and `reason` as an app's close would: the app hears the
        disconnect, what the peer sends meanwhile is read and dropped, and the connection
        goes when the peer answers or after the close timeout (aborted if its buffer does
        not drain by then: `_AbortingTransport`). Counted and logged as `refusal`."""
        self.frames = []
        if self.close_sent or self.conn.state is not State.OPEN:
            return
        gate = current_gate()
        if gate is not None:
            client = self.client[0] if self.client else "?"
            gate.note(refusal, "closed a WebSocket from %s: %s", client, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.data_to_send()  # the pongs of this read's later pings: unanswered
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def buffered(self) -> int:
        """Bytes written and not yet taken by the peer (the transport's write buffer)."""
        transport = self._raw_transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.handshake_exc is None or self.handshake_complete:
            return
        if self.transport.is_closing():
            return
        response = b"".join(self.conn.data_to_send())
        if not response:
            body = b"cannot parse the WebSocket handshake"
            response = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"
            response += b"content-length: %d\r\n\r\n%s" % (len(body), body)
        self.transport.write(response)
        self.transport.close()
