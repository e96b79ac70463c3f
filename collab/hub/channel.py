"""One peer's outgoing messages: a bounded queue drained by its own task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from collab.session import PeerId
from collab.session.sync_answers import KeptAnswer
from collab.session.welcome import LongMessage
from collab.wire import CloseCode

log = logging.getLogger(__name__)

Outgoing = bytes | str | KeptAnswer | LongMessage
BIG_MESSAGE = 1 << 20
"""Bytes from which a message goes out by `Connection.send_big` (fragments, a turn each)."""
TURN_BYTES = 256 * 1024
"""A draining peer's task lets the loop run after sending this many bytes: a socket that
takes everything (loopback, a fast reader) never makes `send` wait, and 20 peers each sent
a big document's logged updates back to back held the loop 40 ms a turn."""


class Connection(Protocol):
    """What the hub needs from a WebSocket, whatever the server."""

    async def send(self, data: bytes | str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the connection now, without a close handshake or draining what is buffered."""

    def send_now(self, data: bytes | str) -> bool:
        """Write a message to the socket at once, without waiting; False (nothing written)
        when the connection cannot take it now (its buffer is full, it is closing, or the
        server offers no way to): the channel then queues it and sends it with `send`."""
        ...

    def buffered(self) -> int:
        """Bytes written to the socket that the peer has not taken yet (0 if unknown)."""
        ...

    async def send_long(self, message: LongMessage) -> None:
        """Send one long text message, encoded part by part (only text peers get one)."""
        ...

    async def send_big(self, data: bytes) -> None:
        """Send one big binary message (a part of a `KeptAnswer`), in fragments if it can."""
        ...


class PeerChannel:
    """One peer's outgoing messages, bounded.

    A message goes to the socket at once when it can take it (`Connection.send_now`: no
    task, no wait), else into a queue that a task drains while the peer is behind; the task
    ends when the queue is empty, so an idle or keeping-up peer costs no task.

    A peer that cannot keep up never makes the server buffer without bound: when what it has
    not taken yet (the queue, the message being sent, the socket's write buffer) plus the
    next message passes `limit` bytes, the queue is dropped and `on_overflow` decides
    (resync or close). Only a peer with nothing pending at all is sent one message over the
    limit (a big document's snapshot); while that message goes out, what follows it (the
    rest of the answer, live updates) queues within `limit` on top of it. So a peer holds at
    most `limit` bytes, or one bigger message and `limit` more. A `KeptAnswer` (the
    snapshot and logged updates of a big document, kept anyway) is queued as one item and
    sent part by part; while one is queued, only what queues beside it counts. So is a
    `LongMessage` (a text peer's welcome with a long text, kept anyway as the document's
    text), encoded part by part as it is sent.

    Closing never waits on the peer: when the close frame cannot be sent within
    `close_timeout` seconds (a peer that stopped reading), the connection is aborted.
    """

    __slots__ = (
        "_big",
        "_closer",
        "_drained",
        "_kept",
        "_queued",
        "_sending",
        "_task",
        "close_timeout",
        "closed",
        "connection",
        "limit",
        "on_failure",
        "on_overflow",
        "overflows",
        "peer_id",
        "queue",
    )

    def __init__(
        self,
        peer_id: PeerId,
        connection: Connection,
        limit: int,
        on_overflow: Callable[[PeerChannel], None],
        close_timeout: float = 10.0,
        on_failure: Callable[[PeerChannel, Exception], None] | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.connection = connection
        self.limit = limit
        self.on_overflow = on_overflow
        self.on_failure = on_failure
        self.close_timeout = close_timeout
        self.queue: deque[Outgoing] | None = None  # made when it falls behind
        self._queued = 0  # bytes in the queue
        self._sending = 0  # bytes of the message being sent, until its send returns
        self._big = 0  # size of the one message over the limit, until it has mostly gone
        self._kept = 0  # kept answers in the queue
        self.overflows = 0
        self.closed = False
        self._closer: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None  # drains the queue, while there is one
        self._drained: asyncio.Event | None = None

    @property
    def queued_bytes(self) -> int:
        """What the peer has not taken yet: the queue, the message being sent, the socket's
        write buffer."""
        return self._queued + self._sending + self.connection.buffered()

    def send(self, data: Outgoing) -> None:
        if self.closed:
            return
        if isinstance(data, KeptAnswer | LongMessage):
            self._queue(data, 0)
            self._kept += 1
            return
        size = len(data)
        if self._task is None and self.connection.send_now(data):
            if size > self.limit:
                self._big = size
            return
        pending = self._queued if self._kept else self.queued_bytes
        if pending <= self.limit:
            self._big = 0  # the big message has gone, or there was none
        if pending and pending + size > self.limit + self._big:
            if self.queue is not None:
                self.queue.clear()
            self._queued = self._kept = 0
            self.overflows += 1
            self.on_overflow(self)
            return
        if not pending and size > self.limit:
            self._big = size
        self._queue(data, size)

    def _queue(self, data: Outgoing, size: int) -> None:
        if self.queue is None:
            self.queue = deque()
        self.queue.append(data)
        self._queued += size
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"send-{self.peer_id}")

    def close(self, code: int, reason: str) -> None:
        """Close after nothing more: queued messages are dropped."""
        if self.closed:
            return
        self._stop()
        self._closer = asyncio.create_task(self._close(code, reason))

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most `timeout`) until the close frame has gone out."""
        if self._closer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closer), timeout)

    async def flush_and_close(self, code: int, reason: str, timeout: float = 5.0) -> None:
        """Send what is queued (within `timeout`), then close."""
        if self.closed:
            return
        if self._task is not None:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        self._stop()
        await self._close(code, reason)

    def abandon(self) -> None:
        """The peer is gone: stop sending, nothing to close."""
        self._stop()

    def _stop(self) -> None:
        self.closed = True
        self.queue = None
        self._queued = self._kept = 0
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _close(self, code: int, reason: str) -> None:
        """Send the close frame; abort when that takes longer than the close timeout."""
        try:
            await asyncio.wait_for(self.connection.close(code, reason), self.close_timeout)
        except TimeoutError:
            log.info("peer %s: close not sent in %ss, aborting", self.peer_id, self.close_timeout)
            self.connection.abort()
        except Exception as error:  # already gone: nothing left to tell it
            log.debug("peer %s: close failed: %r", self.peer_id, error)

    async def _drain(self) -> None:
        """Send the queue, waiting on the peer; end when it is empty."""
        try:
            this_turn = 0  # bytes sent since the loop last ran something else
            while self.queue:
                data = self._next()
                if data is None:
                    continue
                if isinstance(data, LongMessage):
                    await self._send_long(data)
                    continue
                self._sending = len(data)
                try:
                    if isinstance(data, bytes) and len(data) > BIG_MESSAGE:
                        await self.connection.send_big(data)
                    else:
                        await self.connection.send(data)
                finally:
                    self._sending = 0
                this_turn += len(data)
                if this_turn >= TURN_BYTES:
                    this_turn = 0
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except (ValueError, TypeError) as error:  # a message no encoder takes: a bug
            self._task = None
            self.close(CloseCode.INTERNAL, "internal error sending your message")
            if self.on_failure is not None:
                self.on_failure(self, error)
        except Exception as error:  # the socket went away: the receive side will see it
            log.debug("peer %s: send failed: %r", self.peer_id, error)
            self.closed = True
        self._task = None
        self.queue = None
        self._kept = 0
        if self._drained is not None:
            self._drained.set()

    async def _send_long(self, message: LongMessage) -> None:
        """Send the long message at the queue's head; it leaves the queue once sent (until
        then, only what queues beside it counts against the limit)."""
        await self.connection.send_long(message)
        if self.queue and self.queue[0] is message:  # not dropped by an overflow meanwhile
            self.queue.popleft()
            self._kept -= 1

    def _next(self) -> bytes | str | LongMessage | None:
        """The next message to send: the queue's first, or the next part of the kept answer
        at its head (None when that answer has no part left: it leaves the queue). A
        `LongMessage` stays at the head while it is sent."""
        assert self.queue is not None
        head = self.queue[0]
        if isinstance(head, LongMessage):
            return head
        if isinstance(head, KeptAnswer):
            part = next(iter(head), None)
            if part is None:
                self.queue.popleft()
                self._kept -= 1
            return part
        self.queue.popleft()
        self._queued -= len(head)
        return head
