"""Durable before visible, with real processes: kill -9 under load loses no seen edit."""

from __future__ import annotations

import asyncio
import contextlib
import re

import httpx
import pytest
from conftest import ServerProcess
from pyclient import YClient

KILLS = 50
WRITERS = 3
TOKEN = re.compile(r"<\d+-\d+-\d+[😀中]>")


async def write_forever(client: YClient, round_no: int, writer: int) -> None:
    """Append tokens as fast as the loop lets us (a continuous load, not a timing)."""
    for n in range(1_000_000):
        client.append(f"<{round_no}-{writer}-{n}{'😀' if n % 2 else '中'}>")
        await asyncio.sleep(0.001)


async def one_round(server: ServerProcess, round_no: int, wanted: int) -> set[str]:
    """Several peers write; once the watcher has seen `wanted` new tokens: SIGKILL."""
    url = f"{server.ws_url}/yjs/crash"
    watcher = await YClient.connect(url)
    writers = [await YClient.connect(url) for _ in range(WRITERS)]
    for client in (watcher, *writers):
        await client.synced()
    before = set(TOKEN.findall(watcher.text))
    tasks = [asyncio.create_task(write_forever(w, round_no, i)) for i, w in enumerate(writers)]
    await watcher.until(
        lambda: len(set(TOKEN.findall(watcher.text)) - before) >= wanted, 20, "edits to flow"
    )
    seen = set(TOKEN.findall(watcher.text))
    server.kill()
    for task in tasks:
        task.cancel()
    for client in (watcher, *writers):
        with contextlib.suppress(Exception):
            await client.close()
    return seen


@pytest.mark.slow
async def test_no_edit_any_peer_saw_is_lost_across_50_kills(start_server) -> None:
    server = start_server("--fsync", "always")
    seen: set[str] = set()
    for round_no in range(KILLS):
        seen |= await one_round(server, round_no, wanted=1 + round_no % 7)
        server.start()
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.http_url}/api/docs/crash/text")
        assert response.status_code == 200
        text = response.text
        lost = [token for token in seen if text.count(token) != 1]
        assert not lost, f"round {round_no}: {len(lost)} seen edits lost or doubled: {lost[:5]}"
    assert len(seen) >= KILLS
    print(f"{KILLS} SIGKILLs, {len(seen)} edits seen by a peer, 0 lost or doubled")


async def test_sigterm_closes_peers_with_1001_and_keeps_everything(start_server) -> None:
    server = start_server("--fsync", "always")
    url = f"{server.ws_url}/yjs/graceful"
    client = await YClient.connect(url)
    await client.synced()
    client.append("bye 👋🏽 中文\r\n")
    other = await YClient.connect(url)
    await other.wait_text("bye 👋🏽 中文\r\n")
    assert server.stop() == 0
    code, _ = await client.wait_closed()
    assert code == 1001
    server.start()
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{server.http_url}/api/docs/graceful/text")
    assert response.text == "bye 👋🏽 中文\r\n"
    await client.close()
    await other.close()
