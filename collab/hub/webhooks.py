"""Signed webhooks: other services hear that a document was created, changed or deleted.

Each event is a JSON POST to every `--webhook` URL::

    {"id": "…", "event": "document.changed", "document": "notes", "rev": 42,
     "since_rev": 37, "revisions": 6, "time": 1796663146.58, "users": ["ada", "bob"]}

`rev` is the document's revision after the changes the call reports, `since_rev` the first
of them, `revisions` how many they are (fewer than ``rev - since_rev + 1`` when other
processes made some of those in between: they report their own), `time` when the last was
made, `users` who made them (the authenticated users; anonymous edits add none).
Headers: ``Collab-Webhook-Id`` (the idempotency key, the same on every retry of one
event), ``Collab-Webhook-Timestamp`` (unix seconds of this attempt) and
``Collab-Webhook-Signature: v1=HEX``, the HMAC-SHA256 with `--webhook-secret` of
``TIMESTAMP + "." + BODY`` (`signature`). A receiver recomputes it, compares in constant
time and refuses a timestamp more than a few minutes old (replays).

- "changed" is debounced per document: the first change is reported at once, later ones at
  most once a second, the last call always naming the latest revision.
- Delivery is at least once: any answer but 2xx, a timeout or a refused connection is
  retried with exponential backoff (0.5 s doubling to 60 s, with jitter) for
  `--webhook-retry-seconds`, then dropped. Deliveries wait in one bounded queue
  (`--webhook-queue`); when it is full the new one is dropped. Drops are counted in
  `collab_webhook_dropped_total{reason}` and logged (a few lines a minute at most).
- Nothing here is awaited by editing: `changed` and `deleted` only queue.
- Several processes: an event is raised by the process that committed its revisions
  (each revision is committed by exactly one), so no event is sent once per process; a
  document edited on two processes in the same second may get a call from each, each
  naming its own revisions: receivers keep the highest `rev`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from collab.access.limits import LogThrottle
from collab.storage.contract import Record

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 1.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 60.0
REQUEST_TIMEOUT = 10.0
SENDERS = 4  # deliveries in flight at once: a slow receiver holds at most these
SHUTDOWN_SECONDS = 5.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Collab-Webhook-Signature`` header's value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass
class _Pending:
    """Changes of one document not reported yet."""

    since_rev: int
    rev: int = 0
    time: float = 0.0
    users: set[str] = field(default_factory=set)
    count: int = 0  # revisions made here among since_rev..rev

    def add(self, records: Sequence[Record]) -> None:
        self.count += len(records)
        for record in records:
            self.rev, self.time = max(self.rev, record.rev), max(self.time, record.time)
            if record.user:
                self.users.add(record.user)


@dataclass
class _Delivery:
    url: str
    event_id: str
    body: bytes
    started: float  # monotonic: retried until started + retry_seconds
    attempts: int = 0


class Webhooks:
    """The webhooks of one hub: events in (`changed`, `deleted`), signed POSTs out."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        *,
        registry: CollectorRegistry | None = None,
        queue_size: int = 10_000,
        retry_seconds: float = 600.0,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.urls = list(urls)
        self.secret = secret
        self.queue_size = queue_size
        self.retry_seconds = retry_seconds
        self.debounce = debounce
        self._pending: dict[str, _Pending] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._last_call: dict[str, float] = {}  # document -> monotonic time of its last call
        self._ready: deque[_Delivery] = deque()
        self._held = 0  # deliveries waiting for a retry or being sent
        self._wake = asyncio.Event()
        self._idle: asyncio.Event | None = None  # set when nothing is left (at shutdown)
        self._senders: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._log = LogThrottle(20.0)
        self.sent = Counter("collab_webhook_calls", "webhook calls answered 2xx", registry=registry)
        self.failed = Counter(
            "collab_webhook_failures", "webhook attempts that failed (retried)", registry=registry
        )
        self.dropped = Counter(
            "collab_webhook_dropped",
            "webhook calls given up: queue-full, gave-up (retried too long), shutdown",
            ["reason"],
            registry=registry,
        )

    # ------------------------------------------------------------------ events in

    def changed(self, name: str, records: Sequence[Record]) -> None:
        """Revisions of `name` are committed (by this process)."""
        if not records:
            return
        if records[0].rev == 1:  # a new document: reported at once, not debounced
            created = _Pending(1)
            created.add(records)
            self._event("document.created", name, created)
            self._last_call[name] = time.monotonic()
            return
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = _Pending(records[0].rev)
        pending.add(records)
        if name not in self._timers:
            wait = self._last_call.get(name, -1e9) + self.debounce - time.monotonic()
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(max(0.0, wait), self._flush, name)

    def deleted(self, name: str, rev: int) -> None:
        """Document `name` was deleted at revision `rev` (what it last had)."""
        self._flush(name)
        self._last_call.pop(name, None)
        gone = _Pending(rev, rev, time.time())
        self._event("document.deleted", name, gone)

    def _flush(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        pending = self._pending.pop(name, None)
        if pending is None:
            return
        self._event("document.changed", name, pending)
        now = self._last_call[name] = time.monotonic()
        if len(self._last_call) > 4 * len(self._pending) + 1024:  # forget quiet documents
            quiet = [n for n, t in self._last_call.items() if now - t > self.debounce]
            for key in quiet:
                del self._last_call[key]

    def _event(self, kind: str, name: str, pending: _Pending) -> None:
        key = f"{kind}\0{name}\0{pending.since_rev}\0{pending.rev}".encode()
        event_id = hashlib.sha256(key).hexdigest()[:32]
        body = json.dumps(
            {
                "id": event_id,
                "event": kind,
                "document": name,
                "rev": pending.rev,
                "since_rev": pending.since_rev,
                "revisions": pending.count,
                "time": pending.time,
                "users": sorted(pending.users),
            },
            ensure_ascii=False,
        ).encode()
        for url in self.urls:
            if len(self._ready) + self._held >= self.queue_size:
                self._drop("queue-full", url, event_id)
                continue
            self._ready.append(_Delivery(url, event_id, body, time.monotonic()))
        self._start()
        self._wake.set()

    # ------------------------------------------------------------------ deliveries out

    def _start(self) -> None:
        if self._senders:
            return
        import httpx  # only servers with webhooks load it

        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False)
        self._senders = [asyncio.create_task(self._send_loop()) for _ in range(SENDERS)]

    async def _send_loop(self) -> None:
        while True:
            while not self._ready:
                self._wake.clear()
                await self._wake.wait()
            delivery = self._ready.popleft()
            self._held += 1
            if await self._post(delivery):
                self._release()
                self.sent.inc()
            else:
                self.failed.inc()
                self._retry(delivery)

    async def _post(self, delivery: _Delivery) -> bool:
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "collab-webhook-id": delivery.event_id,
            "collab-webhook-timestamp": stamp,
            "collab-webhook-signature": signature(self.secret, stamp, delivery.body),
        }
        delivery.attempts += 1
        try:
            answer = await self._client.post(delivery.url, content=delivery.body, headers=headers)
        except Exception as error:  # refused, timed out, reset: retried
            log.debug("webhook %s: %s: %r", delivery.url, delivery.event_id, error)
            return False
        return 200 <= answer.status_code < 300

    def _retry(self, delivery: _Delivery) -> None:
        delay = min(LONGEST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (delivery.attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        if time.monotonic() + delay - delivery.started > self.retry_seconds:
            self._release()
            self._drop("gave-up", delivery.url, delivery.event_id)
            return
        asyncio.get_running_loop().call_later(delay, self._requeue, delivery)

    def _requeue(self, delivery: _Delivery) -> None:
        self._held -= 1
        self._ready.append(delivery)
        self._wake.set()

    def _release(self) -> None:
        """A delivery is done (sent or dropped)."""
        self._held -= 1
        if self._idle is not None and not self._ready and not self._held:
            self._idle.set()

    def _drop(self, reason: str, url: str, event_id: str) -> None:
        self.dropped.labels(reason).inc()
        held = self._log.should_log()
        if held is not None:
            more = f" ({held} more drops not logged)" if held else ""
            where = url.split("?", 1)[0]  # a query may hold a receiver's secret
            log.warning("webhook to %s dropped (%s): event %s%s", where, reason, event_id, more)

    async def close(self) -> None:
        """Report what is pending, give deliveries a few seconds, drop the rest (counted)."""
        for name in list(self._timers):
            self._flush(name)
        if self._senders and (self._ready or self._held):
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), SHUTDOWN_SECONDS)
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        lost = len(self._ready) + self._held
        if lost:
            self.dropped.labels("shutdown").inc(lost)
            log.warning("%d webhook call(s) not delivered at shutdown", lost)
        if self._client is not None:
            await self._client.aclose()


def webhooks_for(settings: Any, metrics: Any) -> Webhooks | None:
    """The webhooks `--webhook` asks for (None: none); refuses them without a secret."""
    urls = [url.strip() for url in settings.webhooks.split(",") if url.strip()]
    if not urls:
        return None
    if not settings.webhook_secret:
        raise ValueError("--webhook needs --webhook-secret (COLLAB_WEBHOOK_SECRET) to sign calls")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--webhook must be an http:// or https:// URL, not {url!r}")
    return Webhooks(
        urls,
        settings.webhook_secret,
        registry=metrics.registry,
        queue_size=settings.webhook_queue,
        retry_seconds=settings.webhook_retry_seconds,
    )
