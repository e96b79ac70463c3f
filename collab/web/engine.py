"""The public entry point: `Collab`, the engine to run standalone or mount in another app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from collab.access.http import HostPolicy
from collab.bus.contract import Bus
from collab.config import Settings
from collab.hooks import Authenticate, OnChange, OnLoad, OnStateless
from collab.hub import Hub
from collab.hub.webhooks import webhooks_for
from collab.metrics import Metrics, metered
from collab.replay.recording import Recorder
from collab.storage.backends import bus_for, check_together, revocations_for, store_for
from collab.storage.contract import Store
from collab.text import ops as textops
from collab.web.app import WebApp
from collab.web.looplag import LoopLagProbe
from collab.web.middleware import HostGuard


class Collab:
    """Collaborative documents: sessions, storage and the web endpoints.

    ``Collab()`` stores documents in ``settings.data_dir`` with the file store; pass
    ``store=`` to bring another backend, and ``bus=`` (with a shared store such as
    PostgreSQL) to serve the same documents from several processes. Mount it in an
    existing app::

        engine = Collab(store=FileStore(Path("data")), authenticate=check_login)
        app = Starlette(routes=[Mount("/collab", routes=engine.routes())],
                        lifespan=lambda app: engine.lifespan())

    ``settings.store``/``settings.bus`` (``--store``/``--bus``) choose them from URLs.
    Origins are checked on every WebSocket upgrade (``settings.allowed_origins``); with
    ``settings.auth_secret`` every door needs a token (`collab.access.tokens`), and the
    authenticate hook is asked after it. Hooks may be sync or async:
    ``authenticate(connection, name) -> Access | None``
    (raise ``AccessDenied`` to refuse), ``on_change(change)`` after each change is on
    disk, ``on_load(name) -> bytes | None`` the initial state of a new document,
    ``on_stateless(name, payload, access)`` a Hocuspocus provider's Stateless message.
    """

    def __init__(
        self,
        store: Store | None = None,
        settings: Settings | None = None,
        *,
        authenticate: Authenticate | None = None,
        on_change: OnChange | None = None,
        on_load: OnLoad | None = None,
        on_stateless: OnStateless | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.store = store or store_for(self.settings)
        check_together(self.store, with_bus=bus is not None or bool(self.settings.bus))
        self.bus = bus if bus is not None else bus_for(self.settings)
        record = self.settings.record
        self.recorder = Recorder(record, self.settings) if record else None
        self.metrics = Metrics()
        counted = metered(self.store, self.metrics)
        self.hub = Hub(
            counted,  # type: ignore[arg-type]
            self.settings,
            on_change=on_change,
            on_load=on_load,
            recorder=self.recorder,
            bus=self.bus,
            metrics=self.metrics,
            revocations=revocations_for(self.store),
            webhooks=webhooks_for(self.settings, self.metrics),
        )
        self.metrics.loaded_documents_from(lambda: self.hub.loaded_count)
        self.web = WebApp(
            self.hub,
            self.settings,
            authenticate,
            self.metrics,
            lambda: not counted.failing,
            on_stateless,
        )
        self.loop_lag = LoopLagProbe(self.metrics.loop_lag.observe)

    # ------------------------------------------------------------------ mounting

    def routes(self, *, http_api: bool = True, frontend: bool = True) -> list[BaseRoute]:
        """Routes to mount under any prefix: ``Mount("/collab", routes=engine.routes())``.

        WebSockets at ``/yjs/{name}`` and ``/ot/{name}``; with `http_api` the JSON API
        under ``/api``; with `frontend` the pages at ``/`` and ``/d/{name}``.
        """
        return self.web.routes(http_api=http_api, frontend=frontend)

    def app(self) -> HostGuard:
        """A standalone app that closes the engine on shutdown and answers only to the
        host names of ``settings.allowed_hosts`` (loopback and ``settings.host`` by default).
        Its WebSocket doors skip Starlette's stack (`collab.web.middleware.Doors`)."""
        app = Starlette(routes=self.routes(), lifespan=lambda app: self.lifespan())
        return self.host_guard(self.web.doors(app))

    def host_guard(self, app: ASGIApp) -> HostGuard:
        """Wrap any ASGI app so that it answers only the allowed Host names (DNS rebinding:
        a page on another site cannot make a browser talk to this server by name)."""
        policy = HostPolicy.from_settings(self.settings.allowed_hosts, self.settings.host)
        return HostGuard(app, policy, self.metrics)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Use in the host app's lifespan: closes peers and saves documents at shutdown."""
        await self.hub.start()  # a store or bus that cannot be reached fails the start
        self.loop_lag.start()
        try:
            yield
        finally:
            await self.loop_lag.stop()
            await self.close()

    async def close(self) -> None:
        """Close every peer with 1001, save every document, close the store. Idempotent."""
        if not self.hub.health().closing:
            await self.hub.close()
            if self.recorder is not None:
                self.recorder.close()

    # ------------------------------------------------------------------ server-side text

    async def get_text(self, name: str) -> str:
        """The shared text of document `name`, loading it if needed.

        Raises `DocumentNotFoundError` (a `LookupError`) when the document does not exist,
        `InvalidNameError` for a name that is not valid.
        """
        runner = await self.hub.open(self.hub.validate(name), create=False)
        return runner.text

    async def edit(
        self, name: str, op: textops.Op, *, origin: str = "server", user: str | None = None
    ) -> int:
        """Apply a code-point op to the current text; returns the new revision once it
        is on disk and sent to every peer (Yjs peers get an update, text peers an op).

        Raises `textops.OpError` for an op that is not well formed, `ChangeRefused` for
        one that does not fit the text or the document's size limit, or on a document too
        big for text operations (`--text-door-max-bytes`).
        """
        runner = await self.hub.open(self.hub.validate(name))
        return await runner.changes.edit(op, f"server:{origin}", user)

    async def delete(self, name: str) -> str:
        """Delete document `name`: its peers are closed (4404), its data and history go,
        and the name is free again in a new generation (docs/operations.md). Returns the
        new generation; raises `DocumentNotFoundError` when there is no such document."""
        return await self.hub.delete(self.hub.validate(name))

    async def set_text(
        self, name: str, text: str, *, origin: str = "server", user: str | None = None
    ) -> int:
        """Make the text equal to `text` with the smallest single change (see `edit`)."""
        runner = await self.hub.open(self.hub.validate(name))
        return await runner.changes.set_text(text, f"server:{origin}", user)

    # ------------------------------------------------------------------ Hocuspocus

    def broadcast_stateless(self, name: str, payload: str) -> None:
        """A Stateless message to every Hocuspocus provider of document `name` in this
        process (not stored; call it on the server's event loop)."""
        self.web.hocuspocus.broadcast(name, payload)
