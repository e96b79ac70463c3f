"""How big a document text clients may open or edit (`--text-door-max-bytes`).

What a text client needs (the text in pieces, each change as a code-point op, its op made
into a Yjs update) runs pycrdt's text on the event loop, and on a long text each call costs
with its size (a join ~7 ms at 2 MiB, ~30 ms at 8; an append ~13 ms at 8): every document
of the process waits. Past the limit a document is for Yjs clients, which never need it:
a text client is closed with 1009 and the reason, an op or a service's op is refused as
too large, and nothing of the document changes for its Yjs peers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess
from pyclient import YClient
from pycrdt import Doc, Text
from redis_server import RedisServer
from test_session import UNICODE, TextPeer, YPeer, pump
from text_tab import Tab

from collab.config import Settings
from collab.replay import recording
from collab.replay.rebuild import replay_recording
from collab.replay.recording import Recorder
from collab.session import Session
from collab.session.revision import ChangeRefused
from collab.session.text_messages import OpMessage
from collab.text.client import TextClient
from collab.wire import CloseCode, ErrorCode
from collab.yjs import protocol

LIMIT = 4096
PASTE = UNICODE * 120  # 7.3 KB (past LIMIT, within twice it): emoji, ZWJ, CJK, combining marks


def session_of(limit: int = LIMIT) -> Session:
    """A session as the hub makes it: the text followed only while text peers need it."""
    settings = Settings(text_door_max_bytes=limit, detach_from_bytes=2048)
    return Session("doc", settings, track_text=False)


def test_a_text_client_of_a_document_too_big_is_closed_with_the_reason() -> None:
    session = session_of()
    writer = YPeer(session, "w")
    peers: dict[str, object] = {"w": writer}
    pump(session, peers)
    writer.edit(0, PASTE)
    pump(session, peers)
    assert session.document.detached  # past detach_from_bytes, no text client
    reader = peers["t"] = TextPeer(session, "t", "reader")
    pump(session, peers)
    code, reason = reader.closed  # type: ignore[attr-defined]
    assert code == CloseCode.TOO_BIG and "too big for text clients" in reason
    assert "use a Yjs editor" in reason
    assert reader.of_type("welcome") == []
    assert session.document.detached and not session.document.tracking_text  # no rebuild
    writer.edit(0, "中e\u0301 ")  # the Yjs peers go on
    assert len(pump(session, peers)) == 1
    assert str(writer.text) == "中e\u0301 " + PASTE


def test_text_clients_are_closed_when_a_yjs_peer_takes_the_document_past_the_limit() -> None:
    session = session_of()
    writer, other = YPeer(session, "w"), YPeer(session, "o")
    reader = TextPeer(session, "t", "reader")
    peers = {"w": writer, "o": other, "t": reader}
    pump(session, peers)
    writer.edit(0, "👨‍👩‍👧 ")
    pump(session, peers)
    assert session.document.tracking_text and reader.of_type("op")
    writer.edit(0, PASTE * 2)  # past twice the limit
    pump(session, peers)
    code, reason = reader.closed  # type: ignore[attr-defined]
    assert code == CloseCode.TOO_BIG and "too big for text clients" in reason
    assert not session.document.tracking_text
    assert session.document.detached  # nothing follows the text: pycrdt is dropped
    assert str(other.text) == PASTE * 2 + "👨‍👩‍👧 "


def test_a_text_op_that_would_pass_the_limit_is_refused_and_changes_nothing() -> None:
    session = session_of()
    writer = YPeer(session, "w")
    author = TextPeer(session, "t", "author")
    peers = {"w": writer, "t": author}
    pump(session, peers)
    rev = session.rev
    author.send({"type": "op", "seq": 1, "rev": rev, "op": [PASTE * 2]})
    pump(session, peers)
    (error,) = author.of_type("error")
    assert error["code"] == ErrorCode.TOO_LARGE and error["seq"] == 1
    assert "too big for text clients" in error["message"]
    assert session.rev == rev and str(writer.text) == ""
    author.send({"type": "op", "seq": 2, "rev": rev, "op": ["e\u0301 😀\r\n"]})
    pump(session, peers)
    assert [ack["seq"] for ack in author.of_type("ack")] == [2]
    assert str(writer.text) == "e\u0301 😀\r\n"
    assert not hasattr(author, "closed")  # still connected


def test_text_clients_there_go_on_up_to_twice_the_limit_and_new_ones_do_not_join() -> None:
    """The log grows with every edit until the next compaction: a document near the limit
    does not turn its writers away mid-sentence, but a new one does not join it."""
    session = session_of()
    writer = YPeer(session, "w")
    author = TextPeer(session, "t", "author")
    peers: dict[str, object] = {"w": writer, "t": author}
    pump(session, peers)
    writer.edit(0, PASTE)  # past the limit, within twice it
    pump(session, peers)
    assert session.document.state_bytes > LIMIT
    author.send({"type": "op", "seq": 1, "rev": session.rev, "op": [len(PASTE), "中e\u0301"]})
    pump(session, peers)
    assert [ack["seq"] for ack in author.of_type("ack")] == [1]
    assert str(writer.text) == PASTE + "中e\u0301"
    late = peers["l"] = TextPeer(session, "l", "late")
    pump(session, peers)
    assert late.closed[0] == CloseCode.TOO_BIG  # type: ignore[attr-defined]
    assert not hasattr(author, "closed")


def test_a_services_op_on_a_document_too_big_is_refused_without_following_its_text() -> None:
    session = session_of()
    writer = YPeer(session, "w")
    pump(session, {"w": writer})
    writer.edit(0, PASTE)
    pump(session, {"w": writer})
    with pytest.raises(ChangeRefused) as refused:
        session.submit_op("service", OpMessage(1, session.rev, [1, "x"]))
    assert refused.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ChangeRefused, match="too big for text clients"):
        session.edit_text([1, "😀"])  # server code's own edit, driven by hand
    assert not session.document.tracking_text and session.document.detached
    assert str(writer.text) == PASTE


def test_a_followed_text_is_no_longer_followed_once_the_document_is_too_big() -> None:
    """A service's op makes the document follow its text for good (its next op may come
    late); once a Yjs peer takes it past the limit, each change would cost pycrdt."""
    session = session_of()
    writer = YPeer(session, "w")
    pump(session, {"w": writer})
    writer.edit(0, "中文")
    pump(session, {"w": writer})
    session.submit_op("service", OpMessage(1, session.rev, [2, " 😀"]))
    pump(session, {"w": writer})
    assert session.document.tracking_text
    writer.edit(0, PASTE * 2)
    pump(session, {"w": writer})
    assert not session.document.tracking_text and session.document.detached
    assert str(writer.text) == PASTE * 2 + "中文 😀"


def test_no_limit_when_it_is_zero() -> None:
    session = session_of(limit=0)
    writer = YPeer(session, "w")
    pump(session, {"w": writer})
    writer.edit(0, PASTE)
    reader = TextPeer(session, "t", "reader")
    pump(session, {"w": writer, "t": reader})
    (welcome,) = reader.of_type("welcome")
    assert welcome["text"] == PASTE


async def pasted_past_twice_the_limit(writer: YClient, text_url: str) -> None:
    """A text client at `text_url` follows `writer`'s first edit; then `writer` pastes past
    twice the limit (64 KiB): the text client is closed with 1009 and the reason."""
    tab = await Tab.join(text_url, "early")
    writer.insert(0, UNICODE)
    await tab.until(lambda: tab.client.text == UNICODE, "the first edit")
    writer.insert(0, PASTE * 20)  # 146 KB
    code, reason = await tab.closed_by_server()
    assert code == CloseCode.TOO_BIG and "too big for text clients" in reason


@pytest.fixture
def server(start_server) -> ServerProcess:
    return start_server("--text-door-max-bytes", str(64 * 1024))


async def test_over_real_sockets_text_clients_are_turned_away_from_a_big_document(
    server: ServerProcess,
) -> None:
    name = "big 中文"
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as writer:
        await pasted_past_twice_the_limit(writer, f"{server.ws_url}/ot/{name}")
        late = await Tab.say_hello(f"{server.ws_url}/ot/{name}", TextClient("late-0123456789"))
        assert (await late.closed_by_server())[0] == CloseCode.TOO_BIG
        async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
            op = {"secret": "a-service-secret-0123456789", "seq": 1, "rev": 2, "op": ["x"]}
            response = await http.post(f"/api/docs/{name}/ops", json=op)
            assert response.status_code == 413
            assert "too big for text clients" in response.json()["error"]
            headers = {"content-type": "text/plain; charset=utf-8"}
            replace = await http.put(f"/api/docs/{name}?replace=1", content="👍🏽", headers=headers)
            assert replace.status_code == 413 and "too big for text clients" in replace.text
            small = "small 中文"
            assert (
                await http.put(f"/api/docs/{small}", content="e\u0301", headers=headers)
            ).is_success
            big_text = (PASTE * 14).encode()  # replacing a small text with a big one: the same
            replace = await http.put(
                f"/api/docs/{small}?replace=1", content=big_text, headers=headers
            )
            assert replace.status_code == 413 and "too big for text clients" in replace.text
            replace = await http.put(
                f"/api/docs/{small}?replace=1", content="😀\r\n", headers=headers
            )
            assert replace.status_code == 200, replace.text
        writer.insert(0, "👍🏽")  # the Yjs peers go on
        async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as reader:
            await reader.wait_text("👍🏽" + PASTE * 20 + UNICODE)


async def test_over_a_shared_store_the_other_process_turns_its_text_clients_away(
    start_server: Callable[..., ServerProcess], postgres_url: str, redis_server: RedisServer
) -> None:
    """Two processes (PostgreSQL, Redis): a Yjs peer of one takes the document past twice
    the limit; the text client of the other is closed with the reason, as a local one is."""
    args = ["--store", postgres_url, "--bus", redis_server.url]
    args += ["--text-door-max-bytes", str(64 * 1024)]
    here, there = start_server(*args), start_server(*args)
    name = "shared big 中文"
    async with await YClient.connect(f"{here.ws_url}/yjs/{name}") as writer:
        await pasted_past_twice_the_limit(writer, f"{there.ws_url}/ot/{name}")


def test_a_recording_replays_with_the_limit_it_was_made_with(tmp_path: Path) -> None:
    """The limit shapes what happens (a text client turned away, its op never applied):
    a recording keeps it, so its replay makes the very same revisions."""
    path = tmp_path / "r.rec"
    settings = Settings(text_door_max_bytes=LIMIT)
    recorder = Recorder(path, settings)
    session = Session("d", settings, track_text=False)
    doc = Doc()
    text = doc.get("text", type=Text)

    def receive(peer_id: int, message: bytes | str) -> None:
        recorder("d", peer_id, message)
        session.receive(peer_id, message)

    recorder.connect(session, 1, "yjs", None, False)
    session.connect_yjs(1)
    text.insert(0, PASTE)
    receive(1, protocol.encode_sync_update(doc.get_update()))
    recorder.connect(session, 2, "text", None, False)
    session.connect_text(2)
    receive(2, json.dumps({"type": "hello", "secret": "t-0123456789abcdef", "rev": None}))
    receive(2, json.dumps({"type": "op", "seq": 1, "rev": 1, "op": [len(PASTE), "x"]}))
    assert [close[1] for close in session.take_output().closes] == [CloseCode.TOO_BIG]
    recorder.close()
    replayed = replay_recording(path)["d"]
    assert replayed.rev == session.rev == 1
    assert replayed.state == session.state


def test_a_recording_made_before_the_limit_replays_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recording whose start does not name the limit was made when there was none: a
    text client's op on a 2.3 MiB document replays as it was applied then."""
    monkeypatch.setattr(
        recording, "REPLAY_SETTINGS", ("text_name", "max_document_bytes", "history_in_memory")
    )
    path = tmp_path / "old.rec"
    settings = Settings(text_door_max_bytes=0)
    recorder = Recorder(path, settings)
    session = Session("d", settings, track_text=False)
    doc = Doc()
    big = PASTE * 330  # 2.3 MiB: past today's default limit
    doc.get("text", type=Text).insert(0, big)

    def receive(peer_id: int, message: bytes | str) -> None:
        recorder("d", peer_id, message)
        session.receive(peer_id, message)

    recorder.connect(session, 1, "yjs", None, False)
    session.connect_yjs(1)
    receive(1, protocol.encode_sync_update(doc.get_update()))
    recorder.connect(session, 2, "text", None, False)  # joins the 2.3 MiB document
    session.connect_text(2)
    receive(2, json.dumps({"type": "hello", "secret": "t-0123456789abcdef"}))
    receive(2, json.dumps({"type": "op", "seq": 1, "rev": 1, "op": [len(big), "x"]}))
    recorder.close()
    assert session.rev == 2
    replayed = replay_recording(path)["d"]
    assert replayed.rev == 2 and replayed.mirror == big + "x"


def test_text_clients_of_another_process_are_closed_when_its_document_passes_the_limit() -> None:
    """Scaled out: a Yjs peer of process A takes the document past twice the limit. Process
    B takes A's revisions as committed: its text clients are closed and it stops following
    the text, as A's are (else each of A's revisions costs B pycrdt's text on the loop)."""
    a, b = session_of(), session_of()
    writer = YPeer(a, "w")
    reader = TextPeer(b, "t", "reader")
    pump(a, {"w": writer})
    pump(b, {"t": reader})
    writer.edit(0, "👨‍👩‍👧 ")
    for record in pump(a, {"w": writer}):
        b.apply_committed(record)
    pump(b, {"t": reader})
    assert b.document.tracking_text and reader.of_type("op")
    writer.edit(0, PASTE * 2)  # past twice the limit
    for record in pump(a, {"w": writer}):
        b.apply_committed(record)
    pump(b, {"t": reader})
    code, reason = reader.closed  # type: ignore[attr-defined]
    assert code == CloseCode.TOO_BIG and "too big for text clients" in reason
    assert not b.document.tracking_text and b.mirror == PASTE * 2 + "👨‍👩‍👧 "
