"""A new peer of a big document is answered with what is kept encoded (the snapshot and the
updates logged since), never with a state encoded on the event loop; real Yjs clients (Node's
y-websocket provider, pycrdt) end synced with the whole text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServerProcess, both_edges
from pyclient import YClient
from pycrdt import Doc, Text, merge_updates
from raw_ws import client_frame, raw_websocket
from test_welcome import read_fragments, seed
from websockets.asyncio.client import connect
from yjs_node import NodeYjs

from collab.config import Settings
from collab.session import Session
from collab.session.kept import RUN_UPDATES, SMALL_UPDATE
from collab.session.sync_answers import KeptAnswer
from collab.storage.contract import Record, StoredDocument
from collab.yjs import protocol

PIECE = "👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 " * 1_000  # ~35 KB: emoji, ZWJ, CJK, combining, CRLF


def big_stored(kb: int, logged: int) -> tuple[StoredDocument, str]:
    """A snapshot of about `kb` KB and `logged` records after it; the text they make."""
    doc = Doc()
    text = doc.get("text", type=Text)
    while len(text) < kb * 1024:
        text.insert(len(text), PIECE)
    snapshot = doc.get_update()
    records = []
    for rev in range(1, logged + 1):
        before = doc.get_state()
        text.insert(0, f"<{rev}😀>")  # byte offset 0: never inside a character
        records.append(Record(rev + 1, 0.0, "yjs:9", None, doc.get_update(before)))
    return StoredDocument(snapshot, 1, records, 0), str(text)


async def compacted(data_dir: Path) -> None:
    """Wait (30 s at most) until a document of the store has a snapshot."""
    deadline = time.monotonic() + 30
    while not list((data_dir / "docs").glob("*/snapshot-*.ysnap")):
        assert time.monotonic() < deadline, "no compaction"
        await asyncio.sleep(0.05)


def sent(session: Session) -> list[bytes]:
    """The session's messages as the peer gets them: a kept answer part by part."""
    out: list[bytes] = []
    for _, data in session.take_output().messages:
        out.extend(data if isinstance(data, KeptAnswer) else [data])  # type: ignore[list-item]
    return out


def test_a_new_peer_of_a_big_document_gets_the_kept_snapshot_and_updates() -> None:
    stored, expected = big_stored(2048, 5)
    session = Session("big 📚", Settings(), stored, track_text=False)
    session.connect_yjs("joiner")
    session.take_output()
    session.receive("joiner", protocol.encode_sync_step1(b"\x00"))
    messages = [protocol.decode(data) for data in sent(session)]
    assert_kept_answer(messages, stored)
    joiner = Doc()
    joined = joiner.get("text", type=Text)
    for message in messages:  # each applies as it comes: nothing waits for a later one
        joiner.apply_update(message.update)
    assert str(joined) == expected


def assert_kept_answer(messages: list[protocol.Message], stored: StoredDocument) -> None:
    """The snapshot as kept (nothing encoded), the logged updates in order (small ones
    merged, `RUN_UPDATES` to a message), then a step 2 that says the peer has everything."""
    updates = [r.update for r in stored.records]
    assert all(len(update) < SMALL_UPDATE for update in updates)
    runs = [updates[i : i + RUN_UPDATES] for i in range(0, len(updates), RUN_UPDATES)]
    kinds = [protocol.SyncUpdate] * (1 + len(runs)) + [protocol.SyncStep2]
    assert [type(m) for m in messages] == kinds
    assert messages[0].update == stored.snapshot
    merged = [run[0] if len(run) == 1 else merge_updates(*run) for run in runs]
    assert [m.update for m in messages[1:-1]] == merged
    assert messages[-1].update == b"\x00\x00"  # the empty update


def test_a_small_document_is_encoded_and_a_long_log_kept_as_it_is() -> None:
    """A long log (200 records, over the queue's limit) no longer means a state encoded on
    the loop: the kept answer is sent part by part (`PeerChannel`)."""
    for kb, logged, kept in ((100, 3, False), (2048, 200, True)):
        settings = Settings(send_queue_bytes=16 * 1024)
        stored, expected = big_stored(kb, logged)
        session = Session("doc", settings, stored, track_text=False)
        session.connect_yjs("joiner")
        session.take_output()
        session.receive("joiner", protocol.encode_sync_step1(b"\x00"))
        messages = [protocol.decode(data) for data in sent(session)]
        if kept:
            assert_kept_answer(messages, stored)
        else:
            assert [type(m) for m in messages] == [protocol.SyncStep2]
        joiner = Doc()
        joined = joiner.get("text", type=Text)
        for message in messages:
            joiner.apply_update(message.update)
        assert str(joined) == expected


@pytest.mark.parametrize(
    ("client", "queue"),
    [("node", "4194304"), ("pycrdt", "4194304"), ("pycrdt", "262144")],
    ids=["node", "pycrdt", "pycrdt-snapshot-over-the-queue-limit"],
)
async def test_yjs_clients_join_a_big_compacted_document_whole(
    start_server: Callable[..., ServerProcess], client: str, queue: str
) -> None:
    server = start_server(
        "--compact-log-bytes",
        "1500000",
        "--compact-log-records",
        "100000",
        "--send-queue-bytes",
        queue,
    )
    name = "big 📚 中文"
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as writer:
        await writer.synced()
        for _ in range(50):  # ~1.7 MB: one compaction
            writer.append(PIECE)
        await writer.until(lambda: len(writer.text) >= 50 * len(PIECE), 20, "own text")
        await compacted(server.data_dir)
        for n in range(5):  # logged after the snapshot
            writer.insert(n * 11, f"<{n}👍🏽>")
        probe = await YClient.connect(f"{server.ws_url}/yjs/{name}")
        await probe.until(lambda: probe.text == writer.text, 20, "the server to hold it all")
        await probe.close()
        expected = writer.text
    if client == "node":
        with NodeYjs() as node:
            peer = node.peer(server.ws_url, name)  # waits until synced
            assert peer.text() == expected
    else:
        joiner = await YClient.connect(f"{server.ws_url}/yjs/{name}")
        await joiner.synced()
        assert joiner.text == expected  # synced means whole: the step 2 comes last
        assert not joiner.closed  # the updates after a snapshot over the limit queued
        await joiner.close()


def answer_to(session: Session, state_vector: bytes) -> list[protocol.Message]:
    session.connect_yjs("back")
    session.take_output()
    session.receive("back", protocol.encode_sync_step1(state_vector))
    return [protocol.decode(data) for data in sent(session)]


def test_a_peer_back_from_far_behind_gets_the_kept_answer_and_one_just_behind_a_diff() -> None:
    stored, expected = big_stored(2048, 5)
    far = Doc()  # a text of its own, none of the document's: its state vector is not empty
    far.get("text", type=Text).insert(0, "mine 😀 ")
    messages = answer_to(Session("big", Settings(), stored, track_text=False), far.get_state())
    assert_kept_answer(messages, stored)
    for message in messages:
        far.apply_update(message.update)
    assert sorted(str(far.get("text", type=Text))) == sorted("mine 😀 " + expected)

    just_behind = Doc()
    just_behind.apply_update(stored.snapshot)
    for record in stored.records[:-1]:
        just_behind.apply_update(record.update)
    messages = answer_to(
        Session("big", Settings(), stored, track_text=False), just_behind.get_state()
    )
    assert [type(m) for m in messages] == [protocol.SyncStep2]
    assert len(messages[0].update) < 1000  # the last record, encoded by pycrdt
    just_behind.apply_update(messages[0].update)
    assert str(just_behind.get("text", type=Text)) == expected


def test_a_peer_holding_part_of_a_big_document_applies_each_message_as_it_comes() -> None:
    """Yrs (pycrdt 0.14) loses updates it had to keep pending when the peer already held
    part of the document and a later update applied at once: the snapshot used to come
    last, and such a peer missed the appends logged after it."""
    doc = Doc()
    text = doc.get("text", type=Text)
    for _ in range(40):
        text.insert(len(text), PIECE)
    old_copy = doc.get_update()  # what the peer held when it left
    for _ in range(10):  # then the document went on: the snapshot has these
        text.insert(len(text), PIECE)
    snapshot, records = doc.get_update(), []
    edits = [
        lambda: text.insert(len(text), "appended 中文 ✍️"),
        lambda: text.insert(len(text), "e\u0301 \r\n 🇫🇷"),
        lambda: text.insert(0, "après 😀 "),  # into the part the peer holds
        lambda: text.__delitem__(slice(0, 4)),  # "a": one byte... then "près" stays
    ]
    for rev, edit in enumerate(edits, start=2):
        before = doc.get_state()
        edit()
        records.append(Record(rev, 0.0, "yjs:9", None, doc.get_update(before)))
    stored = StoredDocument(snapshot, 1, records, 0)
    peer = Doc()
    peer.apply_update(old_copy)
    peer.get("text", type=Text).insert(0, "offline 👍🏽 ")
    reference = Doc()  # the same edits, each applied after what it depends on
    for update in (peer.get_update(), snapshot, *(r.update for r in records)):
        reference.apply_update(update)

    messages = answer_to(Session("big", Settings(), stored, track_text=False), peer.get_state())
    assert_kept_answer(messages, stored)
    for message in messages:
        peer.apply_update(message.update)
    assert str(peer.get("text", type=Text)) == str(reference.get("text", type=Text))
    assert "appended 中文 ✍️" in str(reference.get("text", type=Text))


def test_a_resync_of_a_big_document_sends_what_is_kept() -> None:
    stored, expected = big_stored(2048, 3)
    session = Session("big", Settings(), stored, track_text=False)
    session.connect_yjs("slow")
    session.take_output()
    assert session.resync("slow")
    messages = [protocol.decode(data) for data in sent(session)]
    assert_kept_answer(messages, stored)
    peer = Doc()
    for message in messages:
        peer.apply_update(message.update)
    assert str(peer.get("text", type=Text)) == expected


async def test_a_peer_with_an_old_copy_of_a_big_document_comes_back_to_all_of_it(
    start_server: Callable[..., ServerProcess],
) -> None:
    """Through real sockets: deletions and inserts made while it was away, some before a
    compaction and some after, all reach it; its own offline edit reaches the others."""
    server = start_server("--compact-log-bytes", "1500000", "--compact-log-records", "100000")
    name = "big 📚 back"
    url = f"{server.ws_url}/yjs/{name}"
    async with await YClient.connect(url) as writer:
        await writer.synced()
        for _ in range(20):
            writer.append(PIECE)
        away = await YClient.connect(url)
        await away.until(lambda: away.text == writer.text, 20, "the first part")
        old_copy = away.doc.get_update()
        await away.close()
        writer.delete(3, 40)  # while it is away, before the compaction
        for _ in range(30):  # ~1 MB more: a compaction
            writer.append(PIECE)
        await compacted(server.data_dir)
        writer.insert(5, "après 😀 中文")  # logged after the snapshot
        writer.delete(100, 7)
        back = await YClient.connect(url, handshake=False)
        back._remote = True  # its old copy is not news for the server
        back.doc.apply_update(old_copy)
        back._remote = False
        back.insert(0, "offline 👍🏽 ")
        back.send_raw(protocol.encode_sync_step1(back.doc.get_state()))
        await back.until(lambda: back.text.startswith("offline 👍🏽 "), 20, "its own edit")
        await back.until(lambda: back.text == writer.text, 30, "everything")
        assert writer.text.startswith("offline 👍🏽 ") and "après 😀 中文" in writer.text
        steps = [protocol.decode(f) for f in back.received if isinstance(f, bytes)]
        # the kept answer (once the session has the snapshot) or a diff (before): both whole
        assert any(
            isinstance(m, protocol.SyncUpdate | protocol.SyncStep2) and len(m.update) > 1_000_000
            for m in steps
        )
        assert not back.errors
        await back.close()


def test_the_snapshot_is_framed_once_not_once_per_batch_of_joiners() -> None:
    stored, expected = big_stored(2048, 2)
    session = Session("big", Settings(), stored, track_text=False)
    firsts = []
    for joiner in ("a", "b"):  # two batches
        session.connect_yjs(joiner)
        session.take_output()
        session.receive(joiner, protocol.encode_sync_step1(b"\x00"))
        firsts.append(sent(session)[0])
    assert firsts[0] is firsts[1]  # the same message object: no 2 MB copy per batch
    doc = Doc()
    doc.apply_update(stored.snapshot)
    for record in stored.records:
        doc.apply_update(record.update)
    session.compacted(3, doc.get_update())  # the log starts at the new snapshot
    session.connect_yjs("c")
    session.take_output()
    session.receive("c", protocol.encode_sync_step1(b"\x00"))
    data, synced = sent(session)
    assert data is session.document.kept.base_message  # nothing logged since: then synced
    assert isinstance(protocol.decode(synced), protocol.SyncStep2)
    peer = Doc()
    peer.apply_update(protocol.decode(data).update)
    assert str(peer.get("text", type=Text)) == expected


def test_a_change_refused_halfway_rebuilds_from_the_framed_snapshot() -> None:
    stored, expected = big_stored(100, 2)
    session = Session("doc", Settings(), stored, track_text=False)
    peer = Doc()
    peer.apply_update(session.document.state)
    before = peer.get_state()
    peer.get("text", type=Text).insert_embed(0, {"img": "😀"})  # no text client can hold it
    session.connect_yjs("p")
    session.take_output()
    session.receive("p", protocol.encode_sync_update(peer.get_update(before)))
    assert [code for _, code, _ in session.take_output().closes] == [1002]
    assert str(session.document.text) == expected  # rebuilt: the snapshot, then the log
    assert session.document.rev == 3


async def test_a_peer_joining_a_big_document_with_a_long_log_gets_it_kept_and_paced(
    start_server: Callable[..., ServerProcess],
) -> None:
    """Through real sockets: 400 KB logged since the snapshot (over a quarter of a 256 KiB
    queue, where a diff used to be encoded on the loop) reach a joiner as they are kept,
    part by part, while a writer goes on appending; it ends with every edit, not closed."""
    server = start_server(
        "--compact-log-bytes", "1500000", "--compact-log-records", "100000",
        "--send-queue-bytes", "262144",
    )  # fmt: skip
    url = f"{server.ws_url}/yjs/big 📚 long log"
    async with await YClient.connect(url) as writer:
        await writer.synced()
        for _ in range(50):  # ~1.7 MB: one compaction
            writer.append(PIECE)
        await compacted(server.data_dir)
        for n in range(200):  # ~400 KB logged after it, in 2 KB appends
            writer.append(f"<{n} 中文 👍🏽>" + PIECE[: 2000 // 2])
        probe = await YClient.connect(url)
        await probe.until(lambda: probe.text == writer.text, 30, "the server to hold it all")
        await probe.close()
        joiner = await YClient.connect(url)
        for n in range(20):  # while it is answered
            writer.append(f"[{n} e\u0301 🇫🇷]")
        await joiner.synced(30)
        await joiner.until(lambda: joiner.text == writer.text, 30, "every edit")
        assert not joiner.closed and not joiner.errors
        steps = [protocol.decode(f) for f in joiner.received if isinstance(f, bytes)]
        steps = [m for m in steps if isinstance(m, protocol.SyncUpdate | protocol.SyncStep2)]
        assert isinstance(steps[0], protocol.SyncUpdate) and len(steps[0].update) > 1_000_000
        first_step2 = next(i for i, m in enumerate(steps) if isinstance(m, protocol.SyncStep2))
        # The snapshot, then the logged updates (in runs: `collab.session.kept`), then synced.
        assert first_step2 >= 2 and all(len(m.update) < 1_000_000 for m in steps[1:first_step2])
        assert steps[first_step2].update == b"\x00\x00"
        await joiner.close()


@both_edges
async def test_a_big_snapshot_reaches_a_joiner_in_fragments_of_one_message(
    start_server: Callable[..., ServerProcess], edge: str
) -> None:
    """What is kept of a big document (here a detached one's logged 1.6 MB upload) reaches a
    new peer as fragments of one binary message, a loop turn each (one frame through a
    server without the fragment extension); the peer holds exactly the text."""
    server = start_server("--fsync", "never", "--detach-from-bytes", "1")
    text = PIECE * 40
    await seed(server, "frames", text)
    sock = raw_websocket(server.port, "/yjs/frames")
    joiner = Doc()
    most_frames = 0
    try:
        sock.sendall(client_frame(protocol.encode_sync_step1(b"\x00")))
        deadline = time.monotonic() + 30
        while str(joiner.get("text", type=Text)) != text:
            assert time.monotonic() < deadline, "the joiner never got the text"
            data, frames = read_fragments(sock, 0x2)
            most_frames = max(most_frames, frames)
            message = protocol.decode(data)
            if isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
                joiner.apply_update(message.update)
    finally:
        sock.close()
    assert most_frames == 1 if edge == "public" else most_frames > 1


async def test_a_big_snapshot_is_whole_through_a_compressed_connection(
    start_server: Callable[..., ServerProcess],
) -> None:
    """With --ws-compression, websockets compresses the fragments of the one message."""
    server = start_server(
        "--fsync", "never", "--detach-from-bytes", "1", "--ws-compression", "true"
    )
    text = PIECE * 40
    await seed(server, "deflated", text)
    joiner = Doc()
    async with connect(f"{server.ws_url}/yjs/deflated", max_size=None) as ws:
        assert ws.protocol.extensions, "permessage-deflate was negotiated"
        await ws.send(protocol.encode_sync_step1(b"\x00"))
        while str(joiner.get("text", type=Text)) != text:
            message = protocol.decode(await asyncio.wait_for(ws.recv(), 30))
            if isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
                joiner.apply_update(message.update)
