"""Yjs writers' appends wait in lanes for pycrdt (issue 19): through real sockets, every
peer still sees exactly the text the writers made, whichever door it comes through and
whenever it joins: a text peer joining after Yjs-only edits, a Yjs peer joining or coming
back with part of the document, and the document after a restart."""

from __future__ import annotations

import asyncio

from conftest import ServerProcess
from pyclient import YClient
from text_tab import Tab

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
