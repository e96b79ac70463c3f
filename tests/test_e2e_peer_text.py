"""Strings a peer chose that no encoder or store can carry (issue 18, findings 1 and 2).

JSON lets a peer send a lone surrogate (``"\\ud800"``) or a NUL (``"\\u0000"``) as a user
name, in a text client's hello or presence or in a Yjs peer's awareness. Before, a lone
surrogate froze the document on every process (the frame encoder raised inside its send
loop) and, as a record's user, made every commit fail; a NUL did the latter on PostgreSQL.
Now both become U+FFFD where they come in, the same on every door and store, and the
document carries on. Document names holding them are refused, on every store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from conftest import ServerProcess
from pyclient import YClient
from redis_server import RedisServer
from text_tab import Tab
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.yjs import protocol
from collab.yjs.protocol import AwarenessEntry

# Unicode that must survive around the bad characters: emoji, ZWJ, CJK, combining marks.
AROUND = "Ada 👨‍👩‍👧 中文 e\u0301"
BAD_NAMES = {  # what a peer sends (json.dumps writes \ud800 and \u0000) -> what is shown
    "lone surrogate": (AROUND + "\ud800", AROUND + "\ufffd"),
    "NUL": (AROUND + "\x00", AROUND + "\ufffd"),
    "both": ("\udfff" + AROUND + "\x00\ud83d", "\ufffd" + AROUND + "\ufffd\ufffd"),
}
PIECES = ["😀", "👍🏽", "中文", "e\u0301", "\r\n"]


async def history_users(server: ServerProcess, name: str) -> set[str | None]:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        response = await http.get(f"/api/docs/{name}/history", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {revision["user"] for revision in response.json()["revisions"]}


async def healthz(server: ServerProcess) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        return await http.get("/healthz")


async def attack(url: str, yjs_url: str, door: str, index: int, bad: str) -> Tab | YClient:
    """One peer that names itself `bad` through `door`, then types (so a record has its
    name as user: no token, no `sub`)."""
    piece = f"<{door}{index}{PIECES[index % len(PIECES)]}>"
    if door == "awareness":
        peer = await YClient.connect(yjs_url)
        await peer.synced()
        # As a browser's: a uint32 client id (pycrdt's own may have the bit of text clients).
        state = {"user": {"name": bad, "color": "#c00\x00"}}
        peer.send_raw(protocol.encode_awareness([AwarenessEntry(4_000_000 + index, 1, state)]))
        peer.append(piece)
        return peer
    tab = await Tab.join(url, f"{door}-{index}", bad if door == "hello" else None)
    if door == "presence":
        await tab.send([{"type": "presence", "selection": None, "user": {"name": bad}}])
    await tab.type(piece)
    return tab


def start(request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess], store: str):
    if store == "postgresql":
        return start_server("--store", request.getfixturevalue("postgres_url"))
    return start_server("--fsync", "never")


@pytest.mark.parametrize("store", ["file", "postgresql"])
@pytest.mark.parametrize("door", ["hello", "presence", "awareness"])
async def test_bad_user_names_are_replaced_and_the_document_carries_on(
    request: pytest.FixtureRequest,
    start_server: Callable[..., ServerProcess],
    store: str,
    door: str,
) -> None:
    server = start(request, start_server, store)
    name = "names/ünï 😀"
    url = f"{server.ws_url}/ot/{name}"
    yjs_url = f"{server.ws_url}/yjs/{name}"
    watcher = await Tab.join(url, "watcher", "Wát 😀")
    yjs = await YClient.connect(yjs_url)
    await yjs.synced()
    attackers = [
        await attack(url, yjs_url, door, index, bad)
        for index, (bad, _) in enumerate(BAD_NAMES.values())
    ]
    shown = {shown for _, shown in BAD_NAMES.values()}
    await watcher.until(lambda: shown <= watcher.names_shown(), "the names, with U+FFFD")
    await watcher.type("alive 👨‍👩‍👧")  # acknowledged: committed, the pump runs
    yjs.append("yjs e\u0301")
    await watcher.until(lambda: watcher.client.text.endswith("yjs e\u0301"), "the Yjs edit")
    await yjs.wait_text(watcher.client.text)
    assert watcher.closed is None and not yjs.closed
    users = await history_users(server, name)
    assert {f"~{shown}" for shown in shown} <= users, users
    assert (await healthz(server)).status_code == 200
    assert "Traceback" not in server.log()
    for peer in (watcher, yjs, *attackers):
        await peer.close()


async def test_over_redis_a_bad_name_freezes_no_process(
    start_server: Callable[..., ServerProcess], postgres_url: str, redis_server: RedisServer
) -> None:
    """Awareness and presence travel to the other process (the bus); its text clients are
    shown the same names, and its document keeps acknowledging."""
    args = ["--store", postgres_url, "--bus", redis_server.url]
    here, there = start_server(*args), start_server(*args)
    name = "over-redis/中文"
    watcher = await Tab.join(f"{there.ws_url}/ot/{name}", "watcher")
    attackers = [
        await attack(f"{here.ws_url}/ot/{name}", f"{here.ws_url}/yjs/{name}", door, i, bad)
        for i, (door, bad) in enumerate(
            [("awareness", BAD_NAMES["lone surrogate"][0]), ("hello", BAD_NAMES["both"][0])]
        )
    ]
    shown = {BAD_NAMES["lone surrogate"][1], BAD_NAMES["both"][1]}
    await watcher.until(lambda: shown <= watcher.names_shown(), "the names over the bus")
    await watcher.type("still here 🇫🇷")
    await watcher.until(lambda: "<awareness0" in watcher.client.text, "the other process's edits")
    assert {f"~{shown}" for shown in shown} <= await history_users(there, name)
    for server in (here, there):
        assert (await healthz(server)).status_code == 200
        assert "Traceback" not in server.log()
    for peer in (watcher, *attackers):
        await peer.close()


@pytest.mark.parametrize("store", ["file", "postgresql"])
async def test_document_names_with_nul_are_refused_on_every_store(
    request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess], store: str
) -> None:
    server = start(request, start_server, store)
    for encoded in ["a%00b", "%E4%B8%AD%00%F0%9F%98%80", "%00"]:
        for door in ("ot", "yjs"):
            async with connect(f"{server.ws_url}/{door}/{encoded}", proxy=None) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                assert ws.close_code == 4400, (door, encoded, ws.close_code)
                assert "NUL" in (ws.close_reason or "")
        async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
            response = await http.get(f"/api/docs/{encoded}/text")
            assert response.status_code == 400, response.text
            assert "NUL" in response.json()["error"]
    tab = await Tab.join(f"{server.ws_url}/ot/a%E2%90%80b", "honest")  # U+2400, a NUL's picture
    await tab.type("fine")
    await tab.close()
    assert "Traceback" not in server.log()


async def test_a_secret_no_encoder_takes_is_a_bad_message(server: ServerProcess) -> None:
    async with connect(f"{server.ws_url}/ot/secrets", proxy=None) as ws:
        secret = "\ud800" + "x" * 20
        await ws.send(json.dumps({"type": "hello", "secret": secret, "user": {"name": "x"}}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and error["code"] == "bad-message", error
        tab = await Tab.join(f"{server.ws_url}/ot/secrets", "honest")  # the document is fine
        await tab.type("ok")
        await tab.close()
