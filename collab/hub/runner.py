"""The runner of one document: drives its session, commits before sending, unloads when idle.

Everything here is asyncio plumbing around the sans-I/O session. Events (a peer joined, a
message, a peer left, a server edit) wait in an inbox; the pump takes what waits as one
batch (up to `batch_work` seconds of work, then other documents get their turn): it
commits the batch's records (one fsync, or one transaction in a shared store), then
sends, then closes. What arrives while a commit is in flight waits
for the next batch, so the store's commit sets the pace (group commit), not a timer: a
lone edit goes out at once, a busy document sends one merged message per peer per commit.

With a `SharedStore` (several processes on one PostgreSQL), a batch is fed to the session
inside the store's commit of the document, after the revisions other processes committed
since: revision numbers are then one global order. Revisions other processes publish on
the bus are shown at once, and a gap in them is filled from the store.

Other modules use the narrow API below (connect, receive, disconnect, `changes`, the
read-only properties) and never reach into the session or the channels."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from collab.access.limits import ThrottledLog
from collab.hub.accounting import LogSize
from collab.hub.channel import Connection, PeerChannel
from collab.hub.compactor import Compactor
from collab.hub.failures import FATAL, Supervisor, settle_edits
from collab.hub.lifecycle import RESTORED
from collab.hub.server_changes import ServerChanges
from collab.hub.ticks import TickTimer
from collab.session import Output, PeerId, Session
from collab.storage.contract import Record, SharedStore
from collab.wire import CloseCode

if TYPE_CHECKING:
    from collab.hub.context import DocumentContext

log = logging.getLogger(__name__)
STORE_FAILURE_LOG_INTERVAL = 10.0  # seconds between two tracebacks of failing commits
store_failures = ThrottledLog(log, STORE_FAILURE_LOG_INTERVAL)

RESYNCS_BEFORE_DROP = 3

Event = Callable[[Session], None]
Queued = tuple[Event, PeerId | None]  # an event, and the peer it comes from


class DocumentRunner:
    """Drives one session: events in, then commit → send → close, in batches."""

    def __init__(self, context: DocumentContext, session: Session, log_size: LogSize) -> None:
        self.context = context
        self.name = session.name
        self.unloading = False
        self.unloaded = asyncio.Event()
        self._session = session
        self._channels: dict[PeerId, PeerChannel] = {}
        self._compactor = Compactor(
            self.name, context.store, session, log_size, context.settings, context.metrics
        )
        self._inbox: deque[Queued] = deque()
        self._edits: list[asyncio.Future[int]] = []  # server edits not yet committed
        self._published: list[Record] = []  # revisions other processes told us about
        self._catch_up = context.bus is not None  # fetch from the store what we may have missed
        # A runtime-checkable isinstance walks the protocol's members: once, not per batch.
        self._shared = isinstance(context.store, SharedStore)
        self._wake = asyncio.Event()
        self._delivering = asyncio.Lock()  # batches go out one at a time, in order
        self._idle_timer: asyncio.TimerHandle | None = None
        self._dropping: asyncio.Task[bytes] | None = None  # leaving memory unsaved (`deleted`)
        self._supervisor = Supervisor(context, self.name, self.close_peer, self._fail)
        self.changes = ServerChanges(
            session,
            lambda done: self._edits.append(done),
            self._enqueue,
            self.flush,
            context.recorder,
        )
        self._pump_task = asyncio.create_task(self._pump(), name=f"doc-{self.name[:40]}")
        self._pump_task.add_done_callback(self._supervisor.pump_ended)
        self._ticks = TickTimer(session, self.kick, lambda: bool(self._channels))
        self._schedule_idle_unload()

    # ------------------------------------------------------------------ reading

    @property
    def rev(self) -> int:
        return self._session.rev

    @property
    def compacting(self) -> bool:
        """Whether a snapshot is being written beside the batches."""
        return self._compactor.running is not None

    @property
    def tick_scheduled(self) -> bool:
        """Whether a timer will wake the session (only while a text client needs one)."""
        return self._ticks.timer is not None

    @property
    def text(self) -> str:
        return self._session.mirror

    @property
    def state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self._session.state

    @property
    def generation(self) -> str:
        """The document's generation (changes when it is deleted and made again)."""
        return self._session.generation.id

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
        peer_id = next(self.context.peer_ids)
        settings = self.context.settings
        self._channels[peer_id] = PeerChannel(
            peer_id,
            connection,
            settings.send_queue_bytes,
            self._overflowed,
            settings.close_timeout,
            self._supervisor.send_failed,
        )

        def joined(session: Session) -> None:
            if self.context.recorder is not None:
                self.context.recorder.connect(session, peer_id, kind, user, readonly)
            if kind == "text":
                session.connect_text(peer_id, user, readonly)
            else:  # "yjs", or "hocuspocus": the same protocol, plus SyncStatus
                session.connect_yjs(peer_id, user, readonly, sync_status=kind == "hocuspocus")

        self._cancel_idle_unload()
        self._enqueue(joined, peer_id)
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
        def received(session: Session) -> None:
            if self.context.recorder is not None:
                self.context.recorder(self.name, peer_id, data)
            session.receive(peer_id, data)

        self._enqueue(received, peer_id)

    def disconnect(self, peer_id: PeerId) -> None:
        channel = self._channels.pop(peer_id, None)
        if channel is not None:
            channel.abandon()

        def left(session: Session) -> None:
            if self.context.recorder is not None:
                self.context.recorder.disconnect(self.name, peer_id)
            session.disconnect(peer_id)

        self._enqueue(left)
        if not self._channels:
            self._schedule_idle_unload()

    async def flush(self) -> None:
        """Return once every event so far is applied, committed and sent."""
        while await self._deliver_pending():
            pass
        self._ticks.schedule()

    def kick(self) -> None:
        """Something happened: the pump takes the session's output soon."""
        self._wake.set()

    def _enqueue(self, event: Event, peer_id: PeerId | None = None) -> None:
        self._inbox.append((event, peer_id))
        self._wake.set()

    def _overflowed(self, channel: PeerChannel) -> None:
        """A peer's queue overflowed. One that reads, only slower than the document
        changes, is resynced (the whole state replaces what it missed). One whose socket
        does not drain at all (bytes wait in its write buffer) is closed at once: a resync
        (a copy of the whole document) could not be sent either, and on reconnect its sync
        step 1 fetches only what it lacks."""
        stalled = channel.connection.buffered() > 0
        log.warning(
            "%s: peer %s is too slow, %d overflows%s",
            self.name,
            channel.peer_id,
            channel.overflows,
            ", its socket does not drain" if stalled else "",
        )
        if (
            stalled
            or channel.overflows > RESYNCS_BEFORE_DROP
            or not self._session.resync(channel.peer_id)
        ):
            channel.close(CloseCode.TOO_SLOW, "too slow: send queue overflowed")
        if self.context.metrics is not None:  # resynced unless it was just closed
            self.context.metrics.overflowed(resynced=not channel.closed)
        self.kick()

    # ------------------------------------------------------------------ the bus

    def records(self, records: Sequence[Record]) -> None:
        """Revisions another process committed (BusListener)."""
        self._published.extend(records)
        self.kick()

    def committed(self, rev: int) -> None:
        """Revisions up to `rev` exist in the store (too big for the bus): fetch them."""
        if rev > self._session.rev:
            self._catch_up = True
            self.kick()

    def awareness(self, process: str, message: bytes) -> None:
        self._enqueue(lambda session: session.receive_remote_awareness(process, message))

    def process_gone(self, process: str) -> None:
        self._enqueue(lambda session: session.forget_process(process))

    def resubscribed(self) -> None:
        """Back on the bus: catch up, and tell the others again who is here (they may
        have timed this process out meanwhile)."""
        self._catch_up = True
        self._enqueue(lambda session: session.share_local_awareness())

    # ------------------------------------------------------------------ the pump

    async def _pump(self) -> None:
        """Deliver batch after batch while events arrive. An optional batch window keeps
        a minimum time between batches (0, the default: the commit sets the pace)."""
        loop = asyncio.get_running_loop()
        window = self.context.settings.batch_window
        last = -window
        while True:
            await self._wake.wait()
            wait = last + window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            await self._deliver_pending()
            self._ticks.schedule()
            last = loop.time()
            if self._inbox:  # the batch's work was spent: the rest after others' turn
                self._wake.set()
                await asyncio.sleep(0)

    async def _deliver_pending(self) -> bool:
        """Apply what waits (published revisions, then events), commit, send; False when
        there was nothing to do. A failure no peer's message explains restarts the document."""
        async with self._delivering:
            if self.unloaded.is_set():
                return False
            try:
                return await self._deliver_batch()
            except FATAL:
                raise
            except BaseException as error:  # pycrdt panics are BaseExceptions
                self._supervisor.restart(error)
                return False

    async def _deliver_batch(self) -> bool:
        """One batch (see `_deliver_pending`). A snapshot due holds exactly the records this
        batch committed; an update that waits whole for pycrdt is integrated once sent."""
        if not await self._apply_published():
            return False
        if not self._inbox:
            return await self._send_without_commit()
        count = len(self._edits)  # this batch's (until settled, `_fail` would settle them)
        output = await self._commit_batch()
        edits, self._edits = self._edits[:count], self._edits[count:]
        if output is None:
            settle_edits(edits, RuntimeError("the document could not be saved"))
            return False
        settle_edits(edits, self._session.rev)
        snapshot = self._compactor.committed(output.records, self.context.settings)
        await self._send(output)
        await asyncio.sleep(0)  # the apply left for after the send: a loop turn of its own
        self._session.document.settle()
        if snapshot is not None:
            self._compactor.start(snapshot)
        return True

    async def _apply_published(self) -> bool:
        """Show the revisions other processes committed; fetch from the store what the
        bus lost. False when the session had to be dropped."""
        published, self._published = self._published, []
        session = self._session
        try:
            for record in published:
                if record.rev == session.rev + 1:
                    session.apply_committed(record)
                elif record.rev > session.rev:
                    self._catch_up = True
                    break
            if self._catch_up and self._shared:
                self._catch_up = False
                for record in await self.context.store.records_after(self.name, session.rev):
                    session.apply_committed(record)
        except Exception:
            store_failures.exception("%s: could not catch up with the store", self.name)
            self._fail("storage failure: reconnect")
            return False
        return True

    async def _send_without_commit(self) -> bool:
        output = self._session.take_output()
        if not output:
            return False
        await self._send(output)
        return True

    async def _commit_batch(self) -> Output | None:
        """Feed the inbox to the session inside the store's commit; None on failure."""
        session = self._session
        if not self._shared:  # only this process writes: no transaction to open
            return await self._commit_exclusive()
        try:
            store = self.context.store
            assert isinstance(store, SharedStore)
            async with store.commit(self.name) as commit:
                for record in await commit.records_after(session.rev):
                    session.apply_committed(record)
                self._supervisor.apply_inbox(self._inbox, session, self._work())
                output = session.take_output()
                if output.records:
                    await commit.append(output.records)
        except Exception:
            store_failures.exception("%s: could not commit", self.name)
            self._fail("storage failure: reconnect")
            return None
        return output

    async def _commit_exclusive(self) -> Output | None:
        """The batch, then one append of its records (if any) to a store only we write."""
        session = self._session
        self._supervisor.apply_inbox(self._inbox, session, self._work())
        try:
            output = session.take_output()
            if output.records:
                await self.context.store.append(self.name, output.records)
        except Exception:
            store_failures.exception("%s: could not commit", self.name)
            self._fail("storage failure: reconnect")
            return None
        return output

    def _work(self) -> float | None:
        """The batch's work budget; none while server edits wait (each is settled with
        the batch its event was queued before)."""
        return None if self._edits else self.context.settings.batch_work

    async def _send(self, output: Output) -> None:
        """Send, then close, then tell the others (hook, bus): the records are committed."""
        for peer_id, data in output.messages:
            channel = self._channels.get(peer_id)
            if channel is not None:
                try:
                    channel.send(data)
                except Exception as error:  # a message no encoder takes: a bug, one peer
                    self._supervisor.peer_failed(peer_id, "sending", error)
        metrics = self.context.metrics
        for peer_id, code, reason in output.closes:
            if code == CloseCode.INTERNAL and metrics is not None:  # the session's own guard
                metrics.peer_errors.labels("handling").inc()
            channel = self._channels.get(peer_id)
            if channel is not None:
                channel.close(code, reason)
        self.context.changed(self.name, output)
        bus = self.context.bus
        if bus is not None:
            if output.records:
                await bus.publish_records(self.name, output.records)
            for message in output.awareness:
                await bus.publish_awareness(self.name, message)

    def _fail(self, reason: str) -> None:
        """The store refused a commit: nobody may see state that is not on disk.

        Every peer is closed (their clients keep their edits and send them again on
        reconnect) and the session is dropped, so the next peer loads what is on disk.
        """
        for channel in list(self._channels.values()):
            channel.close(CloseCode.INTERNAL, reason)
        self._inbox.clear()
        edits, self._edits = self._edits, []
        settle_edits(edits, RuntimeError("the document could not be saved"))
        self.context.forget(self)

    async def compact(self) -> bool:
        """Deliver what is pending, then write a snapshot; the log starts again.

        True on success (or when there is nothing to compact).
        """
        await self.flush()
        while True:
            await self._compactor.wait()  # one at a time: the running one first
            async with self._delivering:
                if self._compactor.running is not None:  # a batch started one meanwhile
                    continue
                if self.unloaded.is_set():
                    return False
                return await self._compactor.write(self._compactor.snapshot())

    # ------------------------------------------------------------------ unloading

    def _schedule_idle_unload(self) -> None:
        self._cancel_idle_unload()
        delay = self.context.settings.idle_unload_seconds
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
            if not self.unloaded.is_set():  # else it failed meanwhile and left the hub
                self.unloading = False
                self._schedule_idle_unload()
            return False
        self.context.forget(self)
        await self.context.store.release(self.name)
        return True

    def deleted(self, reason: str) -> None:
        """Another process deleted or restored the document (BusListener): its peers
        are closed, and it leaves memory unsaved."""
        code = CloseCode.RESTORED if reason == RESTORED else CloseCode.DELETED
        self._dropping = asyncio.create_task(self.drop(code, reason))  # kept referenced

    async def drop(self, code: int, reason: str) -> bytes:
        """Leave memory without saving (the document is being deleted): peers are closed
        with `code`, events not yet committed are dropped. Returns the state vector of
        what was committed."""
        async with self._delivering:
            self._inbox.clear()
            edits, self._edits = self._edits, []
            settle_edits(edits, RuntimeError(reason))
            for channel in list(self._channels.values()):
                channel.close(code, reason)
            self.context.forget(self)
            return self._session.document.encoded_state_vector()

    def stop(self) -> None:
        """Leave the hub: the pump stops and waiters for the unload go on."""
        self._cancel_idle_unload()
        self.unloading = True
        self.unloaded.set()
        self._pump_task.cancel()
        self._ticks.cancel()
