"""The log is the truth with real Yjs clients (issue 9): `collab serve`, y-websocket providers
under Node, text clients and hostile peers over real sockets.

- An embed (``ytext.insertEmbed``) is refused, with a text peer connected and without: the
  peer is told (1002 and a reason), nothing is stored, the others are unaffected and text
  clients' positions stay right (finding 4).
- A Yjs client inserting and deleting at every UTF-16 index of a text with emoji and ZWJ
  sequences: the edits inside a pair are refused, the others apply, every replica ends
  equal (finding 5).
- A randomized run: honest Yjs peers (Node and pycrdt) and text clients edit while a
  hostile peer sends crafted updates; at the end every replica, the server and the replayed
  log agree, and compaction never failed (findings 3-5).
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import ServerProcess, node_available, require, wait_until
from hostile_updates import EITHER, REFUSED, dangling
from pyclient import YClient
from test_e2e_exactly_once import Line
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from yjs_node import NodeYjs, YPeer

from collab.replay.verify import verify
from collab.storage.files import FileStore
from collab.testing import replay_log
from collab.text.client import TextClient
from collab.yjs import protocol
from collab.yjs.update import decode_state_vector

pytestmark = pytest.mark.node

BASE = "a😀b👨‍👩‍👧🇫🇷👍🏽中e\u0301\r\n😀z"
REFUSED_CODES = {1002, 1003, 1007}


@pytest.fixture
def node() -> Iterator[NodeYjs]:
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    process = NodeYjs()
    yield process
    process.kill()


def get(server: ServerProcess, path: str) -> httpx.Response:
    return httpx.get(server.http_url + path, trust_env=False, timeout=10)


def text_of(server: ServerProcess, name: str) -> str:
    response = get(server, f"/api/docs/{urllib.parse.quote(name)}/text")
    assert response.status_code == 200, response.text
    return response.text


def last_rev(server: ServerProcess, name: str) -> int:
    response = get(server, f"/api/docs/{urllib.parse.quote(name)}/history?limit=1")
    assert response.status_code == 200, response.text
    return response.json()["last_rev"]


def refusal(peer: YPeer, timeout: float = 10) -> dict:
    """The close the server sent `peer` for a refused update."""
    wait_until(
        lambda: any(e["code"] in REFUSED_CODES for e in peer.events("close")), timeout, "refusal"
    )
    return next(e for e in peer.events("close") if e["code"] in REFUSED_CODES)


def utf16(text: str) -> list[int]:
    data = text.encode("utf-16-le")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def from_utf16(units: list[int]) -> str:
    return b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le")


# ---------------------------------------------------------------------- embeds


@pytest.mark.parametrize("text_peer", [True, False], ids=["text-peer", "yjs-only"])
async def test_an_embed_from_a_yjs_client_is_refused(
    server: ServerProcess, node: NodeYjs, text_peer: bool
) -> None:
    name = f"embed-{text_peer}"
    honest = node.peer(server.ws_url, name)
    honest.insert(0, "hello world")
    embedder = node.peer(server.ws_url, name)
    embedder.wait_text("hello world")
    client = TextClient()
    line = await Line.open(f"{server.ws_url}/ot/{name}", client) if text_peer else None
    rev = last_rev(server, name)

    embedder.insert_embed(5, {"image": "cat.png"})
    close = refusal(embedder)
    assert close["code"] == 1002 and close["reason"].startswith("update refused"), close
    embedder.destroy()  # the provider would reconnect and be refused again

    assert last_rev(server, name) == rev
    assert text_of(server, name) == "hello world" == honest.text()
    if line is None:
        line = await Line.open(f"{server.ws_url}/ot/{name}", client)
    assert client.text == "hello world"
    await line.send(client.edit([11, "!"]))  # at the end: not one position off
    await line.synced()
    honest.wait_text("hello world!")
    honest.insert(5, ",")
    await line.read_until(lambda m: m["type"] == "op")
    assert client.text == "hello, world!" == text_of(server, name)
    await line.close()


# ---------------------------------------------------------------------- surrogates


@pytest.mark.parametrize("edit", ["insert", "delete"])
def test_a_yjs_client_editing_at_every_utf16_index(
    server: ServerProcess, node: NodeYjs, edit: str
) -> None:
    units = utf16(BASE)
    indices = range(len(units) + 1) if edit == "insert" else range(len(units))
    seeds: dict[int, tuple[YPeer, str]] = {}
    for i in indices:
        name = f"every-{edit}-{i}"
        seed = node.peer(server.ws_url, name)
        seed.insert(0, BASE)
        editor = node.peer(server.ws_url, name)
        editor.wait_text(BASE)
        if edit == "insert":
            splits = 0 < i < len(units) and 0xD800 <= units[i - 1] < 0xDC00
            editor.insert(i, "X")
            expected = from_utf16(units[:i] + utf16("X") + units[i:]) if not splits else BASE
        else:
            splits = 0xD800 <= units[i] < 0xE000
            editor.delete(i, 1)
            expected = from_utf16(units[:i] + units[i + 1 :]) if not splits else BASE
        if splits:
            close = refusal(editor)
            assert close["code"] == 1002 and "surrogate" in close["reason"], (i, close)
            editor.destroy()
        seeds[i] = (seed, expected)
    for i, (seed, expected) in seeds.items():
        name = f"every-{edit}-{i}"
        seed.wait_text(expected)
        assert text_of(server, name) == expected, i
        late = node.peer(server.ws_url, name)
        late.wait_text(expected)
        late.destroy()
        seed.destroy()


# ---------------------------------------------------------------------- randomized run

PIECES = ["a", " ", "é", "e\u0301", "中文", "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "\r\n"]


async def hostile_send(server: ServerProcess, name: str, update: bytes) -> int | None:
    """Send `update` from a fresh Yjs connection; the close code, or None if accepted."""
    async with connect(f"{server.ws_url}/yjs/{name}", proxy=None, compression=None) as ws:
        await ws.send(protocol.encode_sync_update(update))
        try:
            async with asyncio.timeout(0.5):
                async for _ in ws:
                    pass
        except TimeoutError:
            return None
        except ConnectionClosed:
            pass
        return ws.close_code


async def server_state(server: ServerProcess, name: str) -> bytes:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        response = await http.get(f"/api/docs/{urllib.parse.quote(name)}/update")
    return response.content if response.status_code == 200 else b""


async def test_hostile_updates_among_good_edits_leave_one_truth(
    start_server: Callable[..., ServerProcess], node: NodeYjs
) -> None:
    server = start_server("--fsync", "never", "--compact-log-records", "20")
    name = "truth"
    rng = random.Random(20260509)
    typist = node.peer(server.ws_url, name)
    typing = typist.type_randomly(200, seed=9, pause_ms=5)
    ypeers = [await YClient.connect(f"{server.ws_url}/yjs/{name}") for _ in range(2)]
    for peer in ypeers:
        await peer.synced()
    clients = [TextClient() for _ in range(2)]
    lines = [await Line.open(f"{server.ws_url}/ot/{name}", c) for c in clients]
    refused = 0
    for _ in range(120):
        roll = rng.random()
        if roll < 0.3:
            line = rng.choice(lines)
            text = line.client.text
            at = rng.randint(0, len(text))
            op = [n for n in (at, rng.choice(PIECES), len(text) - at) if n not in (0, "")]
            await line.send(line.client.edit(op))
        elif roll < 0.5:
            peer = rng.choice(ypeers)
            peer.insert(rng.randint(0, len(peer.text)), rng.choice(PIECES))
        elif roll < 0.6:
            victim = rng.choice(ypeers)  # finding 3: its next item, not sent yet
            clock = decode_state_vector(victim.doc.get_state()).get(victim.doc.client_id, 0)
            state = await server_state(server, name)
            kind, update, _ = dangling(rng, state, victim.doc.client_id, clock)
            assert await hostile_send(server, name, update) in REFUSED_CODES, kind
            refused += 1
            victim.insert(0, "✓")
        else:
            generator = rng.choice(REFUSED + EITHER)
            made = generator(rng, await server_state(server, name))
            if made is not None:
                kind, update, must_refuse = made
                code = await hostile_send(server, name, update)
                assert code is None or code in REFUSED_CODES, (kind, code)
                if must_refuse:
                    assert code is not None, f"{kind} accepted: {update!r}"
                    refused += 1
        for line in lines:  # read what arrived, answer it
            try:
                async with asyncio.timeout(0.01):
                    await line.read_until(lambda m: False)
            except TimeoutError:
                pass
    typing.result(timeout=60)
    assert refused > 10

    async def agreed() -> str | None:
        for line in lines:
            try:
                async with asyncio.timeout(0.05):
                    await line.read_until(lambda m: False)
            except TimeoutError:
                pass
        texts = {text_of(server, name), typist.text(), *(p.text for p in ypeers)}
        texts |= {c.text for c in clients if not c.pending}
        return texts.pop() if len(texts) == 1 and not any(c.pending for c in clients) else None

    for _ in range(200):
        if (text := await agreed()) is not None:
            break
    else:
        raise AssertionError("the replicas never agreed")
    assert all(not p.errors and not p.closed for p in ypeers)
    for line in lines:
        await line.close()
    for peer in ypeers:
        await peer.close()
    typist.destroy()
    assert server.stop() == 0
    steps = list(replay_log(server.data_dir, name))
    assert steps[-1].text == text
    segments = FileStore(server.data_dir).segments(name)
    assert len(segments) > 1, "compacted at least once"
    assert verify(segments).ok
    assert "compaction" not in server.log() and "Traceback" not in server.log()
