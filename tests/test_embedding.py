"""The embedding examples of the README and docs/embedding.md, run exactly as written, over
real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import types
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import REPO, free_port
from pyclient import YClient

from collab.storage.files import FileStore
from collab.yjs import protocol


def python_blocks(page: str, heading: str) -> list[str]:
    """The python blocks of a page's section `heading` (up to the next `## `), in order."""
    text = (REPO / page).read_text()
    section = text[text.index(f"{heading}\n") :]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"{page}: the section {heading!r} has no python example"
    return blocks


def app_in(page: str, heading: str) -> str:
    """The example app of a section: the block that defines `app`."""
    return next(block for block in python_blocks(page, heading) if "\napp = " in block)


def test_driving_a_session_by_hand_works_as_the_readme_shows() -> None:
    (block,) = [b for b in python_blocks("README.md", "## Embedding") if "take_output()" in b]
    exec(compile(block, "README.md:by-hand", "exec"), {})


@contextlib.asynccontextmanager
async def served(source: str, filename: str) -> AsyncIterator[types.ModuleType]:
    """The example module, served by uvicorn on a free port; `module.base` is its address."""
    module = types.ModuleType("app")
    exec(compile(source, filename, "exec"), module.__dict__)
    port = free_port()
    config = uvicorn.Config(
        module.app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the example app did not start"
        await asyncio.sleep(0.01)
    module.base = f"127.0.0.1:{port}"
    try:
        yield module
    finally:
        server.should_exit = True
        await task


async def test_the_readme_mount_serves_the_yjs_door_the_api_and_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with served(app_in("README.md", "## Embedding"), "README.md:app.py") as module:
        peer = await YClient.connect(f"ws://{module.base}/collab/yjs/notes")
        await peer.synced()
        peer.append("héllo 😀 中文\r\n")
        async with httpx.AsyncClient(base_url=f"http://{module.base}") as http:
            for _ in range(500):  # the edit is on disk when the API shows it: wait for that
                text = await http.get("/collab/api/docs/notes/text")
                if text.status_code == 200 and text.text:
                    break
                await asyncio.sleep(0.01)
            assert text.text == "héllo 😀 中文\r\n"
            page = await http.get("/collab/d/notes")
            assert page.status_code == 200 and 'role="textbox"' in page.text
        await peer.close()
    stored = await FileStore(Path("app-data"), exclusive=False).load("notes")
    assert stored is not None and stored.rev == 1


@pytest.fixture
async def example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[types.ModuleType]:
    """docs/embedding.md's app with a login check, served."""
    monkeypatch.chdir(tmp_path)
    source = app_in("docs/embedding.md", "# Embedding")
    async with served(source, "docs/embedding.md:app.py") as module:
        yield module


async def test_host_routes_and_login_still_work(example: types.ModuleType) -> None:
    async with httpx.AsyncClient(base_url=f"http://{example.base}") as http:
        assert (await http.get("/")).text == "my app"
        refused = await http.get("/collab/api/docs/notes/text")
        assert refused.status_code == 401 and refused.json()["error"] == "log in first"
        response = await http.get("/login", params={"token": "token-ada"})
        assert response.status_code == 303 and http.cookies["session"] == "token-ada"
        page = await http.get("/collab/d/notes")
        assert page.status_code == 200 and 'role="textbox"' in page.text
        unknown = await http.get("/collab/api/docs/notes/text")
        assert unknown.status_code == 404


async def test_unauthenticated_peer_is_closed_with_4401(example: types.ModuleType) -> None:
    client = await YClient.connect(f"ws://{example.base}/collab/yjs/notes")
    assert await client.wait_closed() == (4401, "log in first")
    await client.close()


async def test_users_edit_and_read_only_users_cannot(example: types.ModuleType) -> None:
    url = f"ws://{example.base}/collab/yjs/notes"
    ada = await YClient.connect(url + "?token=token-ada")
    bob = await YClient.connect(url, additional_headers={"Cookie": "session=token-bob"})
    await ada.synced()
    await bob.synced()
    ada.append("Ada wrote 👩🏽‍💻 中文\r\n")
    await bob.wait_text("Ada wrote 👩🏽‍💻 中文\r\n")
    bob.append("Bob may not write")
    await bob.until(
        lambda: any(isinstance(protocol.decode(m), protocol.Auth) for m in bob.received),
        what="the read-only notice",
    )
    probe = await YClient.connect(url + "?token=token-ada")
    await probe.synced()
    assert probe.text == "Ada wrote 👩🏽‍💻 中文\r\n"
    for _ in range(500):  # the hook runs in its own task: wait for it, not for a time
        if example.changes:
            break
        await asyncio.sleep(0.01)
    assert [(c.user, c.op) for c in example.changes] == [("ada", ["Ada wrote 👩🏽‍💻 中文\r\n"])]
    for client in (ada, bob, probe):
        await client.close()


async def test_server_code_edits_reach_peers_and_the_log(example: types.ModuleType) -> None:
    ada = await YClient.connect(f"ws://{example.base}/collab/yjs/notes?token=token-ada")
    await ada.synced()
    rev = await example.engine.set_text("notes", "from the server 🇫🇷")
    await ada.wait_text("from the server 🇫🇷")
    assert await example.engine.get_text("notes") == "from the server 🇫🇷"
    stored = await FileStore(Path("app-data"), exclusive=False).load("notes")
    assert stored is not None and stored.records[-1].rev == rev
    assert stored.records[-1].origin == "server:server"
    await ada.close()
