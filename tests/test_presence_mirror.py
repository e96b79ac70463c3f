"""Carets across the doors, in the session with a fake clock: text selections as Yjs
cursors (coalesced, renewed, removed) and Yjs cursors as text presence."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from test_session import TextPeer, YPeer, client_of, pump

from collab.session import Session
from collab.session.mirror import COALESCE_SECONDS, RENEW_SECONDS
from collab.session.presence import awareness_id_for, is_text_state
from collab.text import positions
from collab.yjs import protocol

TEXT = "a😀b 👨‍👩‍👧 🇫🇷 👍🏽 中文 e\u0301\r\nz"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def session(clock: Clock) -> Session:
    return Session("doc", clock=clock)


def awareness_of(peer: YPeer, client_id: int) -> list[tuple[int, Any]]:
    """(clock, state) of every awareness entry for `client_id` the Yjs peer was sent."""
    out = []
    for data in peer.inbox:
        message = protocol.decode(data)
        if isinstance(message, protocol.Awareness):
            out += [(e.clock, e.state) for e in message.entries if e.client_id == client_id]
    return out


def rpos(client: int, clock: int | None) -> dict[str, Any]:
    item = None if clock is None else {"client": client, "clock": clock}
    return {"type": None, "tname": "text", "item": item, "assoc": 0}


def yjs_peer_then_text_peer(session: Session) -> tuple[YPeer, TextPeer, dict[str, Any]]:
    """A Yjs peer that wrote TEXT, then a text client "ada" who joined after it."""
    y = YPeer(session, "y")
    peers: dict[str, Any] = {"y": y}
    y.edit(0, TEXT)
    peers["t"] = t = TextPeer(session, "t", "ada")
    pump(session, peers)
    return y, t, peers


def test_a_text_selection_reaches_yjs_as_relative_positions(session: Session, clock: Clock) -> None:
    y, t, peers = yjs_peer_then_text_peer(session)
    cid = awareness_id_for(t.client)
    for anchor, head in [(1, 2), (2, 5), (len(TEXT) - 1, 0), (len(TEXT), len(TEXT))]:
        clock.now += 1
        t.send({"type": "presence", "rev": session.rev, "selection": [[anchor, head]]})
        pump(session, peers)
        state = awareness_of(y, cid)[-1][1]
        assert state["user"]["name"] == "ada"
        assert state["collab"] == {"kind": "text", "client": t.client}
        at = y.doc.client_id
        expected = [
            None if p == len(TEXT) else positions.cp_to_utf16(TEXT, p) for p in (anchor, head)
        ]
        assert state["cursor"] == {"anchor": rpos(at, expected[0]), "head": rpos(at, expected[1])}


def test_caret_moves_are_coalesced_then_sent_by_tick(session: Session, clock: Clock) -> None:
    y, t, peers = yjs_peer_then_text_peer(session)
    cid = awareness_id_for(t.client)
    sent = len(awareness_of(y, cid))
    for p in range(1, 6):
        t.send({"type": "presence", "rev": session.rev, "selection": [[p, p]]})
    pump(session, peers)
    assert len(awareness_of(y, cid)) == sent  # hello's state went out just now
    assert t.inbox  # other text peers would have their presence at once (none here)
    clock.now += COALESCE_SECONDS / 2
    assert not session.tick()
    clock.now += COALESCE_SECONDS / 2 + 1e-6
    assert session.tick()
    pump(session, peers)
    states = awareness_of(y, cid)
    assert len(states) == sent + 1
    assert states[-1][1]["cursor"]["head"] == rpos(y.doc.client_id, positions.cp_to_utf16(TEXT, 5))
    clock.now += 1
    assert not session.tick()  # nothing new


def test_mirrored_state_is_renewed_for_60_s_then_removed(session: Session, clock: Clock) -> None:
    y = YPeer(session, "y")
    peers: dict[str, Any] = {"y": y, "t": TextPeer(session, "t", "ada")}
    t = peers["t"]
    t.send({"type": "presence", "rev": 0, "selection": [[0, 0]]})
    pump(session, peers)
    cid = awareness_id_for(t.client)
    received = [(clock.now, c) for c, _ in awareness_of(y, cid)]
    start = clock.now
    while clock.now < start + 60:
        clock.now += 0.05
        session.tick(clock.now)
        for c, _ in awareness_of(y, cid)[len(received) :]:
            received.append((clock.now, c))
        pump(session, peers)
    times = [at for at, _ in received] + [clock.now]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= RENEW_SECONDS + 0.1 < 30  # y-protocols' outdatedTimeout
    clocks = [c for _, c in received]
    assert clocks == sorted(set(clocks)) and len(clocks) >= 4
    session.disconnect("t")
    pump(session, peers)
    assert awareness_of(y, cid)[-1] == (clocks[-1] + 1, None)
    clock.now += 60
    assert not session.tick()


def test_a_yjs_cursor_reaches_text_clients_in_code_points(session: Session) -> None:
    a, b = YPeer(session, "a"), YPeer(session, "b")
    peers: dict[str, Any] = {"a": a, "b": b, "t": TextPeer(session, "t", "ada")}
    t = peers["t"]
    a.edit(0, TEXT)
    pump(session, peers)
    target = TEXT.index("中")  # a's caret before 中, a selection back to the 🇫🇷
    cursor = {
        "anchor": rpos(a.doc.client_id, positions.cp_to_utf16(TEXT, TEXT.index("🇫🇷"))),
        "head": rpos(a.doc.client_id, positions.cp_to_utf16(TEXT, target)),
    }
    b.edit(0, "👍🏽中e\u0301")  # before it, concurrently (b has not seen a's cursor)
    pump(session, peers)
    state = {"user": {"name": "Zoë 😀", "color": "#ff0000"}, "cursor": cursor}
    session.receive("a", protocol.encode_awareness([protocol.AwarenessEntry(77, 1, state)]))
    pump(session, peers)
    shown = t.of_type("presence")[-1]
    text = session.mirror
    assert text == "👍🏽中e\u0301" + TEXT
    assert shown["client"] == "yjs:77" and shown["kind"] == "yjs"
    assert shown["user"] == {"name": "Zoë 😀", "color": "#ff0000"}
    assert shown["selection"] == [[text.index("🇫🇷"), text.index("中", 3)]]
    # A deleted character: the caret stays where it was.
    a.doc.apply_update(b.doc.get_update(a.doc.get_state()))
    start = positions.cp_to_utf8(str(a.text), len(text) - len(TEXT) + TEXT.index("文") - 2)
    before = a.doc.get_state()
    del a.text[start : start + len(" 中文".encode())]
    session.receive("a", protocol.encode_sync_update(a.doc.get_update(before)))
    session.receive("a", protocol.encode_awareness([protocol.AwarenessEntry(77, 2, state)]))
    pump(session, peers)
    text = session.mirror
    assert " 中文" not in text
    assert t.of_type("presence")[-1]["selection"] == [[text.index("🇫🇷"), text.index("🇫🇷") + 5]]
    # A joining text client sees it in its welcome.
    peers["u"] = u = TextPeer(session, "u", "bob")
    pump(session, peers)
    listed = {p["client"]: p for p in u.of_type("welcome")[0]["presence"]}
    assert listed["yjs:77"]["selection"] == [[text.index("🇫🇷"), text.index("🇫🇷") + 5]]


@pytest.mark.parametrize(
    "cursor",
    [
        None,
        "x",
        {"anchor": rpos(1, 0)},
        {"anchor": rpos(999, 0), "head": rpos(999, 0)},  # items the document lacks
        {"anchor": {"item": {"client": -1, "clock": 0}}, "head": rpos(1, 0)},
        {"anchor": {"item": {"client": True, "clock": 0}}, "head": rpos(1, 0)},
        {"anchor": {"type": {"client": 1, "clock": 0}, "item": None}, "head": rpos(1, 0)},
        {"anchor": {"tname": "other", "item": None}, "head": {"tname": "other", "item": None}},
    ],
)
def test_cursors_that_name_no_place_in_the_text_show_no_caret(
    session: Session, cursor: Any
) -> None:
    y = YPeer(session, "y")
    peers: dict[str, Any] = {"y": y, "t": TextPeer(session, "t", "ada")}
    y.edit(0, TEXT)
    pump(session, peers)
    state = {"user": {"name": "Zoë"}, "cursor": cursor}
    session.receive("y", protocol.encode_awareness([protocol.AwarenessEntry(5, 1, state)]))
    pump(session, peers)
    assert peers["t"].of_type("presence")[-1]["selection"] is None
    assert peers["y"].closed is None


def test_another_process_shows_a_text_client_with_its_caret(clock: Clock) -> None:
    one, two = Session("doc", clock=clock), Session("doc", clock=clock)
    y = YPeer(one, "y")
    peers_one: dict[str, Any] = {"y": y, "t": TextPeer(one, "t", "ada")}
    peers_two: dict[str, Any] = {"u": TextPeer(two, "u", "bob")}
    y.edit(0, TEXT)
    pump(two, peers_two)
    peers_one["t"].send({"type": "presence", "rev": 1, "selection": [[3, 9]]})
    clock.now += 1
    assert one.tick()  # the move was held back: hello's state went out a moment ago
    messages: list[bytes] = []
    while output := one.take_output():
        for record in output.records:
            two.apply_committed(record)
        messages += output.awareness
        for peer_id, data in output.messages:
            peer = peers_one[peer_id]
            if isinstance(peer, YPeer):
                peer.deliver(data)
            else:
                peer.inbox.append(json.loads(data))
    for message in messages:
        two.receive_remote_awareness("one", message)
    pump(two, peers_two)
    shown = peers_two["u"].of_type("presence")[-1]
    assert shown["client"] == peers_one["t"].client and shown["kind"] == "text"
    assert shown["selection"] == [[3, 9]] and shown["user"]["name"] == "ada"


def pump_to(session: Session, peers: dict[str, Any], process: str, other: Session) -> None:
    """`pump`, and what the session publishes for the other processes reaches `other`."""
    while output := session.take_output():
        for peer_id, data in output.messages:
            peer = peers[peer_id]
            if isinstance(peer, TextPeer):
                peer.inbox.append(json.loads(data))
            else:
                peer.deliver(data)
        for message in output.awareness:
            other.receive_remote_awareness(process, message)


def test_a_yjs_peer_of_another_process_cannot_take_a_text_clients_state(clock: Clock) -> None:
    """A Yjs peer of process two held the id a text client of process one then needs: the
    text client's state replaces it, and the peer's leaving, or process two's, does not
    take the text client's state (it is no longer theirs)."""
    one, two = Session("doc", clock=clock), Session("doc", clock=clock)
    hostile = YPeer(two, "h")
    peers_two: dict[str, Any] = {"h": hostile}
    text_id = awareness_id_for(client_of("ada"))
    entry = protocol.AwarenessEntry(text_id, 1, {"user": {"name": "not ada 😀"}})
    two.receive("h", protocol.encode_awareness([entry]))
    pump_to(two, peers_two, "two", one)
    assert one.awareness.states[text_id][1] == {"user": {"name": "not ada 😀"}}
    peers_one: dict[str, Any] = {"t": TextPeer(one, "t", "ada")}
    pump_to(one, peers_one, "one", two)
    for session in (one, two):
        assert is_text_state(session.awareness.states[text_id][1])
    two.disconnect("h")
    pump_to(two, peers_two, "two", one)
    one.forget_process("two")
    pump_to(one, peers_one, "one", two)
    for session in (one, two):
        assert is_text_state(session.awareness.states[text_id][1]), "a Yjs peer took it"


def test_echoes_of_a_removal_everyone_heard_change_nothing(session: Session) -> None:
    """y-websocket providers send back the removals they hear of: once a state is gone,
    those echoes are not relayed again, nor shown to text clients as someone leaving (the
    bit of text clients' ids no longer filters them: pycrdt peers' ids have it too)."""
    y, z = YPeer(session, "y"), YPeer(session, "z")
    peers: dict[str, Any] = {"y": y, "z": z, "t": TextPeer(session, "t", "ada")}
    peers["u"] = TextPeer(session, "u", "bob")
    session.receive("y", protocol.encode_awareness([protocol.AwarenessEntry(5, 1, {})]))
    session.receive("y", protocol.encode_awareness([protocol.AwarenessEntry(5, 2, None)]))
    session.disconnect("t")
    pump(session, peers)
    text_id = awareness_id_for(client_of("ada"))
    for gone in (protocol.AwarenessEntry(5, 2, None), protocol.AwarenessEntry(text_id, 9, None)):
        session.receive("z", protocol.encode_awareness([gone]))
        assert not session.take_output(), gone
