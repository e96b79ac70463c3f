"""A big document's HTTP texts built by a worker process that reads the store itself
(collab/replay/worker_texts.py), with real servers and sockets: the current text, the text
at every revision and each revision's change come back exactly as the in-process path gives
them (file store and PostgreSQL); the server's loop goes on while a worker builds; a worker
that fails or is killed gives a 500 with the reason, and the server carries on.

`--text-worker-bytes 1` makes every document "big", so small documents test the path."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess
from ot_ids import secret_for
from pyclient import YClient, connect_options, url_name
from test_compaction_worker import worker_pids
from test_e2e_load import another_document_goes_on
from test_history import Writer
from websockets.asyncio.client import connect

from collab.access.names import storage_key
from collab.storage.contract import Record
from collab.storage.format import encode_log, log_path, read_log_file

NAME = "big/texts 📚 中文"
PIECES = ["👩‍👩‍👧 ", "中文 ", "e\u0301 ", "👍🏽\r\n", "🇫🇷 ", "plain "]
IN_WORKER = ("--text-worker-bytes", "1")
IN_SERVER = ("--text-worker-bytes", "0")


def base(name: str = NAME) -> str:
    return f"/api/docs/{url_name(name)}"


async def write_revisions(server: ServerProcess, count: int) -> str:
    """`count` revisions, from a Yjs peer and a text peer in turn; the final text."""
    async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(NAME)}") as yjs:
        await yjs.synced()
        async with connect(f"{server.ws_url}/ot/{url_name(NAME)}", **connect_options()) as ot:
            await ot.send(json.dumps({"type": "hello", "secret": secret_for("w1"), "rev": None}))
            rev = await _next(ot, "welcome")
            for n in range(count):
                piece = PIECES[n % len(PIECES)]
                if n % 2:
                    yjs.append(f"<{n}>{piece}")
                    rev = await _next(ot, "op")  # committed: the text peer was sent it
                elif n % 4 == 2:  # a deletion too: 3 code points after the first 2
                    op = [2, -3, len(yjs.text) - 5, f"[{n}]{piece}"]
                else:
                    op = [len(yjs.text), f"[{n}]{piece}"] if yjs.text else [f"[{n}]{piece}"]
                if not n % 2:
                    await ot.send(json.dumps({"type": "op", "seq": n + 1, "rev": rev, "op": op}))
                    rev = await _next(ot, "ack")
                    await yjs.until(lambda n=n: f"[{n}]" in yjs.text, 10, "the text op")
        return yjs.text


async def _next(ot: Any, kind: str) -> int:
    """Read the text peer's messages up to the next of `kind`; its revision."""
    while (message := json.loads(await asyncio.wait_for(ot.recv(), 10)))["type"] != kind:
        assert message["type"] != "error", message
    return int(message["rev"])


async def everything(http: httpx.AsyncClient, last: int) -> dict[str, tuple[int, str, str]]:
    """Every HTTP answer about the document: status, X-Collab-Rev and body, by path."""
    paths = [f"{base()}/text", f"{base()}/history?limit=1000"]
    paths += [f"{base()}/text?at={rev}" for rev in range(last + 1)]
    paths += [f"{base()}/history/{rev}" for rev in range(1, last + 1)]
    answers = {}
    for path in paths:
        response = await http.get(path)
        answers[path] = (response.status_code, response.headers.get("x-collab-rev"), response.text)
    return answers


@pytest.mark.parametrize("store", ["file", "postgres"])
async def test_texts_built_by_a_worker_are_exactly_the_servers(
    start_server: Callable[..., ServerProcess], request: pytest.FixtureRequest, store: str
) -> None:
    """Compactions every few revisions: the worker starts from the snapshot before the
    revision asked for, as the index in the server starts from its checkpoints."""
    args = ["--compact-log-records", "5", "--fsync", "never"]
    if store == "postgres":
        args += ["--store", request.getfixturevalue("postgres_url")]
    server = start_server(*args, *IN_WORKER)
    final = await write_revisions(server, 14)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        current = await http.get(f"{base()}/text")
        assert current.status_code == 200 and current.text == final
        last = int(current.headers["x-collab-rev"])
        assert last == 14
        from_workers = await everything(http, last)
        asking, worker = await ask_and_catch_worker(server, http, f"{base()}/text?at=7")
        os.kill(worker, signal.SIGCONT)  # it was built there: stopped, then let go on
        assert (await asking).text == from_workers[f"{base()}/text?at=7"][2]
    server.stop()
    server.args = [*args, *IN_SERVER]
    server.start()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        in_server = await everything(http, last)
    assert from_workers == in_server
    assert all(status == 200 for status, _, _ in from_workers.values())
    assert from_workers[f"{base()}/text?at={last}"][2] == final


async def test_a_text_of_megabytes_is_sent_from_the_workers_file(
    start_server: Callable[..., ServerProcess],
) -> None:
    """Past 1 MiB the body goes out a chunk at a time from the file the worker wrote."""
    server = start_server("--fsync", "never", *IN_WORKER)
    chunk = "".join(PIECES) * 25_000  # ~1.4 MB of UTF-8
    async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(NAME)}") as yjs:
        await yjs.synced()
        yjs.append(chunk)
        yjs.append("👋 end")
        async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:

            async def stored() -> None:
                while (await http.get(f"{base()}/history")).json().get("last_rev", 0) < 2:
                    await asyncio.sleep(0.02)  # polling the server's state, within a timeout

            await asyncio.wait_for(stored(), 30)
            current, first = await asyncio.wait_for(
                asyncio.gather(http.get(f"{base()}/text"), http.get(f"{base()}/text?at=1")), 60
            )
    assert (current.status_code, current.headers["x-collab-rev"]) == (200, "2")
    assert current.text == chunk + "👋 end"
    assert int(current.headers["content-length"]) == len(current.content) > 1024 * 1024
    assert (first.status_code, first.text) == (200, chunk)


async def test_a_service_op_made_on_a_workers_text_and_revision_lands_right(
    start_server: Callable[..., ServerProcess],
) -> None:
    """`X-Collab-Rev` of a text a worker built is the revision of that very text: an op a
    service makes against it, after another peer's edit, is transformed past that edit
    (a text peer follows the document, so its revisions keep their ops)."""
    server = start_server("--fsync", "never", *IN_WORKER)
    final = await write_revisions(server, 3)
    async with (
        httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http,
        connect(f"{server.ws_url}/ot/{url_name(NAME)}", **connect_options()) as follower,
        await YClient.connect(f"{server.ws_url}/yjs/{url_name(NAME)}") as yjs,
    ):
        await follower.send(json.dumps({"type": "hello", "secret": secret_for("f1")}))
        assert await _next(follower, "welcome") == 3
        await yjs.synced()
        seen = await http.get(f"{base()}/text")
        assert (seen.status_code, seen.text, seen.headers["x-collab-rev"]) == (200, final, "3")
        yjs.insert(0, "🇫🇷 first ")  # revision 4, which the service has not seen
        assert await _next(follower, "op") == 4
        op = {"secret": secret_for("svc"), "seq": 1, "rev": 3, "op": [len(final), " 中文\r\n"]}
        answer = await http.post(f"{base()}/ops", json=op)
        assert (answer.status_code, answer.json()["rev"]) == (200, 5), answer.text
        expected = "🇫🇷 first " + final + " 中文\r\n"
        await yjs.wait_text(expected)
        now = await http.get(f"{base()}/text")
        assert (now.text, now.headers["x-collab-rev"]) == (expected, "5")


async def held_then_killed(
    server: ServerProcess, http: httpx.AsyncClient, url: str
) -> httpx.Response:
    """Ask for `url` and hold its worker still (SIGSTOP): another document's peers converge
    and /healthz answers meanwhile, the request waits; then kill it: the answer."""
    asking, worker = await ask_and_catch_worker(server, http, url)
    await another_document_goes_on(server)
    assert (await http.get("/healthz")).status_code == 200
    assert not asking.done()
    os.kill(worker, signal.SIGKILL)
    return await asking


async def ask_and_catch_worker(
    server: ServerProcess, http: httpx.AsyncClient, path: str
) -> tuple[asyncio.Task[httpx.Response], int]:
    """GET `path` and catch the worker process the server starts for it, stopped
    (SIGSTOP); asked again when the answer came before the worker was seen (it lives
    ~70 ms)."""
    assert server.process is not None
    parent = server.process.pid
    for _ in range(50):
        asking = asyncio.create_task(http.get(path))
        while not asking.done():
            found = await asyncio.to_thread(worker_pids, parent)
            if found:
                os.kill(found[0], signal.SIGSTOP)
                return asking, found[0]
        assert (await asking).status_code == 200
    raise AssertionError("never caught a worker process in 50 requests")


async def test_the_loop_goes_on_while_a_worker_builds_and_a_killed_one_is_a_500(
    start_server: Callable[..., ServerProcess],
) -> None:
    """A worker held still (SIGSTOP): another document's peers converge and /healthz
    answers meanwhile (the text is built in another process); killed, the request gets a
    500 with the reason, and the next request is served."""
    server = start_server("--fsync", "never", *IN_WORKER)
    final = await write_revisions(server, 4)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        answer = await held_then_killed(server, http, f"{base()}/text")
        assert answer.status_code == 500
        assert answer.json()["error"] == (
            "the text could not be built: the worker process died (killed by signal 9)"
        )
        again = await http.get(f"{base()}/text")
        assert (again.status_code, again.text, again.headers["x-collab-rev"]) == (200, final, "4")
    assert "could not build the text" in server.log()


async def test_a_worker_that_fails_is_a_500_and_the_other_texts_are_served(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """An old record that does not apply (history only: the document loads from the newer
    snapshot): the text before it is served, the text after it is a 500 with the reason."""
    data_dir = tmp_path / "data"
    writer = Writer(data_dir, name=NAME)
    for piece in PIECES[:4]:
        await writer.write(writer.session.mirror + piece)
    await writer.compact()  # at rev 4: the server loads from here
    await writer.write(writer.session.mirror + PIECES[4])
    first_log = log_path(data_dir / "docs" / storage_key(NAME), 0)
    records = read_log_file(first_log)
    damaged = Record(3, records[2].time, records[2].origin, None, b"\x07 not an update")
    first_log.write_bytes(encode_log([*records[:2], damaged, records[3]]))
    server = start_server("--fsync", "never", *IN_WORKER, data_dir=data_dir)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        failed = await http.get(f"{base()}/text?at=3")
        assert failed.status_code == 500
        reason = failed.json()["error"]
        assert reason.startswith("the text could not be built: HistoryError")
        assert "the update of rev 3 does not apply" in reason and ".py:" not in reason
        assert (await http.get(f"{base()}/history/3")).status_code == 500
        before = await http.get(f"{base()}/text?at=2")
        assert (before.status_code, before.text) == (200, writer.texts[2])
        after = await http.get(f"{base()}/text?at=5")
        assert (after.status_code, after.text) == (200, writer.texts[5])
        current = await http.get(f"{base()}/text")
        assert (current.status_code, current.text) == (200, writer.texts[5])
    assert "could not build the text" in server.log()


async def compactions_done(server: ServerProcess) -> None:
    """Wait (30 s at most) until the document has a snapshot and no worker process runs."""
    assert server.process is not None
    directory = server.data_dir / "docs" / storage_key(NAME)
    deadline = asyncio.get_running_loop().time() + 30
    while not list(directory.glob("snapshot-*")) or worker_pids(server.process.pid):
        assert asyncio.get_running_loop().time() < deadline, "compactions still running"
        await asyncio.sleep(0.02)


async def test_the_list_counts_a_big_documents_text_in_a_worker(
    start_server: Callable[..., ServerProcess],
) -> None:
    """The document list's summary of a big document is counted by a worker process: held
    still (SIGSTOP), another document's peers converge meanwhile and the list waits; let
    go, the list holds exactly what the in-server count gives (code points of emoji, ZWJ,
    CJK, combining marks and \\r\\n; the last edit after the last snapshot)."""
    args = ["--fsync", "never", "--compact-log-records", "3"]
    server = start_server(*args, *IN_WORKER)
    final = await write_revisions(server, 7)
    await compactions_done(server)  # the workers caught below are then the list's
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        asking, worker = await ask_and_catch_worker(server, http, "/api/docs")
        await another_document_goes_on(server)
        assert not asking.done()
        os.kill(worker, signal.SIGCONT)
        from_worker = {d["name"]: d for d in (await asking).json()["documents"]}
    assert from_worker[NAME]["text_chars"] == len(final)
    assert from_worker[NAME]["last_edit"] is not None  # revisions after the snapshot
    server.kill()  # (a stop would compact what is loaded)
    server.args = [*args, *IN_SERVER]
    server.start()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        in_server = {d["name"]: d for d in (await http.get("/api/docs")).json()["documents"]}
    for field in ("rev", "text_chars", "last_edit"):
        assert from_worker[NAME][field] == in_server[NAME][field], field


async def test_a_list_worker_that_hangs_is_killed_and_the_list_answers(
    start_server: Callable[..., ServerProcess],
) -> None:
    """The list's count worker is held to --text-worker-timeout as the texts' are: held
    still, it is killed and the list answers without that document's count (a hung one
    held the list's one worker slot, so every later listing, for good); the next listing
    counts it."""
    args = ["--fsync", "never", "--compact-log-records", "3", "--text-worker-timeout", "1"]
    server = start_server(*args, *IN_WORKER)
    final = await write_revisions(server, 7)
    await compactions_done(server)
    assert server.process is not None
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=60) as http:
        asking, worker = await ask_and_catch_worker(server, http, "/api/docs")
        listed = {d["name"]: d for d in (await asyncio.wait_for(asking, 30)).json()["documents"]}
        assert listed[NAME]["text_chars"] == 0  # not counted this time
        assert worker not in worker_pids(server.process.pid)  # killed, and waited for
        again = {d["name"]: d for d in (await http.get("/api/docs")).json()["documents"]}
        assert again[NAME]["text_chars"] == len(final)
    assert "the worker process took more than 1 s" in server.log()
