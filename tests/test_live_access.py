"""Access that follows people on open connections (issue 22), through real sockets: a
connection that only listens is closed with 4401 when its token expires, on /yjs and /ot;
a fresh token moves the end without reconnecting; `collab token revoke` closes open
connections and refuses new ones within 5 s, and survives a restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import REPO, ServerProcess
from ot_ids import secret_for
from pyclient import YClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.access import tokens
from collab.yjs import protocol

SECRET = "test-secret-for-live-access-0123456789abcdef"
NAME = "live 😀 文"
URL_NAME = "live%20%F0%9F%98%80%20%E6%96%87"


@pytest.fixture
def secured(start_server: Any) -> ServerProcess:
    return start_server("--fsync", "never", "--auth-secret", SECRET)


def expiry(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


def token_id(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def text_door(server: ServerProcess, token: str, who: str = "t") -> ClientConnection:
    """A text client after its welcome."""
    ws = await connect(f"{server.ws_url}/ot/{URL_NAME}?token={token}", proxy=None)
    await ws.send(json.dumps({"type": "hello", "secret": secret_for(who), "rev": None}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome", welcome
    return ws


async def closed(ws: ClientConnection, timeout: float) -> tuple[int | None, str | None]:
    """Read (dropping what comes) until the server closes; its code and reason."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


async def test_listening_connections_are_closed_when_their_token_expires(
    secured: ServerProcess,
) -> None:
    """Nobody sends anything after joining: the server closes both doors at the expiry."""
    token = tokens.mint(SECRET, NAME, user="ada", ttl=3)  # exp: 2 to 3 s from now
    ends = expiry(token)
    listener = await YClient.connect(f"{secured.ws_url}/yjs/{URL_NAME}?token={token}")
    await listener.synced()
    text = await text_door(secured, token)
    assert await listener.wait_closed(timeout=8) == (4401, "the token has expired")
    assert time.time() >= ends - 0.05, "closed before the token's end"
    assert time.time() < ends + 2, "closed long after the token's end"
    assert await closed(text, 8) == (4401, "the token has expired")
    await listener.close()


async def test_a_fresh_token_keeps_a_text_connection_open(secured: ServerProcess) -> None:
    short = tokens.mint(SECRET, NAME, user="ada", ttl=3)
    ws = await text_door(secured, short, "renew")
    other_doc = tokens.mint(SECRET, "elsewhere", user="ada")
    await ws.send(json.dumps({"type": "token", "token": other_doc}))
    refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert refused["type"] == "error" and refused["code"] == "bad-token"
    assert "not for this document" in refused["message"]
    for wrong in (tokens.mint(SECRET, NAME, user="bob"), "garbage", 7):
        await ws.send(json.dumps({"type": "token", "token": wrong}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["code"] == "bad-token", (wrong, answer)
    fresh = tokens.mint(SECRET, NAME, user="ada", ttl=600)
    await ws.send(json.dumps({"type": "token", "token": fresh}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer == {"type": "token", "expires": expiry(fresh)}
    while time.time() <= expiry(short) + 0.5:  # past the first token's end
        await asyncio.sleep(0.05)
    await ws.send(json.dumps({"type": "op", "seq": 1, "rev": 0, "op": ["a 👩‍👩‍👧\r\n中"]}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack == {"type": "ack", "seq": 1, "rev": 1}
    await ws.close()


async def test_a_fresh_token_keeps_a_yjs_connection_open(secured: ServerProcess) -> None:
    short = tokens.mint(SECRET, NAME, ttl=3)
    peer = await YClient.connect(f"{secured.ws_url}/yjs/{URL_NAME}?token={short}")
    await peer.synced()
    peer.send_raw(protocol.encode_auth_token("not a token"))
    await peer.until(lambda: peer.errors, what="the permission-denied answer")
    assert "Auth" in peer.errors[0] or "auth" in peer.errors[0].lower()
    peer.send_raw(protocol.encode_auth_token(tokens.mint(SECRET, NAME, ttl=600)))
    while time.time() <= expiry(short) + 0.5:
        await asyncio.sleep(0.05)
    assert not peer.closed, (peer.close_code, peer.close_reason)
    peer.append("still here ✍️")
    reader = await YClient.connect(
        f"{secured.ws_url}/yjs/{URL_NAME}?token={tokens.mint(SECRET, NAME)}"
    )
    await reader.wait_text("still here ✍️")
    await reader.close()
    await peer.close()


def revoke(server: ServerProcess, *args: str) -> None:
    command = [sys.executable, "-m", "collab", "token", "revoke", *args]
    command += ["--data-dir", str(server.data_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("revoked: ")


async def refused(server: ServerProcess, token: str) -> tuple[int, str]:
    client = await YClient.connect(f"{server.ws_url}/yjs/{URL_NAME}?token={token}")
    await client.until(lambda: client.is_synced or client.closed, what="sync or close")
    await client.close()
    assert client.close_code is not None and client.close_reason is not None
    return client.close_code, client.close_reason


async def test_revocation_closes_open_connections_and_survives_a_restart(
    secured: ServerProcess,
) -> None:
    revoked = tokens.mint(SECRET, NAME, user="ada")
    kept = tokens.mint(SECRET, NAME, user="ada")
    bobs = tokens.mint(SECRET, "*", user="bob")
    peers = {}
    for key, token in (("revoked", revoked), ("kept", kept), ("bob", bobs)):
        peers[key] = await YClient.connect(f"{secured.ws_url}/yjs/{URL_NAME}?token={token}")
        await peers[key].synced()
    text = await text_door(secured, revoked)

    start = time.monotonic()
    revoke(secured, "--id", token_id(revoked))
    assert await peers["revoked"].wait_closed(5) == (4401, "the token was revoked")
    assert await closed(text, 5) == (4401, "the token was revoked")
    assert time.monotonic() - start < 5
    assert await refused(secured, revoked) == (4401, "the token was revoked")
    assert not peers["kept"].closed and not peers["bob"].closed
    async with httpx.AsyncClient(base_url=secured.http_url, trust_env=False) as api:
        for path in (f"/api/docs/{URL_NAME}/text", "/api/docs"):
            answer = await api.get(path, headers={"authorization": f"Bearer {revoked}"})
            assert (answer.status_code, answer.json()["error"]) == (401, "the token was revoked")
        answer = await api.get(f"/d/{URL_NAME}?token={revoked}", follow_redirects=False)
        assert answer.status_code == 401  # no cookie is set for a revoked token
        as_browser = {"accept": "text/html"}
        answer = await api.get(f"/d/{URL_NAME}?token={revoked}", headers=as_browser)
        assert "<h1>Your access was withdrawn</h1>" in answer.text  # words for a person

    revoke(secured, "--user", "bob")  # bob's tokens issued until now
    assert await peers["bob"].wait_closed(5) == (4401, "the token was revoked")
    assert not peers["kept"].closed
    await asyncio.sleep(1.01)  # a token issued in a later second than the revocation
    later = tokens.mint(SECRET, "*", user="bob")
    peers["later"] = await YClient.connect(f"{secured.ws_url}/yjs/{URL_NAME}?token={later}")
    await peers["later"].synced()
    for peer in peers.values():
        await peer.close()

    secured.restart()
    assert await refused(secured, revoked) == (4401, "the token was revoked")
    assert await refused(secured, bobs) == (4401, "the token was revoked")
    again = await YClient.connect(f"{secured.ws_url}/yjs/{URL_NAME}?token={kept}")
    await again.synced()
    await again.close()


def test_a_damaged_revocations_file_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "revocations.json").write_text('{"revocations": [{"before": "yesterday"}]}')
    server = ServerProcess(data_dir, ["--fsync", "never", "--auth-secret", SECRET])
    with pytest.raises(AssertionError, match="revocations"):
        server.start(timeout=15)
    server.kill()


async def test_revocation_reaches_every_process_on_postgresql(
    start_server: Any, postgres_url: str, redis_server: Any
) -> None:
    """Two processes on one PostgreSQL and Redis: a revocation stored by the CLI closes
    the token's connections on both within 5 s, and neither admits it again, also after a
    restart."""
    args = ["--store", postgres_url, "--bus", redis_server.url, "--auth-secret", SECRET]
    servers = [start_server(*args, "--fsync", "never") for _ in range(2)]
    revoked = tokens.mint(SECRET, NAME, user="zoë 👩‍👩‍👧")
    kept = tokens.mint(SECRET, NAME, user="zoë 👩‍👩‍👧")
    peers = []
    for server in servers:
        for token in (revoked, kept):
            peer = await YClient.connect(f"{server.ws_url}/yjs/{URL_NAME}?token={token}")
            await peer.synced()
            peers.append(peer)
    command = [sys.executable, "-m", "collab", "token", "revoke", "--token", revoked]
    command += ["--store", postgres_url]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr
    for peer in peers[0::2]:
        assert await peer.wait_closed(5) == (4401, "the token was revoked")
    assert time.monotonic() - start < 5
    assert not any(peer.closed for peer in peers[1::2])
    for server in servers:
        assert await refused(server, revoked) == (4401, "the token was revoked")
    for peer in peers:
        await peer.close()
    servers[1].restart()
    assert await refused(servers[1], revoked) == (4401, "the token was revoked")
    again = await YClient.connect(f"{servers[1].ws_url}/yjs/{URL_NAME}?token={kept}")
    await again.synced()
    await again.close()


def test_a_y_websocket_provider_sees_why_its_connection_ended(secured: ServerProcess) -> None:
    """The y-websocket provider (Node) in a room opened with a token that expires: its
    `connection-close` event carries 4401 and the reason."""
    from conftest import node_available, require, wait_until
    from yjs_node import NodeYjs

    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    token = tokens.mint(SECRET, NAME, ttl=3)
    with NodeYjs() as node:
        peer = node.peer(secured.ws_url, URL_NAME, params={"token": token})
        peer.insert(0, "from Node 😀")

        def expired() -> list[dict[str, Any]]:
            return [e for e in peer.events("close") if e["code"] == 4401]

        closes = wait_until(expired, 10, "the provider's connection-close with 4401")
        assert closes[0]["reason"] == "the token has expired"  # type: ignore[index]


async def test_revoking_a_user_closes_what_an_authenticate_hook_let_in() -> None:
    """No secret, a hook naming the user: a rule for that user closes the user's open
    connections and refuses none opened after it."""
    from test_security import serve_app

    from collab import Access, Collab, MemoryStore
    from collab.access.revocations import Revocation

    def hook(connection, name):  # type: ignore[no-untyped-def]
        return Access(user=connection.query_params["user"])

    engine = Collab(store=MemoryStore(), authenticate=hook)
    async for base in serve_app(engine.app()):
        url = f"ws://{base}/yjs/{URL_NAME}?user="
        ada = await YClient.connect(url + "ad%C3%A0")
        bob = await YClient.connect(url + "bob")
        await ada.synced()
        await bob.synced()
        assert engine.hub.live.revoke([Revocation(time.time(), user="adà")]) == 1
        assert await ada.wait_closed() == (4401, "the token was revoked")
        ada_again = await YClient.connect(url + "ad%C3%A0")
        await ada_again.synced()  # let in after the rule: not revoked
        ada_again.append("back ✍️")
        await bob.wait_text("back ✍️")
        for client in (ada, bob, ada_again):
            await client.close()
        await engine.close()


async def test_one_timer_closes_each_expired_ticket_once_whatever_the_churn() -> None:
    """`LiveAccess` alone: 2,000 tickets with ends spread over a second, a quarter renewed,
    a quarter forgotten; each of the rest is closed once, at or after its end, and the
    heap does not keep what was forgotten."""
    import random

    from collab.access.live import LiveAccess, Ticket

    live = LiveAccess()
    rng = random.Random(22)
    now = time.time()
    closes: dict[int, list[tuple[float, int, str]]] = {}
    tickets = []
    for index in range(2000):

        def close(code: int, reason: str, index: int = index) -> None:
            closes.setdefault(index, []).append((time.time(), code, reason))

        ticket = Ticket(close, f"user {index} 😀", f"id-{index}", now, now + rng.uniform(0.2, 1.2))
        assert live.admit(ticket)
        tickets.append(ticket)
    renewed, forgotten = set(range(0, 2000, 4)), set(range(1, 2000, 4))
    for index in renewed:
        live.renew(tickets[index], now + 600, f"id-{index}-2", now)
    for index in forgotten:
        live.forget(tickets[index])
    ends = {i: t.expires for i, t in enumerate(tickets)}
    expected = set(range(2000)) - renewed - forgotten
    deadline = time.monotonic() + 10
    while len(closes) < len(expected):
        assert time.monotonic() < deadline, f"{len(closes)} of {len(expected)} closed"
        await asyncio.sleep(0.05)
    assert set(closes) == expected
    for index, calls in closes.items():
        assert len(calls) == 1 and calls[0][1:] == (4401, "the token has expired")
        assert calls[0][0] >= ends[index]
    assert live.tickets == {tickets[i] for i in renewed}
    for index in renewed:
        live.forget(tickets[index])
    assert len(live._heap) <= 2 * len(live.tickets) + 64
    await live.close()
