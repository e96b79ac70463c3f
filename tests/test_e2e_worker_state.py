"""A big document's whole state over HTTP (`GET /api/docs/{name}/update`) built by a worker
process that reads the store (collab/replay/worker_texts.py), with real servers and sockets.

A big Yjs-only document keeps no pycrdt document in the server (detached); answering with
its state from the server rebuilt it on the event loop (~150 ms at 64 MiB) and kept it
attached for seconds, each Yjs append then costing pycrdt tens of ms: any reader could stall
every document of the process. Now the state comes from a worker: it holds every revision
the writers were acknowledged, a fresh pycrdt Doc and a fresh Yjs Doc read the same text
from it, the document stays detached, the loop goes on while the worker builds, and a
worker killed is a 500 with the reason, the next request served.

`--text-worker-bytes 1 --detach-from-bytes 1` makes every document big and detached."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import httpx
import pytest
from conftest import ServerProcess, run_node_script
from pyclient import YClient, state_vector, url_name
from pycrdt import Doc, Text
from test_compaction_worker import worker_pids
from test_e2e_lanes import settled
from test_e2e_worker_texts import ask_and_catch_worker, held_then_killed

NAME = "big/state 📦 中文"
PIECES = ["👩‍👩‍👧 ", "中文 ", "e\u0301 ", "👍🏽\r\n", "🇫🇷 ", "plain "]
BIG = ("--text-worker-bytes", "1", "--detach-from-bytes", "1", "--fsync", "never")
IN_SERVER = ("--text-worker-bytes", "0", "--detach-from-bytes", "1", "--fsync", "never")
REBUILT = "a reader needed the pycrdt document: rebuilt"
UPDATE = f"/api/docs/{url_name(NAME)}/update"


async def write_yjs(server: ServerProcess, rounds: int, long: str = "") -> str:
    """Three Yjs writers (`long` appended first, then appends to their own runs, inserts
    inside the others', deletions): the text every one of them holds at the end. Each edit
    has reached the other writers, so it is in the store (written before it is relayed)."""
    url = f"{server.ws_url}/yjs/{url_name(NAME)}"
    writers = [await YClient.connect(url) for _ in range(3)]
    for writer in writers:
        await writer.synced()
    if long:
        writers[0].append(long)
    for i in range(rounds):
        writer, piece = writers[i % 3], PIECES[i % len(PIECES)]
        if i % 7 == 6:
            writer.delete(3, 4)
        elif i % 5 == 4:
            writer.insert(len(writer.text) // 2, f"«{piece}»")
        else:
            writer.append(f"<{i}{piece * 2}>")
        await settled(writers, 30)
    text = await settled(writers, 30)
    for writer in writers:
        await writer.close()
    return text


def text_of(update: bytes) -> str:
    """The text a fresh pycrdt Doc holds once it applied `update`."""
    doc = Doc()
    doc.apply_update(update)
    return str(doc.get("text", type=Text))


def yjs_text_of(update: bytes) -> str:
    """The text a fresh Yjs Doc (Node) holds once it applied `update`; nothing pending."""
    answer = run_node_script("ytext.mjs", {"update": base64.b64encode(update).decode()})
    assert isinstance(answer, dict) and not answer["pending"], answer
    return str(answer["text"])


async def last_rev(http: httpx.AsyncClient) -> int:
    history = await http.get(f"/api/docs/{url_name(NAME)}/history?limit=1")
    return int(history.json()["last_rev"])


@pytest.mark.node
@pytest.mark.parametrize("store", ["file", "postgres"])
async def test_the_state_of_a_detached_document_comes_from_a_worker(
    start_server: Callable[..., ServerProcess], request: pytest.FixtureRequest, store: str
) -> None:
    """Compactions as it grows: the worker starts from the newest snapshot. A body past
    1 MiB (sent from the worker's file a chunk at a time)."""
    args = [*BIG, "--compact-log-records", "7"]
    if store == "postgres":
        args += ["--store", request.getfixturevalue("postgres_url")]
    server = start_server(*args)
    long = "".join(PIECES) * 25_000  # ~1.4 MB of UTF-8
    expected = await write_yjs(server, 30, long)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        answer = await http.get(UPDATE)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        assert int(answer.headers["x-collab-rev"]) == await last_rev(http)
        assert len(answer.content) > 1024 * 1024
        assert text_of(answer.content) == expected
        assert yjs_text_of(answer.content) == expected
        assert REBUILT not in server.log()  # still detached: pycrdt never built in the server
        expected += "✓ 中"
        assert await write_yjs(server, 0, "✓ 中") == expected
        again = await http.get(UPDATE)
        assert text_of(again.content) == expected
        assert int(again.headers["x-collab-rev"]) == int(answer.headers["x-collab-rev"]) + 1
    assert REBUILT not in server.log()
    server.stop()
    server.args = [*IN_SERVER, *args[len(BIG) :]]
    server.start()  # the same document, its state built in the server (rebuilt there)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        in_server = await http.get(UPDATE)
    assert in_server.status_code == 200
    assert text_of(in_server.content) == expected
    assert state_vector(in_server.content) == state_vector(again.content)
    assert in_server.headers["x-collab-rev"] == again.headers["x-collab-rev"]


async def test_the_loop_goes_on_while_a_worker_builds_the_state_and_a_killed_one_is_a_500(
    start_server: Callable[..., ServerProcess],
) -> None:
    """A worker held still (SIGSTOP): another document's peers converge and /healthz
    answers meanwhile; killed, the request gets a 500 with the reason, and the next request
    is served. The document never leaves its detached state for any of it."""
    server = start_server(*BIG)
    expected = await write_yjs(server, 8)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        answer = await held_then_killed(server, http, UPDATE)
        assert answer.status_code == 500
        assert answer.json()["error"] == (
            "the state could not be built: the worker process died (killed by signal 9)"
        )
        again = await http.get(UPDATE)
        assert again.status_code == 200
        assert text_of(again.content) == expected
        assert int(again.headers["x-collab-rev"]) == await last_rev(http)
    assert "could not build the state" in server.log()
    assert REBUILT not in server.log()


async def test_a_small_document_s_state_is_built_in_the_server(
    start_server: Callable[..., ServerProcess],
) -> None:
    """Below --text-worker-bytes no worker is started: the state and its revision as the
    server holds them."""
    server = start_server("--fsync", "never")
    expected = await write_yjs(server, 5)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        answer = await asyncio.wait_for(http.get(UPDATE), 30)
        assert answer.status_code == 200
        assert text_of(answer.content) == expected
        assert int(answer.headers["x-collab-rev"]) == await last_rev(http)


async def test_a_worker_that_hangs_is_killed_and_its_request_is_a_500(
    start_server: Callable[..., ServerProcess],
) -> None:
    """A worker held still past --text-worker-timeout is killed: its request answers 500
    with the reason (a hung worker would hold a history slot for good), the next is served."""
    server = start_server(*BIG, "--text-worker-timeout", "1")
    expected = await write_yjs(server, 5)
    assert server.process is not None
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        asking, worker = await ask_and_catch_worker(server, http, UPDATE)
        answer = await asyncio.wait_for(asking, 30)
        assert answer.status_code == 500
        assert answer.json()["error"] == (
            "the state could not be built: the worker process took more than 1 s"
        )
        assert worker not in worker_pids(server.process.pid)  # killed, and waited for
        again = await http.get(UPDATE)
        assert (again.status_code, text_of(again.content)) == (200, expected)
        text = await http.get(f"/api/docs/{url_name(NAME)}/text")
        assert (text.status_code, text.text) == (200, expected)


async def test_a_detached_document_below_text_worker_bytes_is_read_by_a_worker_too(
    start_server: Callable[..., ServerProcess],
) -> None:
    """--text-worker-bytes above --detach-from-bytes: a detached document between the two
    is not rebuilt in the server for HTTP either (its text and state come from a worker)."""
    server = start_server("--text-worker-bytes", "100000000", "--detach-from-bytes", "1")
    expected = await write_yjs(server, 6)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        state = await http.get(UPDATE)
        text = await http.get(f"/api/docs/{url_name(NAME)}/text")
        rev = await last_rev(http)
    assert (state.status_code, text_of(state.content)) == (200, expected)
    assert (text.status_code, text.text) == (200, expected)
    assert int(state.headers["x-collab-rev"]) == int(text.headers["x-collab-rev"]) == rev
    assert REBUILT not in server.log()
