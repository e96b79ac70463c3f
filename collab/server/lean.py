"""asyncio's Queue and Event, cut down to what uvicorn's WebSocket protocol uses of them.

uvicorn gives every WebSocket an `asyncio.Queue` for what it receives and an
`asyncio.Event` for write flow control. Each holds deques made up front (a deque is a
~600-byte block even when empty): ~3 KB per connection, idle or not, more than the rest of
our per-connection state. These make their storage only while something waits in them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class LeanQueue:
    """`put_nowait`, `get` and `empty` of an unbounded `asyncio.Queue`, for one consumer
    (the ASGI app's `receive`)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("LeanQueue has one consumer; get() is already waiting")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def empty(self) -> bool:
        return not self._items

    def take_all(self) -> list[Any]:
        """Everything queued, oldest first; the queue is left empty."""
        items, self._items = self._items, None
        return list(items) if items else []


class LeanEvent:
    """`set`, `clear`, `is_set` and `wait` of an `asyncio.Event`."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True
