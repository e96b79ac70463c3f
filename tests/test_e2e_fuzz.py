"""Text-op clients and Yjs peers editing one document at random, over real sockets.

Random edits, random delays, disconnects and resubmissions; at the end every client's
text equals the server's, and no text client's op was applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

import httpx
import pytest
from conftest import ServerProcess
from ot_ids import secret_for
from pyclient import YClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.storage.files import FileStore
from collab.storage.format import read_log_file
from collab.text.client import TextClient

PIECES = ["a", "b", " ", "😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "\r\n"]
STEPS = 150


class LiveTextClient:
    """A TextClient on a real WebSocket, reconnecting on demand."""

    def __init__(self, url: str, client_id: str) -> None:
        self.url = url
        self.client = TextClient(secret_for(client_id))
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def connect(self) -> None:
        self.ws = await connect(self.url, proxy=None, compression=None)
        await self.ws.send(json.dumps(self.client.hello()))
        self.reader = asyncio.create_task(self._read(self.ws))

    async def drop(self) -> None:
        """Cut the connection: what was on the wire is lost, like a network failure."""
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.ws = None

    async def edit(self, rng: random.Random) -> None:
        text = self.client.text
        at = rng.randint(0, len(text))
        cut = rng.randint(0, min(2, len(text) - at))
        insert = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))
        op = [n for n in (at, -cut, insert, len(text) - at - cut) if n not in (0, "")]
        if any(not isinstance(p, int) or p < 0 for p in op):
            await self._send(self.client.edit(op))

    async def _send(self, messages: list[dict]) -> None:
        for message in messages:
            if self.ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(json.dumps(message))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                await self._send(self.client.receive(json.loads(frame)))
                self.changed.set()


async def settled(clients: list[LiveTextClient], peers: list[YClient], http_url: str) -> str:
    """Wait until every client has the server's text, and return it."""
    async with httpx.AsyncClient() as http:
        for _ in range(500):
            text = (await http.get(f"{http_url}/api/docs/fuzz/text")).text
            if all(not c.client.pending and c.client.text == text for c in clients) and all(
                p.text == text for p in peers
            ):
                return text
            await asyncio.sleep(0.02)
    states = [c.client.text for c in clients] + [p.text for p in peers]
    raise AssertionError(f"no convergence: server {text!r}, clients {states!r}")


@pytest.mark.parametrize("seed", [20261126, 7, 1234])
async def test_text_clients_and_yjs_peers_converge_under_random_faults(
    start_server, seed: int
) -> None:
    server: ServerProcess = start_server("--fsync", "never")
    rng = random.Random(seed)
    url = f"{server.ws_url}/ot/fuzz"
    clients = [LiveTextClient(url, f"client-{i}") for i in range(4)]
    for client in clients:
        await client.connect()
    peers = [await YClient.connect(f"{server.ws_url}/yjs/fuzz") for _ in range(2)]
    for peer in peers:
        await peer.synced()
    for _ in range(STEPS):
        roll = rng.random()
        if roll < 0.55:
            await rng.choice(clients).edit(rng)
        elif roll < 0.8:
            peer = rng.choice(peers)
            peer.insert(rng.randint(0, len(peer.text)), rng.choice(PIECES))
        elif roll < 0.9:
            client = rng.choice(clients)
            await client.drop()
            await client.connect()
        else:
            peer = rng.choice(peers)
            if peer.text:
                peer.delete(rng.randrange(len(peer.text)), 1)
        await asyncio.sleep(rng.random() * 0.01)  # random delays between actions
    text = await settled(clients, peers, server.http_url)
    for client in clients:
        await client.drop()
    for peer in peers:
        await peer.close()
    server.stop()
    records = {  # every retained segment: the whole history, compactions included
        record.rev: record
        for segment in FileStore(server.data_dir).segments("fuzz")
        for record in read_log_file(segment.log)
    }
    origins = [r.origin for r in records.values() if r.origin.startswith("ot:")]
    assert len(origins) == len(set(origins)), "a text client's op was applied twice"
    assert len(origins) > STEPS // 4
    assert text
