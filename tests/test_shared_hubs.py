"""Several processes on one shared store and a bus: hubs in one event loop stand for them.

The store (`MemoryStore`, a SharedStore) serializes commits per document as PostgreSQL
does; the `MemoryBus` carries committed revisions and awareness between hubs and can lose
messages. The same runner code runs against PostgreSQL and Redis in the real-server tests.
"""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Doc, Text
from test_hub import FakeConnection, hello, until

from collab.bus import MemoryNetwork
from collab.config import Settings
from collab.hub import DocumentRunner, Hub
from collab.storage.memory import MemoryStore
from collab.yjs import protocol

UNICODE = "héllo 😀 👨‍👩‍👧 中文 e\u0301\r\n"


def op(seq: int, rev: int, parts: list[Any]) -> str:
    return json.dumps({"type": "op", "seq": seq, "rev": rev, "op": parts})


def hubs(count: int = 2) -> tuple[MemoryStore, MemoryNetwork, list[Hub]]:
    store, network = MemoryStore(), MemoryNetwork()
    settings = Settings(idle_unload_seconds=60.0)
    return store, network, [Hub(store, settings, bus=network.bus()) for _ in range(count)]


def yjs_text(connection: FakeConnection) -> str:
    """The text a Yjs peer would see from what it was sent."""
    doc = Doc()
    for message in connection.sent:
        decoded = protocol.decode(message)
        if isinstance(decoded, protocol.SyncUpdate | protocol.SyncStep2):
            doc.apply_update(decoded.update)
    return str(doc.get("text", type=Text))


async def joined_text_peer(runner: DocumentRunner, name: str) -> tuple[FakeConnection, Any]:
    connection = FakeConnection()
    peer = runner.connect(connection, "text", None, False)
    runner.receive(peer, hello(name))
    await runner.flush()
    return connection, peer


async def test_two_processes_number_revisions_in_one_order_and_converge() -> None:
    store, _, (a, b) = hubs()
    ra, rb = await a.open("doc"), await b.open("doc")
    ta, pa = await joined_text_peer(ra, "ann")
    tb, pb = await joined_text_peer(rb, "bob")
    yjs_on_b = FakeConnection()  # never asks for the state: it sees only what is relayed
    rb.connect(yjs_on_b, "yjs", None, False)
    await rb.flush()

    ra.receive(pa, op(1, 0, ["😀 ann "]))  # both made on revision 0, at the same time
    rb.receive(pb, op(1, 0, ["中文 bob"]))
    await ra.flush()
    await rb.flush()

    await until(lambda: ra.rev == rb.rev == 2 and ra.text == rb.text, what="convergence")
    stored = await store.load("doc")
    assert stored is not None and [r.rev for r in stored.records] == [1, 2]
    acks = [m for t in (ta, tb) for m in t.texts() if m["type"] == "ack"]
    assert sorted(m["rev"] for m in acks) == [1, 2]
    assert ra.text in ("😀 ann 中文 bob", "中文 bob😀 ann ")
    await until(lambda: yjs_text(yjs_on_b) == ra.text, what="the Yjs peer on B")


async def test_a_lost_publish_is_filled_from_the_store() -> None:
    _, network, (a, b) = hubs()
    ra, rb = await a.open("doc"), await b.open("doc")
    _, pa = await joined_text_peer(ra, "ann")
    tb, pb = await joined_text_peer(rb, "bob")
    network.drop_publishes = True
    ra.receive(pa, op(1, 0, [UNICODE]))
    await ra.flush()
    assert rb.rev == 0  # B never heard of it
    network.drop_publishes = False
    # B's next commit catches up first: its op, made on revision 0, is rebased.
    rb.receive(pb, op(1, 0, ["!"]))
    await rb.flush()
    assert rb.rev == 2 and rb.text in ("!" + UNICODE, UNICODE + "!")
    await until(lambda: ra.text == rb.text, what="A to see B's edit")
    await until(lambda: any(m["type"] == "ack" for m in tb.texts()), what="B's ack")
    assert [m["rev"] for m in tb.texts() if m["type"] in ("op", "ack")] == [1, 2]


async def test_a_lost_subscription_catches_up_without_waiting_for_an_edit() -> None:
    _, network, (a, b) = hubs()
    ra, rb = await a.open("doc"), await b.open("doc")
    _, pa = await joined_text_peer(ra, "ann")
    tb, _ = await joined_text_peer(rb, "bob")
    network.drop_publishes = True
    ra.receive(pa, op(1, 0, [UNICODE]))
    await ra.flush()
    network.drop_publishes = False
    b.bus.resubscribe_all()  # type: ignore[union-attr]
    await until(lambda: rb.text == UNICODE, what="B to catch up")
    assert [m["op"] for m in tb.texts() if m["type"] == "op"] == [[UNICODE]]


async def test_an_op_resent_to_another_process_is_acked_not_applied_twice() -> None:
    _, _, (a, b) = hubs()
    ra, rb = await a.open("doc"), await b.open("doc")
    _, pa = await joined_text_peer(ra, "ann")
    ra.receive(pa, op(1, 0, ["once 😀"]))
    await ra.flush()
    ra.disconnect(pa)  # the ack was lost with the connection; ann tries process B
    again = FakeConnection()
    peer = rb.connect(again, "text", None, False)
    rb.receive(peer, json.dumps({"type": "hello", "secret": "test-secret-of-ann", "rev": 0}))
    rb.receive(peer, op(1, 0, ["once 😀"]))
    await rb.flush()
    await until(lambda: any(m["type"] == "ack" for m in again.texts()), what="the ack")
    welcome, ack = (m for m in again.texts() if m["type"] in ("welcome", "ack"))
    assert welcome["acked"] == 1
    assert ack == {"type": "ack", "seq": 1, "rev": 1}
    assert rb.text == ra.text == "once 😀" and rb.rev == 1


async def test_awareness_crosses_processes_and_leaves_with_its_process() -> None:
    _, _, (a, b) = hubs()
    ra, rb = await a.open("doc"), await b.open("doc")
    on_a, on_b = FakeConnection(), FakeConnection()
    peer_a = ra.connect(on_a, "yjs", None, False)
    rb.connect(on_b, "yjs", None, False)
    text_on_b, _ = await joined_text_peer(rb, "bob")
    entry = protocol.AwarenessEntry(4242, 1, {"user": {"name": "Ada 👩‍💻", "color": "#d81b60"}})
    ra.receive(peer_a, protocol.encode_awareness([entry]))
    await ra.flush()

    def seen_on_b() -> list[protocol.AwarenessEntry]:
        return [
            e
            for m in on_b.sent
            if isinstance(d := protocol.decode(m), protocol.Awareness)
            for e in d.entries
        ]

    await until(lambda: any(e.client_id == 4242 for e in seen_on_b()), what="awareness on B")
    await until(
        lambda: any(m.get("client") == "yjs:4242" for m in text_on_b.texts()),
        what="B's text client to see Ada",
    )
    await a.close()  # process A stops: its peers' awareness goes with it
    await until(
        lambda: any(e.client_id == 4242 and e.state is None for e in seen_on_b()),
        what="Ada to leave B",
    )
    assert any(
        m == {"type": "presence", "client": "yjs:4242", "left": True} for m in text_on_b.texts()
    )
