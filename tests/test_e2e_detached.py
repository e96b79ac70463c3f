"""Detached documents through real sockets (issue 19, `collab.session.replica`).

A server that detaches every document (`--detach-from-bytes 1`) keeps no pycrdt document
while only Yjs peers edit: every peer still sees exactly the text the writers made; a peer
coming back re-sends its whole delete set without making a revision; a text peer joining
rebuilds pycrdt and sees the same text; after a kill -9 the document is loaded detached
from the store and a new peer gets it all; the log replays and verifies.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from conftest import ServerProcess
from pyclient import YClient
from test_e2e_lanes import PIECES, settled
from text_tab import Tab
from yjs_node import NodeYjs

from collab.replay.verify import verify
from collab.storage.files import FileStore
from collab.testing import replay_log
from collab.yjs import protocol


def listed_rev(server: ServerProcess, name: str) -> int:
    """The document's revision as the document list says it."""
    with urllib.request.urlopen(f"{server.http_url}/api/docs", timeout=10) as response:
        documents = json.load(response)["documents"]
    return next(entry["rev"] for entry in documents if entry["name"] == name)


def test_peers_of_a_detached_document_see_every_edit(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("--detach-from-bytes", "1")
    url = f"{server.ws_url}/yjs/detached"

    async def run() -> str:
        a, b = await YClient.connect(url), await YClient.connect(url)
        for client in (a, b):
            await client.synced()
        for i in range(40):  # each appends to its own run, and inserts inside the other's
            writer = (a, b)[i % 2]
            if i % 5 == 4:
                writer.insert(len(writer.text) // 2, f"«{PIECES[i % len(PIECES)]}»")
            else:
                writer.append(f"<{i}{PIECES[i % len(PIECES)] * 2}>")
            await asyncio.sleep(0)
        await settled([a, b])
        b.delete(2, len(b.text) // 3)
        expected = await settled([a, b])
        rev = listed_rev(server, "detached")
        await b.close()
        # b comes back: its sync step 2 re-sends every deletion it holds, none of them new.
        b = await YClient.connect(url)
        await b.synced()
        await b.wait_text(expected)
        a.append("✓")
        expected += "✓"
        await settled([a, b])
        assert listed_rev(server, "detached") == rev + 1

        tab = await Tab.join(f"{server.ws_url}/ot/detached", "ada")
        assert tab.client.text == expected
        await tab.type("✍️ e\u0301中\r\n")
        expected += "✍️ e\u0301中\r\n"
        await a.wait_text(expected)
        await tab.close()
        b.insert(0, "👍🏽")  # detached again once the text peer left
        expected = "👍🏽" + expected
        await settled([a, b])
        for client in (a, b):
            await client.close()
        return expected

    expected = asyncio.run(run())
    server.kill()
    server.start()

    async def after_crash() -> None:
        async with await YClient.connect(url) as joiner:
            await joiner.synced()
            await joiner.wait_text(expected)
            joiner.append("🇫🇷")
            async with await YClient.connect(url) as other:
                await other.synced()
                await other.wait_text(expected + "🇫🇷")

    asyncio.run(after_crash())
    assert server.stop() == 0
    # pycrdt was built once, for the text peer: not for a Yjs edit, a sync, the list or a load.
    assert server.log().count("a reader needed the pycrdt document: rebuilt") == 1
    assert list(replay_log(server.data_dir, "detached"))[-1].text == expected + "🇫🇷"
    assert verify(FileStore(server.data_dir, exclusive=False).segments("detached")).ok


async def switched(data_dir: Path) -> None:
    """Wait (30 s at most) until a document's log starts after a snapshot."""
    deadline = time.monotonic() + 30
    while not [p for p in (data_dir / "docs").glob("*/log-*.ylog") if p.stem != "log-" + "0" * 12]:
        assert time.monotonic() < deadline, "no new log segment"
        await asyncio.sleep(0.05)


def test_a_peer_coming_back_to_a_detached_document_is_not_sent_it_all_again(
    start_server: Callable[..., ServerProcess],
) -> None:
    """A peer leaves holding the document; deletions are made and a compaction folds them
    into the snapshot, an insert follows, the server restarts (kill -9); the peer comes back
    with its copy: it ends with exactly the text, and is sent the deletions and the log, not
    the snapshot again."""
    server = start_server("--detach-from-bytes", "1", "--compact-log-records", "4")
    url = f"{server.ws_url}/yjs/back"

    async def before_restart() -> tuple[bytes, str]:
        async with await YClient.connect(url) as writer:
            await writer.synced()
            writer.append("👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 " * 3000)
            async with await YClient.connect(url) as away:
                await away.wait_text(writer.text, timeout=30)
                old_copy = away.doc.get_update()
            for i in range(6):  # deletions while it is away, past --compact-log-records
                writer.delete(i * 20, 10)
            await switched(server.data_dir)  # they are in the snapshot (its delete set)
            writer.insert(5, "après 😀 中文")  # after it: in the new log
            async with await YClient.connect(url) as witness:  # written before it is relayed
                await witness.wait_text(writer.text)
            return old_copy, writer.text

    old_copy, expected = asyncio.run(before_restart())
    server.restart()

    async def comes_back() -> None:
        back = await YClient.connect(url, handshake=False)
        back._remote = True  # its old copy is not news for the server
        back.doc.apply_update(old_copy)
        back._remote = False
        back.send_raw(protocol.encode_sync_step1(back.doc.get_state()))
        await back.wait_text(expected, timeout=30)
        received = sum(len(frame) for frame in back.received)
        assert received < len(old_copy) // 2, received  # not the whole document again
        assert not back.errors
        await back.close()

    asyncio.run(comes_back())


KEYS = ["👩‍👩‍👧", "中", "e\u0301", "\r\n", "🇫🇷", "a", " ", "😀", "文", "👍🏽"]


async def typed(writer: YClient, count: int) -> None:
    """`count` updates, one a keystroke (now and then a deletion), each its own message."""
    for i in range(count):
        if i % 97 == 96:
            writer.delete(len(writer.text) // 2, 1)
        else:
            writer.append(KEYS[i % len(KEYS)])
        if i % 64 == 0:
            await asyncio.sleep(0)  # let the writer's task send what is queued


def update_messages(client: YClient) -> int:
    """The messages of document content `client` received (step 2s and updates)."""
    kinds = (protocol.SyncStep2, protocol.SyncUpdate)
    return sum(isinstance(protocol.decode(frame), kinds) for frame in client.received)


def test_a_joining_peer_of_a_long_detached_log_gets_it_in_few_messages(
    start_server: Callable[..., ServerProcess],
) -> None:
    """3,000 updates typed a keystroke at a time, logged by a detached document (no
    snapshot): a new Yjs peer and a peer coming back with half of them each end with exactly
    the text, sent in a few messages (one per logged update before: 3,000 transactions in
    the peer's editor; the one coming back is not sent the runs it holds); so does a
    y-websocket provider under Node."""
    fast = ("--max-messages-per-second", "100000", "--message-burst", "100000")
    server = start_server("--detach-from-bytes", "1", "--fsync", "never", *fast)
    url = f"{server.ws_url}/yjs/typed"

    async def run() -> str:
        async with await YClient.connect(url) as writer, await YClient.connect(url) as witness:
            await writer.synced()
            await typed(writer, 1500)
            half = writer.doc.get_update()
            await typed(writer, 1500)
            await witness.wait_text(writer.text, timeout=30)  # all logged: durable, then relayed
            async with await YClient.connect(url) as joiner:
                await joiner.wait_text(writer.text)
                assert update_messages(joiner) <= 20, update_messages(joiner)
                assert not joiner.errors
            back = await YClient.connect(url, handshake=False)
            back._remote = True  # its old copy is not news for the server
            back.doc.apply_update(half)
            back._remote = False
            back.send_raw(protocol.encode_sync_step1(back.doc.get_state()))
            await back.wait_text(writer.text)
            assert update_messages(back) <= 20, update_messages(back)  # (~9: what it lacks)
            assert not back.errors
            await back.close()
            return writer.text

    expected = asyncio.run(run())
    with NodeYjs() as node:  # Yjs applies what Yrs merged
        assert node.peer(server.ws_url, "typed").text() == expected
    assert server.stop() == 0
    assert server.log().count("a reader needed the pycrdt document: rebuilt") == 0
