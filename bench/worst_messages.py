"""The event-loop time the worst message of each kind costs, at the default limits.

Each case builds the worst message a stranger can send within `Settings()` and times the
session's work for it (`receive` then `take_output`: parsing, checks, applying, encoding
the replies), best of --repeat. That work runs on the event loop and holds every document
of the process; the target is <= 10 ms, except where the cost grows with the document or
the message size the limits allow (said in the output).

    python bench/worst_messages.py               # 1 MB document, ~1 minute to build
    python bench/worst_messages.py --doc-kb 200 --repeat 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Doc, Text

from collab.config import Settings
from collab.session import Session
from collab.session.awareness import MAX_AWARENESS_PER_PEER
from collab.session.ot_server import STEPS_PER_REVISION
from collab.session.text_messages import MAX_SELECTIONS
from collab.yjs import protocol

SETTINGS = Settings()
TARGET_MS = 10.0


def typed_document(size: int, edit: int = 50, seed: int = 1) -> bytes:
    """A document of `size` characters typed in many small edits at random places (many
    items: what makes pycrdt's positional inserts slow)."""
    rng = random.Random(seed)
    doc = Doc()
    text = doc.get("text", type=Text)
    length = 0
    while length < size:
        text.insert(rng.randrange(length + 1), "x" * edit)
        length += edit
    return doc.get_update()


def session_with(state: bytes) -> Session:
    session = Session("bench", SETTINGS)
    session.apply_update(state, origin="import")
    session.take_output()
    return session


def hello(session: Session, peer: str) -> None:
    session.connect_text(peer)
    session.receive(peer, json.dumps({"type": "hello", "secret": peer * 16, "rev": None}))
    session.take_output()


def timed(
    action: Callable[[], object],
    session: Session,
    repeat: int,
    refused: bool = False,
    setup: Callable[[], object] = lambda: None,
) -> float:
    """Best-of-`repeat` milliseconds of `action()` plus taking the session's output.

    Checks the message was taken (or, with `refused`, answered with an error).
    """
    best = float("inf")
    for _ in range(repeat):
        setup()  # not timed
        start = time.perf_counter()
        action()
        output = session.take_output()
        best = min(best, (time.perf_counter() - start) * 1000)
        errors = [m for _, m in output.messages if isinstance(m, str) and '"error"' in m[:20]]
        assert bool(errors) == refused and not output.closes, (errors, output.closes)
    return best


_SEQS: dict[str, itertools.count[int]] = {}


def add_revisions(session: Session, peer: str, count: int) -> None:
    """`count` one-character inserts at random places by a text client."""
    rng = random.Random(2)
    seqs = _SEQS.setdefault(peer, itertools.count(1))
    for _ in range(count):
        length = len(session.mirror)
        pos = rng.randrange(length + 1)
        op = [c for c in (pos, "y", length - pos) if c != 0]
        message = {"type": "op", "seq": next(seqs), "rev": session.rev, "op": op}
        session.receive(peer, json.dumps(message))
        session.take_output()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc-kb", type=int, default=1024, help="document size (KB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []

    start = time.perf_counter()
    state = typed_document(args.doc_kb * 1024)
    took = time.perf_counter() - start
    print(f"built a {args.doc_kb} KB document of small edits in {took:.0f} s")
    session = session_with(state)
    size = len(session.mirror)

    # 1. an op of max components, alternating insert/retain, on the large document
    components = SETTINGS.max_op_components
    half = components // 2
    seqs = iter(range(1, 10**6))
    hello(session, "a")
    base = session.rev

    def big_op() -> None:
        length = len(session.mirror)
        op: list[int | str] = ["a", 1] * (half - 1) + ["a", length - (half - 1)]
        message = {"type": "op", "seq": next(seqs), "rev": session.rev, "op": op}
        session.receive("a", json.dumps(message))

    ms = timed(big_op, session, args.repeat)
    rows.append((f"op of {components} components on {size:,} chars", ms, ""))

    # 2. ops rebased through as many revisions as the step budget allows
    budget = SETTINGS.max_catch_up_steps
    hello(session, "b")
    add_revisions(session, "b", 2_000)
    for own in (2, 50, 500):
        lag = budget // (3 + own + STEPS_PER_REVISION)  # the revisions have 3 components

        message: list[str] = []

        def prepare(own: int = own, lag: int = lag, message: list[str] = message) -> None:
            base = session.rev - lag
            op = ["z"] * (own - 1) + [_length_at(session, base)]
            message[:] = [json.dumps({"type": "op", "seq": next(seqs), "rev": base, "op": op})]

        def late_op(message: list[str] = message) -> None:
            session.receive("a", message[0])

        ms = timed(late_op, session, args.repeat, setup=prepare)
        rows.append((f"op of {own} components rebased through {lag} revisions", ms, ""))

    # 3. presence with the most selections, as far back as the budget allows
    hello(session, "c")
    lag = budget // (3 + 1 + STEPS_PER_REVISION)
    add_revisions(session, "b", max(0, lag - 2_000))
    base = session.rev - lag
    length = _length_at(session, base)
    selection = [[length * i // MAX_SELECTIONS, length] for i in range(MAX_SELECTIONS)]
    presence = json.dumps({"type": "presence", "rev": base, "selection": selection})
    ms = timed(lambda: session.receive("c", presence), session, args.repeat)
    rows.append((f"presence of {MAX_SELECTIONS} selections {lag} revisions back", ms, ""))

    # 4. awareness: the most entries, then one as large as a message may be
    session.connect_yjs("y")
    session.connect_yjs("watcher")
    session.take_output()
    clock = iter(range(1, 10**6))

    def many_entries() -> None:
        n = next(clock)
        entries = [
            protocol.AwarenessEntry(i, n, {"user": {"name": f"u{i}", "color": "#123456"}})
            for i in range(1, MAX_AWARENESS_PER_PEER + 1)
        ]
        session.receive("y", protocol.encode_awareness(entries))

    ms = timed(many_entries, session, args.repeat)
    rows.append((f"awareness of {MAX_AWARENESS_PER_PEER} entries", ms, ""))
    big = "x" * (SETTINGS.max_message_bytes - 100)

    def big_state() -> None:
        entry = protocol.AwarenessEntry(1, next(clock), {"user": {"name": "u"}, "pad": big})
        session.receive("y", protocol.encode_awareness([entry]))

    ms = timed(big_state, session, args.repeat)
    rows.append((f"awareness state of {len(big) >> 20} MiB", ms, "grows with the message size"))

    # 5. sync step 1 asking for the whole document
    step1 = protocol.encode_sync_step1(Doc().get_state())
    ms = timed(lambda: session.receive("y", step1), session, args.repeat)
    rows.append((f"sync step 1 on {len(session.state):,} bytes", ms, "grows with the document"))

    # 6. deeply nested JSON, as large as a message may be
    depth = (SETTINGS.max_message_bytes - 100) // 2
    nested = '{"type": "op", "seq": 1, "rev": 0, "op": ' + "[" * depth + "]" * depth + "}"
    ms = timed(lambda: session.receive("a", nested), session, args.repeat, refused=True)
    rows.append((f"JSON nested {depth:,} deep", ms, ""))

    # 7. a Yjs update as large as a message may be, into a fresh document
    fresh = Doc()
    fresh.get("text", type=Text).insert(0, "u" * (SETTINGS.max_message_bytes - 1000))
    update = protocol.encode_sync_update(fresh.get_update())

    def big_update() -> None:
        target = Session("big", SETTINGS)
        target.connect_yjs("y")
        target.take_output()
        start = time.perf_counter()
        target.receive("y", update)
        target.take_output()
        big_update.ms = (time.perf_counter() - start) * 1000  # type: ignore[attr-defined]

    best = float("inf")
    for _ in range(args.repeat):
        big_update()
        best = min(best, big_update.ms)  # type: ignore[attr-defined]
    rows.append((f"Yjs update of {len(update) >> 20} MiB", best, "grows with the message size"))

    print(f"\n{'message':<58} {'ms':>9}  verdict")
    for what, ms, inherent in rows:
        verdict = "ok" if ms <= TARGET_MS else (f"over: {inherent}" if inherent else "OVER")
        print(f"{what:<58} {ms:9.2f}  {verdict}")


def _length_at(session: Session, rev: int) -> int:
    """The text's length at `rev`, from the revisions kept in memory."""
    length = len(session.mirror)
    missed = session.document.revisions_since(rev) or []
    for revision in reversed(missed):
        length -= sum(len(c) for c in revision.op if isinstance(c, str))
        length += sum(-c for c in revision.op if isinstance(c, int) and c < 0)
    return length


if __name__ == "__main__":
    main()
