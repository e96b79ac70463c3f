"""Red team: hostile updates against a detached and an attached document side by side.

Whatever a stranger sends (hostile_updates.py: forged known clocks, other roots, garbage,
splits of surrogate pairs, deletions past what is known, huge counts), mixed with real
writers' edits and peers coming back with everything, the detached document answers as the
attached one (a revision, nothing or the same refusal), keeps the same state vector, and
its rebuild, and a reload of its log, give the attached one's text.
"""

from __future__ import annotations

import random

import pytest
from hostile_updates import EITHER, REFUSED, other_root
from pycrdt import Doc, Text
from test_detached import outcome
from test_lanes import random_edit

from collab.config import Settings
from collab.hub.loading import open_session
from collab.session import replica
from collab.session.document import Document
from collab.storage.contract import Record, StoredDocument

STRANGERS = REFUSED + [made for made in EITHER if made is not other_root]  # that one attaches
DETACHED = Settings(detach_from_bytes=1)
ATTACHED = Settings(detach_from_bytes=0)


@pytest.mark.parametrize("seed", range(12))
async def test_hostile_updates_leave_a_detached_document_as_an_attached_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused update that pycrdt alone checks (an embed in the text) rebuilds pycrdt to
    be refused, but leaves the document free to detach again (it used to stay attached for
    good: a refused update changed what the document costs from then on)."""
    monkeypatch.setattr(replica, "REBUILD_SHARE", float("inf"))  # detach again at once
    rng = random.Random(seed)
    detached, attached = Document(DETACHED, track_text=False), Document(ATTACHED, track_text=False)
    docs = [Doc(client_id=300 + i) for i in range(2)]
    for doc in docs:
        doc.get("text", type=Text)
    records: list[Record] = []
    for step in range(150):
        writer = docs[rng.randrange(len(docs))]
        roll = rng.random()
        if roll < 0.35:
            state = attached.state
            kind, update, _ = rng.choice(
                REFUSED + [g for g in EITHER if g.__name__ != "other_root"]
            )(rng, state) or ("none", b"\x00\x00", False)
        elif roll < 0.45:
            kind, update = "back", writer.get_update(detached.encoded_state_vector())
        else:
            before = writer.get_state()
            random_edit(rng, writer)
            kind, update = "edit", writer.get_update(before)
        outcomes = [outcome(document, update) for document in (detached, attached)]
        assert outcomes[0] == outcomes[1], (seed, step, kind)
        if outcomes[0] == "revision":
            records.append(Record(len(records) + 1, 0.0, "yjs:x", None, update))
            for doc in docs:  # every writer hears it
                doc.apply_update(update)
        assert detached.state_vector() == attached.state_vector(), (seed, step, kind)
        if outcomes[0] == "revision":  # each revision leaves it detached
            assert detached.detached, (seed, step, kind)
    text = attached.mirror
    stored = StoredDocument(None, 0, records, sum(len(r.update) for r in records))
    reloaded = (await open_session("fuzz", DETACHED, stored, track_text=False)).document
    assert reloaded.detached or not records
    assert reloaded.state_vector() == attached.state_vector()
    assert detached.mirror == text
    assert reloaded.mirror == text
