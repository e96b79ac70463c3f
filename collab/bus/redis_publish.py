"""`RedisBus`'s settings, and its publishing side: a queue one task drains into Redis.

A publish never waits for Redis: it queues the message and returns. One task sends what
accumulated as one pipeline (so messages keep their order and a flood costs one round trip
per batch). A batch that fails or takes longer than `publish_timeout` is dropped with
everything queued behind it, and publishes are dropped at once for a backoff period: while
Redis is down, callers are never slowed and the log gets one line per `log_interval`.

Dropped records heal themselves: the publisher remembers, per document, the last revision
whose records it dropped, and once a publish to Redis succeeds again it sends a committed
notice for it, so the other processes fetch those revisions from the store even if no one
edits the document again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from collab.bus import messages

log = logging.getLogger("collab.bus.redis")

MiB = 1024 * 1024
#: At most this many messages, and about this many bytes, per pipelined publish batch
#: (`publish_timeout` bounds one batch: it must be a small amount of work).
PUBLISH_BATCH = 1000
PUBLISH_BATCH_BYTES = 1 * MiB


@dataclass(frozen=True)
class RedisBusSettings:
    heartbeat_interval: float = 5.0
    #: A process not heard from for this long is gone (default: the WebSocket ping timeout).
    process_timeout: float = 30.0
    #: Longest a publish batch may take before it is dropped.
    publish_timeout: float = 0.5
    connect_timeout: float = 2.0
    #: Reconnection (and publish) backoff: doubles from min to max, with jitter.
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    #: Records larger than this (encoded) go out as a committed notice instead.
    max_message_bytes: int = 512 * 1024
    #: Publishes queued beyond this many bytes are dropped.
    max_pending_bytes: int = 16 * MiB
    #: Channel names start with this, then the database number and ":".
    channel_prefix: str = "collab:"
    #: Each kind of problem is logged at most once per interval.
    log_interval: float = 30.0


@dataclass
class BusStats:
    published: int = 0  # messages Redis accepted
    dropped: int = 0  # publishes lost (Redis down, queue full, batch failed)
    received: int = 0  # messages from other processes
    connections: int = 0  # subscription connections made (1 + reconnections)


def default_process_id() -> str:
    """host:pid:random, unique among processes (a restarted pid gets a new random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


def backoff(settings: RedisBusSettings, failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: doubling, capped, jittered."""
    delay = min(settings.reconnect_max, settings.reconnect_min * 2 ** min(failures - 1, 30))
    return delay * random.uniform(0.5, 1.0)


class Throttled:
    """Logs each kind of problem at most once per interval, saying how many were skipped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        log.warning(message + suffix, *args, exc_info=exc_info)


class Publisher:
    """The queue of messages to publish, and the task that sends them (`run`)."""

    def __init__(
        self,
        client: Redis,
        process: str,
        settings: RedisBusSettings,
        stats: BusStats,
        throttled: Throttled,
    ) -> None:
        self.client = client
        self.process = process
        self.settings = settings
        self.stats = stats
        self.throttled = throttled
        self.accepting = False  # set while `run` is running
        # (channel, message, last revision of a records message or None)
        self._queue: deque[tuple[bytes, bytes, int | None]] = deque()
        #: Per channel, the last revision whose records were dropped (sent as a notice).
        self._lost: dict[bytes, int] = {}
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failures = 0
        self._down_until = 0.0

    @property
    def pending_bytes(self) -> int:
        return self._queued_bytes

    def enqueue(self, channel_id: bytes, data: bytes, rev: int | None = None) -> None:
        """Queue a publish (`rev`: the last revision of a records message), or drop it when
        Redis is down or the queue is full."""
        if not self.accepting or time.monotonic() < self._down_until:
            self._drop(channel_id, rev)
            return
        size = len(channel_id) + len(data)
        if self._queued_bytes + size > self.settings.max_pending_bytes:
            self._drop(channel_id, rev)
            self.throttled.warning("full", "bus: publish queue full, dropping messages")
            return
        self._queue.append((channel_id, data, rev))
        self._queued_bytes += size
        self._idle.clear()
        self._wake.set()

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) until everything queued was sent or dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def run(self) -> None:
        self.accepting = True
        try:
            while True:
                if not self._queue:
                    self._idle.set()
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                batch = self._take_batch()
                try:
                    async with asyncio.timeout(self.settings.publish_timeout):
                        async with self.client.pipeline(transaction=False) as pipe:
                            for channel_id, data, _ in batch:
                                pipe.publish(channel_id, data)
                            await pipe.execute()
                except (RedisError, OSError, TimeoutError) as error:
                    await self._failed(batch, error)
                else:
                    self.stats.published += len(batch)
                    self._failures = 0
                    self._send_notices()
        finally:
            self.accepting = False

    def _take_batch(self) -> list[tuple[bytes, bytes, int | None]]:
        batch: list[tuple[bytes, bytes, int | None]] = []
        size = 0
        while self._queue and len(batch) < PUBLISH_BATCH and size < PUBLISH_BATCH_BYTES:
            item = self._queue.popleft()
            batch.append(item)
            size += len(item[0]) + len(item[1])
        self._queued_bytes -= size
        return batch

    def _drop(self, channel_id: bytes, rev: int | None) -> None:
        self.stats.dropped += 1
        if rev is not None and rev > self._lost.get(channel_id, 0):
            self._lost[channel_id] = rev

    def _send_notices(self) -> None:
        """Publishing works again: tell the others about the records it dropped."""
        lost, self._lost = self._lost, {}
        for channel_id, rev in lost.items():
            notice = messages.encode(messages.COMMITTED, self.process, messages.rev_bytes(rev))
            self.enqueue(channel_id, notice, rev)

    async def _failed(self, batch: list[tuple[bytes, bytes, int | None]], error: Exception) -> None:
        """Drop the batch and what is queued; drop publishes for a backoff period."""
        if isinstance(error, TimeoutError):  # a reply may still come: never reuse the socket
            with contextlib.suppress(RedisError, OSError):
                await self.client.connection_pool.disconnect()
        batch.extend(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        for channel_id, _, rev in batch:
            self._drop(channel_id, rev)
        lost = len(batch)
        self._failures += 1
        self._down_until = time.monotonic() + backoff(self.settings, self._failures)
        self.throttled.warning(
            "publish",
            "bus: publishing to Redis failed (%s); %d messages dropped",
            error or type(error).__name__,
            lost,
        )
