"""The hub: every document of one server by name, loaded once, unloaded when idle."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from collab.access.limits import LogThrottle
from collab.access.live import LiveAccess, RevocationSource
from collab.access.names import validate_address, validate_name
from collab.bus.contract import Bus
from collab.config import Settings
from collab.hooks import OnChange, OnLoad, call_hook
from collab.hub.accounting import LogSize
from collab.hub.changes import ChangeFeed
from collab.hub.failures import FATAL
from collab.hub.lifecycle import DELETED, RESTORED, DocumentNotFoundError
from collab.hub.loading import load_stored, open_session
from collab.hub.runner import DocumentRunner
from collab.hub.webhooks import Webhooks
from collab.replay.recording import Recorder
from collab.session import Output
from collab.storage import generations
from collab.storage.contract import (
    DocumentInfo,
    Record,
    RevisionHistory,
    Store,
    StoredDocument,
)
from collab.storage.errors import CorruptDocumentError
from collab.wire import CloseCode, OriginPrefix
from collab.yjs.update import decode_state_vector


def state_vector_of(state: bytes) -> dict[int, int]:
    """The state vector of a whole-document update."""
    doc = Doc()
    doc.apply_update(state)
    return decode_state_vector(doc.get_state())


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    loaded: int  # documents in memory
    restarts: int  # documents whose pump failed since start (each reloaded)
    reloading: int  # of those, not loaded again yet (/healthz: 503)
    closing: bool  # the server is shutting down


class Hub:
    """All documents of one server: load once, drive, unload when idle."""

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        on_change: OnChange | None = None,
        on_load: OnLoad | None = None,
        recorder: Recorder | None = None,
        bus: Bus | None = None,
        metrics: Any = None,
        revocations: RevocationSource | None = None,
        webhooks: Webhooks | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.runners: dict[str, DocumentRunner] = {}
        self.peer_ids = itertools.count(1)
        self.on_load = on_load
        self.recorder = recorder
        self.bus = bus
        self.closing = False
        self.metrics = metrics  # collab.metrics.Metrics, when the engine keeps them
        self._feed = ChangeFeed(on_change) if on_change is not None else None
        self._loading: dict[str, asyncio.Future[DocumentRunner]] = {}
        self._deleting: dict[str, asyncio.Event] = {}  # opens of these names wait
        self._started: asyncio.Task[None] | None = None
        self.restarts = 0  # documents whose pump failed (Supervisor.restart)
        self.failure_log = LogThrottle(5.0)  # internal errors that cost a peer (failures.py)
        self.reloading: set[str] = set()  # those not loaded again yet (/healthz: 503)
        self._reloads: set[asyncio.Task[None]] = set()
        self.live = LiveAccess()  # open connections' access: expiry, revocation
        self.revocation_source = revocations  # read at start, then polled
        self.webhooks = webhooks  # told of changes committed here

    def validate(self, name: str) -> str:
        return validate_name(name, self.settings.max_name_length)

    def validate_address(self, name: str) -> str:
        """`validate`, for doors that open a live document or make one (`names.py`)."""
        return validate_address(name, self.settings.max_name_length)

    async def start(self) -> None:
        """Connect the store and the bus (once; `open` does it too if nobody did)."""
        if self._started is None:
            self._started = asyncio.create_task(self._start_backends())
        await asyncio.shield(self._started)

    async def _start_backends(self) -> None:
        # pycrdt's first Doc imports anyio's asyncio backend (~1 MB, tens of ms): now, not
        # while the first peer waits for its document.
        Doc()
        await self.store.start()
        await self.live.start(self.revocation_source)
        if self.bus is not None:
            await self.bus.start()

    async def open(self, name: str, create: bool = True) -> DocumentRunner:
        """The running document `name`, loaded from the store once.

        Many callers at the same moment share one load; nobody gets a session before the
        load has finished, and a failed load is not cached. Raises `DocumentNotFoundError`
        when the store does not have it and `create` is False.
        """
        while True:
            runner = self.runners.get(name)
            if runner is not None and not runner.unloading:
                return runner
            if self._started is None or not self._started.done():
                await self.start()
                continue
            if runner is not None:
                await runner.unloaded.wait()
                continue
            deleting = self._deleting.get(name)
            if deleting is not None:
                await deleting.wait()
                continue
            loading = self._loading.get(name)
            if loading is not None:
                return await asyncio.shield(loading)
            return await self._load(name, create)

    async def _load(self, name: str, create: bool) -> DocumentRunner:
        future: asyncio.Future[DocumentRunner] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            runner = await self._start(name, create)
            self.runners[name] = runner
            self.reloading.discard(name)
            future.set_result(runner)
            return runner
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[name]

    async def _start(self, name: str, create: bool) -> DocumentRunner:
        stored = await load_stored(self.store, name, self.settings)  # a long log folded first
        initial = None
        if stored is None and self.on_load is not None:
            initial = await call_hook(self.on_load, name)
        if stored is None and initial is None and not create:
            raise DocumentNotFoundError(name)
        # Follow the text as ops only while text peers need them, unless on_change does.
        session = await open_session(name, self.settings, stored, self._feed is not None)
        session.generation = await generations.load(self.store, name)
        if initial:
            session.apply_update(initial, origin=OriginPrefix.IMPORT.value)
        log_size = LogSize()
        if stored is not None:
            log_size.records, log_size.bytes = len(stored.records), stored.log_bytes
        runner = DocumentRunner(self, session, log_size)  # the hub is its DocumentContext
        if self.bus is not None:  # what was published before this, the runner fetches
            self.bus.subscribe(name, runner)
        return runner

    # ------------------------------------------------------------------ what the edge asks

    def is_loaded(self, name: str) -> bool:
        return name in self.runners

    @property
    def loaded_count(self) -> int:
        return len(self.runners)

    def loaded(self) -> list[DocumentRunner]:
        """The documents in memory now."""
        return list(self.runners.values())

    async def stored(self) -> list[DocumentInfo]:
        """Every document the store holds (name, size, rev)."""
        return await self.store.list()

    async def load_stored(self, name: str) -> StoredDocument | None:
        """What the store holds of document `name` (None: never stored), read apart from
        the document in memory (the list's summaries)."""
        return await self.store.load(name)

    def revision_history(self) -> RevisionHistory | None:
        """The store, when it keeps old revisions (history pages, `text?at=`)."""
        return self.store if isinstance(self.store, RevisionHistory) else None

    def health(self) -> Health:
        """What /healthz reports: documents in memory, failed ones not loaded again."""
        return Health(len(self.runners), self.restarts, len(self.reloading), self.closing)

    def reload(self, name: str) -> None:
        """A document that failed: load it again from the store now, for the peers it
        closed (they reconnect). Until it is loaded, `reloading` names it."""
        self.restarts += 1
        if self.closing:
            return
        self.reloading.add(name)
        task = asyncio.create_task(self._reload(name), name=f"reload-{name[:40]}")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self, name: str) -> None:
        try:
            await self.open(name, create=False)
        except DocumentNotFoundError:  # never stored: nothing to reload
            self.reloading.discard(name)
        except FATAL:
            raise
        except BaseException:  # a pycrdt panic too: /healthz keeps saying so
            log.exception("%s: cannot be loaded again after it failed", name)

    async def delete(self, name: str, reason: str = DELETED) -> str:
        """Delete document `name`: its peers are closed (4404), what is in flight is
        dropped, its data goes from the store (history too) and its generation changes,
        so a copy held anywhere is never merged into a document made under the name
        again. Returns the new generation. Raises `DocumentNotFoundError`. A document
        damaged on disk is deleted too (its Yjs client ids cannot be read to retire them)."""
        runner = await self._loaded(name, missing_ok=False)
        return await self._reset(name, runner, CloseCode.DELETED, reason, None)

    async def restore(self, name: str, state: bytes) -> str:
        """Make document `name` hold `state` (a backup's), in a new generation whose
        history starts with it: peers of the copy before are closed (4411) and, when they
        come back, told (text) or refused (Yjs). Returns the new generation."""
        runner = await self._loaded(name, missing_ok=True)
        return await self._reset(name, runner, CloseCode.RESTORED, RESTORED, state)

    async def _loaded(self, name: str, missing_ok: bool) -> DocumentRunner | None:
        """The running document; None when it is damaged on disk or (with `missing_ok`)
        does not exist."""
        try:
            return await self.open(name, create=False)
        except CorruptDocumentError as error:
            log.warning("%s: replacing a document that cannot be loaded: %s", name, error)
            return None
        except DocumentNotFoundError:
            if missing_ok:
                return None
            raise

    async def _reset(
        self, name: str, runner: DocumentRunner | None, code: int, reason: str, state: bytes | None
    ) -> str:
        """Drop the document from memory unsaved, give the name its next generation, and
        replace what the store holds by `state` (None: nothing)."""
        while (other := self._deleting.get(name)) is not None:  # one reset at a time
            await other.wait()
        done = self._deleting[name] = asyncio.Event()
        try:
            dropped = await runner.drop(code, reason) if runner is not None else None
            retired = [decode_state_vector(dropped)] if dropped else []
            if state is not None:
                retired.append(state_vector_of(state))
            following = (await generations.load(self.store, name)).next(*retired)
            await generations.save(self.store, name, following)  # first: a crash keeps it
            await self.store.delete(name)
            if state is not None:
                record = Record(1, time.time(), OriginPrefix.IMPORT.value, None, state)
                await self.store.append(name, [record])
            if self.bus is not None:  # the other processes close their peers too
                await self.bus.publish_deleted(name, reason)
        finally:
            del self._deleting[name]
            done.set()
        return following.id

    def forget(self, runner: DocumentRunner) -> None:
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
        if self.bus is not None:
            self.bus.unsubscribe(runner.name, runner)
        runner.stop()

    def changed(self, name: str, output: Output) -> None:
        """Durable changes: the on_change hook hears of them, in order."""
        if self._feed is not None:
            self._feed.publish(name, output)
        if self.webhooks is not None:
            self.webhooks.changed(name, output.records)

    def deleted(self, name: str, rev: int) -> None:
        """Document `name` (at revision `rev`) was deleted: webhooks hear of it. The
        delete routes and commands call this once the store has deleted it."""
        if self.webhooks is not None:
            self.webhooks.deleted(name, rev)

    @staticmethod
    async def _shut(runner: DocumentRunner) -> None:
        if runner.unloading:  # an idle unload is saving it: let it finish
            await runner.unloaded.wait()
        else:
            await runner.unload(CloseCode.GOING_AWAY, "server shutting down")

    async def close(self) -> None:
        """Shutdown: close every peer with 1001 after what is in flight, save, unload."""
        self.closing = True
        await asyncio.gather(*(self._shut(runner) for runner in list(self.runners.values())))
        await self.live.close()
        if self._feed is not None:
            await self._feed.close()
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.bus is not None:
            await self.bus.close()
        await self.store.close()
