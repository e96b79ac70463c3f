"""HTTP clients that send or read too slowly, through real sockets against `collab serve`.

A request's body has the head's deadline, whether it is dribbled before or after the
response; big responses share a cap and have a send deadline. (Issue 18, findings 6, 11.)
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
from pyclient import YClient
from raw_ws import raw_connect
from test_e2e_bounded import wait_for
from test_security import serve_app

from collab import Collab, MemoryStore, Settings

MiB = 1024 * 1024


def dribble_until_hung_up(sock: socket.socket, seconds: float) -> bool:
    """Send a byte of body every 0.1 s for up to `seconds`, reading whatever comes;
    True once the server hangs up."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"x")
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def read_response_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_a_body_dribbled_after_the_response_is_closed(start_server) -> None:
    server = start_server("--fsync", "never", "--head-timeout", "1")
    sock = raw_connect(server.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nxx")
    assert read_response_head(sock).startswith(b"HTTP/1.1 200")
    assert dribble_until_hung_up(sock, 8), "a dribbled body kept the connection open"
    assert "request body not received in 1 s" in server.log()
    sock.close()


async def test_big_responses_to_clients_that_do_not_read_are_capped(start_server) -> None:
    """Clients that ask for a 12 MiB document and never read: two are sent it at once,
    the others get 503 with Retry-After; the two are dropped after the send timeout and
    their slots serve the next client."""
    server = start_server("--fsync", "never", "--max-big-responses", "2", "--send-timeout", "2")
    writer = await YClient.connect(f"{server.ws_url}/yjs/big")
    await writer.synced()
    for i in range(12):
        writer.append("✍️ 中文 e\u0301\r\n"[i % 5] * MiB)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=30) as http:
        await wait_for(lambda: _size_at_least(http, 12 * MiB), 30, "the document to grow")
        readers = []
        for _ in range(6):
            sock = small_receiver(server.port)
            sock.sendall(b"GET /api/docs/big/update HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            readers.append(sock)
        statuses = sorted(status_of(sock) for sock in readers)
        assert statuses == [200, 200, 503, 503, 503, 503], statuses
        busy = await http.get("/api/docs/big/update")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        # Past the send timeout the two non-readers are dropped and the slots are free.
        await wait_for(lambda: _full_update(http), 15, "a big response to a reader")
        metrics = (await http.get("/metrics")).text
        assert 'collab_refusals_total{reason="big-responses"}' in metrics
        assert 'collab_refusals_total{reason="send-timeout"}' in metrics, metrics
        dropped = "it took nothing of a response in 2 s"  # the edge's own send deadline
        await wait_for(lambda: _logged(server, dropped), 10, "the edge to drop a non-reader")
    for sock in readers:
        sock.close()
    await writer.close()


async def _logged(server: Any, line: str) -> bool:
    return line in server.log()


async def _size_at_least(http: httpx.AsyncClient, size: int) -> bool:
    documents = (await http.get("/api/docs")).json()["documents"]
    return any(d["name"] == "big" and d["size_bytes"] >= size for d in documents)


async def _full_update(http: httpx.AsyncClient) -> bool:
    response = await http.get("/api/docs/big/update")
    return response.status_code == 200 and len(response.content) >= 12 * MiB


def small_receiver(port: int) -> socket.socket:
    """A TCP connection with a tiny receive buffer (it will not read the body)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def status_of(sock: socket.socket) -> int:
    """The response's status, reading no more than its status line's first bytes."""
    sock.settimeout(10)
    data = b""
    while len(data) < 12:
        chunk = sock.recv(12 - len(data))
        assert chunk, data
        data += chunk
    return int(data[9:12])


async def test_big_responses_are_capped_under_a_stock_asgi_server() -> None:
    """Embedded under uvicorn's own protocols: the cap and the send deadline hold (the
    unfinished response makes uvicorn close the connection)."""
    settings = Settings(max_big_responses=1, send_timeout=1, text_door_max_bytes=0)
    engine = Collab(store=MemoryStore(), settings=settings)
    await engine.set_text("big", "中文 ✍️\r\n" * (MiB // 2))  # ~4.5 MiB: past the text door's 2
    async for base in serve_app(engine.app()):
        port = int(base.rsplit(":", 1)[1])
        stalled = await asyncio.to_thread(small_receiver, port)
        request = b"GET /api/docs/big/text HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await asyncio.to_thread(stalled.sendall, request)
        assert await asyncio.to_thread(status_of, stalled) == 200
        async with httpx.AsyncClient(base_url=f"http://{base}", trust_env=False) as http:
            busy = await http.get("/api/docs/big/text")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            deadline = time.monotonic() + 10
            while (response := await http.get("/api/docs/big/text")).status_code != 200:
                assert time.monotonic() < deadline, "the stalled response kept its slot"
                await asyncio.sleep(0.1)
            assert response.text == "中文 ✍️\r\n" * (MiB // 2)
        stalled.close()
        await engine.close()
