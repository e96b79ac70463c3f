"""The WebSocket upgrade request, parsed once: on the fast path a whole upgrade head that
arrives in one read goes straight to the WebSocket protocol (websockets parses it), not
through h11 first (collab/server/connections.py). Everything else takes h11's path, and
every case answers as before, on both edges."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import ServerProcess, both_edges
from pyclient import YClient, url_name
from raw_ws import raw_connect, upgrade_request

from collab.server.connections import HTTPProtocol, websocket_upgrade_head
from collab.server.websocket import WebSocketProtocol

NAME = "upgrade/👩‍👩‍👧 中文 e\u0301"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def head(*lines: str) -> bytes:
    return ("\r\n".join(["GET /yjs/doc HTTP/1.1", "Host: 127.0.0.1", *lines]) + "\r\n\r\n").encode()


UPGRADE = ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}")
VERSION = "Sec-WebSocket-Version: 13"


def answer(port: int, data: bytes, pieces: int = 1) -> bytes:
    """Send `data` in `pieces` reads' worth; what the server answers up to the head's end."""
    sock = raw_connect(port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        step = -(-len(data) // pieces)
        for start in range(0, len(data), step):  # the server may read them as one or not:
            sock.sendall(data[start : start + step])  # either way the answer is the same
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
        return response
    finally:
        sock.close()


def test_which_heads_are_upgrades_taken_at_once() -> None:
    whole = head(*UPGRADE, VERSION)
    lower = ("upgrade: websocket", "connection: Upgrade", f"sec-websocket-key: {KEY}")
    expected = head(*lower, "sec-websocket-version: 13").replace(b"Host", b"host")
    assert websocket_upgrade_head(whole) == expected  # names lowered, values kept
    firefox = head("upgrade: WebSocket", "connection: keep-alive, Upgrade")
    assert websocket_upgrade_head(firefox) == firefox.replace(b"Host", b"host")
    assert websocket_upgrade_head(whole[:-2]) is None  # not whole yet
    assert websocket_upgrade_head(whole + b"\x81\x80") is None  # bytes after the head
    assert websocket_upgrade_head(head("Upgrade: websocket", "Connection: keep-alive")) is None
    assert websocket_upgrade_head(head("Upgrade: h2c", "Connection: Upgrade")) is None
    assert websocket_upgrade_head(whole.replace(b"GET", b"POST", 1)) is None
    assert websocket_upgrade_head(head(*UPGRADE, "X-Pad: " + "a" * 17_000)) is None
    assert websocket_upgrade_head(head(*UPGRADE, "no colon here")) is None


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None
        self.written = b""
        self.closed = asyncio.Event()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def close(self) -> None:
        self.closed.set()

    abort = close


async def test_a_whole_upgrade_head_never_goes_through_h11() -> None:
    import h11
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.close", "code": 1000})

    config = uvicorn.Config(app, ws=WebSocketProtocol, http=HTTPProtocol, lifespan="off")
    config.load()
    protocol = HTTPProtocol(config, ServerState(), {})
    transport = _Transport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(head(*UPGRADE, VERSION))
    assert isinstance(transport.protocol, WebSocketProtocol)
    assert protocol.conn.their_state is h11.IDLE  # h11 never parsed it
    await asyncio.wait_for(transport.closed.wait(), 5)  # the app ran, and closed
    assert transport.written.startswith(b"HTTP/1.1 403"), transport.written
    transport.protocol.connection_lost(None)


@both_edges
@pytest.mark.parametrize("pieces", [1, 3])
async def test_an_upgrade_in_one_read_or_several_syncs_unicode(
    start_server: Any, pieces: int
) -> None:
    server: ServerProcess = start_server("--fsync", "never")
    response = answer(server.port, upgrade_request(server.port, "/yjs/x"), pieces)
    assert response.startswith(b"HTTP/1.1 101"), response
    url = f"{server.ws_url}/yjs/{url_name(NAME)}"
    async with await YClient.connect(url) as one, await YClient.connect(url) as two:
        await one.synced()
        await two.synced()
        one.append(NAME + "\r\n🇫🇷")
        await two.wait_text(NAME + "\r\n🇫🇷")


@both_edges
def test_heads_that_are_not_whole_upgrades_answer_as_http(start_server: Any) -> None:
    server: ServerProcess = start_server("--fsync", "never")
    port = server.port
    no_version = answer(port, head(*UPGRADE))  # a WebSocket without its version: refused
    assert no_version.startswith(b"HTTP/1.1 4"), no_version
    not_upgrade = answer(port, head("Upgrade: websocket", "Connection: keep-alive"))
    assert not_upgrade.startswith(b"HTTP/1.1 4"), not_upgrade  # an HTTP GET of a WS route
    firefox = ("Upgrade: websocket", "Connection: keep-alive, Upgrade", f"Sec-WebSocket-Key: {KEY}")
    firefox = answer(port, head(*firefox, VERSION))
    assert firefox.startswith(b"HTTP/1.1 101"), firefox
    huge = answer(port, head(*UPGRADE, VERSION, "X-Pad: " + "a" * 17_000))
    assert huge.startswith(b"HTTP/1.1 4"), huge
