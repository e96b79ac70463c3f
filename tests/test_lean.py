"""LeanQueue and LeanEvent behave like the asyncio primitives uvicorn expects."""

from __future__ import annotations

import asyncio

import pytest

from collab.server.lean import LeanEvent, LeanQueue


async def test_the_queue_hands_out_items_in_order_and_waits_when_empty() -> None:
    queue = LeanQueue()
    assert queue.empty()
    for item in ("😀", {"bytes": b"\x00"}, "中"):
        queue.put_nowait(item)
    assert not queue.empty()
    assert [await queue.get() for _ in range(3)] == ["😀", {"bytes": b"\x00"}, "中"]
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_nowait("late")
    assert await asyncio.wait_for(waiting, 5) == "late"
    assert queue.empty()


async def test_a_cancelled_get_leaves_the_queue_usable() -> None:
    queue = LeanQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    queue.put_nowait("kept")
    assert await asyncio.wait_for(queue.get(), 5) == "kept"


async def test_a_second_consumer_is_refused() -> None:
    queue = LeanQueue()
    first = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await queue.get()
    queue.put_nowait(1)
    assert await asyncio.wait_for(first, 5) == 1


async def test_the_event_releases_every_waiter_and_can_be_cleared() -> None:
    event = LeanEvent()
    assert not event.is_set()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True] * 3
    assert await event.wait()  # set: returns at once
    event.clear()
    again = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    assert not again.done()
    again.cancel()
    with pytest.raises(asyncio.CancelledError):
        await again
    event.set()
    assert event.is_set()
