"""One peer's outgoing messages: a bounded queue drained by its own task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from collab.session import PeerId

log = logging.getLogger(__name__)


class Connection(Protocol):
    """What the hub needs from a WebSocket, whatever the server."""

    async def send(self, data: bytes | str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the connection now, without a close handshake or draining what is buffered."""


class PeerChannel:
    """One peer's outgoing messages: a bounded queue drained by its own task.

    A peer that cannot keep up never makes the server buffer without bound: when its queue
    plus the next message passes `limit` bytes the queue is dropped and `on_overflow`
    decides (resync or close). The message being sent counts until its send returns: a
    peer that does not read blocks that send, and must not get an empty queue to fill.
    Only a peer with nothing pending at all is sent one message over the limit (a big
    document's sync step 2).

    Closing never waits on the peer: when the close frame cannot be sent within
    `close_timeout` seconds (a peer that stopped reading), the connection is aborted.
    """

    def __init__(
        self,
        peer_id: PeerId,
        connection: Connection,
        limit: int,
        on_overflow: Callable[[PeerChannel], None],
        close_timeout: float = 10.0,
    ) -> None:
        self.peer_id = peer_id
        self.connection = connection
        self.limit = limit
        self.on_overflow = on_overflow
        self.close_timeout = close_timeout
        self.queue: deque[bytes | str] = deque()
        self.queued_bytes = 0  # the queue and the message being sent
        self._sending = 0  # bytes of the message being sent, until its send returns
        self.overflows = 0
        self.closed = False
        self._closer: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._task = asyncio.create_task(self._drain(), name=f"send-{peer_id}")

    def send(self, data: bytes | str) -> None:
        if self.closed:
            return
        size = len(data)
        if self.queued_bytes + size > self.limit and self.queued_bytes:
            self.queue.clear()
            self.queued_bytes = self._sending
            self.overflows += 1
            self.on_overflow(self)
            return
        self.queue.append(data)
        self.queued_bytes += size
        self._ready.set()

    def close(self, code: int, reason: str) -> None:
        """Close after nothing more: queued messages are dropped."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self._task.cancel()
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
        if self.queued_bytes:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        self.closed = True
        self._task.cancel()
        await self._close(code, reason)

    def abandon(self) -> None:
        """The peer is gone: stop sending, nothing to close."""
        self.closed = True
        self._task.cancel()

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
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self.queue:
                    data = self.queue.popleft()
                    self._sending = len(data)
                    try:
                        await self.connection.send(data)
                    finally:
                        self.queued_bytes -= self._sending
                        self._sending = 0
                self._drained.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the socket went away: the receive side will see it
            log.debug("peer %s: send failed: %r", self.peer_id, error)
            self.closed = True
