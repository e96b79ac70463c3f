"""The public entry point: `Collab`, the engine to run standalone or mount in another app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from collab.config import Settings
from collab.hub import Hub
from collab.store import FileStore, Store
from collab.web import WebApp


class Collab:
    """Collaborative documents: sessions, storage and the web endpoints.

    ``Collab()`` stores documents in ``settings.data_dir`` with the file store; pass
    ``store=`` to bring another backend.
    """

    def __init__(self, store: Store | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        if store is None:
            store = FileStore(
                self.settings.data_dir,
                fsync=self.settings.fsync == "always",
                keep_history=self.settings.keep_history,
            )
        self.store = store
        self.hub = Hub(store, self.settings)
        self.web = WebApp(self.hub)

    def routes(self, *, http_api: bool = True, frontend: bool = True) -> list[BaseRoute]:
        """Routes to mount in an app: `Mount("/collab", routes=engine.routes())`."""
        return self.web.routes(http_api=http_api, frontend=frontend)

    def app(self) -> Starlette:
        """A standalone Starlette app that closes the engine on shutdown."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await self.close()

        return Starlette(routes=self.routes(), lifespan=lifespan)

    async def close(self) -> None:
        """Close every peer with 1001, save every document, close the store. Idempotent."""
        if not self.hub.closing:
            await self.hub.close()
