"""A small asyncio Yjs peer for tests: websockets + a pycrdt Doc, speaking y-websocket.

    async with await YClient.connect(f"{server.ws_url}/yjs/notes") as client:
        await client.synced()
        client.insert(0, "héllo 😀")          # code point positions
        await other.wait_text("héllo 😀")

Every frame the server sends is kept in `received` and checked with the strict
`collab.yjs.protocol.decode`; anything that does not decode, or an update pycrdt refuses, is
recorded in `errors` (tests assert it stays empty: nothing invalid is ever relayed).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.text.positions import cp_to_utf8
from collab.yjs import protocol
from collab.yjs.protocol import AwarenessEntry, ProtocolError, Reader


def connect_options(**overrides: Any) -> dict[str, Any]:
    """Options for a test connection: no proxy, no compression, no size limit."""
    options: dict[str, Any] = {"proxy": None, "compression": None, "max_size": None}
    options.update(overrides)
    return options


class YClient:
    """One y-websocket peer editing the Y.Text "text" of a pycrdt Doc."""

    def __init__(self, ws: ClientConnection, client_id: int | None = None) -> None:
        self.ws = ws
        self.doc: Doc = Doc() if client_id is None else Doc(client_id=client_id)
        self.ytext = self.doc.get("text", type=Text)
        self.received: list[bytes | str] = []
        self.errors: list[str] = []
        self.awareness: dict[int, dict[str, Any] | None] = {}
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.is_synced = False
        self._remote = False  # True while applying the server's updates: do not echo them
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._clock = 0
        self.doc.observe(self._on_local_change)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    @classmethod
    async def connect(
        cls, url: str, *, handshake: bool = True, client_id: int | None = None, **options: Any
    ) -> YClient:
        """Open `url` (ws://.../yjs/name) and, unless `handshake` is False, send sync step1.
        `client_id`: the pycrdt Doc's (pycrdt draws 53-bit ids when none is given)."""
        client = cls(await connect(url, **connect_options(**options)), client_id)
        if handshake:
            client.send_raw(protocol.encode_sync_step1(client.doc.get_state()))
        return client

    async def __aenter__(self) -> YClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- reading the state --------------------------------------------------------------

    @property
    def text(self) -> str:
        return str(self.ytext)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def until(self, condition: Callable[[], object], timeout: float = 10, what: str = ""):
        """Wait until `condition()` holds, re-checking it after every frame received."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(condition), timeout)
            except TimeoutError:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None

    async def synced(self, timeout: float = 10) -> None:
        """Wait for the server's sync step2 (the answer to our step1)."""
        await self.until(lambda: self.is_synced or self.closed, timeout, "sync step2")
        assert self.is_synced, f"closed before sync: {self.close_code} {self.close_reason!r}"

    async def wait_text(self, expected: str, timeout: float = 10) -> None:
        try:
            await self.until(lambda: self.text == expected, timeout, "text")
        except AssertionError:
            raise AssertionError(f"text is {self.text!r}, expected {expected!r}") from None

    async def wait_closed(self, timeout: float = 10) -> tuple[int, str]:
        """Wait until the server closes us; return (code, reason)."""
        await self.until(lambda: self.closed, timeout, "the server to close the connection")
        assert self.close_code is not None and self.close_reason is not None
        return self.close_code, self.close_reason

    # --- changing the state -------------------------------------------------------------

    def insert(self, index: int, s: str) -> None:
        """Insert `s` at code point `index`; the update goes to the server."""
        self.ytext.insert(cp_to_utf8(self.text, index), s)

    def append(self, s: str) -> None:
        self.insert(len(self.text), s)

    def delete(self, index: int, length: int) -> None:
        """Delete `length` code points from code point `index`."""
        text = self.text
        del self.ytext[cp_to_utf8(text, index) : cp_to_utf8(text, index + length)]

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        """Publish our awareness state (None: we are leaving)."""
        self._clock += 1
        self.awareness[self.doc.client_id] = state
        entry = AwarenessEntry(self.doc.client_id, self._clock, state)
        self.send_raw(protocol.encode_awareness([entry]))

    def send_raw(self, frame: bytes | str) -> None:
        """Queue one frame, sent as is (bytes: binary frame, str: text frame)."""
        self._outbox.put_nowait(frame)

    async def close(self) -> None:
        await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the protocol -------------------------------------------------------------------

    def _on_local_change(self, event: Any) -> None:
        if not self._remote and event.update != b"\x00\x00":
            self.send_raw(protocol.encode_sync_update(event.update))

    async def _write(self) -> None:
        try:
            while True:
                await self.ws.send(await self._outbox.get())
        except ConnectionClosed:
            pass

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.received.append(frame)
                self._handle(frame)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
            self.close_reason = self.ws.close_reason or ""
            async with self._changed:
                self._changed.notify_all()

    def _handle(self, frame: bytes | str) -> None:
        try:
            message = protocol.decode(frame)
        except ProtocolError as error:
            self.errors.append(f"invalid frame from the server: {error.reason}: {frame!r:.80}")
            return
        match message:
            case protocol.SyncStep1(state_vector):
                self.send_raw(protocol.encode_sync_step2(self.doc.get_update(state_vector)))
            case protocol.SyncStep2(update) | protocol.SyncUpdate(update):
                self._apply(update)
                self.is_synced = self.is_synced or isinstance(message, protocol.SyncStep2)
            case protocol.Awareness(entries):
                self.awareness.update((e.client_id, e.state) for e in entries)
            case protocol.QueryAwareness():
                if self.awareness.get(self.doc.client_id) is not None:
                    self.set_awareness(self.awareness[self.doc.client_id])
            case _:
                self.errors.append(f"unexpected message from the server: {message!r:.80}")

    def _apply(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        except BaseException as error:  # pycrdt panics derive from BaseException
            self.errors.append(f"update refused by pycrdt: {error!r:.80}")
        finally:
            self._remote = False


async def round_trip(sender: YClient, receiver: YClient, timeout: float = 10) -> float:
    """Append a unique marker at `sender`, wait until `receiver` has it; seconds it took."""
    marker = f"[{random.randrange(10**9)}👍🏽]"
    start = time.monotonic()
    sender.append(marker)
    await receiver.until(lambda: marker in receiver.text, timeout, f"{marker} to arrive")
    return time.monotonic() - start


def url_name(name: str) -> str:
    """A document name as one URL path segment (dots escaped so nothing normalises them)."""
    return quote(name, safe="").replace(".", "%2E")


def state_vector(update: bytes) -> dict[int, int]:
    """The state vector of a whole-document update, as {client id: clock}."""
    doc = Doc()
    doc.apply_update(update)
    reader = Reader(doc.get_state())
    pairs = [(reader.var_uint(), reader.var_uint()) for _ in range(reader.var_uint())]
    return dict(pairs)


async def eventually(
    probe: Callable[[], Awaitable[object]], expected: object, timeout: float = 10
) -> None:
    """Wait until `await probe()` returns `expected`."""
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)
