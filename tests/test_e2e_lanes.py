"""Yjs writers' appends wait in lanes for pycrdt (issue 19): through real sockets, every
peer still sees exactly the text the writers made, whichever door it comes through and
whenever it joins: a text peer joining after Yjs-only edits, a Yjs peer joining or coming
back with part of the document, and the document after a restart. A document uploaded as
one update waits whole, after the log and the relay: durable before anyone sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import ServerProcess
from pyclient import YClient
from test_e2e_yjs_truth import REFUSED_CODES, hostile_send
from test_lanes import string_item_under, two_writers_update
from text_tab import Tab

from collab.replay.verify import verify
from collab.storage.files import FileStore
from collab.testing import replay_log
from collab.yjs import protocol

PIECES = ["👩‍👩‍👧", "中文", "e\u0301", "\r\n", "🇫🇷", "abc ", "😀"]


async def settled(clients: list[YClient], timeout: float = 10) -> str:
    """The text once every client holds the same (then each holds what all wrote)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len({client.text for client in clients}) != 1:
        assert asyncio.get_running_loop().time() < deadline, [c.text[-40:] for c in clients]
        await asyncio.sleep(0.01)
    assert not any(client.errors for client in clients)
    return clients[0].text


def test_a_text_peer_joining_after_yjs_appends_sees_the_exact_text(
    server: ServerProcess,
) -> None:
    async def run() -> None:
        url = f"{server.ws_url}/yjs/lanes"
        writers = [await YClient.connect(url) for _ in range(3)]
        for writer in writers:
            await writer.synced()
        for i in range(60):  # appends to each writer's own run, mostly
            writer = writers[i % 3]
            writer.append(f"<{i}{PIECES[i % len(PIECES)] * 3}>")
            await asyncio.sleep(0)
        await settled(writers)
        # One writer inserts inside another's latest text and deletes across two runs.
        middle = len(writers[1].text) // 2
        writers[1].insert(middle, "«中👍🏽»")
        writers[2].delete(3, len(writers[2].text) // 3)
        for i in range(30):
            writers[i % 3].append(f"[{i}{PIECES[(i + 3) % len(PIECES)]}]")
        expected = await settled(writers)

        tab = await Tab.join(f"{server.ws_url}/ot/lanes", "ada")
        assert tab.client.text == expected
        await tab.type("✍️ e\u0301中")
        expected += "✍️ e\u0301中"
        for writer in writers:
            await writer.wait_text(expected)
        await tab.close()

        joiner = await YClient.connect(url)  # a new peer: the whole document
        await joiner.synced()
        await joiner.wait_text(expected)
        back = await YClient.connect(url, handshake=False)  # with part of it already
        back.doc.apply_update(writers[0].doc.get_update())
        writers[0].append("🇫🇷 last")
        expected += "🇫🇷 last"
        back.send_raw(protocol.encode_sync_step1(back.doc.get_state()))
        await back.synced()
        await back.wait_text(expected)
        for client in [*writers, joiner, back]:
            assert not client.errors
            await client.close()

    asyncio.run(run())
    server.restart()

    async def after_restart() -> str:
        async with await YClient.connect(f"{server.ws_url}/yjs/lanes") as client:
            await client.synced()
            return client.text

    text = asyncio.run(after_restart())
    assert text.endswith("✍️ e\u0301中🇫🇷 last") and "«中👍🏽»" in text


def test_an_upload_as_one_update_is_durable_before_anyone_sees_it(
    start_server: Callable[..., ServerProcess],
) -> None:
    """A peer uploads what two writers typed (emoji, ZWJ, CJK, combining marks, CRLF) as one
    sync update: too mixed for a lane, it waits whole for pycrdt, after the log (fsync on)
    and the relay. An item only pycrdt can refuse, sent meanwhile, is refused with its close
    code and stored nowhere; a kill -9 as soon as a peer has another upload loses none of
    it; every door, a replay of the log and its verification agree, before the crash and
    after."""
    server = start_server()
    update, uploaded = two_writers_update(100)
    late_update, late_text = two_writers_update(100, seed=8)
    url = f"{server.ws_url}/yjs/upload"

    async def run() -> str:
        observer, uploader = await YClient.connect(url), await YClient.connect(url)
        for client in (observer, uploader):
            await client.synced()
        uploader.doc.apply_update(update)  # sent as it is applied: one sync update
        await observer.wait_text(uploaded)
        observer.insert(0, "👍🏽中")  # an item of text, at its client's clock 0
        await uploader.wait_text("👍🏽中" + uploaded)
        hostile = string_item_under(503, (observer.doc.client_id, 0), "e\u0301😀")
        assert await hostile_send(server, "upload", hostile) in REFUSED_CODES
        uploader.append("\r\n✓")
        expected = "👍🏽中" + uploaded + "\r\n✓"
        await observer.wait_text(expected)
        tab = await Tab.join(f"{server.ws_url}/ot/upload", "ada")
        assert tab.client.text == expected
        await tab.close()
        for client in (observer, uploader):
            assert not client.errors
            await client.close()
        # Another upload, and the kill as soon as a peer has it (pycrdt may be applying it).
        late = [await YClient.connect(f"{url}-late") for _ in range(2)]
        for client in late:
            await client.synced()
        late[0].doc.apply_update(late_update)
        await late[1].wait_text(late_text)
        return expected

    expected = asyncio.run(run())
    server.kill()  # SIGKILL: what any peer saw must be on disk
    server.start()

    async def after_crash() -> None:
        async with await YClient.connect(url) as joiner:
            await joiner.synced()
            await joiner.wait_text(expected)
        async with await YClient.connect(f"{url}-late") as joiner:
            await joiner.synced()
            await joiner.wait_text(late_text)
        tab = await Tab.join(f"{server.ws_url}/ot/upload", "bob")
        assert tab.client.text == expected
        await tab.close()

    asyncio.run(after_crash())
    assert server.stop() == 0
    assert list(replay_log(server.data_dir, "upload"))[-1].text == expected
    assert verify(FileStore(server.data_dir, exclusive=False).segments("upload")).ok
