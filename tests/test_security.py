"""Secure by default, through real sockets: Origin and Host checks, tokens, caps, headers,
metrics (`collab serve` subprocesses; docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import REPO, ServerProcess, both_edges, free_port, wait_until
from ot_ids import secret_for
from pyclient import YClient, url_name
from raw_ws import raw_connect, raw_websocket, read_all
from starlette.applications import Starlette
from test_e2e_hostile import raw_awareness
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab import Access, Collab, MemoryStore, Settings
from collab.access import tokens
from collab.yjs import protocol

SECRET = "test-secret-for-collab-security-tests-0123456789"


def http(server: ServerProcess, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10, headers=headers)


async def refused_status(url: str, **options: object) -> int:
    """The HTTP status a WebSocket upgrade was refused with."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, proxy=None, **options):  # type: ignore[arg-type]
            pass
    return refused.value.response.status_code


async def closed_with(url: str, first: bytes | str | None = None, **options: object) -> tuple:
    """Open `url`, send `first`, and return the close (code, reason) the server sent."""
    async with connect(url, proxy=None, **options) as ws:  # type: ignore[arg-type]
        try:
            if first is not None:
                await ws.send(first)
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


def hello(name: str = "tab") -> str:
    return json.dumps({"type": "hello", "secret": secret_for(name), "rev": None})


# --- Origin -------------------------------------------------------------------------------


async def test_cross_origin_upgrades_are_refused_with_403(server: ServerProcess) -> None:
    evil = {"origin": "http://evil.example"}
    for door in ("yjs", "ot"):
        url = f"{server.ws_url}/{door}/secret"
        assert await refused_status(url, additional_headers=evil) == 403
        assert await refused_status(url, additional_headers={"origin": "null"}) == 403
    # Nothing was loaded or created for the refused attempts.
    async with http(server) as client:
        assert (await client.get("/api/docs")).json()["documents"] == []
        metrics = (await client.get("/metrics")).text
    assert 'collab_refusals_total{reason="origin"} 4.0' in metrics
    assert "origin 'http://evil.example' is not allowed" in server.log()
    # Same origin (the page's own) and no Origin at all (not a browser) pass.
    own = {"origin": server.http_url}
    async with await YClient.connect(f"{server.ws_url}/yjs/secret", additional_headers=own) as c:
        await c.synced()
    async with await YClient.connect(f"{server.ws_url}/yjs/secret") as c:
        await c.synced()


async def test_allowed_origins_are_listed_or_star(start_server) -> None:
    server = start_server("--fsync", "never", "--allowed-origins", "https://app.example")
    url = f"{server.ws_url}/yjs/doc"
    listed = {"origin": "https://app.example"}
    async with await YClient.connect(url, additional_headers=listed) as client:
        await client.synced()
    assert await refused_status(url, additional_headers={"origin": "https://b.example"}) == 403
    star = start_server(
        "--fsync", "never", "--allowed-origins", "*", data_dir=server.data_dir.parent / "d3"
    )
    evil = {"origin": "http://evil.example"}
    async with await YClient.connect(f"{star.ws_url}/yjs/doc", additional_headers=evil) as c:
        await c.synced()


async def test_the_origin_check_compares_the_scheme(server: ServerProcess) -> None:
    """A server reached over http is not the origin https://same-host:same-port, nor ws://."""
    url = f"{server.ws_url}/yjs/scheme"
    twin = f"https://127.0.0.1:{server.port}"
    for origin in (twin, f"ws://127.0.0.1:{server.port}", f"HTTPS://127.0.0.1:{server.port}"):
        assert await refused_status(url, additional_headers={"origin": origin}) == 403, origin
    assert f"origin '{twin}' is not allowed (the server is '{server.http_url}')" in server.log()
    # A TLS proxy on this machine says the page was https (uvicorn trusts X-Forwarded-Proto
    # from the loopback): then https is the server's own origin, and http is not.
    behind = {"origin": twin, "x-forwarded-proto": "https"}
    async with await YClient.connect(url, additional_headers=behind) as client:
        await client.synced()
    downgraded = {"origin": server.http_url, "x-forwarded-proto": "https"}
    assert await refused_status(url, additional_headers=downgraded) == 403


def upgrade_status(port: int, **headers: str) -> int:
    """The status a raw WebSocket upgrade to /yjs/doc with `headers` is answered with."""
    lines = [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    head = ["GET /yjs/doc HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"]
    head += ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    request = "\r\n".join([*head, *lines])
    with raw_connect(port) as sock:
        sock.sendall(request.encode() + b"\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(1024)
            assert chunk, f"hung up after {head!r}"
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_behind_a_tls_proxy_the_public_origin_passes(start_server, monkeypatch) -> None:
    """The documented nginx setup: Host passed unchanged, X-Forwarded-Proto set, believed
    from the proxy's address only (FORWARDED_ALLOW_IPS, default the loopback)."""
    hosts = ("--allowed-hosts", "collab.example.com,127.0.0.1")
    server = start_server("--fsync", "never", *hosts)
    public = {"host": "collab.example.com", "origin": "https://collab.example.com"}
    assert upgrade_status(server.port, **public, x_forwarded_proto="https") == 101
    assert upgrade_status(server.port, **public) == 403  # the proxy did not say https
    assert upgrade_status(server.port, **public, x_forwarded_proto="http") == 403
    plain = {"host": "collab.example.com", "origin": "http://collab.example.com"}
    assert upgrade_status(server.port, **plain) == 101
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")  # the proxy is elsewhere
    other = start_server("--fsync", "never", *hosts, data_dir=server.data_dir.parent / "d2")
    assert upgrade_status(other.port, **public, x_forwarded_proto="https") == 403


# --- Host ---------------------------------------------------------------------------------


async def test_unknown_host_names_are_refused(server: ServerProcess) -> None:
    async with http(server, host="evil.example") as client:
        response = await client.get("/api/docs")
    assert response.status_code == 421 and "not one this server answers to" in response.text
    async with http(server, host=f"localhost:{server.port}") as client:
        assert (await client.get("/api/docs")).status_code == 200
    sock = raw_connect(server.port)
    sock.sendall(
        b"GET /yjs/x HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert read_all(sock).startswith(b"HTTP/1.1 421")


async def test_allowed_hosts_star_answers_any_name(start_server) -> None:
    server = start_server("--fsync", "never", "--allowed-hosts", "*")
    async with http(server, host="whatever.example") as client:
        assert (await client.get("/api/docs")).status_code == 200


# --- tokens -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("secured") / "data"
    server = ServerProcess(data_dir, ["--fsync", "never", "--auth-secret", SECRET]).start()
    yield server
    server.kill()


def token(doc: str, **options: object) -> str:
    return tokens.mint(SECRET, doc, **options)  # type: ignore[arg-type]


async def test_tokens_open_the_doors(secured: ServerProcess) -> None:
    base = f"{secured.ws_url}/yjs/notes"
    # No token, a bad one, an expired one: 4401; a token for another document: 4403.
    assert (await closed_with(base))[0] == 4401
    assert (await closed_with(base + "?token=garbage"))[0] == 4401
    assert (await closed_with(base + "?token=" + token("notes", ttl=-1)))[0] == 4401
    assert (await closed_with(base + "?token=" + token("other")))[0] == 4403
    assert (await closed_with(f"{secured.ws_url}/ot/notes", hello()))[0] == 4401
    # The three ways to carry a valid token.
    writer = await YClient.connect(base + "?token=" + token("notes", user="ada"))
    bearer = {"Authorization": "Bearer " + token("notes")}
    reader = await YClient.connect(base, additional_headers=bearer)
    from collab.access.http import document_cookie

    cookie = {"Cookie": f"{document_cookie('notes')}={token('*')}"}
    third = await YClient.connect(base, additional_headers=cookie)
    for client in (writer, reader, third):
        await client.synced()
    writer.append("by ada 😀")
    await reader.wait_text("by ada 😀")
    await third.wait_text("by ada 😀")
    for client in (writer, reader, third):
        await client.close()
    async with http(secured) as client:
        history = await client.get(
            "/api/docs/notes/history", headers={"Authorization": "Bearer " + token("notes")}
        )
    assert history.json()["revisions"][0]["user"] == "ada"


async def test_read_only_tokens_cannot_edit_on_either_door(secured: ServerProcess) -> None:
    name = "ro-doc"
    writer = await YClient.connect(f"{secured.ws_url}/yjs/{name}?token={token(name)}")
    await writer.synced()
    writer.append("original")
    ro = token(name, readonly=True)
    viewer = await YClient.connect(f"{secured.ws_url}/yjs/{name}?token={ro}")
    await viewer.wait_text("original")
    viewer.append(" changed")
    await viewer.until(
        lambda: any(isinstance(protocol.decode(m), protocol.Auth) for m in viewer.received),
        what="the read-only notice",
    )
    async with connect(f"{secured.ws_url}/ot/{name}?token={ro}", proxy=None) as ws:
        await ws.send(hello("ro-tab"))
        welcome = json.loads(await ws.recv())
        op = {"type": "op", "seq": 1, "rev": welcome["rev"], "op": [8, "!"]}
        await ws.send(json.dumps(op))
        reply = json.loads(await ws.recv())
        while reply["type"] != "error":
            reply = json.loads(await ws.recv())
        assert reply["code"] == "readonly"
    async with http(secured, authorization="Bearer " + ro) as client:
        assert (await client.get(f"/api/docs/{name}/text")).text == "original"
    await writer.close()
    await viewer.close()


async def text_becomes(
    server: ServerProcess, name: str, expected: str, token_: str | None = None
) -> None:
    """Wait (polling the HTTP API, at most 10 s) until the document's text is `expected`:
    the edit is committed."""
    headers = {"authorization": "Bearer " + token_} if token_ else {}
    deadline = asyncio.get_running_loop().time() + 10
    async with http(server, **headers) as client:
        while (text := (await client.get(f"/api/docs/{name}/text")).text) != expected:
            assert asyncio.get_running_loop().time() < deadline, f"{name}: {text!r}"
            await asyncio.sleep(0.02)


async def test_http_api_needs_a_token(secured: ServerProcess) -> None:
    async with await YClient.connect(f"{secured.ws_url}/yjs/team/a?token={token('team/*')}") as c:
        await c.synced()
        c.append("a")
        await text_becomes(secured, "team/a", "a", token("team/*"))
    async with await YClient.connect(f"{secured.ws_url}/yjs/private?token={token('private')}") as c:
        await c.synced()
        c.append("p")
        await text_becomes(secured, "private", "p", token("private"))
    async with http(secured) as client:
        assert (await client.get("/api/docs/team/a/text")).status_code == 401
        assert (await client.get("/api/docs")).status_code == 401
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200  # probes need no token
        team = {"authorization": "Bearer " + token("team/*")}
        assert (await client.get("/api/docs/team/a/text", headers=team)).text == "a"
        other = await client.get("/api/docs/private/text", headers=team)
        assert other.status_code == 403
        listed = (await client.get("/api/docs", headers=team)).json()["documents"]
        assert [d["name"] for d in listed] == ["team/a"]  # only what the token covers
        assert (await client.get("/metrics", headers=team)).status_code == 401
        everything = {"authorization": "Bearer " + token("*")}
        metrics = await client.get("/metrics", headers=everything)
        assert metrics.status_code == 200 and "collab_refusals_total" in metrics.text


async def test_the_page_turns_a_url_token_into_a_cookie(secured: ServerProcess) -> None:
    async with http(secured) as client:
        response = await client.get(f"/d/notes?token={token('notes')}&x=1")
        assert response.status_code == 303
        assert response.headers["location"] == "/d/notes?x=1"
        cookie = response.headers["set-cookie"].lower()
        for part in ("httponly", "samesite=strict", "path=/", "max-age="):
            assert part in cookie, cookie
        assert (await client.get(f"/d/notes?token={token('other')}")).status_code == 403
        assert (await client.get("/d/notes?token=garbage")).status_code == 401


def test_collab_token_command_prints_a_working_token() -> None:
    env = {**os.environ, "COLLAB_AUTH_SECRET": SECRET}
    command = [sys.executable, "-m", "collab", "token", "team/*", "--user", "bob", "--readonly"]
    result = subprocess.run(
        [*command, "--ttl", "60"], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    grant = tokens.access(SECRET, result.stdout.strip(), "team/plan")
    assert grant.user == "bob" and grant.readonly and grant.expires <= time.time() + 60
    env.pop("COLLAB_AUTH_SECRET")
    missing = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert missing.returncode == 2 and "COLLAB_AUTH_SECRET" in missing.stderr


def test_public_bind_without_a_secret_warns(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "collab", "serve", "--host", "0.0.0.0", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "without --auth-secret" in line or "Uvicorn running" in line:
                break
        assert any("without --auth-secret" in line for line in lines), lines
        assert any("file-descriptor limit" in line for line in lines) or True
    finally:
        process.kill()
        process.wait(10)


# --- caps ---------------------------------------------------------------------------------


def held_open(port: int) -> socket.socket:
    """A connection the server has accepted and keeps (keep-alive): one request answered,
    so it is counted before this returns (no waiting on a clock)."""
    sock = raw_connect(port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response or not response.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response
    return sock


def test_connections_per_address_and_in_total(start_server) -> None:
    server = start_server("--fsync", "never", "--max-connections-per-address", "3")
    held = [held_open(server.port) for _ in range(3)]
    refused = raw_connect(server.port)
    assert read_all(refused).startswith(b"HTTP/1.1 503")
    for sock in held:
        sock.close()
    with httpx.Client(base_url=server.http_url, trust_env=False) as client:
        # Released when they closed (the server hears of it a moment later).
        wait_until(lambda: client.get("/healthz").status_code == 200, 10, "released")
    assert "per-address connection limit" in server.log()
    total = start_server(
        "--fsync", "never", "--max-connections", "2", data_dir=server.data_dir.parent / "t"
    )
    held = [held_open(total.port) for _ in range(2)]
    assert read_all(raw_connect(total.port)).startswith(b"HTTP/1.1 503")
    for sock in held:
        sock.close()


def test_silent_and_half_sent_requests_time_out(start_server) -> None:
    server = start_server("--fsync", "never", "--head-timeout", "0.5")
    silent = raw_connect(server.port)
    half = raw_connect(server.port)
    half.sendall(b"GET /api/docs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    upgrade = raw_connect(server.port)
    upgrade.sendall(b"GET /yjs/x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    started = time.monotonic()
    for sock in (silent, half, upgrade):
        assert read_all(sock, timeout=5).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 4
    assert "no request head in 0.5 s" in server.log()


@both_edges
async def test_a_websocket_must_send_a_valid_message_in_time(start_server) -> None:
    server = start_server("--fsync", "never", "--first-message-timeout", "0.5")
    for door in ("yjs", "ot"):
        code, reason = await closed_with(f"{server.ws_url}/{door}/quiet")
        assert code == 4408 and "no valid message" in reason
    # A raw peer that never speaks gets the close frame (and is cut off if it never answers).
    sock = raw_websocket(server.port, "/yjs/quiet")
    sock.settimeout(5)
    data = b""
    while b"\x88" not in data:  # the close frame: 4408 and the reason
        data += sock.recv(65536)
    assert (4408).to_bytes(2, "big") + b"no valid message" in data
    sock.close()
    # A peer that says something valid at once stays.
    async with await YClient.connect(f"{server.ws_url}/yjs/quiet") as client:
        await client.synced()
        await asyncio.sleep(1)
        assert not client.closed


@both_edges
async def test_messages_before_a_valid_one_are_capped(start_server) -> None:
    server = start_server("--fsync", "never", "--preauth-max-messages", "5")
    url = f"{server.ws_url}/ot/budget"
    async with connect(url, proxy=None) as ws:
        op = json.dumps({"type": "op", "seq": 1, "rev": 0, "op": ["x"]})
        with pytest.raises(ConnectionClosed):
            for _ in range(20):
                await ws.send(op)
                await asyncio.wait_for(ws.recv(), 5)  # not-joined, until the close
        assert ws.close_code == 1008 and "before a valid one" in ws.close_reason
    big = start_server(
        "--fsync", "never", "--preauth-max-bytes", "1000", data_dir=server.data_dir.parent / "b"
    )
    code, reason = await closed_with(f"{big.ws_url}/ot/budget", "x" * 2000)
    assert code == 1008 and "bytes before a valid message" in reason


async def test_message_rate_is_capped(start_server) -> None:
    server = start_server(
        "--fsync", "never", "--max-messages-per-second", "20", "--message-burst", "30"
    )
    offender = await YClient.connect(f"{server.ws_url}/yjs/flood")
    good = await YClient.connect(f"{server.ws_url}/yjs/flood")
    await offender.synced()
    await good.synced()
    for clock in range(1, 200):
        offender.send_raw(raw_awareness(99, clock, json.dumps({"n": clock})))
    code, reason = await offender.wait_closed()
    assert code == 1008 and "messages per second" in reason
    good.append("still here")
    await good.until(lambda: not good.closed and good.text == "still here")
    await good.close()
    await offender.close()


async def test_new_documents_per_minute_are_capped(start_server) -> None:
    server = start_server("--fsync", "never", "--max-new-documents-per-minute", "3")
    for i in range(3):
        async with await YClient.connect(f"{server.ws_url}/yjs/new-{i}") as client:
            await client.synced()
    code, reason = await closed_with(f"{server.ws_url}/yjs/new-3")
    assert code == 1013 and "too many new documents" in reason
    # Opening an existing (loaded) document is not creating one.
    async with await YClient.connect(f"{server.ws_url}/yjs/new-0") as client:
        await client.synced()


async def test_awareness_bytes_per_connection_are_capped(start_server) -> None:
    server = start_server("--fsync", "never", "--max-awareness-bytes-per-peer", "1000")
    client = await YClient.connect(f"{server.ws_url}/yjs/aware")
    await client.synced()
    client.send_raw(raw_awareness(5, 1, json.dumps({"pad": "x" * 2000})))
    code, reason = await client.wait_closed()
    assert code == 1008 and "over 1000 bytes" in reason
    await client.close()


async def test_awareness_bytes_per_document_are_capped(start_server) -> None:
    server = start_server("--fsync", "never", "--max-awareness-bytes-per-document", "3000")
    peers = [await YClient.connect(f"{server.ws_url}/yjs/aware") for _ in range(3)]
    for peer in peers:
        await peer.synced()
    for i, peer in enumerate(peers):
        peer.send_raw(raw_awareness(10 + i, 1, json.dumps({"pad": "x" * 1200})))
        if i < 2:  # in this order: the third one passes the document's cap
            await peers[0].until(lambda i=i: peers[0].awareness.get(10 + i) is not None)
    code, reason = await peers[2].wait_closed()
    assert code == 1008 and "this document" in reason
    assert not peers[0].closed and not peers[1].closed
    for peer in peers:
        await peer.close()


async def test_history_requests_are_capped(start_server) -> None:
    server = start_server("--fsync", "never", "--max-history-requests", "0")
    async with await YClient.connect(f"{server.ws_url}/yjs/h") as client:
        await client.synced()
        client.append("x")
        await text_becomes(server, "h", "x")
    async with http(server) as client:
        response = await client.get("/api/docs/h/history")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert (await client.get("/api/docs/h/text?at=1")).status_code == 503
        assert (await client.get("/api/docs/h/text")).status_code == 200  # not history


# --- headers, metrics, health -------------------------------------------------------------


async def test_pages_carry_security_headers_and_no_inline_script(server: ServerProcess) -> None:
    async with http(server) as client:
        for path in ("/", "/d/some doc", "/static/history.html", "/static/editor-page.js"):
            response = await client.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"]
            if path.endswith(".html") or not path.startswith("/static"):
                assert "<script>" not in response.text and "<style>" not in response.text
                assert " style=" not in response.text


async def metrics_text(server: ServerProcess) -> str:
    async with http(server) as client:
        return (await client.get("/metrics")).text


async def metrics_show(server: ServerProcess, line: str, timeout: float = 10.0) -> str:
    """The metrics once they show `line` (they are read when scraped: no fixed wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while line not in (text := await metrics_text(server)):
        assert asyncio.get_running_loop().time() < deadline, f"{line!r} not in {text}"
        await asyncio.sleep(0.05)
    return text


async def test_metrics_count_what_happens(server: ServerProcess) -> None:
    async with await YClient.connect(f"{server.ws_url}/yjs/m") as a:
        await a.synced()
        a.append("hello")
        text = await metrics_show(server, "collab_revisions_committed_total 1.0")
    for line in (
        'collab_connections{door="yjs"} 1.0',
        "collab_documents_loaded 1.0",
        "collab_commit_seconds_count 1.0",
        'collab_messages_received_total{door="yjs"}',
        'collab_messages_sent_total{door="yjs"}',
        "collab_commit_batch_records_bucket",
        'collab_send_queue_overflows_total{action="resync"} 0.0',
    ):
        assert line in text, line


async def test_metrics_count_text_messages_in_utf8_bytes(server: ServerProcess) -> None:
    """A text frame's bytes are its UTF-8, not its characters."""
    from ot_ids import secret_for
    from websockets.asyncio.client import connect

    user = {"name": "Zoë 👩‍👩‍👧 中文 e\u0301"}
    hello = {"type": "hello", "secret": secret_for("b"), "rev": None, "user": user}
    sent = json.dumps(hello, ensure_ascii=False)  # non-ASCII on the wire, not escaped
    assert len(sent.encode()) > len(sent)
    async with connect(f"{server.ws_url}/ot/bytes", compression=None) as ws:
        await ws.send(sent)
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
        await metrics_show(
            server, f'collab_received_bytes_total{{door="text"}} {float(len(sent.encode()))}'
        )


# --- in-process engines: hooks that are slow, stores that fail ----------------------------


class FailingStore(MemoryStore):
    fail = False

    async def append(self, name, records):  # type: ignore[no-untyped-def]
        if self.fail:
            raise OSError("disk full")
        await super().append(name, records)


async def serve_app(app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="error")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_healthz_is_503_while_the_store_fails() -> None:
    store = FailingStore()
    engine = Collab(store=store)
    async for base in serve_app(engine.app()):
        async with httpx.AsyncClient(base_url=f"http://{base}", trust_env=False) as client:
            client_ws = await YClient.connect(f"ws://{base}/yjs/doc")
            await client_ws.synced()
            store.fail = True
            client_ws.append("lost?")
            assert (await client_ws.wait_closed())[0] == 1011
            assert (await client.get("/healthz")).status_code == 503
            store.fail = False
            again = await YClient.connect(f"ws://{base}/yjs/doc")
            await again.synced()
            again.append("ok")
            deadline = asyncio.get_running_loop().time() + 10
            while (await client.get("/healthz")).status_code != 200:  # the next commit
                assert asyncio.get_running_loop().time() < deadline, "still failing"
                await asyncio.sleep(0.02)
            await again.close()
            await client_ws.close()
        await engine.close()


async def test_a_slow_authenticate_hook_hits_the_upgrade_timeout() -> None:
    async def slow(connection, name):  # type: ignore[no-untyped-def]
        await asyncio.sleep(5)
        return Access()

    engine = Collab(store=MemoryStore(), settings=Settings(upgrade_timeout=0.3), authenticate=slow)
    async for base in serve_app(engine.app()):
        assert await refused_status(f"ws://{base}/yjs/doc") == 503
        await engine.close()


async def test_embedders_get_the_origin_check() -> None:
    settings = Settings(allowed_origins="https://app.example")
    engine = Collab(store=MemoryStore(), settings=settings)
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/c", routes=engine.routes())])
    async for base in serve_app(app):
        evil = {"origin": "http://evil.example"}
        assert await refused_status(f"ws://{base}/c/yjs/doc", additional_headers=evil) == 403
        ok = {"origin": "https://app.example"}
        async with await YClient.connect(f"ws://{base}/c/yjs/doc", additional_headers=ok) as c:
            await c.synced()
        await engine.close()


# --- the page, under its real CSP ---------------------------------------------------------


def test_the_page_works_under_its_csp_and_with_a_token(secured: ServerProcess) -> None:
    from conftest import require

    chromium = Path("/usr/bin/chromium")
    require(chromium.exists(), "chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()  # the real CSP: no bypass
            violations: list[str] = []
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security" in m.text else None,
            )
            page.set_default_timeout(15_000)
            name = "csp doc"
            page.goto(f"{secured.http_url}/d/{url_name(name)}?token={token(name, user='ada')}")
            assert "token=" not in page.url
            page.wait_for_selector("#text[contenteditable=true]")
            page.click("#text")
            page.keyboard.type("typed under CSP")
            page.wait_for_selector("#status[data-state=saved]")
            page.reload()  # the cookie carries the token across reconnects
            page.wait_for_selector("#text[contenteditable=true]")
            assert page.evaluate("window.collabEditor.text") == "typed under CSP"
            assert violations == []
        finally:
            browser.close()
    with httpx.Client(base_url=secured.http_url, trust_env=False) as client:
        headers = {"authorization": "Bearer " + token(name)}
        assert client.get(f"/api/docs/{url_name(name)}/text", headers=headers).text == (
            "typed under CSP"
        )
