"""The runner of one document: drives its session, writes before sending, unloads when idle.

Everything here is asyncio plumbing around the sans-I/O session: events go in, and each
batch of output goes out as persist → send → close. The runner also keeps the storage
accounting (how much log there is since the last snapshot) and decides when to compact.

Other modules use the narrow API below (connect, receive, disconnect, edit, the read-only
properties); none of them reaches into the session or the channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab import textops
from collab.config import Settings
from collab.hub.channel import Connection, PeerChannel
from collab.session import Output, PeerId, Session
from collab.storage.contract import Record, Snapshot
from collab.wire import CloseCode

if TYPE_CHECKING:
    from collab.hub.registry import Hub

log = logging.getLogger(__name__)

RESYNCS_BEFORE_DROP = 3


@dataclass
class LogSize:
    """The log since the last snapshot: when it grows past a limit, a snapshot is due."""

    records: int = 0
    bytes: int = 0

    def add(self, records: Sequence[Record]) -> None:
        self.records += len(records)
        self.bytes += sum(len(record.update) for record in records)

    def due(self, settings: Settings) -> bool:
        return self.records >= settings.compact_log_records or (
            self.bytes >= settings.compact_log_bytes
        )


class DocumentRunner:
    """Drives one session: events in, then persist → send → close, in batches."""

    def __init__(self, hub: Hub, session: Session, log_size: LogSize) -> None:
        self.hub = hub
        self.name = session.name
        self.unloading = False
        self.unloaded = asyncio.Event()
        self._session = session
        self._channels: dict[PeerId, PeerChannel] = {}
        self._log_size = log_size
        self._snapshot_rev = session.document.base_rev
        self._wake = asyncio.Event()
        self._delivering = asyncio.Lock()  # batches go out one at a time, in order
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pump_task = asyncio.create_task(self._pump(), name=f"doc-{self.name[:40]}")
        self._schedule_idle_unload()

    # ------------------------------------------------------------------ reading

    @property
    def rev(self) -> int:
        return self._session.rev

    @property
    def text(self) -> str:
        return self._session.mirror

    @property
    def state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self._session.state

    @property
    def size_bytes(self) -> int:
        return self._session.document.state_bytes

    @property
    def peer_count(self) -> int:
        return len(self._channels)

    # ------------------------------------------------------------------ peers

    def connect(
        self, connection: Connection, kind: str, user: str | None, readonly: bool
    ) -> PeerId:
        peer_id = next(self.hub.peer_ids)
        self._channels[peer_id] = PeerChannel(
            peer_id, connection, self.hub.settings.send_queue_bytes, self._overflowed
        )
        if self.hub.recorder is not None:
            self.hub.recorder.connect(self._session, peer_id, kind, user, readonly)
        if kind == "yjs":
            self._session.connect_yjs(peer_id, user, readonly)
        else:
            self._session.connect_text(peer_id, user, readonly)
        self._cancel_idle_unload()
        self.kick()
        return peer_id

    def is_open(self, peer_id: PeerId) -> bool:
        """False once the peer is being closed (or was dropped with the session)."""
        channel = self._channels.get(peer_id)
        return channel is not None and not channel.closed

    async def wait_closed(self, peer_id: PeerId, timeout: float) -> None:
        """Wait (at most `timeout`) until a closing peer's close frame has gone out."""
        channel = self._channels.get(peer_id)
        if channel is not None:
            await channel.wait_closed(timeout)

    def queued_bytes(self, peer_id: PeerId) -> int | None:
        """Bytes waiting to be sent to a peer; None once it is closed or gone."""
        channel = self._channels.get(peer_id)
        return None if channel is None or channel.closed else channel.queued_bytes

    def close_peer(self, peer_id: PeerId, code: int, reason: str) -> None:
        channel = self._channels.get(peer_id)
        if channel is not None:
            channel.close(code, reason)

    def receive(self, peer_id: PeerId, data: bytes | str) -> None:
        if self.hub.recorder is not None:
            self.hub.recorder(self.name, peer_id, data)
        self._session.receive(peer_id, data)
        self.kick()

    def disconnect(self, peer_id: PeerId) -> None:
        channel = self._channels.pop(peer_id, None)
        if channel is not None:
            channel.abandon()
        if self.hub.recorder is not None:
            self.hub.recorder.disconnect(self.name, peer_id)
        self._session.disconnect(peer_id)
        self.kick()
        if not self._channels:
            self._schedule_idle_unload()

    async def edit(self, op: list[int | str], origin: str, user: str | None) -> int:
        """A change made by server code: applied, written and sent like any peer's.

        Returns the document's revision once the change is on disk and sent.
        """
        self._session.edit_text(op, origin=origin, user=user)  # raises if it does not fit
        if self.hub.recorder is not None:
            self.hub.recorder.edit(self.name, op, origin, user)
        self.kick()
        await self.flush()
        return self._session.rev

    async def set_text(self, text: str, origin: str, user: str | None) -> int:
        """Make the text equal to `text` with the smallest single change (see `edit`)."""
        return await self.edit(textops.diff(self._session.mirror, text), origin, user)

    async def flush(self) -> None:
        """Return once everything the session produced so far is on disk and sent."""
        while await self._deliver_pending():
            pass

    def kick(self) -> None:
        """Something happened: the pump takes the session's output soon."""
        self._wake.set()

    def _overflowed(self, channel: PeerChannel) -> None:
        log.warning(
            "%s: peer %s is too slow, %d overflows", self.name, channel.peer_id, channel.overflows
        )
        if channel.overflows > RESYNCS_BEFORE_DROP or not self._session.resync(channel.peer_id):
            channel.close(CloseCode.TOO_SLOW, "too slow: send queue overflowed")
        if self.hub.metrics is not None:  # resynced unless it was just closed
            self.hub.metrics.overflowed(resynced=not channel.closed)
        self.kick()

    # ------------------------------------------------------------------ the pump

    async def _pump(self) -> None:
        """Deliver the session's output: at once after a quiet spell, then at most once
        per batch window, so that what arrives together goes out together (one merged
        message per peer, one fsync) instead of one by one."""
        loop = asyncio.get_running_loop()
        window = self.hub.settings.batch_window
        last = -window
        while True:
            await self._wake.wait()
            wait = last + window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            await self._deliver_pending()
            last = loop.time()

    async def _deliver_pending(self) -> bool:
        """Take the session's output and deliver it; False when there was none.

        When compaction is due, the snapshot is taken at the same instant as the output:
        the state then holds exactly the records written by this delivery, no more.
        """
        async with self._delivering:
            output = self._session.take_output()
            if not output:
                return False
            self._log_size.add(output.records)
            snapshot = self._snapshot() if self._log_size.due(self.hub.settings) else None
            if await self._deliver(output) and snapshot is not None:
                await self._write_snapshot(*snapshot)
            return True

    def _snapshot(self) -> tuple[bytes, int, bytes]:
        session = self._session
        return session.state, session.rev, session.snapshot_meta

    async def _deliver(self, output: Output) -> bool:
        """Persist, then send, then close. False when the store refused the records."""
        if output.records:
            try:
                await self.hub.store.append(self.name, output.records)
            except Exception:
                log.exception("%s: could not write %d records", self.name, len(output.records))
                self._fail("storage failure: reconnect")
                return False
        for peer_id, data in output.messages:
            channel = self._channels.get(peer_id)
            if channel is not None:
                channel.send(data)
        for peer_id, code, reason in output.closes:
            channel = self._channels.get(peer_id)
            if channel is not None:
                channel.close(code, reason)
        self.hub.changed(self.name, output)
        return True

    def _fail(self, reason: str) -> None:
        """The store refused a write: nobody may see state that is not on disk.

        Every peer is closed (their clients keep their edits and send them again on
        reconnect) and the session is dropped, so the next peer loads what is on disk.
        """
        for channel in list(self._channels.values()):
            channel.close(CloseCode.INTERNAL, reason)
        self.hub.forget(self)

    async def compact(self) -> bool:
        """Deliver what is pending, then write a snapshot; the log starts again.

        True on success (or when there is nothing to compact).
        """
        async with self._delivering:
            output = self._session.take_output()
            self._log_size.add(output.records)
            snapshot = self._snapshot()
            if output and not await self._deliver(output):
                return False
            return await self._write_snapshot(*snapshot)

    async def _write_snapshot(self, state: bytes, rev: int, meta: bytes) -> bool:
        if rev == self._snapshot_rev:
            return True
        try:
            await self.hub.store.compact(self.name, Snapshot(rev, state, meta))
        except Exception:
            log.exception("%s: compaction at rev %d failed; the log is kept", self.name, rev)
            return False
        self._snapshot_rev = rev
        self._log_size = LogSize()  # records made since are counted when taken
        self._session.compacted(rev, state)
        return True

    # ------------------------------------------------------------------ unloading

    def _schedule_idle_unload(self) -> None:
        self._cancel_idle_unload()
        delay = self.hub.settings.idle_unload_seconds
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(delay, self._start_idle_unload)

    def _start_idle_unload(self) -> None:
        self._unload_task = asyncio.create_task(self.unload())

    def _cancel_idle_unload(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def unload(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> bool:
        """Save and leave memory. Peers (if any, at shutdown) are closed with `code`.

        A document that cannot be saved stays in memory and the error is logged.
        """
        if self.unloading or (self._channels and not reason):
            return False
        self.unloading = True
        await self.flush()
        channels = list(self._channels.values())
        await asyncio.gather(*(channel.flush_and_close(code, reason) for channel in channels))
        if not await self.compact():
            self.unloading = False
            self._schedule_idle_unload()
            return False
        self.hub.forget(self)
        await self.hub.store.release(self.name)
        return True

    def stop(self) -> None:
        """Leave the hub: the pump stops and waiters for the unload go on."""
        self._cancel_idle_unload()
        self.unloading = True
        self.unloaded.set()
        self._pump_task.cancel()
