"""The hub: loading once, unloading safely, failing loudly. In-process, no sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

import pytest
from ot_ids import secret_for
from pycrdt import Doc, Text

from collab.config import Settings
from collab.hub import DocumentNotFoundError, Hub
from collab.session import Session
from collab.storage.contract import Record, Snapshot, StoredDocument
from collab.storage.errors import CorruptDocumentError
from collab.storage.memory import MemoryStore
from collab.yjs import protocol


async def until(condition: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Wait for a condition, re-checking on every loop turn (no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.002)


class FakeConnection:
    """A peer's socket: records what the hub sends; `stuck` never finishes a send."""

    def __init__(self, stuck: bool = False) -> None:
        self.sent: list[bytes | str] = []
        self.closed: tuple[int, str] | None = None
        self.stuck = stuck

    async def send(self, data: bytes | str) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.closed = self.closed or (1006, "aborted")

    def send_now(self, data: bytes | str) -> bool:
        return False  # like a server without the send extension: the channel's queue path

    def buffered(self) -> int:
        return 0

    def texts(self) -> list[dict]:
        return [json.loads(m) for m in self.sent if isinstance(m, str)]


class ControlledStore(MemoryStore):
    """A MemoryStore whose operations can be held, failed and counted."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.load_gate = asyncio.Event()
        self.load_gate.set()
        self.compact_gate = asyncio.Event()
        self.compact_gate.set()
        self.fail_load: Exception | None = None
        self.fail_append = False
        self.fail_compact = False
        self.closed = False
        self.append_gate = asyncio.Event()  # clear it to hold appends (a slow fsync)
        self.append_gate.set()
        self.appends: list[int] = []  # records per append call (per fsync), in order

    async def load(self, name: str) -> StoredDocument | None:
        self.loads += 1
        await self.load_gate.wait()
        if self.fail_load is not None:
            raise self.fail_load
        return await super().load(name)

    async def append(self, name: str, records: Sequence[Record]) -> None:
        await asyncio.sleep(0)  # like a real store, let others run while writing
        await self.append_gate.wait()
        self.appends.append(len(records))
        if self.fail_append:
            raise OSError("disk full")
        await super().append(name, records)

    async def close(self) -> None:
        self.closed = True

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        await self.compact_gate.wait()
        assert not self.closed, "compacting in a closed store"
        if self.fail_compact:
            raise OSError("disk full")
        await super().compact(name, snapshot)


def hello(client: str) -> str:
    return json.dumps({"type": "hello", "secret": secret_for(client), "rev": None})


def insert_op(seq: int, rev: int, at: int, text: str, length: int) -> str:
    op: list = [at, text, length - at] if length - at else [at, text]
    return json.dumps({"type": "op", "seq": seq, "rev": rev, "op": [p for p in op if p != 0]})


@pytest.fixture
def store() -> ControlledStore:
    return ControlledStore()


def make_hub(store: ControlledStore, **settings: object) -> Hub:
    return Hub(store, Settings(**{"idle_unload_seconds": 60.0, **settings}))


async def write(hub: Hub, name: str, text: str) -> None:
    """Put `text` into a new document through a text peer, and wait for the ack."""
    runner = await hub.open(name)
    connection = FakeConnection()
    peer = runner.connect(connection, "text", None, False)
    runner.receive(peer, hello("writer"))
    runner.receive(peer, json.dumps({"type": "op", "seq": 1, "rev": 0, "op": [text]}))
    await until(lambda: any(m["type"] == "ack" for m in connection.texts()), what="ack")
    runner.disconnect(peer)


async def test_many_joiners_share_one_load(store: ControlledStore) -> None:
    hub = make_hub(store)
    store.load_gate.clear()
    opening = [asyncio.create_task(hub.open("new 😀")) for _ in range(20)]
    await until(lambda: store.loads == 1, what="the load to start")
    assert not any(task.done() for task in opening)  # nobody gets a session before the load
    store.load_gate.set()
    runners = await asyncio.gather(*opening)
    assert store.loads == 1 and len({id(r) for r in runners}) == 1


async def test_failed_load_is_not_cached_and_writes_nothing(store: ControlledStore) -> None:
    hub = make_hub(store)
    await write(hub, "doc", "kept 中文")
    hub.forget(hub.runners["doc"])
    store.fail_load = CorruptDocumentError("log-0.ylog", 42, "bad checksum")
    with pytest.raises(CorruptDocumentError):
        await hub.open("doc")
    assert "doc" not in hub.runners
    store.fail_load = None
    runner = await hub.open("doc")
    assert runner.text == "kept 中文"


async def test_unknown_document_is_not_created_by_reading(store: ControlledStore) -> None:
    hub = make_hub(store)
    with pytest.raises(DocumentNotFoundError):
        await hub.open("nobody", create=False)
    assert await store.list() == []


async def test_idle_document_is_saved_then_unloaded(store: ControlledStore) -> None:
    hub = make_hub(store, idle_unload_seconds=0.05)
    await write(hub, "idle", "saved 👍🏽")
    await until(lambda: "idle" not in hub.runners, what="unload")
    stored = await store.load("idle")
    assert stored is not None and stored.snapshot_rev == 1 and stored.records == []
    assert (await hub.open("idle")).text == "saved 👍🏽"


async def test_peer_joining_during_unload_gets_the_full_state(store: ControlledStore) -> None:
    hub = make_hub(store, idle_unload_seconds=0.01)
    await write(hub, "busy", "all of it 🇫🇷")
    store.compact_gate.clear()
    await until(lambda: hub.runners["busy"].unloading, what="the unload to start")
    joining = asyncio.create_task(hub.open("busy"))
    await asyncio.sleep(0)
    assert not joining.done()
    store.compact_gate.set()
    runner = await joining
    assert runner.text == "all of it 🇫🇷" and not runner.unloading


async def test_document_that_cannot_be_saved_stays_in_memory(
    store: ControlledStore, caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub(store, idle_unload_seconds=0.01)
    store.fail_compact = True
    with caplog.at_level(logging.ERROR):
        await write(hub, "stuck", "unsaved e\u0301")
        await until(lambda: "compaction" in caplog.text, what="the save to fail")
    assert hub.runners["stuck"].text == "unsaved e\u0301"
    assert not hub.runners["stuck"].unloading


async def test_failed_write_shows_the_edit_to_nobody(store: ControlledStore) -> None:
    hub = make_hub(store)
    await write(hub, "disk", "on disk")
    runner = hub.runners["disk"]
    writer, reader = FakeConnection(), FakeConnection()
    w = runner.connect(writer, "text", None, False)
    r = runner.connect(reader, "text", None, False)
    runner.receive(w, hello("w"))
    runner.receive(r, hello("r"))
    await until(lambda: reader.texts(), what="welcome")
    store.fail_append = True
    runner.receive(w, insert_op(1, 1, 7, "!", 7))
    await until(lambda: writer.closed and reader.closed, what="peers closed")
    assert writer.closed[0] == reader.closed[0] == 1011
    assert not any(m["type"] in ("op", "ack") for m in writer.texts() + reader.texts())
    store.fail_append = False
    assert (await hub.open("disk")).text == "on disk"


async def test_slow_peer_is_resynced_then_dropped_while_others_flow(
    store: ControlledStore,
) -> None:
    hub = make_hub(store, send_queue_bytes=2_000)
    runner = await hub.open("fan")
    slow, fast, writer = FakeConnection(stuck=True), FakeConnection(), FakeConnection()
    slow_id = runner.connect(slow, "yjs", None, False)
    fast_id = runner.connect(fast, "yjs", None, False)
    w = runner.connect(writer, "text", None, False)
    runner.receive(w, hello("w"))
    length = 0
    for seq in range(1, 200):
        runner.receive(w, insert_op(seq, seq - 1, length, "x😀" * 25, length))
        length += 50
        await runner.flush()
        await until(
            lambda: runner.queued_bytes(fast_id) == runner.queued_bytes(w) == 0,
            what="quick peers to drain",
        )
        assert (runner.queued_bytes(slow_id) or 0) <= 2_000 + 20_000
    await until(lambda: slow.closed is not None, what="the slow peer to be dropped")
    assert slow.closed[0] == 4001
    replica = Doc()
    for message in fast.sent:
        decoded = protocol.decode(message)
        if isinstance(decoded, protocol.SyncUpdate | protocol.SyncStep2):
            replica.apply_update(decoded.update)
    assert str(replica.get("text", type=Text)) == runner.text == "x😀" * 25 * 199
    assert writer.closed is None


async def test_compaction_under_a_burst_snapshots_only_what_is_written(
    store: ControlledStore, caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub(store, compact_log_records=5)
    runner = await hub.open("burst")
    writer = FakeConnection()
    w = runner.connect(writer, "text", None, False)
    runner.receive(w, hello("w"))
    for seq in range(1, 60):  # ops arrive while earlier batches are still being written
        runner.receive(w, insert_op(seq, seq - 1, seq - 1, "中", seq - 1))
        await asyncio.sleep(0)
    await runner.flush()
    await until(lambda: not runner.compacting, what="the last compaction")
    assert "compaction" not in caplog.text
    stored = await store.load("burst")
    assert stored is not None and stored.snapshot_rev >= 50
    assert Session("burst", stored=stored).mirror == "中" * 59


async def test_shutdown_waits_for_an_unload_in_progress(store: ControlledStore) -> None:
    hub = make_hub(store, idle_unload_seconds=0.01)
    await write(hub, "saving", "half way 😀")
    store.compact_gate.clear()
    await until(lambda: hub.runners["saving"].unloading, what="the unload to start")
    closing = asyncio.create_task(hub.close())
    for _ in range(50):  # let shutdown run as far as it goes on its own
        await asyncio.sleep(0)
    assert not store.closed, "the store was closed while a document was being saved"
    store.compact_gate.set()
    await closing
    assert store.closed
    stored = await store.load("saving")
    assert stored is not None and stored.snapshot_rev == 1


# --- batching: the commit sets the pace, not a timer ----------------------------------------


def yjs_edit(client_id: int, text: str) -> bytes:
    """A y-websocket update message: one Yjs client inserting `text` into a fresh text."""
    doc = Doc(client_id=client_id)
    doc.get("text", type=Text).insert(0, text)
    return protocol.encode_sync_update(doc.get_update())


def updates_in(connection: FakeConnection) -> list[bytes]:
    """The Yjs updates a peer was sent (after its handshake's step 1)."""
    decoded = [protocol.decode(m) for m in connection.sent if isinstance(m, bytes)]
    return [m.update for m in decoded if isinstance(m, protocol.SyncUpdate)]


async def loop_turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_lone_edit_is_sent_without_waiting(store: ControlledStore) -> None:
    hub = make_hub(store)  # the default batch window: 0
    assert hub.settings.batch_window == 0
    runner = await hub.open("lone")
    writer, reader = FakeConnection(), FakeConnection()
    w = runner.connect(writer, "yjs", None, False)
    runner.connect(reader, "yjs", None, False)
    await runner.flush()
    for n, text in enumerate(["hello 😀", "again 中"], start=1):
        runner.receive(w, yjs_edit(6 + n, text))
        # Nothing else is happening: a few turns of the event loop (no clock moves, no
        # timer fires) commit it and send it, the second right after the first.
        await loop_turns(20)
        assert store.appends == [1] * n
        assert len(updates_in(reader)) == n


async def test_edits_during_a_write_share_one_batch_and_one_fsync(
    store: ControlledStore,
) -> None:
    hub = make_hub(store, batch_work=60.0)  # however loaded the machine, one batch
    runner = await hub.open("busy")
    connections = [FakeConnection() for _ in range(4)]
    peers = [runner.connect(c, "yjs", None, False) for c in connections]
    reader = FakeConnection()
    runner.connect(reader, "yjs", None, False)
    await runner.flush()
    store.append_gate.clear()  # the first write takes its time
    runner.receive(peers[0], yjs_edit(10, "first"))
    await until(lambda: runner.rev == 1, what="the first batch to be written")
    for n, peer in enumerate(peers[1:], start=1):  # they arrive while it is written
        runner.receive(peer, yjs_edit(10 + n, f"edit {n}"))
    await loop_turns(20)
    assert store.appends == [] and updates_in(reader) == []  # durable before visible
    store.append_gate.set()
    await runner.flush()
    assert store.appends == [1, 3]  # two fsyncs: the first edit, then the three together
    sent = updates_in(reader)
    assert len(sent) == 2  # one message per batch, the three merged into the second
    replica = Doc()
    for update in sent:
        replica.apply_update(update)
    text = str(replica.get("text", type=Text))
    assert all(part in text for part in ("first", "edit 1", "edit 2", "edit 3"))
    assert text == runner.text


async def test_a_flood_to_one_document_is_taken_a_batch_of_work_at_a_time(
    store: ControlledStore,
) -> None:
    """Issue 19: a batch takes `batch_work` seconds of what waits, at least one message;
    the rest waits for the next batch, after the other tasks' turn (other documents). A
    flood of costly updates to one big document held the loop for seconds."""
    hub = make_hub(store, batch_work=0.0)  # every message spends the budget
    runner = await hub.open("flood")
    writer, reader = FakeConnection(), FakeConnection()
    w = runner.connect(writer, "yjs", None, False)
    runner.connect(reader, "yjs", None, False)
    await runner.flush()
    store.append_gate.clear()
    runner.receive(w, yjs_edit(10, "first"))
    await until(lambda: runner.rev == 1, what="the first batch to be written")
    texts = ["😀 1", "中文 2", "e\u0301 3", "👨‍👩‍👧 4", "\r\n 5"]
    for n, text in enumerate(texts, start=1):  # they pile up while it is written
        runner.receive(w, yjs_edit(10 + n, text))
    seen: list[int] = []  # the revision each time another task had a turn
    watching = asyncio.create_task(watch(lambda: seen.append(runner.rev)))
    store.append_gate.set()
    await until(lambda: runner.rev == 6, what="every edit committed")
    watching.cancel()
    assert store.appends == [1] * 6  # a batch (and an fsync) each
    assert set(seen) >= {2, 3, 4, 5}, seen  # others ran between the batches
    assert all(text in runner.text for text in texts)
    assert len(updates_in(reader)) == 6


async def test_a_server_edit_is_settled_by_the_batch_that_applied_it(
    store: ControlledStore,
) -> None:
    """While a server edit waits, a batch takes everything queued before it (its revision
    is told once it is on disk), whatever the work budget."""
    hub = make_hub(store, batch_work=0.0)
    runner = await hub.open("edited")
    w = runner.connect(FakeConnection(), "yjs", None, False)
    await runner.flush()
    store.append_gate.clear()
    runner.receive(w, yjs_edit(10, "first"))
    await until(lambda: runner.rev == 1, what="the first batch to be written")
    runner.receive(w, yjs_edit(11, "中文 😀"))
    update = protocol.decode(yjs_edit(12, "server e\u0301")).update  # type: ignore[union-attr]
    edit = asyncio.create_task(runner.changes.apply_update(update, "server", None))
    await loop_turns(5)
    store.append_gate.set()
    assert await asyncio.wait_for(edit, 5) == 3
    assert store.appends == [1, 2]
    assert "server e\u0301" in runner.text and "中文 😀" in runner.text


async def watch(note: Callable[[], None]) -> None:
    while True:
        note()
        await asyncio.sleep(0)


def awareness_in(connection: FakeConnection) -> list[protocol.Awareness]:
    decoded = [protocol.decode(m) for m in connection.sent if isinstance(m, bytes)]
    return [m for m in decoded if isinstance(m, protocol.Awareness)]


async def test_time_wakes_a_document_only_while_a_text_client_needs_it(
    store: ControlledStore,
) -> None:
    """A document with only Yjs peers sets no timer (200 idle documents used to wake 4,000
    times a second); a text client's awareness is renewed by itself; once it leaves, the
    timer goes."""
    hub = make_hub(store, awareness_renew_seconds=0.05)
    runner = await hub.open("timers")
    yjs = FakeConnection()
    y = runner.connect(yjs, "yjs", None, False)
    runner.receive(y, yjs_edit(7, "👩‍👩‍👧 中"))
    await runner.flush()
    assert not runner.tick_scheduled
    tab = FakeConnection()
    t = runner.connect(tab, "text", None, False)
    runner.receive(t, hello("ada"))
    await runner.flush()
    assert runner.tick_scheduled
    shown = len(awareness_in(yjs))
    await until(lambda: len(awareness_in(yjs)) >= shown + 2, what="two renewals, no event")
    runner.disconnect(t)
    await runner.flush()
    await until(lambda: not runner.tick_scheduled, what="the timer to stop")


async def test_edits_flow_while_a_compaction_is_written(store: ControlledStore) -> None:
    """Writing a snapshot of a long log takes seconds: the document's batches go on beside
    it, and what they commit meanwhile stays in the log after the snapshot."""
    hub = make_hub(store, compact_log_records=3)
    runner = await hub.open("compacting")
    writer, reader = FakeConnection(), FakeConnection()
    w = runner.connect(writer, "text", None, False)
    runner.connect(reader, "yjs", None, False)
    runner.receive(w, hello("w"))
    store.compact_gate.clear()  # the snapshot takes its time
    chunks = ["👩‍👩‍👧", "中", "e\u0301", "\r\n", "😀", "!"]
    text = ""
    for seq, chunk in enumerate(chunks, start=1):
        runner.receive(w, insert_op(seq, seq - 1, len(text), chunk, len(text)))
        text += chunk
        await until(lambda s=seq: s in acks(writer), what=f"ack {seq} during the compaction")
        if seq == 3:
            await until(lambda: runner.compacting, what="the compaction to start")
    assert runner.compacting and runner.text == text
    store.compact_gate.set()
    await until(lambda: not runner.compacting, what="the compaction to end")
    stored = await store.load("compacting")
    assert stored is not None and stored.snapshot_rev >= 3
    assert Session("compacting", stored=stored).mirror == text
    await runner.compact()  # an explicit one after it: at the last revision
    stored = await store.load("compacting")
    assert stored is not None and stored.snapshot_rev == runner.rev == len(chunks)


def acks(connection: FakeConnection) -> set[int]:
    return {m["seq"] for m in connection.texts() if m["type"] == "ack"}
