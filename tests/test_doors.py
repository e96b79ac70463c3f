"""The WebSocket doors of the standalone app (`Collab.app()`, what `collab serve` runs) are
dispatched ahead of Starlette's middleware stack and router (`collab.web.middleware.Doors`):
the same endpoints, the same checks, about ten fewer coroutines and closures per connection.
Everything else (HTTP, a door under a root path) still goes through Starlette."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import free_port
from pyclient import YClient, url_name
from raw_ws import close_of, raw_connect, raw_websocket, read_all
from starlette.routing import Router

from collab.config import Settings
from collab.web.engine import Collab
from collab.wire import CloseCode

NAME = "doors/👩‍👩‍👧 中文 e\u0301"


@pytest.fixture
def router_scopes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The type and path of every scope Starlette's router is handed."""
    seen: list[str] = []
    original = Router.__call__

    async def counted(self: Router, scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"{scope['type']} {scope.get('path')}")
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counted)
    yield seen


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Collab, str]]:
    """`Collab().app()` under uvicorn in this process; yields the engine and host:port."""
    port = free_port()
    engine = Collab(settings=Settings(data_dir=tmp_path / "data", port=port, **settings))
    config = uvicorn.Config(
        engine.app(), host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):  # it starts, or the test fails (never hangs)
        while not server.started:
            assert not task.done(), "the app did not start"
            await asyncio.sleep(0.01)
    try:
        yield engine, f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def test_a_yjs_peer_is_served_without_starlettes_router(
    tmp_path: Path, router_scopes: list[str]
) -> None:
    async with serving(tmp_path) as (engine, host):
        url = f"ws://{host}/yjs/{url_name(NAME)}"
        async with await YClient.connect(url) as writer, await YClient.connect(url) as reader:
            writer.insert(0, "héllo 😀 👍🏽 🇫🇷 中文 e\u0301\r\n")
            await reader.wait_text("héllo 😀 👍🏽 🇫🇷 中文 e\u0301\r\n")
            assert not writer.errors and not reader.errors
        assert await engine.get_text(NAME) == "héllo 😀 👍🏽 🇫🇷 中文 e\u0301\r\n"
        async with httpx.AsyncClient() as http:  # HTTP still goes through the router
            answer = await http.get(f"http://{host}/healthz")
        assert answer.status_code == 200
    assert not [scope for scope in router_scopes if scope.startswith("websocket")]
    assert "http /healthz" in router_scopes


async def test_every_door_and_its_refusals_skip_the_router(
    tmp_path: Path, router_scopes: list[str]
) -> None:
    async with serving(tmp_path, allowed_origins="https://editor.example") as (_, host):
        port = int(host.rsplit(":", 1)[1])
        for path in ("/ot/doors", "/hocuspocus", f"/yjs/{url_name(NAME)}"):
            sock = await asyncio.to_thread(raw_websocket, port, path)  # 101, then close
            sock.close()
        wrong_origin = await asyncio.to_thread(_upgrade, port, "/yjs/x", "https://evil.example")
        assert wrong_origin.startswith(b"HTTP/1.1 403 "), wrong_origin[:80]
        assert b"origin" in wrong_origin.lower()
        bad_name = await asyncio.to_thread(_upgrade, port, "/yjs/a/%2E%2E/b", None)
        assert bad_name.startswith(b"HTTP/1.1 101 "), bad_name[:80]  # then closed:
        closed = close_of(bad_name)
        assert closed is not None and closed[0] == CloseCode.BAD_NAME, closed
        assert b"invalid document name" in closed[1]
    assert not [scope for scope in router_scopes if scope.startswith("websocket")]


async def test_paths_match_as_starlettes_routes_match_them(tmp_path: Path) -> None:
    """The doors match a path with the routes' own patterns: a name with a line break
    inside matches no route (refused before accept, as Starlette's router refuses it)."""
    async with serving(tmp_path) as (_, host):
        port = int(host.rsplit(":", 1)[1])
        for path in ("/yjs/a%0Ab", "/ot/a%0Ab"):
            answer = await asyncio.to_thread(_upgrade, port, path, None)
            assert answer.startswith(b"HTTP/1.1 403 "), (path, answer[:80])


async def test_a_door_under_a_root_path_goes_through_starlette(
    tmp_path: Path, router_scopes: list[str]
) -> None:
    engine = Collab(settings=Settings(data_dir=tmp_path / "data"))
    sent: list[dict[str, Any]] = []
    received = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if received:
            return received.pop()
        await asyncio.Event().wait()  # never: the app closes first
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/mounted/yjs/doc",
        "root_path": "/mounted",
        "raw_path": b"/mounted/yjs/doc",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "scheme": "ws",
    }
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(engine.lifespan())
        task = asyncio.create_task(engine.app()(scope, receive, send))
        async with asyncio.timeout(10):  # the app answers, or the test fails
            while not sent:
                await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert router_scopes == ["websocket /mounted/yjs/doc"]


def _upgrade(port: int, path: str, origin: str | None) -> bytes:
    """The server's answer to an upgrade of `path` (with `origin`), up to its hang-up."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    sock = raw_connect(port)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return read_all(sock, timeout=10)
    finally:
        sock.close()
