"""The text peers' copy of the text (issue 19): while a text peer follows a document, a Yjs
update or a text op costs what it changes, not what the text holds. Held here by the
mechanism (no time is asserted: `bench/append_cost.py` measures it): no change builds the
whole text as one str or converts positions over more than a piece of it. And through real
sockets, edits from both doors at the pieces' edges give every peer the same text."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ServerProcess
from pyclient import YClient
from pycrdt import Doc, Text
from text_tab import Tab

from collab.config import Settings
from collab.session.document import Document
from collab.storage.contract import Record, StoredDocument
from collab.text import chunks, positions
from collab.text import ops as textops

ATOMS = ["👩‍👩‍👧", "中文", "e\u0301", "\r\n", "🇫🇷", "abc ", "😀", "👍🏽"]


def mixed_text(length: int, seed: int = 7) -> str:
    """About `length` code points of emoji, ZWJ sequences, CJK, combining marks, CRLF."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < length:
        parts.append(rng.choice(ATOMS))
        size += len(parts[-1])
    return "".join(parts)


def watch(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Record any change that builds the whole text or converts over more than a piece."""
    limit = 2 * chunks.PIECE

    def wrap(module: Any, name: str, too_big: Callable[..., bool]) -> None:
        original = getattr(module, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            if too_big(*args):
                calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)

    wrap(textops, "apply", lambda text, op: len(text) > limit)
    wrap(positions, "utf8_len", lambda text, start, n: len(text) > limit)
    wrap(positions, "utf8_span", lambda text, start, nbytes: len(text) > limit)
    wrap(chunks.TextChunks, "__str__", lambda self: True)


def test_changes_to_a_followed_text_never_touch_the_whole_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = mixed_text(200_000)
    writer = Doc()
    ytext = writer.get("text", type=Text)
    ytext += text
    stored = StoredDocument(None, 0, [Record(1, 0.0, "yjs:1", None, writer.get_update())], 0)
    document = Document(Settings(), stored, track_text=True)
    calls: list[str] = []
    apply = textops.apply  # the test's own reference, not watched
    watch(monkeypatch, calls)
    rng = random.Random(3)
    for i in range(40):
        where = rng.randrange(len(text))
        if i % 2:  # a Yjs peer's insert, or a delete across a few hundred code points
            before = writer.get_state()
            if i % 4 == 1:
                ytext.insert(positions.cp_to_utf8(text, where), f"<{i}👍🏽>")
            else:
                end = min(len(text), where + 300)
                utf8 = positions.cp_to_utf8
                del ytext[utf8(text, where) : utf8(text, end)]
            committed = document.apply_update(writer.get_update(before), "yjs:1", None)
            text = str(ytext)
        else:  # a text peer's replace
            op = textops.normalize([where, f"«{i}中»", -1, len(text) - where - 1])
            committed = document.apply_op(op, "text:a:1", None)
            writer.apply_update(committed.record.update if committed else b"")
            text = apply(text, op)
        assert committed is not None and committed.revision.op
    assert calls == []
    monkeypatch.undo()
    assert document.mirror == text == str(document.text)


async def converged(tab: Tab, clients: list[YClient], timeout: float = 20) -> str:
    """The text once the text peer and every Yjs peer hold the same."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len({tab.client.text, *(client.text for client in clients)}) != 1:
        assert asyncio.get_running_loop().time() < deadline, "peers did not converge"
        await asyncio.sleep(0.01)
    return tab.client.text


def test_both_doors_edit_at_the_edges_of_the_pieces(server: ServerProcess) -> None:
    async def run() -> None:
        name = "pieces-👩‍👩‍👧-中"
        yjs = await YClient.connect(f"{server.ws_url}/yjs/{name}")
        await yjs.synced()
        yjs.append(mixed_text(5 * chunks.PIECE))
        tab = await Tab.join(f"{server.ws_url}/ot/{name}", "ada")
        await converged(tab, [yjs])
        edges = [k * chunks.PIECE for k in range(1, 5)]
        for k, edge in enumerate(edges):
            text = tab.client.text
            yjs.delete(edge - 3, 5)  # across the edge, then an insert just after it
            yjs.insert(edge + k, f"[{k}🇫🇷e\u0301]")
            await tab.send(tab.client.edit([edge - 1, f"«{k}\r\n中»", -3, len(text) - edge - 2]))
            await tab.until(lambda: not tab.client.pending, "the ack")
            await converged(tab, [yjs])
        expected = await converged(tab, [yjs])
        assert "«3\r\n中»" in expected and "[0🇫🇷e\u0301]" in expected
        late = await Tab.join(f"{server.ws_url}/ot/{name}", "bob")  # a welcome: the whole text
        assert late.client.text == expected
        joiner = await YClient.connect(f"{server.ws_url}/yjs/{name}")
        await joiner.synced()
        await joiner.wait_text(expected)
        assert not yjs.errors and not joiner.errors
        for peer in (tab, late, yjs, joiner):
            await peer.close()

    asyncio.run(run())
