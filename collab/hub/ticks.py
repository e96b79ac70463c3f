"""Waking a session when time will matter to it.

Text clients' caret moves held back by the coalescing, and renewals of their awareness,
go out when time passes. The session says when it next needs to hear of it
(`Session.next_tick_at`); one timer is set for then, only when it asks, so an idle
document or one with only Yjs peers costs no wake-ups (a 50 ms tick per document cost 200
idle documents 4,000 wake-ups a second).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from collab.session import Session

MAX_TICK_DELAY = 15.0  # a tick this far ahead is checked again then (the wall clock may jump)
MIN_TICK_GAP = 0.01  # between two ticks, whatever the session says (never a busy loop)


class TickTimer:
    """One session's timer. `schedule` after each batch; `on_output` when a tick made
    something to send; `has_peers` says whether anyone is there to hear it."""

    def __init__(
        self, session: Session, on_output: Callable[[], None], has_peers: Callable[[], bool]
    ) -> None:
        self.session = session
        self.on_output = on_output
        self.has_peers = has_peers
        self.timer: asyncio.TimerHandle | None = None
        self.due = math.inf

    def schedule(self, minimum: float = 0.0) -> None:
        """Set the timer for when the session next needs a tick, if that is sooner."""
        due = self.session.next_tick_at()
        if due is None or due >= self.due:
            return
        if self.timer is not None:
            self.timer.cancel()
        delay = min(max(minimum, due - self.session.document.clock()), MAX_TICK_DELAY)
        self.due = due
        self.timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer, self.due = None, math.inf

    def _tick(self) -> None:
        self.timer, self.due = None, math.inf
        if not self.has_peers():
            return  # nobody to tell; the next peer's batch schedules it again
        if self.session.tick():
            self.on_output()
        self.schedule(minimum=MIN_TICK_GAP)
