"""The Starlette edge: WebSocket endpoints, the HTTP API and the frontend's files.

Thin on purpose: each endpoint turns a socket or request into hub/session calls.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketState

from collab.hooks import Access, AccessDenied, Authenticate, call_hook
from collab.hub import DocumentNotFoundError, DocumentRunner, Hub
from collab.names import InvalidNameError
from collab.protocol import close_reason
from collab.storage.contract import RevisionHistory, RevisionsGoneError, StoreUnavailableError
from collab.storage.errors import CorruptDocumentError, FileFormatError
from collab.storage.history import DocumentHistory, StoreHistoryCache, parse_time
from collab.storage.logs import RevisionNotFoundError
from collab.wire import CloseCode

log = logging.getLogger(__name__)

ABORT_EXTENSION = "collab.abort"
"""The ASGI scope extension through which a server lets the app drop a connection at once
(`collab serve` sets it, see `collab.cli.websocket_protocol`): ``scope["extensions"]
[ABORT_EXTENSION]["abort"]()``. ASGI itself has no way to abort a WebSocket."""

SEND_EXTENSION = "collab.send"
"""The ASGI scope extension through which a server lets the app write a message without
awaiting (`collab serve` sets it, see `collab.serving.WebSocketProtocol`):
``scope["extensions"][SEND_EXTENSION]["send_now"](data) -> bool`` (False: not written, the
socket's buffer is full or it is closing) and ``["buffered"]() -> int`` (bytes written and
not yet taken by the peer)."""


def frontend_dir() -> Path:
    """The frontend's files: installed beside the package, or the source checkout's."""
    installed = Path(__file__).resolve().parent / "frontend"
    if (installed / "editor.html").exists():
        return installed
    return Path(__file__).resolve().parent.parent / "frontend"


class StarletteConnection:
    """A Starlette WebSocket as the hub's `Connection`."""

    __slots__ = ("buffered", "send_now", "websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        extension = websocket.scope.get("extensions", {}).get(SEND_EXTENSION)
        if extension is not None:  # the server writes for us at once, no task, no await
            self.send_now = extension["send_now"]
            self.buffered = extension["buffered"]
        else:
            self.send_now = _cannot_send_now
            self.buffered = _nothing_buffered

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            await self.websocket.send_bytes(data)
        else:
            await self.websocket.send_text(data)

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state != WebSocketState.DISCONNECTED:
            await self.websocket.close(code, close_reason(reason))

    def abort(self) -> None:
        """Drop the TCP connection now, when the server offers a way to (else only log).

        Without it, a peer that stopped reading keeps its socket and write buffer until
        the server's own timeouts end it (uvicorn: the keepalive ping).
        """
        extension = self.websocket.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if extension is None:
            log.warning("cannot abort a stuck peer: the ASGI server has no %s", ABORT_EXTENSION)
            return
        extension["abort"]()


OPEN_ACCESS = Access()  # frozen: one for every connection the hook lets in as is


def _cannot_send_now(data: bytes | str) -> bool:
    return False


def _nothing_buffered() -> int:
    return 0


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class WebApp:
    """The routes of one hub: mount them anywhere (see `collab.engine`)."""

    def __init__(self, hub: Hub, authenticate: Authenticate | None = None) -> None:
        self.hub = hub
        self.authenticate = authenticate
        # History reads the revisions and snapshots a store keeps: only such stores have it.
        self.histories: StoreHistoryCache | None = None
        if isinstance(hub.store, RevisionHistory):
            self.histories = StoreHistoryCache(hub.store, hub.settings.text_name)

    async def access(self, connection: HTTPConnection, name: str) -> Access:
        """Ask the authenticate hook; raises AccessDenied. A hook that fails refuses."""
        if self.authenticate is None:
            return OPEN_ACCESS
        try:
            granted = await call_hook(self.authenticate, connection, name)
        except AccessDenied:
            raise
        except Exception as error:
            log.exception("authenticate hook failed for %r", name)
            raise AccessDenied(f"authentication failed: {type(error).__name__}", 403) from None
        return granted if isinstance(granted, Access) else OPEN_ACCESS

    def routes(self, *, http_api: bool = True, frontend: bool = True) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            WebSocketRoute("/yjs/{name:path}", self.yjs_endpoint),
            WebSocketRoute("/ot/{name:path}", self.text_endpoint),
        ]
        if http_api:
            routes += [
                Route("/healthz", self.healthz),
                Route("/api/docs", self.list_documents),
                Route("/api/docs/{name:path}/text", self.document_text),
                Route("/api/docs/{name:path}/history", self.document_history),
                Route("/api/docs/{name:path}/history/{rev:int}", self.document_revision),
                Route("/api/docs/{name:path}/update", self.document_update),
            ]
        if frontend:
            files = frontend_dir()
            routes += [
                Route("/", self.page("index.html")),
                Route("/d/{name:path}", self.page("editor.html")),
                Mount("/static", StaticFiles(directory=files, check_dir=False), name="static"),
            ]
        return routes

    # ------------------------------------------------------------------ WebSockets

    async def yjs_endpoint(self, websocket: WebSocket) -> None:
        await self.serve_peer(websocket, "yjs")

    async def text_endpoint(self, websocket: WebSocket) -> None:
        await self.serve_peer(websocket, "text")

    async def serve_peer(self, websocket: WebSocket, kind: str) -> None:
        await websocket.accept()
        connection = StarletteConnection(websocket)
        try:
            name = self.hub.validate(websocket.path_params["name"])
        except InvalidNameError as error:
            await connection.close(CloseCode.BAD_NAME, f"invalid document name: {error}")
            return
        try:
            access = await self.access(websocket, name)
        except AccessDenied as denied:
            await connection.close(denied.close_code, denied.reason)
            return
        runner = await self._open(connection, name)
        if runner is None:
            return
        peer_id = runner.connect(connection, kind, access.user, access.readonly)
        try:
            await self._receive_loop(websocket, runner, peer_id)
        finally:
            runner.disconnect(peer_id)

    async def _open(self, connection: StarletteConnection, name: str) -> DocumentRunner | None:
        if self.hub.closing:
            await connection.close(CloseCode.GOING_AWAY, "server shutting down")
            return None
        try:
            return await self.hub.open(name)
        except CorruptDocumentError as error:
            log.error("%s: cannot load: %s", name, error)
            await connection.close(CloseCode.INTERNAL, "document cannot be loaded: damaged on disk")
        except Exception:
            log.exception("%s: cannot load", name)
            await connection.close(CloseCode.INTERNAL, "document cannot be loaded")
        return None

    async def _receive_loop(
        self, websocket: WebSocket, runner: DocumentRunner, peer_id: Any
    ) -> None:
        limit = self.hub.settings.max_message_bytes
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not runner.is_open(peer_id):
                # A slow peer's close frame waits for its socket to drain: give it time,
                # or the peer only sees the connection drop (1006) and not why.
                await runner.wait_closed(peer_id, self.hub.settings.close_timeout)
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text", "")
            if len(data) > limit:
                runner.close_peer(
                    peer_id, CloseCode.TOO_BIG, f"message of {len(data)} bytes is over {limit}"
                )
                return
            runner.receive(peer_id, data)

    # ------------------------------------------------------------------ HTTP

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "documents_loaded": len(self.hub.runners)})

    async def list_documents(self, request: Request) -> Response:
        documents: dict[str, dict[str, Any]] = {}
        for info in await self.hub.store.list():
            documents[info.name] = {
                "name": info.name,
                "size_bytes": info.size_bytes,
                "rev": info.rev,
                "peers": 0,
                "loaded": False,
            }
        for name, runner in self.hub.runners.items():
            entry = documents.setdefault(name, {"name": name, "size_bytes": runner.size_bytes})
            entry.update(rev=runner.rev, peers=runner.peer_count, loaded=True)
        return JSONResponse({"documents": sorted(documents.values(), key=lambda d: d["name"])})

    async def document_text(self, request: Request) -> Response:
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        if "at" in request.query_params or "time" in request.query_params:
            return await self.document_text_at(request, runner.name)
        return PlainTextResponse(runner.text, media_type="text/plain; charset=utf-8")

    async def document_update(self, request: Request) -> Response:
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        return Response(runner.state, media_type="application/octet-stream")

    # ------------------------------------------------------------------ HTTP: history

    async def document_history(self, request: Request) -> Response:
        """The revisions, newest first: ``?limit=50&before=REV`` pages back in time."""
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        try:
            limit = min(max(int(request.query_params.get("limit", "50")), 1), 1000)
            before = request.query_params.get("before")
            before_rev = None if before is None else int(before)
        except ValueError:
            return error_response(400, "limit and before must be integers")
        history = await self._history(runner.name)
        if isinstance(history, Response):
            return history
        page = await asyncio.to_thread(history.page, before_rev, limit)
        more = bool(page) and page[-1].rev > history.base_rev + 1
        return JSONResponse(
            {
                "name": runner.name,
                "first_rev": history.base_rev,
                "last_rev": history.last_rev,
                "revisions": [revision.as_json() for revision in page],
                "next_before": page[-1].rev if more else None,
            }
        )

    async def document_revision(self, request: Request) -> Response:
        """One revision: who, when, and what it did (``op`` on ``text_before``)."""
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        history = await self._history(runner.name)
        if isinstance(history, Response):
            return history
        try:
            change = await asyncio.to_thread(history.change, request.path_params["rev"])
        except RevisionNotFoundError as error:
            return error_response(404, str(error))
        return JSONResponse(change.as_json())

    async def document_text_at(self, request: Request, name: str) -> Response:
        """The text as it was: ``?at=REV`` or ``?time=ISO-8601``."""
        history = await self._history(name)
        if isinstance(history, Response):
            return history
        try:
            if "at" in request.query_params:
                rev = int(request.query_params["at"])
            else:
                rev = history.rev_at_time(parse_time(request.query_params["time"]))
        except ValueError as error:
            return error_response(400, f"at must be a revision number, time ISO-8601: {error}")
        if rev > history.last_rev:
            return error_response(404, f"no revision {rev}: the latest is {history.last_rev}")
        if rev < history.base_rev:
            return error_response(410, f"revisions before {history.base_rev} are no longer kept")
        text = await asyncio.to_thread(history.text_at, rev)
        headers = {"X-Collab-Rev": str(rev)}
        return PlainTextResponse(text, media_type="text/plain; charset=utf-8", headers=headers)

    async def _history(self, name: str) -> DocumentHistory | Response:
        """The document's history index, up to date with the store (indexed in a thread)."""
        if self.histories is None:
            return error_response(501, "history needs a store that keeps old revisions")
        try:
            history = await self.histories.get(name)
        except (FileFormatError, RevisionsGoneError) as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(500, "history cannot be read: damaged in the store")
        except StoreUnavailableError as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(503, "history cannot be read: the store is unavailable")
        if not history.exists:
            return error_response(404, "no history: the document has not been saved yet")
        return history

    async def _existing(self, request: Request) -> DocumentRunner | Response:
        try:
            name = self.hub.validate(request.path_params["name"])
            await self.access(request, name)
            return await self.hub.open(name, create=False)
        except InvalidNameError as error:
            return error_response(400, f"invalid document name: {error}")
        except AccessDenied as denied:
            return error_response(denied.status, denied.reason)
        except DocumentNotFoundError:
            return error_response(404, "no such document")
        except CorruptDocumentError as error:
            log.error("%s: cannot load: %s", request.path_params["name"], error)
            return error_response(500, "document cannot be loaded: damaged on disk")

    @staticmethod
    def page(filename: str) -> Any:
        async def serve(request: Request) -> Response:
            path = frontend_dir() / filename
            if not path.exists():
                return error_response(404, f"{filename} is missing from the frontend")
            return FileResponse(path, media_type="text/html; charset=utf-8")

        return serve
