"""Big HTTP responses (a document's state or text, an old revision's text): capped.

A response body of megabytes is held in memory until its client has taken all of it. A
client that asks and never reads would hold it for ever, and a few dozen of them, the
server's memory. So a body of `BIG_BYTES` or more:

- shares a cap with the other big responses being sent (`max_big_responses`; HTTP 503
  with `Retry-After` beyond: the body is dropped at once);
- goes out in chunks as the client takes them (ASGI servers wait for their write buffer
  to drain before each send), so the server's buffer holds a chunk or two, not a copy;
- must be taken within `send_timeout` seconds, or the response is left unfinished and
  the server closes the connection (and the slot is free again).

A body a worker process wrote to a file (a big document's text) is sent from that file a
chunk at a time (`FileBody`): the server never holds it whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from starlette.responses import JSONResponse, Response

BIG_BYTES = 1024 * 1024  # a body this size or larger is a big response
CHUNK_BYTES = 64 * 1024  # what one send hands the server


Refuse = Callable[[str, str], None]  # (reason, why): counted in the metrics and logged


@dataclass(frozen=True)
class FileBody:
    """A body in an open file, `length` bytes from its start; closed once sent (or not)."""

    file: IO[bytes]
    length: int


class BigResponses:
    """The big responses being sent by one app: how many, against the cap."""

    def __init__(self, limit: int, send_timeout: float) -> None:
        self.limit = limit
        self.send_timeout = send_timeout
        self.sending = 0

    def respond(
        self, body: bytes | FileBody, media_type: str, refuse: Refuse, **options: Any
    ) -> Response:
        """`body` as a response: a plain one when small, a capped one when big."""
        if isinstance(body, FileBody) and body.length < BIG_BYTES:
            with body.file:
                body = body.file.read(body.length)
        if isinstance(body, bytes) and len(body) < BIG_BYTES:
            return Response(body, media_type=media_type, **options)
        return _CappedResponse(self, refuse, body, media_type=media_type, **options)


class _CappedResponse(Response):
    """A big body: 503 when the cap is reached, else sent in chunks within the deadline.
    The slot is taken and freed here, where the body is sent, so none can leak."""

    def __init__(
        self, owner: BigResponses, refuse: Refuse, body: bytes | FileBody, **options: Any
    ) -> None:
        self.file = body if isinstance(body, FileBody) else None
        if self.file is not None:
            headers = {**options.pop("headers", {}), "content-length": str(self.file.length)}
            super().__init__(b"", headers=headers, **options)
        else:
            super().__init__(body, **options)
        self.owner = owner
        self.refuse = refuse

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._capped(scope, receive, send)
        finally:
            if self.file is not None:  # its last close frees the file's blocks: ~17 ms at 64 MiB
                try:
                    await asyncio.to_thread(self.file.file.close)
                except RuntimeError:  # the loop's executor is shut down (the server stops)
                    self.file.file.close()

    async def _capped(self, scope: Any, receive: Any, send: Any) -> None:
        owner = self.owner
        if owner.sending >= owner.limit:
            self.body = b""  # dropped at once
            why = "too many big responses being sent: try again shortly"
            self.refuse("big-responses", why)
            busy = JSONResponse({"error": why}, status_code=503, headers={"Retry-After": "1"})
            await busy(scope, receive, send)
            return
        owner.sending += 1
        try:
            async with asyncio.timeout(owner.send_timeout):
                await self._send_chunks(send)
        except TimeoutError:  # unfinished: the server closes the connection on return
            self.refuse("send-timeout", f"a response not taken in {owner.send_timeout:g} s")
        finally:
            owner.sending -= 1

    async def _send_chunks(self, send: Any) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        for chunk in self._chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)  # a chunk per turn: a socket that takes all never waits
        await send({"type": "http.response.body", "body": b""})

    def _chunks(self) -> Iterator[bytes]:
        """The body a chunk at a time (a file's from the page cache: it was just written)."""
        if self.file is not None:
            left = self.file.length
            while left > 0 and (chunk := self.file.file.read(min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk
            return
        body, self.body = memoryview(self.body), b""
        for i in range(0, len(body), CHUNK_BYTES):
            yield bytes(body[i : i + CHUNK_BYTES])
