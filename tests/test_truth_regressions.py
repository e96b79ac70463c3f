"""Regressions found by the state machine of test_session_truth.py, one scenario each."""

from __future__ import annotations

import json

from hostile_updates import item, only_deletes, uint
from ot_ids import secret_for

from collab import protocol
from collab.config import Settings
from collab.session import Session
from collab.yupdate import decode_update


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
