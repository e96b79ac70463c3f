"""The ack table's bound: a dropped client is never answered `acked: 0` (issue 18, finding 3).

The table remembers `limit` clients; beyond, it keeps `forgotten`, the highest revision a
dropped client's op was acked at, in the snapshot metadata too. A session built from a
store that holds only that metadata answers a forgotten client's hello with the error
`acked-unknown` and `acked: null`; the sockets version is in test_e2e_exactly_once.py.
"""

from __future__ import annotations

import json

import pytest

from collab.config import Settings
from collab.session import Session
from collab.session.acks import V1_LIMIT, AckTable
from collab.storage.contract import StoredDocument
from collab.text.client import TextClient


def test_a_dropped_client_is_unknown_at_or_before_the_forgotten_revision() -> None:
    table = AckTable(limit=2)
    table.applied("c-victim", 4, 10)
    assert table.acked("c-victim", 9) == 4 and table.forgotten is None
    assert table.acked("c-new", None) == 0  # nothing dropped yet: 0 is the truth
    table.applied("c-a", 1, 11)
    table.applied("c-b", 1, 11)  # an identity op, acked at the same revision
    assert table.get("c-victim") is None and table.forgotten == 10
    assert table.acked("c-victim", 9) is None  # its op (rev 10) may be the one in flight
    assert table.acked("c-victim", 10) is None  # an op acked at 10 without a revision
    assert table.acked("c-victim", None) is None
    assert table.acked("c-victim", 11) == 0  # nothing of it was acked after 10
    assert table.acked("c-a", 3) == 1


def test_the_forgotten_revision_travels_in_the_metadata_and_a_lower_limit_drops_more() -> None:
    table = AckTable(limit=2)
    for index, client in enumerate(["c-1", "c-2", "c-3", "c-😀"]):
        table.applied(client, 7, 20 + index)
    meta = table.encode()
    assert json.loads(meta)["forgotten"] == 21
    again = AckTable.decode(meta, limit=2)
    assert (again.forgotten, again.get("c-3"), again.get("c-😀")) == (21, (7, 22), (7, 23))
    smaller = AckTable.decode(meta, limit=1)
    assert smaller.forgotten == 22 and smaller.get("c-3") is None


def test_a_full_version_1_table_may_have_dropped_clients_before_its_oldest_entry() -> None:
    entries = [[f"c-{index}", 1, 100 + index] for index in range(V1_LIMIT)]
    full = AckTable.decode(json.dumps({"version": 1, "acks": entries}).encode())
    assert full.forgotten == 100 and full.acked("c-gone", 50) is None
    assert full.acked("c-gone", 101) == 0
    short = AckTable.decode(json.dumps({"version": 1, "acks": entries[:5]}).encode())
    assert short.forgotten is None and short.acked("c-gone", 50) == 0


@pytest.mark.parametrize("meta", [b"[]", b'{"version": 2, "forgotten": "x", "acks": []}'])
def test_unreadable_metadata_refuses_to_load(meta: bytes) -> None:
    with pytest.raises(ValueError, match="unreadable"):
        AckTable.decode(meta)


def test_a_session_loaded_without_the_client_says_acked_unknown_not_zero() -> None:
    victim = TextClient()
    table = AckTable(limit=1)
    table.applied(victim.client_id, 1, 1)
    table.applied("c-other", 1, 1)  # the victim is dropped
    source = Session("doc")
    source.replace_text("é 👨‍👩‍👧")  # revision 1, by the victim as far as the table knows
    stored = StoredDocument(source.state, 1, [], 0, table.encode())  # a snapshot only
    session = Session("doc", Settings(max_remembered_clients=1), stored)
    session.connect_text("peer")
    victim.rev = 0
    session.receive("peer", json.dumps(victim.hello()))
    error, welcome = (json.loads(m) for _, m in session.take_output().messages)
    assert error["type"] == "error" and error["code"] == "acked-unknown"
    assert welcome["type"] == "welcome" and welcome["acked"] is None
    assert welcome["text"] == "é 👨‍👩‍👧"
    session.connect_text("newcomer")  # no revision: nothing in flight, no error
    session.receive("newcomer", json.dumps(TextClient().hello()))
    (_, only), *_ = session.take_output().messages
    assert json.loads(only)["type"] == "welcome" and json.loads(only)["acked"] is None
