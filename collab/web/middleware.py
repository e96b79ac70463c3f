"""ASGI middleware of the edge: security headers on pages, the Host check on every request,
and the WebSocket doors dispatched ahead of Starlette's stack."""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection
from starlette.routing import Match, WebSocketRoute
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


class Doors:
    """ASGI middleware: a WebSocket upgrade to one of the doors goes straight to its
    endpoint; everything else goes to `app` (a Starlette app with the same routes).

    Starlette's stack for a WebSocket (its error and exception middleware, the router's
    walk over every route, the route's session wrapper) is a dozen calls, coroutines and
    closures per connection that do nothing for these doors: their endpoints catch their
    own errors and refuse with their own codes, and the stack's coroutines and closures
    stay alive, for the garbage collector to walk, as long as the connection. The checks
    (Host before this, Origin, tokens, caps, metrics) are the endpoints' own, the same
    either way, and a path matches a door exactly as Starlette's router matches it (the
    routes' own `matches`). A scope with a root path (the app mounted under a prefix) is
    left to Starlette.
    """

    def __init__(self, app: ASGIApp, doors: list[WebSocketRoute]) -> None:
        self.app = app
        self.doors = doors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not scope.get("root_path"):
            for door in self.doors:
                match, child_scope = door.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self.app  # as Starlette's routing leaves the scope
                    scope.update(child_scope)  # the endpoint and the path parameters
                    await door.endpoint(WebSocket(scope, receive=receive, send=send))
                    return
        await self.app(scope, receive, send)
