"""ASGI middleware of the edge: security headers on pages, the Host check on every request,
and the WebSocket doors dispatched ahead of Starlette's stack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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


Door = Callable[[WebSocket], Awaitable[None]]
"""A WebSocket endpoint, as Starlette's `WebSocketRoute` calls it."""


class Doors:
    """ASGI middleware: a WebSocket upgrade to one of the doors goes straight to its
    endpoint; everything else goes to `app` (a Starlette app with the same routes).

    Starlette's stack for a WebSocket (its error and exception middleware, the router's
    matching, the route's session wrapper) is a dozen calls, coroutines and closures per
    connection that do nothing for these doors: their endpoints catch their own errors and
    refuse with their own codes, and the stack's coroutines and closures stay alive, for
    the garbage collector to walk, as long as the connection. The checks (Host before this,
    Origin, tokens, caps, metrics) are the endpoints' own, the same either way.

    `prefixes` maps a path prefix to the door whose `name` path parameter is the rest of
    the path (as `/yjs/{name:path}`: any rest, "" included); `exact` maps whole paths. A
    scope with a root path (the app mounted under a prefix) is left to Starlette.
    """

    def __init__(self, app: ASGIApp, prefixes: dict[str, Door], exact: dict[str, Door]) -> None:
        self.app = app
        self.prefixes = tuple(prefixes.items())
        self.exact = exact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not scope.get("root_path"):
            door, params = self._door(scope["path"])
            if door is not None:
                scope["app"] = self.app  # as Starlette's routing leaves the scope
                scope["path_params"] = params
                await door(WebSocket(scope, receive=receive, send=send))
                return
        await self.app(scope, receive, send)

    def _door(self, path: str) -> tuple[Door | None, dict[str, str]]:
        """The door of `path` and its path parameters; (None, {}) for no door."""
        door = self.exact.get(path)
        if door is not None:
            return door, {}
        for prefix, door in self.prefixes:
            if path.startswith(prefix):
                return door, {"name": path[len(prefix) :]}
        return None, {}
