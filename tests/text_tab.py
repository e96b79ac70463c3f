"""A text client on a real socket for end-to-end tests: a `TextClient` that answers the
server, and every message it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.text.client import TextClient


class Tab:
    """A text client (`TextClient`) on a real socket that keeps every message it was sent."""

    def __init__(self, ws: ClientConnection, client: TextClient) -> None:
        self.ws = ws
        self.client = client
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, url: str, who: str, name: str | None = None) -> Tab:
        client = TextClient(f"secret-of-{who}-0123456789", {"name": name or who})
        return await cls.rejoin(url, client)

    @classmethod
    async def rejoin(cls, url: str, client: TextClient) -> Tab:
        """Connect with `client` (again: its op in flight is sent again, same seq)."""
        tab = await cls.say_hello(url, client)
        await tab.until(lambda: tab.client.joined, "a welcome")
        return tab

    @classmethod
    async def say_hello(cls, url: str, client: TextClient) -> Tab:
        """Connect and say hello, not waiting for the welcome (the server may refuse)."""
        ws = await connect(url, proxy=None, compression=None)
        tab = cls(ws, client)
        with contextlib.suppress(ConnectionClosed):  # closed at once: `closed_by_server`
            await tab.send([tab.client.hello()])
        return tab

    async def closed_by_server(self, timeout: float = 10) -> tuple[int, str]:
        """The close code and reason, once the server closed the connection."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.closed is not None
        return self.closed

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                message = json.loads(data)
                self.messages.append(message)
                await self.send(self.client.receive(message))
        except ConnectionClosed:
            pass
        self.closed = (self.ws.close_code or 1006, self.ws.close_reason or "")

    async def send(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:  # json.dumps escapes lone surrogates and NUL
            await self.ws.send(json.dumps(message))

    def names_shown(self) -> set[str]:
        """Every user name this tab was shown (presence and welcome)."""
        shown = [m for m in self.messages if m["type"] == "presence" and "user" in m]
        shown += [p for m in self.messages if m["type"] == "welcome" for p in m["presence"]]
        return {m["user"]["name"] for m in shown}

    async def until(self, condition: Callable[[], object], what: str, timeout: float = 10) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := condition()):
            if self.closed is not None:
                raise AssertionError(f"closed {self.closed} while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.messages[-3:]}")
            await asyncio.sleep(0.01)
        return value

    async def type(self, text: str) -> None:
        """Append `text` and wait until it is acknowledged: the document is alive."""
        length = len(self.client.text)
        await self.send(self.client.edit([length, text] if length else [text]))
        await self.until(lambda: not self.client.pending, f"the ack of {text!r}")

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
