"""History: every revision's text, metadata and paging, from the files the store keeps."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import random
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ot_ids import client_of, secret_for
from pyclient import YClient, connect_options, url_name
from websockets.asyncio.client import connect

from collab.config import Settings
from collab.replay.history import (
    DocumentHistory,
    HistoryCache,
    NotReplayedError,
    StoreHistoryCache,
    iso_time,
    parse_time,
)
from collab.replay.verify import verify_store
from collab.session import Session
from collab.storage.contract import RevisionsGoneError, Snapshot
from collab.storage.files import FileStore
from collab.storage.logs import (
    LogReader,
    RevisionNotFoundError,
    document_segments,
    read_store_history,
)

PIECES = ["😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "\r\n", "ab", " "]


class Writer:
    """Makes revisions through a real Session and stores them in a FileStore."""

    def __init__(self, data_dir: Path, name: str = "notes/é 😀", **store_options: Any) -> None:
        self.store = FileStore(data_dir, fsync=False, exclusive=False, **store_options)
        self.data_dir, self.name = data_dir, name
        self.now = 1_700_000_000.0
        self.session = Session(name, Settings(), clock=lambda: self.now)
        self.texts: dict[int, str] = {0: ""}

    async def write(self, new_text: str, user: str | None = None, at: float | None = None) -> int:
        self.now = self.now + 1 if at is None else at
        self.session.replace_text(new_text, origin="server:test", user=user)
        await self.store.append(self.name, self.session.take_output().records)
        self.texts[self.session.rev] = self.session.mirror
        return self.session.rev

    async def compact(self) -> None:
        state, rev = self.session.state, self.session.rev
        await self.store.compact(self.name, Snapshot(rev, state))
        self.session.compacted(rev, state)

    def history(self, interval: int = 7) -> DocumentHistory:
        reader = LogReader(lambda: document_segments(self.data_dir, self.name))
        history = DocumentHistory(reader, interval=interval)
        history.refresh()
        return history


def random_edit(text: str, rnd: random.Random) -> str:
    pos = rnd.randint(0, len(text))
    if text and rnd.random() < 0.35:
        return text[:pos] + text[pos + rnd.randint(1, 4) :]
    return text[:pos] + rnd.choice(PIECES) + text[pos:]


async def test_text_at_every_revision_across_compactions(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    rnd = random.Random(7)
    for step in range(1, 121):
        await writer.write(random_edit(writer.session.mirror, rnd), user=f"user{step % 3}")
        if step % 25 == 0:
            await writer.compact()
    history = writer.history(interval=7)
    assert history.base_rev == 0 and history.last_rev == writer.session.rev
    revisions = list(writer.texts)
    rnd.shuffle(revisions)
    for rev in revisions + sorted(revisions):  # random jumps, then forward steps
        assert history.text_at(rev) == writer.texts[rev], rev


async def test_metadata_and_paging_newest_first(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    for i, piece in enumerate(PIECES, start=1):
        await writer.write(writer.session.mirror + piece, user="ada" if i % 2 else None)
    history = writer.history()
    first = history.page(limit=4)
    assert [info.rev for info in first] == [9, 8, 7, 6]
    assert [info.rev for info in history.page(before=6, limit=4)] == [5, 4, 3, 2]
    assert [info.rev for info in history.page(before=2, limit=4)] == [1]
    assert history.page(before=1) == []
    info = history.info(1)
    assert (info.origin, info.user, info.time) == ("server:test", "ada", 1_700_000_001.0)
    assert info.size > 0
    assert info.as_json()["time"] == "2023-11-14T22:13:21.000Z"


async def test_an_index_past_replay_below_keeps_the_metadata_only(tmp_path: Path) -> None:
    """A document that grows past `replay_below` is no longer replayed in the server: the
    index answers pages, times and sizes as before, and its texts are asked elsewhere."""
    writer = Writer(tmp_path)
    for piece in PIECES[:3]:
        await writer.write(writer.session.mirror + piece)
    store_cache = StoreHistoryCache(writer.store, replay_below=200)
    small = await store_cache.get(writer.name)
    assert small.replays and small.text_at(3) == writer.texts[3]
    whole = writer.history()  # no limit: replays whatever the size
    await writer.write(writer.session.mirror + "中文 é\r\n" * 20)  # past 200 bytes
    await writer.write(writer.session.mirror + "👍🏽")
    grown = await store_cache.get(writer.name)
    assert grown is small and not grown.replays
    whole.refresh()
    assert grown.page(limit=10) == whole.page(limit=10)
    assert grown.rev_at_time(writer.now) == whole.rev_at_time(writer.now) == 5
    with pytest.raises(NotReplayedError):
        grown.text_at(2)
    with pytest.raises(NotReplayedError):
        grown.change(5)
    told_big = await StoreHistoryCache(writer.store, replay_below=10**9).get(writer.name, False)
    assert not told_big.replays and told_big.page(limit=10) == whole.page(limit=10)


async def test_refresh_follows_new_revisions_and_compactions(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    for piece in PIECES[:4]:
        await writer.write(writer.session.mirror + piece)
    history = writer.history(interval=3)
    assert history.last_rev == 4
    await writer.compact()
    for piece in PIECES[4:]:
        await writer.write(piece + writer.session.mirror)
    await writer.compact()
    await writer.write(writer.session.mirror + "!")
    assert history.refresh() == 6
    assert history.last_rev == 10
    for rev, text in writer.texts.items():
        assert history.text_at(rev) == text


async def test_history_starts_at_the_oldest_snapshot_kept(tmp_path: Path) -> None:
    writer = Writer(tmp_path, keep_history=False)
    for piece in PIECES[:5]:
        await writer.write(writer.session.mirror + piece)
    await writer.compact()
    await writer.write(writer.session.mirror + "👋")
    history = writer.history()
    assert (history.base_rev, history.last_rev) == (5, 6)
    assert history.text_at(5) == writer.texts[5]
    assert history.text_at(6) == writer.texts[6]
    with pytest.raises(RevisionNotFoundError, match="no longer kept"):
        history.text_at(4)
    with pytest.raises(RevisionNotFoundError, match="latest is 6"):
        history.text_at(7)


async def test_revision_at_time_with_a_clock_that_steps_back(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    await writer.write("a", at=100.0)
    await writer.write("ab", at=200.0)
    await writer.write("abc", at=150.0)  # the clock stepped back
    await writer.write("abcd", at=300.0)
    history = writer.history()
    assert history.rev_at_time(50.0) == 0
    assert history.rev_at_time(100.0) == 1
    assert history.rev_at_time(250.0) == 3
    assert history.rev_at_time(1e12) == 4


async def test_each_revision_says_what_it_changed(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    await writer.write("héllo 😀 wörld")
    writer.session.edit_text([1, "中", 2, -1, 3, "👍🏽", 3, -1, 2], origin="server:two", user="ada")
    await writer.store.append(writer.name, writer.session.take_output().records)
    await writer.write("")
    history = writer.history(interval=2)
    first = history.change(1)
    assert (first.text_before, first.op) == ("", ["héllo 😀 wörld"])
    second = history.change(2)  # two places and two deletions: the op says so, not a diff
    assert second.op == [1, "中", 2, -1, 3, "👍🏽", 3, -1, 2]
    assert second.info.user == "ada" and second.text_before == "héllo 😀 wörld"
    assert second.as_json()["op"] == second.op
    assert history.change(3).op == [-len("h中élo 😀👍🏽 wöld")]
    with pytest.raises(RevisionNotFoundError):
        history.change(0)
    with pytest.raises(RevisionNotFoundError):
        history.change(4)


def test_iso_times() -> None:
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000.0  # UTC when no zone
    assert iso_time(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert iso_time(1_700_000_000.0001) == "2023-11-14T22:13:20.001Z"
    with pytest.raises(ValueError):
        parse_time("yesterday")


async def test_cache_keeps_a_bounded_number_of_documents(tmp_path: Path) -> None:
    writers = [Writer(tmp_path, name=f"doc{i}") for i in range(3)]
    for writer in writers:
        await writer.write(f"{writer.name} 😀")
    cache = HistoryCache(lambda name: document_segments(tmp_path, name), max_documents=2)
    held = cache.get("doc0")  # a request reading the index while others push it out
    for writer in writers:
        assert cache.get(writer.name).text_at(1) == f"{writer.name} 😀"
    assert list(cache._histories) == ["doc1", "doc2"]
    assert held.text_at(1) == "doc0 😀"  # evicted, still readable
    closer = held._closer
    del held  # the last holder lets go: its checkpoint file is closed
    gc.collect()
    assert not closer.alive
    assert not cache.get("never-written").exists


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(PIECES), st.booleans()), max_size=40
    ),
    interval=st.integers(1, 9),
    compact_every=st.integers(3, 50),
    data=st.data(),
)
async def test_any_revision_property(
    tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[int, str, bool]],
    interval: int,
    compact_every: int,
    data: st.DataObject,
) -> None:
    writer = Writer(tmp_path_factory.mktemp("history"))
    for count, (where, piece, delete) in enumerate(edits, start=1):
        text = writer.session.mirror
        pos = where % (len(text) + 1)
        new = text[:pos] + text[pos + 2 :] if delete and text else text[:pos] + piece + text[pos:]
        if new != text:
            await writer.write(new)
        if count % compact_every == 0 and writer.session.rev > writer.session.document.base_rev:
            await writer.compact()
    history = writer.history(interval)
    if not history.exists:  # nothing was ever written
        assert writer.session.rev == 0
        with pytest.raises(RevisionNotFoundError):
            history.text_at(0)
        return
    revisions = data.draw(st.lists(st.sampled_from(sorted(writer.texts)), max_size=15))
    for rev in revisions:
        assert history.text_at(rev) == writer.texts[rev]


# ---------------------------------------------------------------------- over HTTP


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


async def test_history_and_text_at_over_http(server: Any) -> None:
    name = "hist/ory 😀"
    base = f"{server.http_url}/api/docs/{url_name(name)}"
    async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(name)}") as yjs:
        await yjs.synced()
        yjs.insert(0, "héllo 👨‍👩‍👧")
        async with connect(f"{server.ws_url}/ot/{url_name(name)}", **connect_options()) as ot:
            await ot.send(json.dumps({"type": "hello", "secret": secret_for("c1"), "rev": None}))
            welcome = json.loads(await ot.recv())
            while welcome["type"] != "welcome":
                welcome = json.loads(await ot.recv())
            rev, text = welcome["rev"], welcome.get("text", "")
            while text != "héllo 👨‍👩‍👧":  # wait until the Yjs edit is in
                message = json.loads(await ot.recv())
                if message["type"] == "op":
                    rev = message["rev"]
                    text = "héllo 👨‍👩‍👧"
            op = [len(text), " 🇫🇷\r\n"]
            await ot.send(json.dumps({"type": "op", "seq": 1, "rev": rev, "op": op}))
            while json.loads(await ot.recv())["type"] != "ack":
                pass
        await yjs.wait_text("héllo 👨‍👩‍👧 🇫🇷\r\n")

    status, body, _ = get(f"{base}/history")
    assert status == 200
    page = json.loads(body)
    assert page["first_rev"] == 0 and page["last_rev"] == 2
    assert [r["rev"] for r in page["revisions"]] == [2, 1]
    assert page["revisions"][0]["origin"] == f"ot:{client_of('c1')}:1"
    assert page["revisions"][1]["origin"].startswith("yjs:")
    assert page["next_before"] is None

    status, body, headers = get(f"{base}/text?at=1")
    assert (status, body.decode()) == (200, "héllo 👨‍👩‍👧")
    assert headers["x-collab-rev"] == "1"
    assert get(f"{base}/text?at=2")[1].decode() == "héllo 👨‍👩‍👧 🇫🇷\r\n"
    assert get(f"{base}/text?at=0")[1] == b""
    when = page["revisions"][1]["time"]
    assert get(f"{base}/text?time={urllib.parse.quote(when)}")[1].decode() == "héllo 👨‍👩‍👧"
    assert get(f"{base}/text?time=2000-01-01T00:00:00Z")[1] == b""

    status, body, _ = get(f"{base}/history/2")  # who and what one revision changed
    change = json.loads(body)
    assert (status, change["rev"], change["origin"]) == (200, 2, f"ot:{client_of('c1')}:1")
    assert change["text_before"] == "héllo 👨‍👩‍👧"
    assert change["op"] == [len("héllo 👨‍👩‍👧"), " 🇫🇷\r\n"]
    assert change["user"] == "~anonymous"  # no hook user: the name said (none), unverified
    assert get(f"{base}/history/3")[0] == 404
    assert get(f"{base}/history/0")[0] == 404

    status, body, _ = get(f"{base}/history?limit=1")
    assert json.loads(body)["next_before"] == 2
    assert get(f"{base}/text?at=3")[0] == 404
    assert get(f"{base}/text?at=x")[0] == 400
    assert get(f"{base}/text?time=soon")[0] == 400
    assert get(f"{server.http_url}/api/docs/nobody/history")[0] == 404


# ---------------------------------------------------------------------- the history page


@pytest.mark.browser
async def test_history_page_slides_over_revisions(server: Any) -> None:
    from conftest import require

    chromium = Path("/usr/bin/chromium")
    require(chromium.exists(), "chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    name = "page/hist 😀"
    async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(name)}") as yjs:
        await yjs.synced()
        for piece in ["héllo", " 👨‍👩‍👧", " 中文"]:
            yjs.append(piece)
        await history_reaches(server, name, 3)

    def run() -> None:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"]
            )
            # bypass_csp: wait_for_function polls string predicates, which CSP refuses
            page = browser.new_page(bypass_csp=True)
            page.set_default_timeout(15_000)
            page.goto(f"{server.http_url}/static/history.html#{url_name(name)}")
            page.wait_for_function("document.getElementById('text').textContent.endsWith('中文')")
            assert page.text_content("#text") == "héllo 👨‍👩‍👧 中文"
            assert "a Yjs editor" in page.text_content("#who")
            assert "yjs:" in page.text_content("#detail")  # technical detail on demand
            page.click("#prev")
            page.wait_for_function("document.getElementById('rev').textContent === 'rev 2 / 3'")
            page.wait_for_function("document.getElementById('text').textContent === 'héllo 👨‍👩‍👧'")
            page.fill("#slider", "0")
            page.wait_for_function("document.getElementById('text').textContent === ''")
            assert page.locator("#revisions li").count() == 1  # one session of 3 revisions
            browser.close()

    await asyncio.to_thread(run)


async def history_reaches(server: Any, name: str, rev: int, timeout: float = 10) -> None:
    """Wait until the server's history (what is on disk) has revision `rev`."""
    url = f"{server.http_url}/api/docs/{url_name(name)}/history?limit=1"
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        status, body, _ = await asyncio.to_thread(get, url)
        if status == 200 and json.loads(body)["last_rev"] >= rev:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the history never reached rev {rev}")


async def test_cache_starts_again_when_old_segments_are_removed(tmp_path: Path) -> None:
    writer = Writer(tmp_path, keep_history=False)
    await writer.write("a😀")
    cache = HistoryCache(lambda name: document_segments(tmp_path, name))
    assert cache.get(writer.name).text_at(1) == "a😀"
    await writer.compact()
    await writer.write("a😀b")
    await writer.compact()  # the log the index was reading is gone
    await writer.write("a😀bc")
    history = cache.get(writer.name)
    assert (history.base_rev, history.last_rev) == (2, 3)
    assert history.text_at(3) == "a😀bc"


async def test_the_file_store_answers_by_revision_number(tmp_path: Path) -> None:
    writer = Writer(tmp_path)
    cache = StoreHistoryCache(writer.store, batch=4)
    for step in range(1, 23):
        await writer.write(writer.session.mirror + PIECES[step % len(PIECES)])
        if step % 6 == 0:
            await writer.compact()
        if step % 5 == 0:  # reads on from where it stopped, across new segments
            assert (await cache.get(writer.name)).last_rev == step
    history = await cache.get(writer.name)
    assert (history.base_rev, history.last_rev) == (0, 22)
    for rev, text in writer.texts.items():
        assert history.text_at(rev) == text
    assert [r.rev for r in await writer.store.history_records(writer.name, 10, 3)] == [11, 12, 13]
    assert (await writer.store.snapshot_at_or_before(writer.name, 17)).rev == 12  # type: ignore[union-attr]
    assert await writer.store.snapshot_at_or_before(writer.name, 5) is None
    retained = await read_store_history(writer.store, writer.name)
    assert retained is not None and retained.last_rev == 22
    report = await verify_store(writer.store, writer.name)
    assert report is not None and report.ok and (report.records, report.snapshots) == (22, 3)
    assert await writer.store.history_start("never written") is None


async def test_the_file_store_history_without_old_segments(tmp_path: Path) -> None:
    writer = Writer(tmp_path, keep_history=False)
    for piece in PIECES[:5]:
        await writer.write(writer.session.mirror + piece)
    await writer.compact()
    await writer.write(writer.session.mirror + "👋")
    assert await writer.store.history_start(writer.name) == 5
    with pytest.raises(RevisionsGoneError):
        await writer.store.history_records(writer.name, 2)
    history = await StoreHistoryCache(writer.store).get(writer.name)
    assert (history.base_rev, history.last_rev) == (5, 6)
    assert history.text_at(6) == writer.texts[6]


# ---------------------------------------------------------------------- many requests at once


async def test_concurrent_history_requests_on_many_documents(
    start_server: Any, tmp_path: Path
) -> None:
    """More documents than the index cache keeps, asked about all at once: an index evicted
    while a request still reads it stays usable (it was closed under the request: 500)."""
    import httpx

    data_dir = tmp_path / "data"
    texts = {}
    for i in range(24):  # the cache keeps 8 indexes
        writer = Writer(data_dir, name=f"many/{i} 中文")
        for piece in PIECES[:4]:
            await writer.write(writer.session.mirror + piece)
        texts[writer.name] = writer.texts
    server = start_server("--fsync", "never", "--max-history-requests", "100", data_dir=data_dir)
    paths = []
    for name in texts:
        base = f"/api/docs/{url_name(name)}"
        paths += [f"{base}/history/2", f"{base}/text?at=3", f"{base}/history?limit=2"]
    limits = httpx.Limits(max_connections=len(paths))
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, limits=limits) as http:
        answers = await asyncio.gather(*(http.get(path, timeout=30) for path in paths))
    assert [a.status_code for a in answers] == [200] * len(paths), {a.text for a in answers}
    for name, writer_texts in texts.items():
        base = f"/api/docs/{url_name(name)}"
        by_path = dict(zip(paths, answers, strict=True))
        assert by_path[f"{base}/text?at=3"].text == writer_texts[3]
        assert by_path[f"{base}/history/2"].json()["text_before"] == writer_texts[1]
    assert "seek of closed file" not in server.log()


async def test_one_revision_counts_against_max_history_requests(start_server: Any) -> None:
    """`/history/{rev}` replays the history like the other history routes: it is capped."""
    import httpx

    server = start_server("--fsync", "never", "--max-history-requests", "0")
    async with await YClient.connect(f"{server.ws_url}/yjs/capped") as client:
        await client.synced()
        client.append("x 😀")
        async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:

            async def committed() -> None:
                while (await http.get("/api/docs/capped/text")).text != "x 😀":
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(committed(), 10)
            response = await http.get("/api/docs/capped/history/1")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(PIECES), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    compact_every=st.integers(2, 40),
)
async def test_a_workers_text_is_the_text_at_every_revision(
    tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[int, str, bool]],
    compact_every: int,
) -> None:
    """What a worker process builds (its function, called here in a thread): the snapshot
    before the revision and the records after it, merged into one update, give the text
    and the change the index gives, across compactions, with deletions."""
    from collab.replay.worker_texts import LAST, write_change, write_text

    writer = Writer(tmp_path_factory.mktemp("worker"))
    for count, (where, piece, delete) in enumerate(edits, start=1):
        text = writer.session.mirror
        pos = where % (len(text) + 1)
        new = text[:pos] + text[pos + 2 :] if delete and text else text[:pos] + piece + text[pos:]
        await writer.write(new if new != text else text + piece)
        if count % compact_every == 0:
            await writer.compact()
    opener = functools.partial(FileStore, writer.data_dir, fsync=False, exclusive=False)
    out = tmp_path_factory.mktemp("out") / "body"
    history = writer.history()
    for rev, text in [*writer.texts.items(), (LAST, writer.session.mirror)]:
        built = await asyncio.to_thread(write_text, opener, writer.name, "text", rev, str(out))
        assert built.missing is None and out.read_bytes().decode() == text
        assert built.rev == (writer.session.rev if rev == LAST else rev)
        if 0 < rev <= writer.session.rev:
            await asyncio.to_thread(write_change, opener, writer.name, "text", rev, str(out))
            assert json.loads(out.read_bytes().decode()) == history.change(rev).as_json()
    gone = await asyncio.to_thread(write_text, opener, writer.name, "text", 10**6, str(out))
    assert gone.missing == f"no revision {10**6}: the latest is {writer.session.rev}"
