"""Regressions found by the state machine of test_session_truth.py, one scenario each."""

from __future__ import annotations

import json

from hostile_updates import item, only_deletes, uint
from ot_ids import secret_for
from pycrdt import Doc, Text

from collab.config import Settings
from collab.session import Session
from collab.yjs import protocol
from collab.yjs.update import decode_update


def quiet(session: Session) -> list:
    """Take output until there is none; returns the closes."""
    closes = []
    while output := session.take_output():
        closes += output.closes
        for peer_id, *_ in output.closes:
            session.disconnect(peer_id)
    return closes


def test_a_pair_a_text_client_typed_cannot_be_split_by_a_yjs_peer() -> None:
    """The surrogate index learnt only Yjs peers' pairs: a pair typed by a text client
    (the server's own Yjs client) could be split by a Yjs peer's insert or delete."""
    session = Session("doc", Settings())
    session.connect_text("t")
    session.receive("t", json.dumps({"type": "hello", "secret": secret_for("t"), "rev": None}))
    session.receive("t", json.dumps({"type": "op", "seq": 1, "rev": 0, "op": ["a😀b"]}))
    quiet(session)
    (high,) = [(s.client, h) for s in decode_update(session.state).structs for h in s.highs]
    attacks = [
        only_deletes([(high[0], high[1] + 1, 1)]),
        only_deletes([(high[0], high[1], 1)]),
        item(7, 0, "X", origin=high, right=(high[0], high[1] + 1)) + uint(0),
    ]
    for n, attack in enumerate(attacks):
        session.connect_yjs(f"y{n}")
        session.receive(f"y{n}", protocol.encode_sync_update(attack))
        assert [(peer, code) for peer, code, _ in quiet(session)] == [(f"y{n}", 1002)]
    assert session.mirror == str(session.document.text) == "a😀b"
    assert session.rev == 1


def test_a_struct_cut_inside_its_own_pair_by_the_known_clock_is_refused() -> None:
    """A struct re-sent from a known clock whose known part ends inside one of its pairs:
    Yrs counted the dropped half's clock but could not encode it, so every snapshot
    differed from the log (compaction failed) and Yjs peers got a lone surrogate."""
    session = Session("doc", Settings())
    peer = Doc()
    text = peer.get("text", type=Text)
    text += "a😀"  # clocks 0, 1-2
    session.connect_yjs("y")
    session.receive("y", protocol.encode_sync_update(peer.get_update()))
    quiet(session)
    forged = item(peer.client_id, 2, "😀z") + uint(0)  # clock 2 is known: cut inside 😀
    session.connect_yjs("evil")
    session.receive("evil", protocol.encode_sync_update(forged))
    assert [(p, code) for p, code, _ in quiet(session)] == [("evil", 1002)]
    assert session.rev == 1 and session.mirror == "a😀"
    fresh = Doc()
    fresh.apply_update(session.state)
    assert fresh.get_state() == session.document.doc.get_state()
    # The same bytes cut on a whole character (known clock 3) are a valid re-send.
    text += "b"
    session.receive("y", protocol.encode_sync_update(peer.get_update()))
    session.receive("y", protocol.encode_sync_update(item(peer.client_id, 1, "😀bc") + uint(0)))
    assert quiet(session) == []
    assert session.mirror == "a😀bc"


def test_an_update_of_only_known_items_makes_no_revision() -> None:
    """A reconnecting peer re-sends what the server has: nothing to log or relay."""
    from pycrdt import Doc, Text

    from collab.session import Session
    from collab.yjs import protocol

    session = Session("known")
    session.connect_yjs("a")
    author = Doc()
    text = author.get("text", type=Text)
    text += "héllo 😀 中文"
    session.receive("a", protocol.encode_sync_update(author.get_update()))
    assert [r.rev for r in session.take_output().records] == [1]
    session.receive("a", protocol.encode_sync_step2(author.get_update()))  # all of it again
    output = session.take_output()
    assert output.records == [] and session.rev == 1
