"""File work in worker threads: never outliving the lock it runs under, and fsync cheaply.

`asyncio.to_thread` lets its caller go when cancelled while the thread goes on: a document's
lock would be released while a thread still writes its files (a compaction's switch, a
load that cuts a torn tail), and the next holder would see them half done (`in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from collab.storage.fsync_plan import FsyncPlan

T = TypeVar("T")
_FsyncRequest = tuple[int, "asyncio.Future[None]", "_Answers"]
_Answer = tuple["asyncio.Future[None]", Exception | None, float]


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


class FsyncThreads:
    """fsync inline or on a few threads of our own, as `FsyncPlan` decides: `sync(fd)` is
    a future of the loop (done at once when the fsync ran inline). Several fsyncs in
    flight at once on the threads share the filesystem's journal commits.

    A `ThreadPoolExecutor` makes a concurrent future per call and chains it to an asyncio
    one (a lock, callbacks both ways), and each answer wakes the loop through its
    self-pipe (a write, then two reads: 10% of the event loop's busy time under
    bench/fanout.py). Here answers that arrive before the loop runs share one wake-up."""

    def __init__(self, count: int, name: str = "collab-fsync") -> None:
        self._count = count
        self._name = name
        self._requests: queue.SimpleQueue[_FsyncRequest | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._answers: _Answers | None = None  # for the loop that asks
        self.plan = FsyncPlan()  # used on that loop only
        self._turn: list[tuple[int, asyncio.Future[None]]] = []  # asked in this loop turn

    def sync(self, fd: int) -> asyncio.Future[None]:
        """Done once `fd` is fsync'd; fails with what the fsync raised (its OSError).

        The fsyncs asked for in one turn of the loop are decided together at its end:
        a lone document's runs inline, several documents' (a burst) go to the threads,
        where they overlap, unless the plan says they are fast enough to run in a row."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._turn:
            loop.call_soon(self._flush, loop)
        self._turn.append((fd, done))
        return done

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        turn, self._turn = self._turn, []
        if self.plan.inline(time.monotonic(), len(turn)):
            for fd, done in turn:
                error, seconds = _fsync(fd)
                self.plan.measured(seconds)
                _settle(done, error)
            return
        if not self._threads:
            self._start()
        answers = self._answers
        if answers is None or answers.loop is not loop:
            answers = self._answers = _Answers(loop, self.plan)
        for fd, done in turn:
            self._requests.put((fd, done, answers))

    def _start(self) -> None:
        # The threads hold the queue, not this object: when it is dropped without close()
        # (a store nobody closed), the finalizer tells them to stop.
        self._threads = [
            threading.Thread(
                target=_serve, args=(self._requests,), name=f"{self._name}-{n}", daemon=True
            )
            for n in range(self._count)
        ]
        for thread in self._threads:
            thread.start()
        weakref.finalize(self, _stop, self._requests, self._count)

    def close(self) -> None:
        """Finish what was asked, then stop the threads."""
        _stop(self._requests, len(self._threads))
        for thread in self._threads:
            thread.join()
        self._threads = []


class _Answers:
    """fsync answers for one event loop, handed over in batches: one wake-up of the loop
    for all the answers that arrive before it runs."""

    __slots__ = ("_lock", "_ready", "_scheduled", "loop", "plan")

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: FsyncPlan) -> None:
        self.loop = loop
        self.plan = plan  # told, on the loop, how long each fsync took
        self._lock = threading.Lock()
        self._ready: list[_Answer] = []
        self._scheduled = False

    def put(self, done: asyncio.Future[None], error: Exception | None, seconds: float) -> None:
        """From any thread."""
        with self._lock:
            self._ready.append((done, error, seconds))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for done, error, seconds in ready:
            self.plan.measured(seconds)
            _settle(done, error)


def _serve(requests: queue.SimpleQueue[_FsyncRequest | None]) -> None:
    while (request := requests.get()) is not None:
        fd, done, answers = request
        answers.put(done, *_fsync(fd))


def _fsync(fd: int) -> tuple[Exception | None, float]:
    """fsync `fd`: what it raised, and how long it took (seconds)."""
    start = time.monotonic()
    try:
        os.fsync(fd)
        error = None
    except Exception as failure:  # OSError; ValueError for a bad descriptor: answered
        error = failure
    return error, time.monotonic() - start


def _stop(requests: queue.SimpleQueue[_FsyncRequest | None], count: int) -> None:
    for _ in range(count):
        requests.put(None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
