"""What one change costs as the text grows: a 2 KB Yjs append by one of 19 writers, each
appending after its own text (the slow-peer scenario's writers), and a text peer's op, at
1, 4, 16 and 64 MiB.

    python bench/append_cost.py                    # this checkout's collab
    python bench/append_cost.py --code /work/main  # another checkout's
    python bench/append_cost.py --mib 1 16         # some sizes only

Yjs appends: bare pycrdt (one transaction per update) and collab's `Document.apply_update`
without a text peer (40 appends by each writer), then a `Document` that a text peer follows
(10 by each writer, after its first Yjs update, shown alone: it builds the surrogate
index). Text ops: 200 inserts of a few characters (CJK, a ZWJ family, a combining mark) at
random places, by bare pycrdt (`Text.insert`) and on that followed `Document` (`apply_op`).
Each row: the mean per change, everything integrated at the end included (`Document.doc`
is read), and the worst single call. The text peers' document gets a few characters that
are not ASCII first, as most texts have (an ASCII text skips every conversion). Then
loading: a document of 128 records of 64 KB appended by one writer, from its log and from
its snapshot (Yrs recounts the run at each record it merges, so the log loads in time
quadratic in one writer's items). Bounded: under a minute per size (building 64 MiB from
appends is most of it).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import EditEncoder, unwrap_varbytes

WRITERS = 19
PAYLOAD = "y" * 2018
WIDE = "«中文👩‍👩‍👧e\u0301»"  # a text peer's insert: CJK, a ZWJ family, a combining mark


def updates(encoders: list[EditEncoder], count: int, tag: str) -> list[bytes]:
    return [
        unwrap_varbytes(encoders[k % WRITERS].message(f"#{tag}{k};{PAYLOAD}")[2:])
        for k in range(count)
    ]


def timed(name: str, mib: int, calls: list[Callable[[], object]], read: Callable[[], object]):
    """Run `calls` one by one, then `read` (everything integrated): the mean per call and
    the worst single call."""
    worst = 0.0
    start = time.perf_counter()
    for call in calls:
        t = time.perf_counter()
        call()
        worst = max(worst, time.perf_counter() - t)
    t = time.perf_counter()
    read()
    worst = max(worst, time.perf_counter() - t)
    mean = (time.perf_counter() - start) / len(calls)
    print(f"{mib:>2} MiB {name:<22} {mean * 1e3:.3f} ms a change, worst {worst * 1e3:.1f} ms")


def measure(mib: int) -> None:
    from pycrdt import Doc, Text

    from collab.config import Settings
    from collab.session.document import Document
    from collab.storage.contract import StoredDocument

    encoders = [EditEncoder(1000 + i) for i in range(WRITERS)]
    bare = Doc()
    bare.get("text", type=Text)
    settings = Settings(max_document_bytes=1 << 30)
    document = Document(settings, track_text=False)
    for update in updates(encoders, mib * 512, "a"):
        bare.apply_update(update)
        document.apply_update(update, "yjs:1", None)
    document.doc.get_state()
    yjs = updates(encoders, WRITERS * 40, "b")
    timed("bare pycrdt", mib, [partial(bare.apply_update, u) for u in yjs], bare.get_state)
    apply = partial(document.apply_update, origin="yjs:1", user=None)
    timed("Document", mib, [partial(apply, u) for u in yjs], document.doc.get_state)
    # The text peers' document is loaded from the same state (one pass to start following
    # it), and given a few characters that are not ASCII, as most texts have.
    followed = Document(settings, StoredDocument(bare.get_update(), 1, [], 0), track_text=True)
    length = len(str(bare.get("text", type=Text)))
    followed.apply_op([WIDE, length], "text:bench:0", None)
    # What pycrdt alone takes for a text op's insert, at random places of the same text.
    rng, text = random.Random(mib), bare.get("text", type=Text)
    inserts = [partial(text.insert, rng.randrange(length), WIDE) for _ in range(200)]
    timed("bare pycrdt: insert", mib, inserts, bare.get_state)
    # The first Yjs update of a loaded document builds its surrogate index: a pass over the
    # state, once (the load path's cost, not a change's): shown on its own.
    start = time.perf_counter()
    followed.apply_update(updates(encoders, 1, "w")[0], "yjs:1", None)
    first = (time.perf_counter() - start) * 1e3
    print(f"{mib:>2} MiB text peer: the first Yjs update after the load {first:.1f} ms")
    yjs = updates(encoders, WRITERS * 10, "c")
    apply = partial(followed.apply_update, origin="yjs:1", user=None)
    timed("text peer: Yjs update", mib, [partial(apply, u) for u in yjs], followed.doc.get_state)
    length = len(followed.mirror)
    rng = random.Random(mib)
    ops = []
    for seq in range(1, 201):
        where = rng.randrange(length)
        op = [where, WIDE, length - where]
        ops.append(partial(followed.apply_op, op, f"text:bench:{seq}", None))
        length += len(WIDE)
    timed("text peer: text op", mib, ops, followed.doc.get_state)


def load_times() -> None:
    """Load 8 MiB written by one writer in 128 records of 64 KB: from the log, then from
    its snapshot, best of 2 each."""
    from pycrdt import Doc, Text

    from collab.config import Settings
    from collab.session.document import Document
    from collab.storage.contract import Record, StoredDocument

    writer = Doc()
    text = writer.get("text", type=Text)
    records = []
    for rev in range(1, 129):
        before = writer.get_state()
        text.insert(len(text), f"<{rev}>" + "👩‍👩‍👧 中文 e\u0301\r\n" * 2700)
        records.append(Record(rev, 0.0, "yjs:1", None, writer.get_update(before)))
    settings = Settings(max_document_bytes=1 << 30)
    for name, stored in (
        ("its log", StoredDocument(None, 0, records, 0)),
        ("its snapshot", StoredDocument(writer.get_update(), 128, [], 0)),
    ):
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            Document(settings, stored, track_text=False).doc.get_state()
            best = min(best, time.perf_counter() - start)
        print(f"8 MiB by one writer, loaded from {name}: {best * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, help="the checkout whose collab to measure")
    parser.add_argument(
        "--mib",
        type=int,
        nargs="+",
        default=[1, 4, 16, 64],
        help="text sizes (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
        for name in [m for m in sys.modules if m == "collab" or m.startswith("collab.")]:
            del sys.modules[name]  # fanout imported this checkout's
    import collab

    print("collab from", Path(collab.__file__).parent)
    for mib in args.mib:
        measure(mib)
    load_times()


if __name__ == "__main__":
    main()
