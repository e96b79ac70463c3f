"""The Starlette edge: WebSocket endpoints, the HTTP API and the frontend's files.

Thin on purpose: each endpoint turns a socket or request into hub/session calls.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from collab.access import http as security
from collab.access import redact, tokens
from collab.access.limits import KeyedWindows, LogThrottle
from collab.access.names import InvalidNameError
from collab.access.revocations import REVOKED
from collab.config import Settings
from collab.hooks import Access, AccessDenied, Authenticate, OnStateless
from collab.hub import DocumentNotFoundError, DocumentRunner, Hub
from collab.metrics import CONTENT_TYPE, Metrics
from collab.replay.history import StoreHistoryCache, iso_time
from collab.session.text_messages import Hello, MessageError, parse
from collab.storage.errors import CorruptDocumentError
from collab.web.admission import Admission, ticket_for
from collab.web.big import BigResponses
from collab.web.connection import StarletteConnection, Unavailable
from collab.web.error_pages import error_page
from collab.web.history import HistoryRoutes, error_response
from collab.web.hocuspocus import HocuspocusDoor
from collab.web.lifecycle import LifecycleRoutes
from collab.web.listing import DocumentSummaries
from collab.web.middleware import Doors, SecurityHeaders
from collab.web.receive import PeerReader, read_peer
from collab.web.renewal import Renewal, replier
from collab.wire import CloseCode
from collab.yjs import protocol
from collab.yjs.protocol import close_reason

log = logging.getLogger("collab.web")


def frontend_dir() -> Path:
    """The frontend's files: installed beside the package, or the source checkout's."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "frontend"
    if (installed / "editor.html").exists():
        return installed
    return package.parent / "frontend"


class WebApp:
    """The routes of one hub: mount them anywhere (see `collab.web.engine`)."""

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        authenticate: Authenticate | None = None,
        metrics: Metrics | None = None,
        healthy: Any = None,
        on_stateless: OnStateless | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.authenticate = authenticate
        self.metrics = metrics or Metrics()
        self.healthy = healthy or (lambda: True)
        redact.install()  # tokens travel in URLs and headers: keep them out of every log
        self.origins = security.OriginPolicy.from_setting(settings.allowed_origins)
        self.secret = settings.auth_secret
        self.admission = Admission(self.secret, authenticate, hub.live)
        self.new_documents = KeyedWindows(
            settings.max_new_documents_per_minute, settings.max_new_documents_per_minute_total, 60.0
        )
        self._created: dict[str, float] = {}  # names counted as new in the last minute
        self.big_responses = BigResponses(settings.max_big_responses, settings.send_timeout)
        self.page_headers = security.page_headers(settings.frame_ancestors)
        self.throttle = LogThrottle(5.0)
        self.hocuspocus = HocuspocusDoor(self, on_stateless)
        # History reads the revisions and snapshots a store keeps: only such stores have it.
        self.histories: StoreHistoryCache | None = None
        store = hub.revision_history()
        if store is not None:
            self.histories = StoreHistoryCache(store, settings.text_name)
        self.history = HistoryRoutes(
            settings, self.histories, self.refuse, self._existing, self.respond
        )
        texts, worker_from = self.history.texts, settings.text_worker_bytes
        self.summaries = DocumentSummaries(
            hub.load_stored, settings.text_name, texts=texts, worker_from=worker_from
        )
        self.lifecycle = LifecycleRoutes(hub, settings, self.access, self.refuse, self._count_new)

    def refuse(self, reason: str, what: str, connection: HTTPConnection) -> None:
        """Count a refusal and log it (at most a few lines a second, with a count)."""
        self.metrics.refused(reason)
        held = self.throttle.should_log()
        if held is not None:
            client = connection.client.host if connection.client else "?"
            more = f" ({held} more refusals not logged)" if held else ""
            log.warning("refused %s from %s: %s%s", connection.url.path, client, what, more)

    async def access(self, connection: HTTPConnection, name: str, token: str = "") -> Access:
        """What the connection may do (`Admission.access`); raises AccessDenied."""
        return (await self.admission.access(connection, name, token))[0]

    def grant(self, token: str | None, name: str | None = None) -> tokens.Grant:
        """A valid, unrevoked token's grant (`Admission.grant`); raises TokenError."""
        return self.admission.grant(token, name)

    def doors(self, app: ASGIApp) -> Doors:
        """`app` (with `routes()`) with the WebSocket doors dispatched ahead of it."""
        return Doors(app, self.websocket_routes())

    def websocket_routes(self) -> list[WebSocketRoute]:
        return [
            WebSocketRoute("/yjs/{name:path}", self.yjs_endpoint),
            WebSocketRoute("/ot/{name:path}", self.text_endpoint),
            WebSocketRoute("/hocuspocus", self.hocuspocus.endpoint),
        ]

    def routes(self, *, http_api: bool = True, frontend: bool = True) -> list[BaseRoute]:
        routes: list[BaseRoute] = [*self.websocket_routes()]
        if http_api:
            routes += [
                Route("/healthz", self.healthz),
                Route("/metrics", self.metrics_endpoint),
                Route("/api/docs", self.list_documents),
                Route("/api/docs/{name:path}/text", self.document_text),
                Route("/api/docs/{name:path}/history", self.history.document_history),
                Route("/api/docs/{name:path}/history/{rev:int}", self.history.document_revision),
                Route("/api/docs/{name:path}/update", self.document_update),
                Route("/api/docs/{name:path}/update", self.lifecycle.post_update, methods=["POST"]),
                Route("/api/docs/{name:path}/ops", self.lifecycle.document_ops, methods=["POST"]),
                Route(
                    "/api/docs/{name:path}/restore",
                    self.lifecycle.restore_document,
                    methods=["POST"],
                ),
                Route(
                    "/api/docs/{name:path}",
                    self.lifecycle.document_resource,
                    methods=["PUT", "DELETE"],
                ),
            ]
        if frontend:
            files = frontend_dir()
            headers = security.page_headers(self.settings.frame_ancestors)
            static = StaticFiles(directory=files, check_dir=False)
            routes += [
                Route("/", self.page("index.html", headers)),
                Route("/d/{name:path}", self.page("editor.html", headers)),
                Mount("/static", SecurityHeaders(static, headers), name="static"),
            ]
        return routes

    # ------------------------------------------------------------------ WebSockets

    async def yjs_endpoint(self, websocket: WebSocket) -> None:
        await self.serve_peer(websocket, "yjs")

    async def text_endpoint(self, websocket: WebSocket) -> None:
        await self.serve_peer(websocket, "text")

    async def deny(self, websocket: WebSocket, status: int, reason: str, why: str) -> None:
        """Refuse an upgrade before accepting it: an HTTP answer, nothing loaded."""
        self.refuse(reason, why, websocket)
        response = error_response(status, why)
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(1008, close_reason(why))  # the server answers 403

    async def _admit(
        self, websocket: WebSocket
    ) -> tuple[str, tuple[Access, float | None]] | Exception:
        """The document name and what the connection may do, or why not."""
        try:
            name = self.hub.validate_address(websocket.path_params["name"])
        except InvalidNameError as error:
            return error
        try:
            return name, await self.admission.access(websocket, name)
        except AccessDenied as denied:
            return denied

    async def serve_peer(self, websocket: WebSocket, kind: str) -> None:
        settings = self.settings
        headers = websocket.headers
        scheme = websocket.scope.get("scheme", "http")  # as `websocket.url.scheme`, unparsed
        why = self.origins.check(headers.get("origin"), headers.get("host"), scheme)
        if why is not None:
            await self.deny(websocket, 403, "origin", why)
            return
        if self.authenticate is None:  # nothing in it waits: no task and timer for a timeout
            admitted = await self._admit(websocket)
        else:
            try:
                admitted = await asyncio.wait_for(self._admit(websocket), settings.upgrade_timeout)
            except TimeoutError:
                await self.deny(websocket, 503, "upgrade-timeout", "authentication took too long")
                return
        await websocket.accept()
        connection = StarletteConnection(websocket, self.metrics, kind)
        if isinstance(admitted, InvalidNameError):
            self.refuse("name", str(admitted), websocket)
            await connection.close(CloseCode.BAD_NAME, f"invalid document name: {admitted}")
            return
        if isinstance(admitted, AccessDenied):
            self.refuse("token" if self.secret else "authenticate", admitted.reason, websocket)
            await connection.close(admitted.close_code, admitted.reason)
            return
        name, (access, bound) = admitted
        runner = await self._open(connection, name)
        if runner is None:
            return
        gauge = self.metrics.open[kind]
        gauge.inc()
        peer_id = runner.connect(connection, kind, access.user, access.readonly)
        ticket = ticket_for(runner, peer_id, access)
        counters = self.metrics.received[kind]
        reader = PeerReader(
            runner,
            self.settings,
            peer_id,
            kind,
            counters,
            self._valid_first,
            lambda reason, why: self.refuse(reason, why, websocket),
        )
        reader.ticket = ticket
        if self.secret:
            check = lambda token: self.grant(token, name)  # noqa: E731
            reply = replier(connection)
            live = self.hub.live
            readonly = access.readonly
            reader.renew = Renewal(kind, live, ticket, check, reply, readonly=readonly, bound=bound)
        try:
            if self.hub.live.admit(ticket):
                await read_peer(websocket, reader)
            else:  # revoked while its document loaded
                runner.close_peer(peer_id, CloseCode.UNAUTHORIZED, REVOKED)
                await runner.wait_closed(peer_id, settings.close_timeout)
        finally:
            self.hub.live.forget(ticket)
            gauge.dec()
            runner.disconnect(peer_id)

    async def _open(self, connection: StarletteConnection, name: str) -> DocumentRunner | None:
        try:
            return await self.open_document(name, connection.websocket)
        except Unavailable as error:
            await connection.close(error.code, error.reason)
            return None

    async def open_document(self, name: str, websocket: WebSocket) -> DocumentRunner:
        """The runner of document `name` for a peer of `websocket` (a new document counts
        against the creation caps); raises `Unavailable` with the close code and reason."""
        if self.hub.health().closing:
            raise Unavailable(CloseCode.GOING_AWAY, "server shutting down")
        try:
            if self.hub.is_loaded(name):
                return await self.hub.open(name)
            try:
                return await self.hub.open(name, create=False)
            except DocumentNotFoundError:
                pass
            address = websocket.client.host if websocket.client else ""
            limit = self._count_new(name, address)
            if limit is not None:
                why = f"too many new documents ({limit} limit per minute): try again later"
                self.refuse("new-documents", why, websocket)
                raise Unavailable(CloseCode.TRY_LATER, why)
            return await self.hub.open(name)
        except Unavailable:
            raise
        except CorruptDocumentError as error:
            log.error("%s: cannot load: %s", name, error)
            reason = "document cannot be loaded: damaged on disk"
            raise Unavailable(CloseCode.INTERNAL, reason) from None
        except Exception:
            log.exception("%s: cannot load", name)
            raise Unavailable(CloseCode.INTERNAL, "document cannot be loaded") from None

    def _count_new(self, name: str, address: str) -> str | None:
        """Count a document creation, once per name and minute (peers that open a new
        document together are one creation); which limit refused it, or None."""
        now = time.monotonic()
        if len(self._created) > 4096:
            self._created = {n: t for n, t in self._created.items() if now - t < 60}
        counted = self._created.get(name)
        if counted is not None and now - counted < 60:
            return None
        limit = self.new_documents.allow(address)
        if limit is None:
            self._created[name] = now
        return limit

    def _valid_first(self, kind: str, data: bytes | str) -> bool:
        """Whether a message proves the peer speaks the protocol (checked until one does)."""
        if kind == "yjs":
            if not isinstance(data, bytes):
                return False
            try:
                protocol.decode(data)
            except protocol.ProtocolError:
                return False
            return True
        if not isinstance(data, str):
            return False
        try:
            return isinstance(parse(data, self.settings.max_op_components), Hello)
        except MessageError:
            return False

    # ------------------------------------------------------------------ HTTP

    async def healthz(self, request: Request) -> Response:
        """503 while the store refuses writes, or while a document that failed is not
        loaded again (`Hub.reload`): a load balancer sends peers elsewhere."""
        health = self.hub.health()
        body = {"documents_loaded": health.loaded, "document_restarts": health.restarts}
        reason = None
        if not self.healthy():
            reason = "the store refuses writes"
        elif health.reloading:
            reason = f"{health.reloading} failed document(s) not loaded again yet"
        if reason is not None:
            return JSONResponse({"status": "failing", "reason": reason, **body}, status_code=503)
        return JSONResponse({"status": "ok", **body})

    async def metrics_endpoint(self, request: Request) -> Response:
        settings = self.settings
        if settings.metrics_token or self.secret:
            token = security.find_token(request.query_params, request.headers, {}, "")
            allowed = bool(settings.metrics_token) and token == settings.metrics_token
            if not allowed and self.secret:
                try:
                    allowed = self.grant(token).covers("*")
                except tokens.TokenError:
                    allowed = False
            if not allowed:
                self.refuse("token", "metrics need the metrics token or a '*' token", request)
                return error_response(401, "metrics need the metrics token or a '*' token")
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def list_documents(self, request: Request) -> Response:
        allowed = lambda name: True  # noqa: E731
        if self.secret:
            token = security.find_token(request.query_params, request.headers, request.cookies, "")
            try:
                grant = self.grant(token)
            except tokens.TokenError as error:
                self.refuse("token", error.reason, request)
                return error_page(request, 401, error.reason, self.page_headers)
            allowed = grant.covers
        documents: dict[str, dict[str, Any]] = {}
        for info in await self.hub.stored():
            documents[info.name] = {
                "name": info.name,
                "size_bytes": info.size_bytes,
                "rev": info.rev,
                "peers": 0,
                "loaded": False,
            }
        for runner in self.hub.loaded():
            name = runner.name
            entry = documents.setdefault(name, {"name": name, "size_bytes": runner.size_bytes})
            entry.update(rev=runner.rev, peers=runner.peer_count, loaded=True)
        shown = [d for d in documents.values() if allowed(d["name"])]
        for entry in shown:
            await self._summarize(entry)
        return JSONResponse({"documents": sorted(shown, key=lambda d: d["name"])})

    async def _summarize(self, entry: dict[str, Any]) -> None:
        """`text_chars` and `last_edit` (ISO 8601 or null) of a listed document: a name
        opened but never written holds no text."""
        entry.update(text_chars=0, last_edit=None)
        if not entry["rev"]:
            return
        try:
            summary = await self.summaries.get(entry["name"], entry["rev"], entry["size_bytes"])
        except Exception as error:  # a damaged document is listed, without a summary
            log.warning("%s: no summary for the list: %r", entry["name"], error)
            return
        if summary is not None:
            last = summary.last_edit
            entry.update(text_chars=summary.chars, last_edit=last and iso_time(last))

    async def document_text(self, request: Request) -> Response:
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        if "at" in request.query_params or "time" in request.query_params:
            return await self.history.text_at(request, runner)
        if self.history.built_elsewhere(runner):
            return await self.history.current_text(request, runner)
        headers = {"X-Collab-Rev": str(runner.rev)}  # what a service's op is made against
        return self.respond(
            runner.text.encode(), "text/plain; charset=utf-8", request, headers=headers
        )

    async def document_update(self, request: Request) -> Response:
        runner = await self._existing(request)
        if isinstance(runner, Response):
            return runner
        if self.history.built_elsewhere(runner):
            return await self.history.current_state(request, runner)
        headers = {"X-Collab-Rev": str(runner.rev)}
        return self.respond(runner.state, "application/octet-stream", request, headers=headers)

    def respond(self, body: bytes, media_type: str, request: Request, **options: Any) -> Response:
        """A response that may be big: capped and sent within a deadline (`web_big`)."""
        refuse = functools.partial(self._refuse_big, request)
        return self.big_responses.respond(body, media_type, refuse, **options)

    def _refuse_big(self, request: Request, reason: str, why: str) -> None:
        self.refuse(reason, why, request)

    async def _existing(self, request: Request) -> DocumentRunner | Response:
        try:
            name = self.hub.validate(request.path_params["name"])
            await self.access(request, name)
            return await self.hub.open(name, create=False)
        except InvalidNameError as error:
            return error_page(request, 400, f"invalid document name: {error}", self.page_headers)
        except AccessDenied as denied:
            self.refuse("token" if self.secret else "authenticate", denied.reason, request)
            return error_page(request, denied.status, denied.reason, self.page_headers)
        except DocumentNotFoundError:
            return error_page(request, 404, "no such document", self.page_headers)
        except CorruptDocumentError as error:
            log.error("%s: cannot load: %s", request.path_params["name"], error)
            return error_response(500, "document cannot be loaded: damaged on disk")

    def page(self, filename: str, headers: dict[str, str]) -> Any:
        """A page of the frontend, its script and style linked under the mount prefix.

        With a token in the URL (``/d/notes?token=...``) the page sets it as an HttpOnly
        cookie for the mount path and redirects to the same URL without it, so the token
        leaves the address bar and every reconnect (and the history view) carries it.
        """

        async def serve(request: Request) -> Response:
            token = request.query_params.get("token")
            if token and self.secret:
                return self._token_redirect(request, token, headers)
            try:
                if "name" in request.path_params:
                    self.hub.validate_address(request.path_params["name"])
            except InvalidNameError as error:
                return error_page(request, 400, f"invalid document name: {error}", headers)
            path = frontend_dir() / filename
            if not path.exists():
                return error_response(404, f"{filename} is missing from the frontend")
            prefix = html.escape(request.scope.get("root_path", ""), quote=True)
            body = path.read_text(encoding="utf-8").replace("{{prefix}}", prefix)
            return Response(body, media_type="text/html; charset=utf-8", headers=headers)

        return serve

    def _token_redirect(self, request: Request, token: str, headers: dict[str, str]) -> Response:
        raw_name = request.path_params.get("name")
        try:
            name = self.hub.validate(raw_name) if raw_name is not None else ""
            grant = self.grant(token)
            if name and not grant.covers(name):
                raise tokens.TokenError(f"the token is not for this document ({grant.doc!r})", 403)
        except (InvalidNameError, tokens.TokenError) as error:
            status = getattr(error, "status", 400)
            self.refuse("token", str(error), request)
            reason = f"invalid document name: {error}" if status == 400 else str(error)
            return error_page(request, status, reason, headers)
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        response = RedirectResponse(path + (f"?{query}" if query else ""), 303)
        response.set_cookie(
            security.document_cookie(name) if name else security.TOKEN_COOKIE,
            token,
            max_age=max(0, int(grant.expires - time.time())),
            path=request.scope.get("root_path", "") or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        response.headers.update(headers)
        return response
