"""Hooks that fail, or that are async, cost one connection at most: never the session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from conftest import free_port
from ot_ids import client_of, secret_for
from pyclient import YClient, state_vector
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from websockets.asyncio.client import connect

from collab import Access, AccessDenied, Change, Collab, MemoryStore, Settings
from collab.replay.rebuild import replay_recording


async def serve(engine: Collab) -> AsyncIterator[tuple[str, Collab]]:
    app = Starlette(routes=[Mount("/c", routes=engine.routes())])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="error")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{port}/c", engine
    await engine.close()
    server.should_exit = True
    await task


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def until_text(engine: Collab, expected: str) -> None:
    """Wait until the server's text is `expected` (a peer's own text changes at once)."""
    text = ""
    for _ in range(500):
        if (text := await engine.get_text("doc")) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server has {text!r}, expected {expected!r}")


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    """Start an engine with the given hooks; yields a function returning (base URL, engine)."""
    servers: list[AsyncIterator[tuple[str, Collab]]] = []

    async def start(settings: Settings | None = None, **hooks: Any) -> tuple[str, Collab]:
        engine = Collab(MemoryStore(), settings or Settings(batch_window=0), **hooks)
        generator = serve(engine)
        servers.append(generator)
        return await anext(generator)

    yield start
    for generator in servers:
        with pytest.raises(StopAsyncIteration):
            await anext(generator)


async def test_a_raising_authenticate_hook_refuses_that_connection_only(running) -> None:
    async def authenticate(connection: HTTPConnection, name: str) -> Access:
        await asyncio.sleep(0)  # an async hook
        if connection.query_params.get("token") == "boom":
            raise RuntimeError("the session database is down")
        if connection.query_params.get("token") != "ok":
            raise AccessDenied("who are you?", status=401)
        return Access(user="ada")

    base, _ = await running(authenticate=authenticate)
    good = await YClient.connect(f"{base}/yjs/doc?token=ok")
    await good.synced()
    broken = await YClient.connect(f"{base}/yjs/doc?token=boom")
    code, reason = await broken.wait_closed()
    assert code == 4403 and reason == "authentication failed: RuntimeError"
    nobody = await YClient.connect(f"{base}/yjs/doc")
    assert await nobody.wait_closed() == (4401, "who are you?")
    good.append("still editing 😀")
    second = await YClient.connect(f"{base}/yjs/doc?token=ok")
    await second.wait_text("still editing 😀")
    for client in (good, broken, nobody, second):
        await client.close()


async def test_a_raising_on_change_hook_loses_nothing(running) -> None:
    seen: list[Change] = []

    def on_change(change: Change) -> None:
        seen.append(change)
        raise ValueError("the search index is down")

    base, _ = await running(on_change=on_change)
    async with connect(f"{base}/ot/doc", proxy=None) as ws:
        await ws.send(json.dumps({"type": "hello", "secret": secret_for("c1"), "rev": None}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        for seq, op in enumerate([["中文 e\u0301"], [5, "\r\n"]], start=1):
            await ws.send(json.dumps({"type": "op", "seq": seq, "rev": seq - 1, "op": op}))
            assert json.loads(await ws.recv()) == {"type": "ack", "seq": seq, "rev": seq}
    await until(lambda: len(seen) == 2)  # the hook runs in its own task, after the acks
    assert [(c.rev, c.origin, c.op) for c in seen] == [
        (1, f"ot:{client_of('c1')}:1", ["中文 e\u0301"]),
        (2, f"ot:{client_of('c1')}:2", [5, "\r\n"]),
    ]


async def test_on_load_gives_a_new_document_its_first_state(running) -> None:
    from pycrdt import Doc, Text

    template = Doc()
    template.get("text", type=Text).insert(0, "# Notes 👍🏽\n")

    async def on_load(name: str) -> bytes | None:
        return template.get_update() if name.startswith("notes/") else None

    base, _ = await running(on_load=on_load)
    client = await YClient.connect(f"{base}/yjs/notes/monday")
    await client.wait_text("# Notes 👍🏽\n")
    other = await YClient.connect(f"{base}/yjs/scratch")
    await other.synced()
    assert other.text == ""
    await client.close()
    await other.close()


async def test_server_edits_are_recorded_and_replay_byte_for_byte(running, tmp_path) -> None:
    recording = tmp_path / "embedded.rec"
    base, engine = await running(Settings(batch_window=0, record=recording))
    peer = await YClient.connect(f"{base}/yjs/doc")
    await peer.synced()
    peer.append("from a peer 😀 ")
    await until_text(engine, "from a peer 😀 ")
    await engine.edit("doc", ["from the server 中文 ", len("from a peer 😀 ")])
    await peer.wait_text("from the server 中文 from a peer 😀 ")
    peer.append("\r\n")
    await until_text(engine, "from the server 中文 from a peer 😀 \r\n")
    state = (await engine.hub.open("doc")).state
    await engine.close()
    await peer.close()
    replayed = replay_recording(recording)["doc"]
    assert replayed.mirror == "from the server 中文 from a peer 😀 \r\n"
    assert state_vector(replayed.state) == state_vector(state)
