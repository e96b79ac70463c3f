"""The fuzz targets of bench/fuzz.py on a small budget (the script runs 100,000 each).

Every crash the fuzzer finds becomes a named regression case below.
"""

from __future__ import annotations

import random
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import fuzz


@pytest.mark.parametrize("name", sorted(fuzz.TARGETS))
def test_fuzz_target_small_budget(name: str) -> None:
    target = fuzz.TARGETS[name].hypothesis.fuzz_one_input
    rng = random.Random(f"suite-{name}")
    for _ in range(150):
        target(rng.randbytes(rng.choice((64, 256, 1024))))


def test_session_target_edits_a_text_peer_mid_text() -> None:
    """Found by a fresh venv's newer hypothesis (6.170): the session target built a text
    peer's edit as `[position, -n]` or `[position, "s"]`, without retaining the rest of the
    text, so any edit before the end crashed the target itself (`OpError` from the client),
    and older hypothesis versions never drew one."""
    fuzz.session.hypothesis.inner_test(
        events=[
            ("t-edit", 2, 0, "a👨‍👩‍👧\r\n中", 0),
            ("deliver",),
            ("t-edit", 2, 1, "", 1),  # delete the man of the family: text remains after
            ("t-edit", 3, 0, "é", 0),  # insert before text the peer already has
            ("y-edit", 0, 1, "😀", 0),
            ("deliver",),
        ]
    )


def test_concurrent_openers_of_a_new_document_count_once() -> None:
    """Found by bench/fanout.py: ten peers opening one new document at once were counted
    as ten creations against --max-new-documents-per-minute (then 60)."""
    from collab.hub import Hub
    from collab.storage.memory import MemoryStore
    from collab.web.app import WebApp

    hub = Hub(MemoryStore())
    app = WebApp(hub, hub.settings)
    assert all(app._count_new("doc", "127.0.0.1") is None for _ in range(100))
    assert len(app.new_documents.total) == 1


def test_a_dropped_session_is_freed() -> None:
    """Found by bench/fuzz.py (memory grew ~16 KB per session): the text observer was a
    bound method held from pycrdt's Rust side, so a session that followed the text as ops
    (text peers, or an on_change hook) was never freed after its document was unloaded."""
    import gc
    import weakref

    from collab.session import Session

    refs = []
    for _ in range(20):
        session = Session("freed", track_text=True)
        session.connect_text("tab")
        session.take_output()
        refs.append(weakref.ref(session.document))
        del session
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
