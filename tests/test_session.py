"""The session state machine, driven by hand: no sockets, no files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ot_ids import client_of, secret_for
from pycrdt import Doc, Text

from collab.config import Settings
from collab.session import Session
from collab.session.outbox import MERGE_BYTES
from collab.storage.contract import StoredDocument
from collab.text import ops as textops
from collab.text import positions
from collab.yjs import protocol

UNICODE = "héllo 😀 👨‍👩‍👧 👍🏽 🇫🇷 中文 e\u0301\r\n"


class YPeer:
    """A pycrdt document speaking y-websocket to a session, with no network between."""

    def __init__(self, session: Session, peer_id: str) -> None:
        self.session, self.id = session, peer_id
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.inbox: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        session.connect_yjs(peer_id)

    def edit(self, index: int, value: str) -> None:
        before = self.doc.get_state()
        self.text.insert(positions.cp_to_utf8(str(self.text), index), value)
        self.session.receive(self.id, protocol.encode_sync_update(self.doc.get_update(before)))

    def deliver(self, data: bytes) -> None:
        self.inbox.append(data)
        message = protocol.decode(data)
        if isinstance(message, protocol.SyncStep1):
            update = self.doc.get_update(message.state_vector)
            self.session.receive(self.id, protocol.encode_sync_step2(update))
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            self.doc.apply_update(message.update)


class TextPeer:
    """A text-operation client (no transform logic: tests wait for acks)."""

    def __init__(self, session: Session, peer_id: str, client: str, rev: int | None = None):
        self.session, self.id, self.client = session, peer_id, client_of(client)
        self.inbox: list[dict[str, Any]] = []
        session.connect_text(peer_id)
        self.send(
            {"type": "hello", "secret": secret_for(client), "rev": rev, "user": {"name": client}}
        )

    def send(self, message: dict[str, Any]) -> None:
        self.session.receive(self.id, json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox if m["type"] == kind]


def pump(session: Session, peers: dict[str, Any]) -> list:
    """Deliver output until the session is quiet; returns every record written."""
    records = []
    while output := session.take_output():
        records += output.records
        for peer_id, code, reason in output.closes:
            peers[peer_id].closed = (code, reason)
            session.disconnect(peer_id)
        for peer_id, data in output.messages:
            peer = peers[peer_id]
            if isinstance(peer, TextPeer):
                peer.inbox.append(json.loads(data))
            else:
                peer.deliver(data)
    return records


@pytest.fixture
def session() -> Session:
    return Session("doc", Settings(max_document_bytes=64 * 1024))


def test_two_yjs_peers_converge_with_unicode(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers = {"a": a, "b": b}
    pump(session, peers)
    a.edit(0, UNICODE)
    b.edit(0, "中")
    records = pump(session, peers)
    assert str(a.text) == str(b.text) == session.mirror == str(session.document.text)
    assert [r.rev for r in records] == [1, 2]
    assert records[0].origin == "yjs:a"


def test_updates_to_one_peer_in_one_batch_are_merged(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    pump(session, {"a": a, "b": b})
    b.inbox.clear()
    for i in range(5):
        a.edit(i, "x")
    pump(session, {"a": a, "b": b})
    assert len(b.inbox) == 1
    assert str(b.text) == "xxxxx"


def test_big_updates_in_one_batch_are_relayed_unmerged() -> None:
    """Merging holds the GIL (pycrdt) and saves nothing on big updates: a run of them goes
    out one message each (up to `MERGE_BYTES` merged), and the peer ends with the text."""
    session = Session("doc", Settings(max_document_bytes=1 << 20))
    a, b = YPeer(session, "a"), YPeer(session, "b")
    pump(session, {"a": a, "b": b})
    b.inbox.clear()
    piece = "😀👩‍👩‍👧中e\u0301\r\n" * (MERGE_BYTES // 40)  # ~27 bytes a round: ~43 KB
    for _ in range(3):
        a.edit(len(str(a.text)), piece)
    a.edit(len(str(a.text)), "x")
    pump(session, {"a": a, "b": b})
    assert len(b.inbox) == 3  # the first alone, the second alone, the third with "x"
    assert str(b.text) == piece * 3 + "x" == session.mirror


def test_known_deletions_make_no_revision(session: Session) -> None:
    """A reconnecting client's step 2 (its whole delete set, nothing new) changes nothing."""
    a = YPeer(session, "a")
    pump(session, {"a": a})
    a.edit(0, "once 😀")
    before = a.doc.get_state()
    del a.text[0:1]
    deletion = a.doc.get_update(before)
    session.receive("a", protocol.encode_sync_update(deletion))
    assert len(pump(session, {"a": a})) == 2
    session.receive(
        "a", protocol.encode_sync_step2(a.doc.get_update(session.document.doc.get_state()))
    )
    session.receive("a", protocol.encode_sync_update(deletion))
    assert pump(session, {"a": a}) == []
    assert session.rev == 2 and session.mirror == "nce 😀"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x02\x05\x01\x02", 1002),  # update truncated
        (b"\x07", 1003),  # unknown type
        ("text", 1003),
        (protocol.encode_sync_update(b"\x01\x02\x03garbage"), 1002),
    ],
)
def test_bad_frames_close_only_that_peer(session: Session, frame: bytes | str, code: int) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers = {"a": a, "b": b}
    pump(session, peers)
    a.edit(0, "keep")
    pump(session, peers)
    session.receive("b", frame)
    pump(session, peers)
    assert b.closed is not None and b.closed[0] == code and b.closed[1]
    assert a.closed is None and session.mirror == "keep" and session.rev == 1


def test_document_size_limit_refuses_and_keeps_document(session: Session) -> None:
    a = YPeer(session, "a")
    pump(session, {"a": a})
    a.edit(0, "x" * 70_000)
    pump(session, {"a": a})
    assert a.closed is not None and a.closed[0] == 1009
    assert session.mirror == "" and session.rev == 0


def test_awareness_removed_when_owner_leaves(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers = {"a": a, "b": b}
    pump(session, peers)
    entry = protocol.AwarenessEntry(77, 1, {"user": {"name": "Ada 😀"}})
    session.receive("a", protocol.encode_awareness([entry]))
    pump(session, peers)
    assert protocol.decode(b.inbox[-1]) == protocol.Awareness((entry,))
    session.disconnect("a")
    pump(session, peers)
    gone = protocol.decode(b.inbox[-1])
    assert isinstance(gone, protocol.Awareness)
    assert gone.entries[0].client_id == 77 and gone.entries[0].state is None
    assert session.awareness.states == {}


def test_text_op_acked_relayed_and_visible_to_yjs(session: Session) -> None:
    y = YPeer(session, "y")
    t1, t2 = TextPeer(session, "t1", "c1"), TextPeer(session, "t2", "c2")
    peers = {"y": y, "t1": t1, "t2": t2}
    pump(session, peers)
    assert t1.of_type("welcome")[0] == {
        "type": "welcome",
        "client": t1.client,
        "rev": 0,
        "text": "",
        "acked": 0,
        "max_message_bytes": Settings().max_message_bytes,
        "generation": "1",
        "presence": [],
    }
    t1.send({"type": "op", "seq": 1, "rev": 0, "op": [UNICODE]})
    records = pump(session, peers)
    assert records[0].origin == f"ot:{t1.client}:1"
    assert t1.of_type("ack") == [{"type": "ack", "seq": 1, "rev": 1}]
    assert t2.of_type("op")[0]["op"] == [UNICODE]
    assert str(y.text) == UNICODE


def test_late_op_is_transformed_against_each_missed_revision(session: Session) -> None:
    t1, t2 = TextPeer(session, "t1", "c1"), TextPeer(session, "t2", "c2")
    peers = {"t1": t1, "t2": t2}
    pump(session, peers)
    t1.send({"type": "op", "seq": 1, "rev": 0, "op": ["😀😀"]})
    t1.send({"type": "op", "seq": 2, "rev": 1, "op": [1, "中", 1]})
    t2.send({"type": "op", "seq": 1, "rev": 0, "op": ["ab"]})
    pump(session, peers)
    assert session.mirror == "😀中😀ab"
    assert t2.of_type("ack") == [{"type": "ack", "seq": 1, "rev": 3}]


def test_resubmitted_op_is_acked_not_applied_twice(session: Session) -> None:
    t1 = TextPeer(session, "t1", "c1")
    pump(session, {"t1": t1})
    t1.send({"type": "op", "seq": 1, "rev": 0, "op": ["x"]})
    pump(session, {"t1": t1})
    session.disconnect("t1")
    again = TextPeer(session, "t1b", "c1", rev=0)
    pump(session, {"t1b": again})
    welcome = again.of_type("welcome")[0]
    assert welcome["ops"][0]["client"] == client_of("c1") and welcome["ops"][0]["seq"] == 1
    assert welcome["acked"] == 1
    again.send({"type": "op", "seq": 1, "rev": 0, "op": ["x"]})
    pump(session, {"t1b": again})
    assert session.mirror == "x"
    assert again.of_type("ack") == [{"type": "ack", "seq": 1, "rev": 1}]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "op", "seq": 1, "rev": 0, "op": [3, "x"]}, "bad-op"),
        ({"type": "op", "seq": 1, "rev": 9, "op": ["x"]}, "future-rev"),
        ({"type": "op", "seq": 1, "rev": 0, "op": ["\ud83d"]}, "bad-op"),
        ({"type": "op", "seq": True, "rev": 0, "op": ["x"]}, "bad-message"),
        ({"type": "what"}, "bad-message"),
    ],
)
def test_bad_ops_get_an_error_and_change_nothing(
    session: Session, message: dict[str, Any], code: str
) -> None:
    t1 = TextPeer(session, "t1", "c1")
    pump(session, {"t1": t1})
    t1.send(message)
    assert pump(session, {"t1": t1}) == []
    assert t1.of_type("error")[0]["code"] == code
    assert session.mirror == "" and session.rev == 0


def test_malformed_json_gets_an_error(session: Session) -> None:
    t1 = TextPeer(session, "t1", "c1")
    session.receive("t1", "{not json")
    pump(session, {"t1": t1})
    assert t1.of_type("error")[0]["code"] == "bad-json"


def test_presence_is_transformed_and_mirrored_to_yjs(session: Session) -> None:
    y = YPeer(session, "y")
    t1, t2 = TextPeer(session, "t1", "c1"), TextPeer(session, "t2", "c2")
    peers = {"y": y, "t1": t1, "t2": t2}
    pump(session, peers)
    t1.send({"type": "op", "seq": 1, "rev": 0, "op": ["abc"]})
    pump(session, peers)
    t2.send({"type": "presence", "rev": 1, "selection": [[3, 3]]})
    t1.send({"type": "op", "seq": 2, "rev": 1, "op": ["😀", 3]})
    pump(session, peers)
    assert session.peers["t2"].presence["selection"] == [[4, 4]]
    seen = [protocol.decode(m) for m in y.inbox]
    names = {
        e.state["user"]["name"]
        for m in seen
        if isinstance(m, protocol.Awareness)
        for e in m.entries
        if e.state
    }
    assert names == {"c1", "c2"}


def test_yjs_edit_reaches_text_clients_as_op(session: Session) -> None:
    y = YPeer(session, "y")
    t = TextPeer(session, "t", "c")
    peers = {"y": y, "t": t}
    pump(session, peers)
    y.edit(0, "a😀b")
    y.edit(2, "中")
    pump(session, peers)
    text = ""
    for message in t.of_type("op"):
        text = textops.apply(text, message["op"])
    assert text == "a😀中b" == session.mirror


def test_session_reloads_revisions_and_acks_from_records(session: Session) -> None:
    t = TextPeer(session, "t", "c")
    pump(session, {"t": t})
    t.send({"type": "op", "seq": 1, "rev": 0, "op": [UNICODE]})
    t.send({"type": "op", "seq": 2, "rev": 1, "op": [len(UNICODE), "!"]})
    records = pump(session, {"t": t})
    stored = StoredDocument(snapshot=None, snapshot_rev=0, records=records, log_bytes=0)
    reloaded = Session("doc", session.settings, stored)
    assert reloaded.mirror == UNICODE + "!" and reloaded.rev == 2
    assert reloaded.acks.get(t.client) == (2, 2)
    assert [r.op for r in reloaded.document.revisions_since(0)] == [[UNICODE], [len(UNICODE), "!"]]


def test_resync_replaces_queued_updates_with_full_state(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    pump(session, {"a": a, "b": b})
    a.edit(0, "lost in queue")
    assert session.resync("b")
    pump(session, {"a": a, "b": b})
    assert str(b.text) == "lost in queue"


def test_a_bug_while_handling_a_message_closes_only_that_peer(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers = {"a": a, "b": b}
    pump(session, peers)

    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(session.roster, "receive", broken)
    session.receive("b", protocol.encode_awareness([protocol.AwarenessEntry(1, 1, {})]))
    pump(session, peers)
    assert b.closed is not None and b.closed[0] == 1011
    a.edit(0, "still works 😀")
    pump(session, peers)
    assert session.mirror == "still works 😀" and a.closed is None


def test_text_is_followed_as_ops_only_while_text_peers_need_it() -> None:
    session = Session("lazy", track_text=False)
    y = YPeer(session, "y")
    pump(session, {"y": y})
    y.edit(0, "yjs only 😀")
    pump(session, {"y": y})
    assert not session.document.tracking_text and session.mirror == "yjs only 😀"
    t = TextPeer(session, "t", "c", rev=0)  # from before the ops were followed
    peers = {"y": y, "t": t}
    pump(session, peers)
    assert session.document.tracking_text
    assert t.of_type("welcome")[0]["text"] == "yjs only 😀"
    y.edit(0, "中")
    pump(session, peers)
    assert t.of_type("op")[0]["op"] == ["中", 10]
    session.disconnect("t")
    assert not session.document.tracking_text and session.mirror == "中yjs only 😀"


def test_one_batch_is_one_message_for_every_peer(session: Session) -> None:
    """Peers of a batch get the same merged message (own updates echoed, as the
    reference server does); a batch of only your own updates sends you nothing."""
    a, b, c = YPeer(session, "a"), YPeer(session, "b"), YPeer(session, "c")
    peers = {"a": a, "b": b, "c": c}
    pump(session, peers)
    a.edit(0, "a😀")
    pump(session, peers)
    assert [len(p.inbox) for p in (a, b, c)] == [1, 2, 2]  # a: its step1 only
    a.edit(0, "x")
    b.edit(0, "中")
    output = session.take_output()
    sent = {peer: data for peer, data in output.messages}
    assert sent["a"] == sent["b"] == sent["c"]
    for peer_id, data in output.messages:
        peers[peer_id].deliver(data)
    assert str(a.text) == str(b.text) == str(c.text) == session.mirror


def test_a_peer_cannot_flood_awareness_with_client_ids(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers = {"a": a, "b": b}
    pump(session, peers)
    flood = [protocol.AwarenessEntry(i, 1, {"user": {"name": f"bot {i}"}}) for i in range(1000)]
    session.receive("b", protocol.encode_awareness(flood))
    pump(session, peers)
    assert b.closed == (1008, "too many awareness states")
    assert len(session.awareness.states) <= 64 and a.closed is None


def test_client_id_comes_from_the_secret_and_cannot_be_taken_over(session: Session) -> None:
    victim = TextPeer(session, "victim", "v")
    pump(session, {"victim": victim})
    victim.send({"type": "op", "seq": 1, "rev": 0, "op": ["mine"]})
    pump(session, {"victim": victim})
    # The attacker knows the victim's public id, not its secret: it gets an id of its own.
    attacker = TextPeer(session, "attacker", "a")
    session.receive("attacker", json.dumps({"type": "hello", "client": victim.client}))
    attacker.send({"type": "op", "seq": 2**53 - 1, "rev": 1, "op": [4]})
    pump(session, {"victim": victim, "attacker": attacker})
    assert attacker.of_type("welcome")[0]["client"] != victim.client
    victim.send({"type": "op", "seq": 2, "rev": 1, "op": [4, "!"]})
    pump(session, {"victim": victim, "attacker": attacker})
    assert session.mirror == "mine!"
    assert victim.of_type("ack")[-1] == {"type": "ack", "seq": 2, "rev": 2}


def test_hello_without_a_secret_is_refused(session: Session) -> None:
    session.connect_text("t")
    peer = TextPeer.__new__(TextPeer)
    peer.session, peer.id, peer.inbox = session, "t", []
    for hello in ({"type": "hello", "client": "c1"}, {"type": "hello", "secret": "short"}):
        peer.send(hello)
    pump(session, {"t": peer})
    assert [m["code"] for m in peer.of_type("error")] == ["bad-message", "bad-message"]
    assert peer.of_type("welcome") == []


def test_a_newer_connection_of_a_client_supersedes_the_older(session: Session) -> None:
    old = TextPeer(session, "old", "c1")
    other = TextPeer(session, "other", "c2")
    peers = {"old": old, "other": other}
    pump(session, peers)
    new = TextPeer(session, "new", "c1", rev=0)
    peers["new"] = new
    old.send({"type": "op", "seq": 1, "rev": 0, "op": ["stale"]})  # ignored: closing
    pump(session, peers)
    assert old.closed == (4409, "a newer connection of this client")
    assert session.mirror == ""
    assert not any(m.get("left") for m in other.of_type("presence"))
    new.send({"type": "op", "seq": 1, "rev": 0, "op": ["fresh"]})
    pump(session, peers)
    assert session.mirror == "fresh"


def test_catching_up_costs_at_most_the_step_budget() -> None:
    """An op or presence whose catch-up would walk more than max_catch_up_steps steps is
    refused with too-old (cheap: the client says hello again, or sends a fresh presence)
    instead of blocking the document for as long as it takes."""
    session = Session("doc", Settings(max_catch_up_steps=300))
    t1, t2 = TextPeer(session, "t1", "c1"), TextPeer(session, "t2", "c2")
    peers = {"t1": t1, "t2": t2}
    pump(session, peers)
    for rev in range(40):  # revisions of two components each (the first of one)
        t1.send({"type": "op", "seq": rev + 1, "rev": rev, "op": [rev, "x"] if rev else ["x"]})
        pump(session, peers)
    many = [*"abcdefghij"]  # ten inserts: an op of 11 components
    # Each missed revision costs its components + the op's + 8 steps.
    t2.send({"type": "op", "seq": 1, "rev": 20, "op": ["y", 20]})  # 20 x (2 + 2 + 8) = 240
    t2.send({"type": "op", "seq": 2, "rev": 20, "op": [*many, 20]})  # 21 x (2 + 11 + 8)
    t2.send({"type": "op", "seq": 3, "rev": 35, "op": [*many, 35]})  # 6 x (2 + 11 + 8) = 126
    t2.send({"type": "presence", "rev": 0, "selection": [[0, 0]]})  # 42 x (2 + 1 + 8)
    pump(session, peers)
    assert t2.of_type("ack") == [
        {"type": "ack", "seq": 1, "rev": 41},
        {"type": "ack", "seq": 3, "rev": 42},
    ]
    assert [(e["code"], e.get("seq")) for e in t2.of_type("error")] == [
        ("too-old", 2),
        ("too-old", None),
    ]
    assert t1.of_type("presence")[-1]["selection"] is None
    t2.send({"type": "presence", "rev": 42, "selection": [[3, 3]]})
    pump(session, peers)
    assert t1.of_type("presence")[-1]["selection"] == [[3, 3]]
