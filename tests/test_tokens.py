"""Tokens read strictly, through real sockets (docs/security.md, Tokens): a claim that is not
exactly what `collab token` mints is refused, never read generously; a connection whose
token has expired may not write."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from conftest import REPO, ServerProcess
from ot_ids import secret_for
from pyclient import YClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.access import tokens

SECRET = "test-secret-for-strict-token-claims-0123456789"
GONE = object()  # a claim left out


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("tokens") / "data"
    server = ServerProcess(data_dir, ["--fsync", "never", "--auth-secret", SECRET]).start()
    yield server
    server.kill()


def signed(doc: Any = "notes", headers: dict[str, Any] | None = None, **changes: Any) -> str:
    """A token signed with the server's secret: what `mint` writes, with `changes`."""
    now = int(time.time())
    claims: dict[str, Any] = {"doc": doc, "iat": now, "exp": now + 600}
    claims.update(changes)
    claims = {key: value for key, value in claims.items() if value is not GONE}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers=headers)


async def yjs_door(server: ServerProcess, name: str, token: str) -> YClient:
    """A Yjs peer once it is synced or closed."""
    client = await YClient.connect(f"{server.ws_url}/yjs/{name}?token={token}")
    await client.until(lambda: client.is_synced or client.closed, what="sync or close")
    return client


def http(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10)


NOT_WHAT_THE_SERVER_MINTS = [
    # read-only, spelled anything but true or false: never writable
    pytest.param({"ro": 1}, id="ro=1"),
    pytest.param({"ro": "true"}, id="ro='true'"),
    pytest.param({"ro": "yes"}, id="ro='yes'"),
    pytest.param({"ro": [True]}, id="ro=[true]"),
    pytest.param({"ro": 0}, id="ro=0"),
    pytest.param({"ro": "false"}, id="ro='false'"),
    pytest.param({"ro": None}, id="ro=null"),
    pytest.param({"readonly": True}, id="unknown claim readonly"),
    pytest.param({"write": False}, id="unknown claim write"),
    # times are numbers of seconds
    pytest.param({"exp": str(int(time.time()) + 600)}, id="exp as a string"),
    pytest.param({"exp": True}, id="exp=true"),
    pytest.param({"nbf": "1"}, id="nbf as a string"),
    pytest.param({"nbf": False}, id="nbf=false"),
    pytest.param({"iat": str(int(time.time()))}, id="iat as a string"),
    pytest.param({"iat": None}, id="iat=null"),
    # the user is text that can be recorded
    pytest.param({"sub": ""}, id="sub empty"),
    pytest.param({"sub": 7}, id="sub a number"),
    pytest.param({"sub": None}, id="sub=null"),
    pytest.param({"sub": "ada\ud800"}, id="sub with a lone surrogate"),
    pytest.param({"sub": "a\x00b"}, id="sub with NUL"),
    # the document: a name, or a pattern whose only "*" ends it
    pytest.param({"doc": "no*tes"}, id="doc with * inside"),
    pytest.param({"doc": "**"}, id="doc **"),
    pytest.param({"doc": ["notes"]}, id="doc a list"),
    pytest.param({"doc": "notes\ud800"}, id="doc with a lone surrogate"),
]


@pytest.mark.parametrize("changes", NOT_WHAT_THE_SERVER_MINTS)
async def test_claims_that_are_not_exactly_what_the_server_mints_are_refused(
    secured: ServerProcess, changes: dict[str, Any]
) -> None:
    token = signed(**changes)
    client = await yjs_door(secured, "notes", token)
    await client.close()
    assert client.close_code == 4401, f"accepted: {changes}"
    assert client.close_reason is not None and "invalid token" in client.close_reason
    async with http(secured) as api:
        answer = await api.get("/api/docs", headers={"authorization": "Bearer " + token})
    assert answer.status_code == 401 and "invalid token" in answer.json()["error"]


async def test_a_truthy_read_only_claim_never_writes_on_the_text_door(
    secured: ServerProcess,
) -> None:
    for ro in (1, "true", "yes", [True]):
        url = f"{secured.ws_url}/ot/notes?token={signed(ro=ro)}"
        hello = {"type": "hello", "secret": secret_for("ro"), "rev": None}
        async with connect(url, proxy=None) as ws:
            with pytest.raises(ConnectionClosed):  # no welcome: closed
                await ws.send(json.dumps(hello))
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4401 and "ro must be true or false" in (ws.close_reason or "")


async def test_what_the_server_mints_and_registered_claims_are_accepted(
    secured: ServerProcess,
) -> None:
    name = "strict 😀"
    writable = [
        tokens.mint(SECRET, name, user="Zoë 👩‍👩‍👧"),
        signed(name, ro=False, iss="billing", jti="a1"),
        signed(name, exp=time.time() + 600.5, nbf=int(time.time()) - 5),
        signed("strict*", iat=GONE),
        signed("*", headers={"typ": "JWT"}),
    ]
    for index, token in enumerate(writable):
        client = await yjs_door(secured, "strict%20%F0%9F%98%80", token)
        assert client.is_synced, (token, client.close_code, client.close_reason)
        client.append(str(index))
        await client.wait_text("".join(str(i) for i in range(index + 1)))
        await client.close()
    viewer = await yjs_door(
        secured, "strict%20%F0%9F%98%80", tokens.mint(SECRET, name, readonly=True)
    )
    assert viewer.is_synced
    await viewer.close()


def test_mint_refuses_what_verify_would_refuse() -> None:
    for doc in ("", "no*tes", "**", "a\x00b"):
        with pytest.raises(ValueError):
            tokens.mint(SECRET, doc)
    for user in ("", "ada\ud800"):
        with pytest.raises(ValueError):
            tokens.mint(SECRET, "notes", user=user)
    env = {**os.environ, "COLLAB_AUTH_SECRET": SECRET}
    command = [sys.executable, "-m", "collab", "token", "no*tes"]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert refused.returncode == 2 and "pattern ending in '*'" in refused.stderr
    assert refused.stdout == ""


# --- a token that expires while the connection is open ------------------------------------


async def text_of(server: ServerProcess, name: str) -> str:
    async with http(server) as api:
        bearer = {"authorization": "Bearer " + tokens.mint(SECRET, "*")}
        answer = await api.get(f"/api/docs/{name}/text", headers=bearer)
    return answer.text


async def test_a_connection_whose_token_expired_may_not_write(secured: ServerProcess) -> None:
    """Nothing sent after the token's `exp` is applied: the connection is closed with 4401
    at the expiry (tests/test_live_access.py), or by its first message after it."""
    name = "expiring"
    token = tokens.mint(SECRET, name, user="ada", ttl=4)  # exp: 3 to 4 s from now
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    writer = await yjs_door(secured, name, token)
    assert writer.is_synced
    writer.append("before 😀")
    text = await connect(f"{secured.ws_url}/ot/{name}?token={token}", proxy=None)
    await text.send(json.dumps({"type": "hello", "secret": secret_for("exp"), "rev": None}))
    welcome = json.loads(await asyncio.wait_for(text.recv(), 10))
    assert welcome["type"] == "welcome"

    async def committed() -> None:
        while (await text_of(secured, name)) != "before 😀":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(committed(), 10)
    assert time.time() < expires, "too slow: the token expired before the test could write"
    while time.time() <= expires:  # the token's end: the wall clock is the condition
        await asyncio.sleep(0.05)
    writer.append(" after 👋")
    assert await writer.wait_closed() == (4401, "the token has expired")
    length = len(welcome["text"])
    op = {
        "type": "op",
        "seq": 1,
        "rev": welcome["rev"],
        "op": ["中文 ", length] if length else ["中文 "],
    }
    with pytest.raises(ConnectionClosed):
        await text.send(json.dumps(op))
        while True:
            assert json.loads(await asyncio.wait_for(text.recv(), 10))["type"] != "ack"
    assert (text.close_code, text.close_reason) == (4401, "the token has expired")
    assert await text_of(secured, name) == "before 😀"  # neither write was applied
    await writer.close()


async def test_an_authenticate_hook_may_end_the_access_too() -> None:
    """`Access(expires=...)` from the hook: with a token too, the earlier end counts."""
    from test_security import serve_app

    from collab import Access, Collab, MemoryStore, Settings

    def hook(connection, name):  # type: ignore[no-untyped-def]
        ended = connection.query_params.get("ended") == "1"
        return Access(user="hooked", expires=time.time() - 1 if ended else None)

    engine = Collab(store=MemoryStore(), settings=Settings(auth_secret=SECRET), authenticate=hook)
    async for base in serve_app(engine.app()):
        url = f"ws://{base}/yjs/doc?token={tokens.mint(SECRET, 'doc')}"
        ended = await YClient.connect(url + "&ended=1")  # its sync step 1 is too late
        assert await ended.wait_closed() == (4401, "the token has expired")
        open_ = await YClient.connect(url)
        await open_.synced()
        open_.append("still writable ✍️")
        other = await YClient.connect(url)
        await other.wait_text("still writable ✍️")  # it went through the server
        for client in (ended, open_, other):
            await client.close()
        await engine.close()
