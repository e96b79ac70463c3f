"""ASGI middleware of the edge: security headers on pages, the Host check on every request."""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from collab.access import http as security
from collab.access.limits import LogThrottle
from collab.metrics import Metrics
from collab.web.history import error_response

log = logging.getLogger("collab.web")


class SecurityHeaders:
    """ASGI wrapper adding headers to every HTTP response of `app` (the pages, static)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = list(security.header_pairs(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """ASGI middleware: answer only requests whose Host is one the server is reached by
    (DNS rebinding); 421 Misdirected Request otherwise, for an upgrade too (before
    accept)."""

    def __init__(self, app: ASGIApp, policy: security.HostPolicy, metrics: Metrics) -> None:
        self.app = app
        self.policy = policy
        self.metrics = metrics
        self.throttle = LogThrottle(10.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.policy.any:
            await self.app(scope, receive, send)
            return
        host = HTTPConnection(scope).headers.get("host")
        why = self.policy.check(host)
        if why is None:
            await self.app(scope, receive, send)
            return
        self.metrics.refused("host")
        held = self.throttle.should_log()
        if held is not None:
            log.warning("refused %s: %s (%d more not logged)", scope.get("path"), why, held)
        response = error_response(421, why)
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            await response(scope, receive, send)
