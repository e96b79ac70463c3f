"""Caps on what a client may consume, as pure bookkeeping (no I/O, an injectable clock).

The web edge and the uvicorn glue ask these objects "may this happen?" and act on the
answer (refuse, close, log); the objects themselves only count (`ThrottledLog` also writes
the line it lets through). Every cap is a `Settings` field with a default
(docs/security.md lists them).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take()` spends one."""

    __slots__ = ("_clock", "_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self._clock = clock
        self._last = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are that many; False (nothing spent) otherwise."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class SlidingWindow:
    """At most `limit` events in any `window` seconds (a log of the recent ones)."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def allow(self) -> bool:
        """Record one event if the window has room; False (nothing recorded) otherwise."""
        now = self._clock()
        self._expire(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._times)


class KeyedWindows:
    """One `SlidingWindow` per key (a client address) and one for all keys together.

    Keys whose window emptied are forgotten, so the table stays as small as the set of
    addresses active in the last window.
    """

    def __init__(
        self, per_key: int, total: int, window: float, clock: Clock = time.monotonic
    ) -> None:
        self.per_key = per_key
        self.window = window
        self._clock = clock
        self.total = SlidingWindow(total, window, clock)
        self._keys: dict[Hashable, SlidingWindow] = {}

    def allow(self, key: Hashable) -> str | None:
        """Record an event for `key`; None when allowed, else which limit refused it."""
        if len(self._keys) > 1024:  # forget idle keys now and then
            self._keys = {k: w for k, w in self._keys.items() if len(w)}
        window = self._keys.get(key)
        if window is None:
            window = self._keys[key] = SlidingWindow(self.per_key, self.window, self._clock)
        if len(window) >= self.per_key:
            return "per-address"
        if not self.total.allow():
            return "total"
        window.allow()
        return None


@dataclass
class ConnectionCounter:
    """Open connections, per client address and in total; `open` refuses past the caps."""

    per_address: int
    total: int
    by_address: dict[Hashable, int] = field(default_factory=dict)
    count: int = 0

    def open(self, address: Hashable) -> str | None:
        """Count a new connection; None when allowed, else which limit refused it."""
        if self.count >= self.total:
            return "total"
        held = self.by_address.get(address, 0)
        if held >= self.per_address:
            return "per-address"
        self.by_address[address] = held + 1
        self.count += 1
        return None

    def close(self, address: Hashable) -> None:
        held = self.by_address.get(address, 0)
        if held <= 0:
            return
        self.count -= 1
        if held == 1:
            del self.by_address[address]
        else:
            self.by_address[address] = held - 1


@dataclass
class Unproven:
    """What a connection sent before it proved anything (its first valid message).

    `add(size)` counts one message; it returns a reason once the byte or message budget
    is spent (the connection is then closed).
    """

    max_bytes: int
    max_messages: int
    bytes: int = 0
    messages: int = 0

    def add(self, size: int) -> str | None:
        self.bytes += size
        self.messages += 1
        if self.bytes > self.max_bytes:
            return f"{self.bytes} bytes before a valid message (limit {self.max_bytes})"
        if self.messages > self.max_messages:
            return f"{self.messages} messages before a valid one (limit {self.max_messages})"
        return None


class LogThrottle:
    """Say something at most once per `interval` seconds, with how often it was held back.

    `should_log()` returns None to stay quiet, else the number of times it was suppressed
    since the last time it spoke.
    """

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0

    def should_log(self) -> int | None:
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return None
        self._next = now + self.interval
        held, self.suppressed = self.suppressed, 0
        return held


class ThrottledLog:
    """A recurring failure's line, with its traceback, at most once per `interval` seconds,
    saying how many were held back since the last one (a full disk fails every commit: a
    traceback each is hundreds of lines a second, and hides everything else)."""

    def __init__(self, logger: logging.Logger, interval: float, clock: Clock = time.monotonic):
        self.logger = logger
        self.throttle = LogThrottle(interval, clock)

    def exception(self, message: str, *args: object) -> None:
        """`logger.exception(message, *args)`, unless one went out less than `interval` ago."""
        held = self.throttle.should_log()
        if held is None:
            return
        more = f" ({held} more since the last one logged)" if held else ""
        self.logger.exception(message + "%s", *args, more)
