"""Access that follows people on open connections: closed when it expires or is revoked.

Every door registers each open connection's access as a `Ticket` (who, which token, until
when, how to close it) with the hub's `LiveAccess`, and forgets it when the connection
ends. One timer per hub, set for the earliest expiry in a heap, closes connections whose
access ended (4401 "the token has expired"): an idle connection costs no task and no
timer of its own. A client may present a fresh token before then (`renew`). Revocations
(`collab.access.revocations`) close the tickets they match (4401 "the token was revoked")
and refuse new connections; `watch_source` polls where they are stored, so one stored by
another process takes effect here within the poll interval.

A door uses: ``ticket = live.admit(...)`` (None: revoked) ... ``live.renew(ticket, ...)``
... ``live.forget(ticket)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from collab.access.revocations import REVOKED, Revocation, RevocationList
from collab.wire import CloseCode

log = logging.getLogger(__name__)

EXPIRED = "the token has expired"
MAX_TIMER_DELAY = 30.0  # a far expiry is looked at again then (the wall clock may jump)


@dataclass(eq=False)
class Ticket:
    """One open connection's access. `close(code, reason)` closes that connection."""

    close: Callable[[int, str], None]
    user: str | None = None
    token_id: str | None = None
    issued: float | None = None  # unix seconds; a hook's access: when it was granted
    expires: float | None = None  # unix seconds; None: never

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires


class RevocationSource(Protocol):
    """Where revocations are stored (a file, a table): read by every process."""

    async def read_since(self, cursor: object) -> tuple[Sequence[Revocation], object]:
        """The rules stored after `cursor` (None: all), and the cursor after them."""
        ...

    async def close(self) -> None: ...


@dataclass
class LiveAccess:
    """The open connections' access of one hub, and the revocations known to it."""

    poll_interval: float = 1.0
    revocations: RevocationList = field(default_factory=RevocationList)
    tickets: set[Ticket] = field(default_factory=set)
    _heap: list[tuple[float, int, Ticket]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _timer: asyncio.TimerHandle | None = None
    _due: float = math.inf
    _poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the doors' API

    def revoked(self, token_id: str | None, user: str | None, issued: float | None) -> bool:
        return self.revocations.revokes(token_id, user, issued)

    def admit(self, ticket: Ticket) -> bool:
        """Watch `ticket` until `forget`; False (not watched) when it is revoked already."""
        if self.revoked(ticket.token_id, ticket.user, ticket.issued):
            return False
        self.tickets.add(ticket)
        self._push(ticket)
        return True

    def renew(
        self, ticket: Ticket, expires: float | None, token_id: str | None, issued: float | None
    ) -> None:
        """A fresh token for an open connection: its access now ends at `expires`."""
        ticket.expires, ticket.token_id, ticket.issued = expires, token_id, issued
        if ticket in self.tickets:
            self._push(ticket)

    def forget(self, ticket: Ticket) -> None:
        """The connection ended (its heap entry is dropped when it comes due)."""
        self.tickets.discard(ticket)
        if len(self._heap) > 2 * len(self.tickets) + 64:  # many ended: rebuild, amortised
            self._heap = [entry for entry in self._heap if self._current(entry)]
            heapq.heapify(self._heap)

    def revoke(self, rules: Sequence[Revocation]) -> int:
        """Add rules; close the open connections they revoke. Returns how many."""
        for rule in rules:
            self.revocations.add(rule)
        closed = [t for t in self.tickets if self.revoked(t.token_id, t.user, t.issued)]
        for ticket in closed:
            self._end(ticket, REVOKED)
        if closed:
            log.info("revoked: %d open connection(s) closed", len(closed))
        return len(closed)

    # ------------------------------------------------------------------ revocations stored

    async def start(self, source: RevocationSource | None) -> None:
        """Read the stored revocations, then poll for new ones (every `poll_interval`)."""
        if source is None or self._poller is not None:
            return
        rules, cursor = await source.read_since(None)
        self.revoke(rules)
        self._poller = asyncio.create_task(self._poll(source, cursor), name="revocations")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._due = None, math.inf
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self, source: RevocationSource, cursor: object) -> None:
        failing = False
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                try:
                    rules, cursor = await source.read_since(cursor)
                except Exception as error:  # the store is down: keep the rules known
                    if not failing:
                        log.warning("cannot read revocations: %s: %s", type(error).__name__, error)
                    failing = True
                    continue
                failing = False
                if rules:
                    self.revoke(rules)
        finally:
            await source.close()

    # ------------------------------------------------------------------ the expiry timer

    def _current(self, entry: tuple[float, int, Ticket]) -> bool:
        when, _, ticket = entry
        return ticket in self.tickets and ticket.expires == when

    def _push(self, ticket: Ticket) -> None:
        if ticket.expires is None:
            return
        heapq.heappush(self._heap, (ticket.expires, next(self._order), ticket))
        self._arm()

    def _arm(self) -> None:
        while self._heap and not self._current(self._heap[0]):
            heapq.heappop(self._heap)
        if not self._heap or self._heap[0][0] >= self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = self._heap[0][0]
        delay = min(max(0.0, self._due - time.time()), MAX_TIMER_DELAY)
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer, self._due = None, math.inf
        now = time.time()
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._current(entry):
                self._end(entry[2], EXPIRED)
        self._arm()

    def _end(self, ticket: Ticket, reason: str) -> None:
        self.tickets.discard(ticket)
        try:
            ticket.close(CloseCode.UNAUTHORIZED, reason)
        except Exception:  # one connection's close must not stop the others'
            log.exception("closing a connection whose access ended failed")
