"""Sessions by name, and the loop that drives each one.

The hub loads a document once however many peers ask for it at the same moment, drives
its session (write the records, then send the messages), and unloads it after it has been
idle for a while. Everything here is asyncio plumbing; the decisions live in the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from collab.config import Settings
from collab.hooks import Change, OnChange, OnLoad, call_hook
from collab.names import validate_name
from collab.session import CLOSE_INTERNAL, CLOSE_TOO_SLOW, Output, PeerId, Session
from collab.storage.contract import Snapshot, Store
from collab.storage.recording import Recorder

log = logging.getLogger(__name__)

RESYNCS_BEFORE_DROP = 3
HOOK_DRAIN_SECONDS = 10.0
CLOSE_GOING_AWAY = 1001


class DocumentNotFoundError(LookupError):
    """The document has never been stored and the caller did not ask to create it."""


class Connection(Protocol):
    """What the hub needs from a WebSocket, whatever the server."""

    async def send(self, data: bytes | str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class PeerChannel:
    """One peer's outgoing messages: a bounded queue drained by its own task.

    A peer that cannot keep up never makes the server buffer without bound: when its queue
    passes `limit` bytes the queue is dropped and `on_overflow` decides (resync or close).
    """

    def __init__(
        self,
        peer_id: PeerId,
        connection: Connection,
        limit: int,
        on_overflow: Callable[[PeerChannel], None],
    ) -> None:
        self.peer_id = peer_id
        self.connection = connection
        self.limit = limit
        self.on_overflow = on_overflow
        self.queue: deque[bytes | str] = deque()
        self.queued_bytes = 0
        self.overflows = 0
        self.closed = False
        self._closer: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._task = asyncio.create_task(self._drain(), name=f"send-{peer_id}")

    def send(self, data: bytes | str) -> None:
        if self.closed:
            return
        size = len(data)
        if self.queued_bytes + size > self.limit and self.queue:
            self.queue.clear()
            self.queued_bytes = 0
            self.overflows += 1
            self.on_overflow(self)
            return
        self.queue.append(data)
        self.queued_bytes += size
        self._ready.set()

    def close(self, code: int, reason: str) -> None:
        """Close after nothing more: queued messages are dropped."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self._task.cancel()
        self._closer = asyncio.create_task(self._close(code, reason))

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most `timeout`) until the close frame has gone out."""
        if self._closer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closer), timeout)

    async def flush_and_close(self, code: int, reason: str, timeout: float = 5.0) -> None:
        """Send what is queued (within `timeout`), then close."""
        if self.closed:
            return
        if self.queue:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        self.closed = True
        self._task.cancel()
        await self._close(code, reason)

    def abandon(self) -> None:
        """The peer is gone: stop sending, nothing to close."""
        self.closed = True
        self._task.cancel()

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.connection.close(code, reason)
        except Exception as error:  # already gone: nothing left to tell it
            log.debug("peer %s: close failed: %r", self.peer_id, error)

    async def _drain(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self.queue:
                    data = self.queue.popleft()
                    self.queued_bytes -= len(data)
                    await self.connection.send(data)
                self._drained.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the socket went away: the receive side will see it
            log.debug("peer %s: send failed: %r", self.peer_id, error)
            self.closed = True


class DocumentRunner:
    """Drives one session: events in, then persist → send → close, in batches."""

    def __init__(self, hub: Hub, session: Session) -> None:
        self.hub = hub
        self.session = session
        self.name = session.name
        self.channels: dict[PeerId, PeerChannel] = {}
        self.unloading = False
        self.unloaded = asyncio.Event()
        self._wake = asyncio.Event()
        self._delivering = asyncio.Lock()  # batches go out one at a time, in order
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pump_task = asyncio.create_task(self._pump(), name=f"doc-{self.name[:40]}")
        self._schedule_idle_unload()

    # ------------------------------------------------------------------ peers

    def connect(
        self, connection: Connection, kind: str, user: str | None, readonly: bool
    ) -> PeerId:
        peer_id = next(self.hub.peer_ids)
        self.channels[peer_id] = PeerChannel(
            peer_id, connection, self.hub.settings.send_queue_bytes, self._overflowed
        )
        if self.hub.recorder is not None:
            self.hub.recorder.connect(self.session, peer_id, kind, user, readonly)
        if kind == "yjs":
            self.session.connect_yjs(peer_id, user, readonly)
        else:
            self.session.connect_text(peer_id, user, readonly)
        self._cancel_idle_unload()
        self.kick()
        return peer_id

    def receive(self, peer_id: PeerId, data: bytes | str) -> None:
        self.hub.record_inbound(self.name, peer_id, data)
        self.session.receive(peer_id, data)
        self.kick()

    def disconnect(self, peer_id: PeerId) -> None:
        channel = self.channels.pop(peer_id, None)
        if channel is not None:
            channel.abandon()
        if self.hub.recorder is not None:
            self.hub.recorder.disconnect(self.name, peer_id)
        self.session.disconnect(peer_id)
        self.kick()
        if not self.channels:
            self._schedule_idle_unload()

    async def edit(self, op: list[int | str], origin: str, user: str | None) -> int:
        """A change made by server code: applied, written and sent like any peer's.

        Returns the document's revision once the change is on disk and sent.
        """
        self.session.edit_text(op, origin=origin, user=user)  # raises if it does not fit
        if self.hub.recorder is not None:
            self.hub.recorder.edit(self.name, op, origin, user)
        self.kick()
        await self.flush()
        return self.session.rev

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
        if channel.overflows > RESYNCS_BEFORE_DROP or not self.session.resync(channel.peer_id):
            channel.close(CLOSE_TOO_SLOW, "too slow: send queue overflowed")
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
            output = self.session.take_output()
            if not output:
                return False
            due = self.session.needs_compaction()
            snapshot, rev = (self.session.state, self.session.rev) if due else (b"", 0)
            if await self._deliver(output) and due:
                await self._write_snapshot(snapshot, rev)
            return True

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
            channel = self.channels.get(peer_id)
            if channel is not None:
                channel.send(data)
        for peer_id, code, reason in output.closes:
            channel = self.channels.get(peer_id)
            if channel is not None:
                channel.close(code, reason)
        self.hub.changed(self.name, output)
        return True

    def _fail(self, reason: str) -> None:
        """The store refused a write: nobody may see state that is not on disk.

        Every peer is closed (their clients keep their edits and send them again on
        reconnect) and the session is dropped, so the next peer loads what is on disk.
        """
        for channel in list(self.channels.values()):
            channel.close(CLOSE_INTERNAL, reason)
        self.hub.forget(self)

    async def compact(self) -> bool:
        """Deliver what is pending, then write a snapshot; the log starts again.

        True on success (or when there is nothing to compact).
        """
        async with self._delivering:
            output = self.session.take_output()
            snapshot, rev = self.session.state, self.session.rev
            if output and not await self._deliver(output):
                return False
            return await self._write_snapshot(snapshot, rev)

    async def _write_snapshot(self, snapshot: bytes, rev: int) -> bool:
        if rev == self.session.snapshot_rev:
            return True
        try:
            await self.hub.store.compact(self.name, Snapshot(rev, snapshot))
        except Exception:
            log.exception("%s: compaction at rev %d failed; the log is kept", self.name, rev)
            return False
        self.session.compacted(rev, len(snapshot))
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

    async def unload(self, code: int = CLOSE_GOING_AWAY, reason: str = "") -> bool:
        """Save and leave memory. Peers (if any, at shutdown) are closed with `code`.

        A document that cannot be saved stays in memory and the error is logged.
        """
        if self.unloading or (self.channels and not reason):
            return False
        self.unloading = True
        await self.flush()
        channels = list(self.channels.values())
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


class Hub:
    """All documents of one server: load once, drive, unload when idle."""

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        on_change: OnChange | None = None,
        on_load: OnLoad | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.runners: dict[str, DocumentRunner] = {}
        self.peer_ids = itertools.count(1)
        self.on_change = on_change
        self.on_load = on_load
        self.recorder = recorder
        self._loading: dict[str, asyncio.Future[DocumentRunner]] = {}
        self._changes: asyncio.Queue[Change] | None = None
        self.closing = False

    def validate(self, name: str) -> str:
        return validate_name(name, self.settings.max_name_length)

    async def open(self, name: str, create: bool = True) -> DocumentRunner:
        """The running document `name`, loaded from the store once.

        Many callers at the same moment share one load; nobody gets a session before the
        load has finished, and a failed load is not cached.
        """
        while True:
            runner = self.runners.get(name)
            if runner is not None and not runner.unloading:
                return runner
            if runner is not None:
                await runner.unloaded.wait()
                continue
            loading = self._loading.get(name)
            if loading is not None:
                return await asyncio.shield(loading)
            return await self._load(name, create)

    async def _load(self, name: str, create: bool) -> DocumentRunner:
        future: asyncio.Future[DocumentRunner] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            stored = await self.store.load(name)
            initial = None
            if stored is None and self.on_load is not None:
                initial = await call_hook(self.on_load, name)
            if stored is None and initial is None and not create:
                raise DocumentNotFoundError(name)
            # Follow the text as ops only while text peers need them, unless on_change does.
            track_text = self.on_change is not None
            session = Session(name, self.settings, stored, track_text=track_text)
            if initial:
                session.apply_update(initial, origin="import")
            runner = DocumentRunner(self, session)
            self.runners[name] = runner
            future.set_result(runner)
            return runner
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[name]

    def forget(self, runner: DocumentRunner) -> None:
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
        runner.stop()

    def changed(self, name: str, output: Output) -> None:
        """Queue durable changes for the on_change hook, in order.

        The hook runs in its own task: a slow one delays later hook calls, never peers.
        """
        if self.on_change is None or not output.records:
            return
        if self._changes is None:
            self._changes = asyncio.Queue()
            self._change_task = asyncio.create_task(self._call_on_change(self._changes))
        for record, revision in zip(output.records, output.revisions, strict=True):
            self._changes.put_nowait(
                Change(
                    name,
                    record.rev,
                    record.time,
                    record.origin,
                    record.user,
                    record.update,
                    revision.op,
                )
            )

    async def _call_on_change(self, changes: asyncio.Queue[Change]) -> None:
        assert self.on_change is not None
        while True:
            change = await changes.get()
            try:
                await call_hook(self.on_change, change)
            except Exception:
                log.exception("%s: on_change hook failed at rev %d", change.name, change.rev)
            finally:
                changes.task_done()

    def record_inbound(self, name: str, peer_id: PeerId, data: bytes | str) -> None:
        if self.recorder is not None:
            self.recorder(name, peer_id, data)

    @staticmethod
    async def _shut(runner: DocumentRunner) -> None:
        if runner.unloading:  # an idle unload is saving it: let it finish
            await runner.unloaded.wait()
        else:
            await runner.unload(CLOSE_GOING_AWAY, "server shutting down")

    async def close(self) -> None:
        """Shutdown: close every peer with 1001 after what is in flight, save, unload."""
        self.closing = True
        await asyncio.gather(*(self._shut(runner) for runner in list(self.runners.values())))
        if self._changes is not None:  # the hook hears about every change made before
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changes.join(), HOOK_DRAIN_SECONDS)
            self._change_task.cancel()
        await self.store.close()
