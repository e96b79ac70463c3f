"""`RedisBus`: the bus between collab processes (`collab.bus.contract`) over Redis pub/sub.

One process holds two connections to Redis, whatever the number of documents:

- **the subscription**, a raw connection read by one task. It is subscribed to the control
  channel (heartbeats, goodbyes) and to one channel per document with listeners
  (`collab.bus.messages` has the channels and the bytes). redis-py's `PubSub` is not used:
  its retry layer reconnects a socket in place, without our subscriptions, and its
  blocking reads are bounded by `socket_timeout`. Here a connection that fails, or stays
  silent for three heartbeat intervals although it is pinged every interval, is thrown away;
  a new one is made with capped, jittered backoff and subscribed to every channel, and each
  listener is told `resubscribed()` when its channel is active again (so it catches up
  from the store). A listener of a new channel is told the same once the channel is active.
- **publishing**, through a queue drained by one task that pipelines what accumulated:
  a publish never waits for Redis, messages keep their order, and a batch that fails (or
  takes longer than `publish_timeout`) is dropped. After a failure, publishes are dropped at
  once for a backoff period (the contract allows losing messages: receivers fill gaps from
  the store). Problems are logged once per `log_interval`, not per message.

Liveness: every process publishes a heartbeat on the control channel every
`heartbeat_interval`; a process not heard from within `process_timeout` is reported with
`process_gone` to every listener, and `close()` publishes a goodbye so the others forget it
at once. While this process's own subscription is down it times nobody out (it could not
hear them), and it gives everyone a fresh timeout when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from collab.bus import messages
from collab.bus.contract import BusListener
from collab.bus.redis_publish import (
    BusStats,
    Publisher,
    RedisBusSettings,
    Throttled,
    backoff,
    default_process_id,
    redact,
)
from collab.storage.contract import Record

log = logging.getLogger(__name__)

#: Channels per SUBSCRIBE command when (re)subscribing many at once.
SUBSCRIBE_CHUNK = 1000


class _Channel:
    """One document's subscription: its listeners, and those still waiting for it."""

    __slots__ = ("listeners", "waiting")

    def __init__(self) -> None:
        self.listeners: list[BusListener] = []
        #: Listeners to tell `resubscribed()` once the channel is active.
        self.waiting: list[BusListener] = []


class RedisBus:
    """The `Bus` of processes sharing one store, over one Redis server (see the module)."""

    def __init__(
        self, url: str, process: str | None = None, settings: RedisBusSettings | None = None
    ) -> None:
        self.url = url
        self.settings = settings or RedisBusSettings()
        self._process = process or default_process_id()
        self.stats = BusStats()
        s = self.settings
        no_retry = Retry(NoBackoff(), 0)
        self._sub_pool = ConnectionPool.from_url(
            url,
            socket_timeout=None,  # reads block; the heartbeat watchdog bounds them
            socket_connect_timeout=s.connect_timeout,
            retry=no_retry,
            protocol=2,
        )
        publish_pool = BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=s.publish_timeout,
            socket_timeout=s.publish_timeout,
            socket_connect_timeout=min(s.publish_timeout, s.connect_timeout),
            retry=no_retry,
        )
        self._throttled = Throttled(s.log_interval)
        self._publisher = Publisher(
            Redis(connection_pool=publish_pool), self._process, s, self.stats, self._throttled
        )
        # Pub/sub channels are global to a Redis server, not per database: the database
        # number goes into the channel names, so `/1` and `/2` do not hear each other.
        db = self._sub_pool.connection_kwargs.get("db", 0)
        self._prefix = f"{s.channel_prefix}{db}:"
        self._control = messages.control_channel(self._prefix)
        self._channels: dict[bytes, _Channel] = {}
        # The subscription connection (None while down), the document channels a SUBSCRIBE
        # was sent for on it, and the replies still expected per channel.
        self._conn: AbstractConnection | None = None
        self._sent: set[bytes] = set()
        self._inflight: dict[bytes, int] = {}
        self._changed = asyncio.Event()  # the wanted subscriptions changed
        # Other processes: when each was last heard from.
        self._seen: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, process: str | None = None, **settings: Any) -> RedisBus:
        """`redis://host:port/n` (also `rediss://`, `unix://`); settings by keyword."""
        known = {f.name for f in fields(RedisBusSettings)}
        if unknown := set(settings) - known:
            raise TypeError(f"unknown RedisBus settings: {sorted(unknown)}")
        return cls(url, process, RedisBusSettings(**settings))

    @property
    def process(self) -> str:
        return self._process

    @property
    def channel_prefix(self) -> str:
        """What every channel name of this bus starts with (prefix setting, db number)."""
        return self._prefix

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for publishing (at most `max_pending_bytes`)."""
        return self._publisher.pending_bytes

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up (publishing may still fail)."""
        return self._conn is not None

    # --- Lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (ConnectionError with the redacted URL if Redis cannot be reached),
        then run the reader, the publisher and the heartbeat in the background."""
        try:
            await self._connect()
        except (RedisError, OSError) as error:
            await self._close_clients()
            raise ConnectionError(f"cannot reach Redis at {redact(self.url)}: {error}") from None
        log.info("bus: process %s on Redis %s", self._process, redact(self.url))
        self._publisher.accepting = True
        for name, run in [
            ("read", self._read_forever),
            ("publish", self._publisher.run),
            ("heartbeat", self._heartbeat_forever),
            ("subscribe", self._sync_forever),
        ]:
            self._tasks.append(asyncio.create_task(run(), name=f"redis-bus-{name}"))

    async def close(self) -> None:
        """Publish a goodbye (the others forget this process at once), then disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            self._publisher.enqueue(self._control, messages.encode(messages.GOODBYE, self._process))
            await self._publisher.drain(2 * self.settings.publish_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._channels.clear()
        await self._drop_connection()
        await self._close_clients()

    async def _close_clients(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._publisher.client.aclose(close_connection_pool=True)
        with contextlib.suppress(RedisError, OSError):
            await self._sub_pool.disconnect()

    # --- Subscribing --------------------------------------------------------------------

    def subscribe(self, name: str, listener: BusListener) -> None:
        channel_id = messages.document_channel(self._prefix, name)
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = _Channel()
            self._changed.set()
        channel.listeners.append(listener)
        if not self._active(channel_id):
            channel.waiting.append(listener)

    def unsubscribe(self, name: str, listener: BusListener) -> None:
        channel_id = messages.document_channel(self._prefix, name)
        channel = self._channels.get(channel_id)
        if channel is None or listener not in channel.listeners:
            return
        channel.listeners.remove(listener)
        if listener in channel.waiting:
            channel.waiting.remove(listener)
        if not channel.listeners:
            del self._channels[channel_id]
            self._changed.set()

    def _active(self, channel_id: bytes) -> bool:
        """Whether messages published on the channel now reach this process."""
        return channel_id in self._sent and not self._inflight.get(channel_id)

    async def _sync_forever(self) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE for what changed (while connected; a new connection
        subscribes to everything itself)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            conn = self._conn
            if conn is None:
                continue
            wanted = {self._control, *self._channels}
            added, removed = wanted - self._sent, self._sent - wanted
            self._mark(added, subscribed=True)
            self._mark(removed, subscribed=False)
            try:
                await self._send(conn, "SUBSCRIBE", added)
                await self._send(conn, "UNSUBSCRIBE", removed)
            except (RedisError, OSError) as error:
                await self._abandon(conn, error)

    def _mark(self, channel_ids: set[bytes], subscribed: bool) -> None:
        """Note commands about to be sent (before any await: the connection may change)."""
        for channel_id in channel_ids:
            if subscribed:
                self._sent.add(channel_id)
            else:
                self._sent.discard(channel_id)
            self._inflight[channel_id] = self._inflight.get(channel_id, 0) + 1

    @staticmethod
    async def _send(conn: AbstractConnection, command: str, channel_ids: set[bytes]) -> None:
        ordered = list(channel_ids)
        for start in range(0, len(ordered), SUBSCRIBE_CHUNK):
            chunk = ordered[start : start + SUBSCRIBE_CHUNK]
            await conn.send_command(command, *chunk, check_health=False)

    # --- Reading ------------------------------------------------------------------------

    async def _connect(self) -> None:
        """A new subscription connection, subscribed to the control and every channel."""
        conn = self._sub_pool.make_connection()
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await conn.connect()
                self._sent, self._inflight = set(), {}
                channel_ids = {self._control, *self._channels}
                self._mark(channel_ids, subscribed=True)
                await self._send(conn, "SUBSCRIBE", channel_ids)
        except BaseException:
            self._sent, self._inflight = set(), {}
            await conn.disconnect(nowait=True)
            raise
        self._conn = conn
        self.stats.connections += 1
        now = time.monotonic()
        self._seen = dict.fromkeys(self._seen, now)  # we could not hear them while down
        self._changed.set()

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            conn = self._conn
            if conn is None:
                try:
                    await self._connect()
                except (RedisError, OSError) as error:
                    failures += 1
                    self._throttled.warning(
                        "connect", "bus: cannot reach Redis at %s (%s)", redact(self.url), error
                    )
                    await asyncio.sleep(backoff(self.settings, failures))
                    continue
                if failures:
                    log.info("bus: reconnected to Redis after %d attempts", failures)
                failures = 0
                continue
            try:
                await self._read(conn)
            except (RedisError, OSError) as error:
                self._throttled.warning("lost", "bus: lost the Redis subscription (%s)", error)
            except Exception:
                log.exception("bus: unexpected error reading from Redis")
            await self._abandon(conn)

    async def _read(self, conn: AbstractConnection) -> None:
        silent_for = 3 * self.settings.heartbeat_interval
        while True:
            try:
                async with asyncio.timeout(silent_for):
                    response = await conn.read_response()
            except TimeoutError:
                raise ConnectionError(f"no answer from Redis for {silent_for:g} s") from None
            if isinstance(response, list) and len(response) >= 2:
                self._handle(response)

    def _handle(self, response: list[Any]) -> None:
        kind, channel_id = response[0], response[1]
        if kind == b"message":
            self._on_message(channel_id, response[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            left = self._inflight.get(channel_id, 1) - 1
            if left > 0:
                self._inflight[channel_id] = left
            else:
                self._inflight.pop(channel_id, None)
            channel = self._channels.get(channel_id)
            if channel is not None and channel.waiting and self._active(channel_id):
                waiting, channel.waiting = channel.waiting, []
                for listener in waiting:
                    self._call(listener.resubscribed)

    def _on_message(self, channel_id: bytes, data: bytes) -> None:
        try:
            message = messages.decode(data)
        except ValueError as error:
            self._throttled.warning("bad", "bus: ignoring a message: %s", error)
            return
        if message.process == self._process:
            return
        self.stats.received += 1
        if channel_id == self._control:
            if message.kind == messages.GOODBYE:
                self._forget(message.process)
            else:
                self._seen[message.process] = time.monotonic()
            return
        self._seen[message.process] = time.monotonic()
        channel = self._channels.get(channel_id)
        if channel is None:
            return
        try:
            deliver = self._delivery(message)
        except ValueError as error:
            self._throttled.warning("bad", "bus: ignoring a message: %s", error)
            return
        for listener in list(channel.listeners):
            self._call(deliver, listener)

    def _delivery(self, message: messages.Message) -> Callable[[BusListener], None]:
        if message.kind == messages.RECORDS:
            records = messages.decode_records_payload(message.payload)
            return lambda listener: listener.records(list(records))
        if message.kind == messages.COMMITTED:
            rev = messages.decode_committed_payload(message.payload)
            return lambda listener: listener.committed(rev)
        if message.kind == messages.AWARENESS:
            process, payload = message.process, message.payload
            return lambda listener: listener.awareness(process, payload)
        if message.kind == messages.DELETED:
            reason = message.payload.decode("utf-8", "replace")
            return lambda listener: listener.deleted(reason)
        raise ValueError(f"message kind {message.kind} on a document channel")

    def _call(self, function: Callable[..., None], *args: object) -> None:
        """Run a listener's callback; its failure must not stop the others' delivery."""
        try:
            function(*args)
        except Exception:
            self._throttled.warning("listener", "bus: a listener failed", exc_info=True)

    async def _abandon(self, conn: AbstractConnection, error: BaseException | None = None) -> None:
        """Throw the subscription connection away; the reader makes a new one."""
        if conn is not self._conn:
            return
        if error is not None:
            self._throttled.warning("lost", "bus: lost the Redis subscription (%s)", error)
        for channel in self._channels.values():
            channel.waiting = list(channel.listeners)
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._sent, self._inflight = set(), {}
        if conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await conn.disconnect(nowait=True)

    # --- Liveness -----------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        beat = messages.encode(messages.HEARTBEAT, self._process)
        while True:
            self._publisher.enqueue(self._control, beat)
            conn = self._conn
            if conn is not None:
                try:  # keeps the subscription talking, for the reader's watchdog
                    await conn.send_command("PING", check_health=False)
                except (RedisError, OSError) as error:
                    await self._abandon(conn, error)
                self._expire()
            await asyncio.sleep(self.settings.heartbeat_interval)

    def _expire(self) -> None:
        deadline = time.monotonic() - self.settings.process_timeout
        for process in [p for p, seen in self._seen.items() if seen < deadline]:
            log.info(
                "bus: process %s not heard from for %g s", process, self.settings.process_timeout
            )
            self._forget(process)

    def _forget(self, process: str) -> None:
        if self._seen.pop(process, None) is None:
            return
        for channel in list(self._channels.values()):
            for listener in list(channel.listeners):
                self._call(listener.process_gone, process)

    # --- Publishing ---------------------------------------------------------------------

    async def publish_records(self, name: str, records: Sequence[Record]) -> None:
        if records:
            data = messages.records_message(self._process, records, self.settings.max_message_bytes)
            channel_id = messages.document_channel(self._prefix, name)
            self._publisher.enqueue(channel_id, data, records[-1].rev)

    async def publish_awareness(self, name: str, message: bytes) -> None:
        data = messages.encode(messages.AWARENESS, self._process, message)
        self._publisher.enqueue(messages.document_channel(self._prefix, name), data)

    async def publish_deleted(self, name: str, reason: str) -> None:
        data = messages.encode(messages.DELETED, self._process, reason.encode())
        self._publisher.enqueue(messages.document_channel(self._prefix, name), data)
