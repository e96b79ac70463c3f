"""Awareness ids across the doors, through real sockets against a `collab serve` subprocess.

pycrdt (Yrs) clients draw 53-bit awareness ids, so about half of them have bit 52 set, the
bit the server also sets in the ids it makes for text clients. Such a peer is a Yjs peer
like any other: its awareness reaches the other Yjs peers and the text clients.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import ServerProcess
from pyclient import YClient, connect_options, url_name
from websockets.asyncio.client import ClientConnection, connect

from collab.session.presence import TEXT_CLIENT_BIT

NAME = "ids 😀 中文"
USER = {"name": "Zoë 👩‍👩‍👧 e\u0301 中文", "color": "#30bced"}


async def presence_of(ws: ClientConnection, client: str, timeout: float = 10) -> dict[str, Any]:
    """Read a text client's messages until the presence of `client` arrives."""

    async def read() -> dict[str, Any]:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "welcome":
                for shown in message["presence"]:
                    if shown["client"] == client:
                        return shown
            elif message["type"] == "presence" and message["client"] == client:
                return message

    return await asyncio.wait_for(read(), timeout)


async def test_a_pycrdt_peer_whose_id_has_bit_52_is_seen_by_every_door(
    server: ServerProcess,
) -> None:
    client_id = TEXT_CLIENT_BIT | 0x0_3A5C_96E1_F00D  # a 53-bit id as pycrdt draws them
    url = f"{server.ws_url}/yjs/{url_name(NAME)}"
    pycrdt_peer = await YClient.connect(url, client_id=client_id)
    other = await YClient.connect(url)
    assert pycrdt_peer.doc.client_id == client_id
    await pycrdt_peer.synced()
    await other.synced()
    async with connect(f"{server.ws_url}/ot/{url_name(NAME)}", **connect_options()) as ws:
        hello = {"type": "hello", "secret": "s" * 32, "rev": None, "user": {"name": "Tab"}}
        await ws.send(json.dumps(hello))
        pycrdt_peer.set_awareness({"user": USER})
        await other.until(
            lambda: other.awareness.get(client_id) is not None, what="the pycrdt peer's state"
        )
        assert other.awareness[client_id] == {"user": USER}
        shown = await presence_of(ws, f"yjs:{client_id}")
        assert shown["user"] == USER and shown["kind"] == "yjs"
        pycrdt_peer.set_awareness(None)
        await other.until(lambda: other.awareness.get(client_id, 0) is None, what="it left")
    assert not pycrdt_peer.errors and not other.errors
    await pycrdt_peer.close()
    await other.close()
