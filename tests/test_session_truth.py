"""The log is the truth (issue 9), as a state machine over one session.

Honest Yjs peers (pycrdt documents) and text clients (`TextClient`) edit with emoji, ZWJ
sequences, flags, skin tones, CJK, combining marks and CRLF; a hostile Yjs peer sends
crafted updates among them (tests/hostile_updates.py); text clients lose acks; the
document is compacted and reloaded from its store. After every step:

- the session's mirror, the pycrdt text, the store's log replayed through a fresh session
  and through a bare Yjs document, and every connected replica hold the same text;
- compaction would succeed (the store's own check of a snapshot against the replay);
- every ack was stored before it was sent, and no (client, seq) is ever stored twice;
  an insert is stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from typing import Any

from hostile_updates import EITHER, REFUSED, dangling
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from ot_ids import secret_for
from pycrdt import Doc, Text

from collab.config import Settings
from collab.replay.rebuild import DocReplay
from collab.session import Session
from collab.storage.contract import Record, Snapshot, StoredDocument, replaced_by
from collab.storage.memory import MemoryStore
from collab.text.client import TextClient
from collab.text.positions import cp_to_utf8
from collab.wire import text_origin
from collab.yjs import protocol
from collab.yjs.update import decode_state_vector

PIECES = ["a", "Z", " ", "é", "e\u0301", "中文", "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "\r\n", "𝄞"]
NAME = "doc"
REFUSAL_CODES = {1002, 1003, 1007}
MARKERS = 0xAC00  # Hangul syllables: each text edit's insert may carry one of its own


class YjsPeer:
    """A pycrdt document speaking y-websocket to the session, with no network between."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.peer_id: str | None = None
        self.closed: tuple[int, str] | None = None

    def connect(self, session: Session, peer_id: str) -> None:
        self.peer_id, self.closed = peer_id, None
        session.connect_yjs(peer_id)
        session.receive(peer_id, protocol.encode_sync_step1(self.doc.get_state()))

    def local_edit(self, rng: random.Random) -> bytes:
        """An edit in its own document; returns its update (not sent)."""
        before = self.doc.get_state()
        current = str(self.text)
        if current and rng.random() < 0.3:
            start = rng.randrange(len(current))
            end = min(len(current), start + rng.randint(1, 3))
            del self.text[cp_to_utf8(current, start) : cp_to_utf8(current, end)]
        else:
            at = cp_to_utf8(current, rng.randint(0, len(current)))
            self.text.insert(at, "".join(rng.choices(PIECES, k=rng.randint(1, 3))))
        return self.doc.get_update(before)

    def deliver(self, session: Session, data: bytes) -> None:
        message = protocol.decode(data)
        if isinstance(message, protocol.SyncStep1):
            update = self.doc.get_update(message.state_vector)
            session.receive(self.peer_id, protocol.encode_sync_step2(update))
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            self.doc.apply_update(message.update)


class TextPeer:
    """A `TextClient` whose connection can drop between sending an op and reading its ack."""

    def __init__(self, name: str) -> None:
        self.client = TextClient(secret_for(name))
        self.peer_id: str | None = None
        self.closed: tuple[int, str] | None = None
        self.sent: dict[int, list[Any]] = {}  # seq -> the op as sent

    def send(self, session: Session, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if message["type"] == "op":
                self.sent[message["seq"]] = message["op"]
            session.receive(self.peer_id, json.dumps(message))


class TruthMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = MemoryStore()
        self.settings = Settings(history_in_memory=6, max_document_bytes=1 << 20)
        self.session = Session(NAME, self.settings, track_text=False)
        self.ypeers = [YjsPeer(f"y{i}") for i in range(2)]
        self.tpeers = [TextPeer(f"t{i}") for i in range(2)]
        self.all_records: list[Record] = []
        self.acks: list[tuple[str, int, int]] = []
        self.ids = iter(range(10**9))
        self.markers = iter(range(10**4))
        self.rng = random.Random(0)
        for peer in self.ypeers:
            peer.connect(self.session, self.new_id("y"))
        self.pump()

    def teardown(self) -> None:
        self.loop.close()

    # -------------------------------------------------------------------- plumbing

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids)}"

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def by_id(self) -> dict[str, YjsPeer | TextPeer]:
        peers: list[YjsPeer | TextPeer] = [*self.ypeers, *self.tpeers]
        return {p.peer_id: p for p in peers if p.peer_id is not None and p.closed is None}

    def pump(self) -> tuple[list[Record], list[tuple[str, int, str]]]:
        """Persist, then deliver, then close, until the session is quiet."""
        records, closes = [], []
        while output := self.session.take_output():
            self.run(self.store.append(NAME, output.records))  # durable before visible
            self.all_records += output.records
            records += output.records
            peers = self.by_id()
            for peer_id, data in output.messages:
                peer = peers.get(peer_id)
                if isinstance(peer, YjsPeer):
                    peer.deliver(self.session, data)
                elif isinstance(peer, TextPeer):
                    message = json.loads(data)
                    if message["type"] == "ack":
                        self.acked(peer, message)
                    assert message["type"] != "error", message
                    peer.send(self.session, peer.client.receive(message))
            for peer_id, code, reason in output.closes:
                closes.append((peer_id, code, reason))
                peer = peers.get(peer_id)
                if peer is not None:
                    peer.closed = (code, reason)
                self.session.disconnect(peer_id)
        return records, closes

    def acked(self, peer: TextPeer, message: dict[str, Any]) -> None:
        origin = text_origin(peer.client.client_id, message["seq"])
        stored = [r for r in self.all_records if r.origin == origin]
        op = peer.sent[message["seq"]]
        inserts = any(isinstance(part, str) for part in op)
        assert len(stored) == 1 if inserts else len(stored) <= 1, (origin, op, stored)
        if stored:
            assert stored[0].rev <= message["rev"]
        self.acks.append((peer.client.client_id, message["seq"], message["rev"]))

    # -------------------------------------------------------------------- honest edits

    @rule(who=st.integers(0, 1), seed=st.integers(0, 2**32))
    def yjs_edit(self, who: int, seed: int) -> None:
        peer = self.ypeers[who]
        update = peer.local_edit(random.Random(seed))
        self.session.receive(peer.peer_id, protocol.encode_sync_update(update))
        _, closes = self.pump()
        assert not closes, closes

    @rule(who=st.integers(0, 1))
    def text_connect(self, who: int) -> None:
        peer = self.tpeers[who]
        if peer.peer_id is not None and peer.closed is None:
            return
        peer.peer_id, peer.closed = self.new_id("t"), None
        self.session.connect_text(peer.peer_id)
        peer.send(self.session, [peer.client.hello()])
        _, closes = self.pump()
        assert not closes, closes

    @rule(who=st.integers(0, 1), seed=st.integers(0, 2**32), lose_ack=st.booleans())
    def text_edit(self, who: int, seed: int, lose_ack: bool) -> None:
        """An edit; with `lose_ack`, the connection drops right after sending it."""
        peer = self.tpeers[who]
        if peer.peer_id is None or peer.closed is not None or not peer.client.joined:
            return
        rng = random.Random(seed)
        text = peer.client.text
        at = rng.randint(0, len(text))
        cut = rng.randint(0, min(2, len(text) - at))
        insert = "".join(rng.choices(PIECES, k=rng.randint(0, 2)))
        if rng.random() < 0.7:  # a character typed once: it may never show twice
            insert += chr(MARKERS + next(self.markers))
        op = [n for n in (at, -cut, insert, len(text) - at - cut) if n not in (0, "")]
        if all(isinstance(part, int) and part > 0 for part in op):
            return
        peer.send(self.session, peer.client.edit(op))
        if lose_ack:  # before the driver takes the output: the ack is never read
            self.session.disconnect(peer.peer_id)
            peer.peer_id = None
        self.pump()

    # -------------------------------------------------------------------- hostile peer

    def hostile(self, update: bytes, must_refuse: bool, kind: str) -> None:
        attacker = YjsPeer("evil")
        attacker.connect(self.session, self.new_id("evil"))
        self.ypeers.append(attacker)  # so that pump delivers to it and sees its close
        try:
            self.pump()
            rev = self.session.rev
            self.session.receive(attacker.peer_id, protocol.encode_sync_update(update))
            records, closes = self.pump()
        finally:
            self.ypeers.remove(attacker)
            if attacker.closed is None:
                self.session.disconnect(attacker.peer_id)
                self.pump()
        assert all(peer_id == attacker.peer_id for peer_id, _, _ in closes), (kind, closes)
        if attacker.closed is not None:
            assert attacker.closed[0] in REFUSAL_CODES, (kind, attacker.closed)
            assert not records and self.session.rev == rev, kind
        if must_refuse:
            assert attacker.closed is not None, f"{kind} was accepted: {update!r}"

    @rule(generator=st.sampled_from(REFUSED + EITHER), seed=st.integers(0, 2**32))
    def hostile_update(self, generator: Any, seed: int) -> None:
        made = generator(random.Random(seed), self.session.state)
        if made is not None:
            kind, update, must_refuse = made
            self.hostile(update, must_refuse, kind)

    @rule(who=st.integers(0, 1), seed=st.integers(0, 2**32))
    def dangling_dependency(self, who: int, seed: int) -> None:
        """Finding 3: a 13-byte update pointing at a peer's next, not yet sent, item; then
        the peer sends it, and it must apply whole."""
        peer = self.ypeers[who]
        rng = random.Random(seed)
        next_clock = _clock_of(peer.doc)
        update = peer.local_edit(rng)
        kind, forged, _ = dangling(rng, self.session.state, peer.doc.client_id, next_clock)
        self.hostile(forged, True, kind)
        self.session.receive(peer.peer_id, protocol.encode_sync_update(update))
        _, closes = self.pump()
        assert not closes, closes

    # -------------------------------------------------------------------- the store

    @rule()
    def compact(self) -> None:
        if self.session.rev == 0:
            return  # nothing stored yet
        snapshot = Snapshot(self.session.rev, self.session.state, self.session.snapshot_meta)
        self.run(self.store.compact(NAME, snapshot))
        self.session.compacted(snapshot.rev, snapshot.state)

    @rule(compact_first=st.booleans())
    def reload(self, compact_first: bool) -> None:
        """The document unloads (or the server restarts): everyone reconnects."""
        if compact_first:
            self.compact()
        for peer_id in list(self.session.peers):
            self.session.disconnect(peer_id)
        self.session.take_output()
        before = self.session.mirror
        self.session = Session(
            NAME, self.settings, self.run(self.store.load(NAME)), track_text=False
        )
        assert self.session.mirror == before
        for peer in self.ypeers:
            peer.connect(self.session, self.new_id("y"))
        for peer in self.tpeers:
            peer.peer_id = None
        self.pump()

    # -------------------------------------------------------------------- invariants

    @invariant()
    def memory_log_and_replicas_agree(self) -> None:
        session = self.session
        text = session.mirror
        assert str(session.document.text) == text
        stored = self.run(self.store.load(NAME))
        if stored is None:
            assert text == ""
            return
        bare = DocReplay("text", stored.snapshot, stored.snapshot_rev)
        for record in stored.records:
            bare.apply(record.update, record.rev)
        assert str(bare.text) == text
        replayed = Session(NAME, self.settings, _snapshot_only(stored))
        for record in stored.records:  # through the checks a live update goes through
            applied = replayed.apply_update(record.update, record.origin, record.user)
            assert applied is not None and applied.rev == record.rev, record
        assert replayed.mirror == text and replayed.rev == session.rev
        snapshot = Snapshot(session.rev, session.state, session.snapshot_meta)
        replaced_by(stored, snapshot)  # raises CompactionError when it would not verify
        for peer in self.ypeers:
            if peer.closed is None:
                assert str(peer.text) == text, peer.name
        for peer in self.tpeers:
            if peer.peer_id is not None and peer.client.joined and not peer.client.pending:
                assert peer.client.text == text

    @invariant()
    def the_kept_state_vector_is_pycrdts(self) -> None:
        document = self.session.document
        assert document.state_vector() == decode_state_vector(document.doc.get_state())

    @invariant()
    def no_edit_applied_twice(self) -> None:
        shown = Counter(c for c in self.session.mirror if MARKERS <= ord(c) < MARKERS + 10**4)
        assert all(n == 1 for n in shown.values()), shown.most_common(3)

    @invariant()
    def no_op_stored_twice(self) -> None:
        origins = Counter(r.origin for r in self.all_records if r.origin.startswith("ot:"))
        assert all(n == 1 for n in origins.values()), origins.most_common(3)


def _clock_of(doc: Doc) -> int:
    """The clock of the next item `doc` will make."""
    return decode_state_vector(doc.get_state()).get(doc.client_id, 0)


def _snapshot_only(stored: StoredDocument) -> StoredDocument | None:
    if not stored.snapshot:
        return None
    return StoredDocument(stored.snapshot, stored.snapshot_rev, [], 0, stored.snapshot_meta)


TruthMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("TRUTH_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_log_is_the_truth = TruthMachine.TestCase
