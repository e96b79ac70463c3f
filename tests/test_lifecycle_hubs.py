"""The lifecycle across processes (hubs on one shared store and a bus stand for them): a
delete in one closes the peers of every other, which drop the document unsaved."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_hub import FakeConnection, until
from test_shared_hubs import hubs, joined_text_peer, op

from collab.config import Settings
from collab.hub import DocumentNotFoundError, Hub
from collab.storage.memory import MemoryStore
from collab.text.client import TextClient
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


async def messages(connection: FakeConnection, kind: str) -> list[dict]:
    """The messages of `kind` sent so far, once there is one."""
    await until(lambda: any(m["type"] == kind for m in connection.texts()), what=kind)
    return [m for m in connection.texts() if m["type"] == kind]


async def test_a_text_client_of_an_old_generation_drops_what_it_had_not_sent() -> None:
    store, _, (a, _) = hubs()
    client = TextClient()
    runner = await a.open("doc")
    connection = FakeConnection()
    peer = runner.connect(connection, "text", None, False)

    def answer(replies: list) -> None:
        for message in replies:
            runner.receive(peer, json.dumps(message))

    runner.receive(peer, json.dumps(client.hello()))
    answer(client.receive((await messages(connection, "welcome"))[0]))
    answer(client.edit([0, "old 😀"]))
    client.receive((await messages(connection, "ack"))[0])
    assert client.text == "old 😀" and client.inflight is None
    old = client.generation
    client.edit([5, " unsent 中文"])  # typed while the document is deleted: never sent
    await a.delete("doc")
    runner = await a.open("doc")
    await runner.changes.set_text("new\r\n", "server:test", None)
    connection = FakeConnection()
    peer = runner.connect(connection, "text", None, False)
    runner.receive(peer, json.dumps(client.hello()))
    welcome = (await messages(connection, "welcome"))[0]
    assert welcome["generation"] != old
    assert welcome["reset"] and welcome["text"] == "new\r\n"
    assert client.receive(welcome) == []  # nothing of the old copy is sent
    assert client.text == "new\r\n" and client.reset
    answer(client.edit([5, "kept"]))
    await messages(connection, "ack")
    assert runner.text == "new\r\nkept"
    stored = await store.load("doc")
    assert stored is not None and all(b"old" not in r.update for r in stored.records)


class YieldingStore(MemoryStore):
    """A MemoryStore whose loads and deletes let other tasks run, as real I/O does."""

    async def load(self, name: str):  # type: ignore[override]
        await asyncio.sleep(0)
        return await super().load(name)

    async def delete(self, name: str) -> None:
        await asyncio.sleep(0)
        await super().delete(name)


async def test_deletes_and_restores_of_one_name_at_once_do_not_trip() -> None:
    store = YieldingStore()
    writer = Hub(store, Settings())
    runner = await writer.open("doc")
    await runner.changes.set_text("héllo 😀", "server:test", None)
    state = runner.state
    await writer.close()
    hub = Hub(store, Settings())  # not loaded yet: every call below waits for one load
    outcomes = await asyncio.gather(
        hub.delete("doc"), hub.delete("doc"), hub.restore("doc", state), return_exceptions=True
    )
    assert all(isinstance(o, str | DocumentNotFoundError) for o in outcomes), outcomes
    assert hub._deleting == {}
    reopened = await hub.open("doc")
    assert reopened.text in ("", "héllo 😀")
