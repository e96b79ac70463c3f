"""File work in worker threads that never outlives the lock it runs under.

`asyncio.to_thread` lets its caller go when cancelled while the thread goes on: a document's
lock would be released while a thread still writes its files (a compaction's switch, a
load that cuts a torn tail), and the next holder would see them half done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a worker thread, awaited to its end even when the caller is
    cancelled meanwhile (CancelledError comes after it returns): a document's lock is never
    let go while a thread still works on its files."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
    return result
