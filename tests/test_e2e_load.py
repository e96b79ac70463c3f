"""Loading a document whose log is long (collab/hub/loading.py), with real servers and
sockets: the log is folded into a snapshot by the store's worker before the document is
loaded, and the document comes back exactly (text, Yjs state, history, the ack table, the
surrogate pairs a Yjs update may not split), through the file store and PostgreSQL. A
worker killed during the fold costs nothing: the log is loaded as it is."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.parse
from collections.abc import Callable

import httpx
import pytest
from conftest import ServerProcess
from hostile_updates import item
from pyclient import YClient, url_name
from pycrdt import Doc, Text
from test_compaction_worker import until, worker_pids
from test_e2e_exactly_once import TYPED, Line, lose_the_ack, server_text

from collab.access.names import storage_key
from collab.config import Settings
from collab.hub.loading import FOLD_FROM, RECORD_COST, replay_cost, worth_folding
from collab.session import Session
from collab.storage.contract import Record, StoredDocument
from collab.storage.fingerprint import fingerprint
from collab.text.client import TextClient
from collab.yjs import protocol
from collab.yjs.update import decode_update

NAME = "long log 📜 中文"
PIECES = ["👩‍👩‍👧 ", "中文 ", "e\u0301 ", "👍🏽\r\n", "🇫🇷 ", "plain "]
NO_COMPACTION = ("--compact-log-records", "1000000", "--compact-log-bytes", str(2**40))
FOLDED = "folded into a snapshot"
NOT_FOLDED = "could not be folded"
RECORDS = int(FOLD_FROM / RECORD_COST) + 50  # small records: enough to be folded


def yjs_url(server: ServerProcess) -> str:
    return f"{server.ws_url}/yjs/{url_name(NAME)}"


async def write_log(server: ServerProcess, records: int, chunk: str = "") -> str:
    """`records` Yjs updates (each a record), then the text the server has (so durable:
    `--fsync always`)."""
    async with (
        await YClient.connect(yjs_url(server)) as writer,
        httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http,
    ):
        await writer.synced()
        for n in range(records):
            writer.append(f"<{n}>{PIECES[n % len(PIECES)]}{chunk}")
        deadline = time.monotonic() + 60
        while f"<{records - 1}>" not in (text := await server_text(http, NAME)):
            assert time.monotonic() < deadline, "the edits never reached the server"
            await asyncio.sleep(0.02)
    return text


async def yjs_view(server: ServerProcess) -> tuple[str, tuple[object, ...], tuple[int, int]]:
    """What a new Yjs peer gets: the text, the document (its state vector, delete set and
    text: one state has several encodings), and where one astral character's high half is."""
    async with await YClient.connect(yjs_url(server)) as peer:
        await peer.synced(30)
        return peer.text, fingerprint(peer.doc), a_high_surrogate(peer.doc.get_update())


def same(one: tuple[str, tuple[object, ...], tuple[int, int]], other: tuple[object, ...]) -> bool:
    return one[:2] == other[:2]


async def text_at(server: ServerProcess, rev: int) -> str:
    path = f"/api/docs/{urllib.parse.quote(NAME)}/text?at={rev}"
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.text


def a_high_surrogate(state: bytes) -> tuple[int, int]:
    """The (client, clock) of an astral character's high half in a whole state."""
    return next((s.client, h) for s in decode_update(state).structs for h in s.highs)


async def split_is_refused(server: ServerProcess, high: tuple[int, int]) -> None:
    """A Yjs peer inserting between the halves of a loaded pair: closed with 1002 and the
    reason the full checks give, nothing stored; the others go on."""
    split = item(7, 0, "X", origin=high) + b"\x00"
    async with await YClient.connect(yjs_url(server)) as peer:
        await peer.synced(30)
        peer.send_raw(protocol.encode_sync_update(split))
        code, reason = await peer.wait_closed(30)
    assert (code, reason) == (
        1002,
        f"update refused: item 7:0 inserts after high surrogate {high[0]}:{high[1]}",
    )


@pytest.mark.parametrize("store", ["file", "postgres"])
async def test_a_long_log_is_folded_before_loading_and_comes_back_exactly(
    start_server: Callable[..., ServerProcess], request: pytest.FixtureRequest, store: str
) -> None:
    args = [*NO_COMPACTION, "--fsync", "always"]
    if store == "postgres":
        args += ["--store", request.getfixturevalue("postgres_url")]
    server = start_server(*args)
    await write_log(server, RECORDS)
    client = TextClient()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        seq = await lose_the_ack(f"{server.ws_url}/ot/{url_name(NAME)}", client, http, NAME)
        text = await server_text(http, NAME)
    view = await yjs_view(server)
    assert view[0] == text
    middle = await text_at(server, 60)
    server.kill()  # a crash: the log is left as it is (an unload would compact it)

    server.start()
    views = await asyncio.gather(yjs_view(server), yjs_view(server))  # one load for both
    assert same(views[0], view) and same(views[1], view)  # loaded: the log was folded first
    assert FOLDED in server.log() and NOT_FOLDED not in server.log(), server.log()
    if store == "file":  # the fold is a compaction: a new segment at the last revision
        directory = server.data_dir / "docs" / storage_key(NAME)
        assert len(list(directory.glob("log-*.ylog"))) == 2
    assert await text_at(server, 60) == middle  # history kept
    back = await Line.open(f"{server.ws_url}/ot/{url_name(NAME)}", client)
    assert back.welcome["acked"] >= seq  # the ack table came through the fold's snapshot
    await back.synced()
    await back.close()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        assert await server_text(http, NAME) == text and text.count(TYPED) == 1
    await split_is_refused(server, view[2])
    assert same(await yjs_view(server), view)


async def another_document_goes_on(server: ServerProcess) -> None:
    """Two peers of another document converge (while some work of the server stands still)."""
    async with (
        await YClient.connect(f"{server.ws_url}/yjs/other") as one,
        await YClient.connect(f"{server.ws_url}/yjs/other") as two,
    ):
        await one.synced()
        await two.synced()
        one.append("👍🏽 中文 e\u0301\r\n")
        await two.wait_text("👍🏽 中文 e\u0301\r\n")


async def test_a_worker_killed_during_the_fold_costs_nothing(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(*NO_COMPACTION, "--fsync", "always")
    # Big records extending one writer's run: the worker takes long enough to be caught.
    text = await write_log(server, 120, "🇫🇷 中文 e\u0301\r\n" * 3_000)
    view = await yjs_view(server)
    server.kill()  # a crash: the log is left as it is (an unload would compact it)

    server.start()
    assert server.process is not None
    loading = asyncio.create_task(yjs_view(server))  # the first peer: its load folds first
    pids: list[int] = []
    await until(lambda: pids.extend(worker_pids(server.process.pid)) or pids, 30, "the fold")  # type: ignore[union-attr]
    os.kill(pids[0], signal.SIGSTOP)  # the fold stands still: the other documents go on
    await another_document_goes_on(server)
    assert not loading.done()  # its own first peer waits for its load
    os.kill(pids[0], signal.SIGKILL)
    assert same(await loading, view)  # loaded from the log as it is
    assert NOT_FOLDED in server.log() and FOLDED not in server.log(), server.log()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        assert await server_text(http, NAME) == text
    await split_is_refused(server, view[2])

    server.kill()  # the next load folds it
    server.start()
    assert same(await yjs_view(server), view)
    assert FOLDED in server.log(), server.log()


def test_only_a_log_that_could_hold_the_loop_is_folded() -> None:
    """A few small records load on the loop (a worker would only delay the first peer);
    many, or one on a big document (it may extend a run that long), are folded."""
    small = Record(1, 0.0, "yjs:1", None, b"\x01" * 40)
    few = StoredDocument(b"\x00\x00", 0, [small] * 20, 800)
    assert replay_cost(few) < FOLD_FROM and not worth_folding(few)
    many = StoredDocument(b"\x00\x00", 0, [small] * RECORDS, 40 * RECORDS)
    assert worth_folding(many)
    one_on_big = StoredDocument(b"\x00" * (16 * 2**20), 1, [small], 40)
    assert worth_folding(one_on_big)


def test_a_session_loaded_without_the_loader_still_refuses_splits_of_stored_pairs() -> None:
    """An embedder's `Session` built straight from what is stored builds the index at the
    first Yjs update (from the kept bytes, by the C walk): pairs of the snapshot and of the
    logged records are covered."""
    writer = Doc(client_id=5)
    text = writer.get("text", type=Text)
    text.insert(0, "a😀b 中文 e\u0301\r\n")  # 😀's high half at clock 1
    snapshot = writer.get_update()
    before = writer.get_state()
    text.insert(len(text), "👍🏽")  # in a record: 👍 at clocks 12-13, 🏽 at 14-15
    record = Record(2, 0.0, "yjs:1", None, writer.get_update(before))
    stored = StoredDocument(snapshot, 1, [record], len(record.update))
    for high in [(5, 1), (5, 12), (5, 14)]:
        session = Session(NAME, Settings(), stored, track_text=False)
        session.connect_yjs("y")
        session.take_output()
        session.receive("y", protocol.encode_sync_update(item(7, 0, "X", origin=high) + b"\x00"))
        closes = session.take_output().closes
        reason = f"update refused: item 7:0 inserts after high surrogate {high[0]}:{high[1]}"
        assert closes == [("y", 1002, reason)], high
        assert session.rev == 2
