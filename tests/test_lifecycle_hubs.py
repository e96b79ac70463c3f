"""The lifecycle across processes (hubs on one shared store and a bus stand for them): a
delete in one closes the peers of every other, which drop the document unsaved."""

from __future__ import annotations

import pytest
from test_hub import FakeConnection, until
from test_shared_hubs import hubs, joined_text_peer, op

from collab.hub import DocumentNotFoundError
from collab.wire import CloseCode


async def test_a_delete_closes_the_peers_of_every_process() -> None:
    store, _, (a, b) = hubs()
    ra = await a.open("doc")
    _, pa = await joined_text_peer(ra, "ann")
    ra.receive(pa, op(1, 0, ["héllo 😀 中文\r\n"]))
    await ra.flush()
    rb = await b.open("doc")
    tb, _ = await joined_text_peer(rb, "bob")
    yjs_on_b = FakeConnection()
    rb.connect(yjs_on_b, "yjs", None, False)
    await rb.flush()

    generation = await a.delete("doc")
    await until(lambda: tb.closed and yjs_on_b.closed, what="B's peers closed")
    assert tb.closed is not None and yjs_on_b.closed is not None
    assert tb.closed[0] == yjs_on_b.closed[0] == CloseCode.DELETED
    assert "doc" not in b.runners and "doc" not in a.runners
    assert await store.load("doc") is None
    with pytest.raises(DocumentNotFoundError):
        await a.delete("doc")
    again = await b.open("doc")  # the name is free: made again, in the new generation
    assert again.rev == 0 and again.generation == generation
