"""How late the event loop runs what is due: a stall that every document of the process feels.

A probe sleeps a short interval again and again and records how much later than asked it
woke up. Work that holds the loop (or the GIL) for 50 ms shows up as a lag of up to 50 ms
before any user sees a slow edit (`collab_event_loop_lag_seconds` on /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

INTERVAL = 0.02  # seconds between wake-ups: 50 a second, a few µs of work each


class LoopLagProbe:
    """Records each wake-up's lag with `observe(seconds)`; `worst` is the largest seen."""

    def __init__(self, observe: Callable[[float], None], interval: float = INTERVAL) -> None:
        self.observe = observe
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="collab-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            self.worst = max(self.worst, lag)
            self.observe(lag)
