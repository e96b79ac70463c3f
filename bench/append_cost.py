"""What one 2 KB append costs as the text grows: 19 writers, each appending after its own text
(the slow-peer scenario's writers), at 1, 4 and 16 MB.

    python bench/append_cost.py                    # this checkout's collab
    python bench/append_cost.py --code /work/main  # another checkout's

For bare pycrdt (one transaction per update), collab's `Document.apply_update` without a
text peer, and with one (2 appends by each writer: the text mirror makes each cost O(text)):
the mean per append over 40 appends by each writer, everything integrated at the end
included (`Document.doc` is read), and the worst single call. Then loading: a document
of 128 records of 64 KB appended by one writer, from its log and from its snapshot (Yrs
recounts the run at each record it merges, so the log loads in time quadratic in one
writer's items). Bounded: a few seconds per size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import EditEncoder, unwrap_varbytes

WRITERS = 19
PAYLOAD = "y" * 2018


def updates(encoders: list[EditEncoder], count: int, tag: str) -> list[bytes]:
    return [
        unwrap_varbytes(encoders[k % WRITERS].message(f"#{tag}{k};{PAYLOAD}")[2:])
        for k in range(count)
    ]


def measure(mib: int) -> None:
    from pycrdt import Doc, Text

    from collab.config import Settings
    from collab.session.document import Document

    encoders = [EditEncoder(1000 + i) for i in range(WRITERS)]
    bare = Doc()
    bare.get("text", type=Text)
    document = Document(Settings(max_document_bytes=1 << 30), track_text=False)
    followed = Document(Settings(max_document_bytes=1 << 30), track_text=True)
    for update in updates(encoders, mib * 512, "a"):
        bare.apply_update(update)
        document.apply_update(update, "yjs:1", None)
        followed.apply_update(update, "yjs:1", None)
    document.doc.get_state()
    timed = updates(encoders, WRITERS * 40, "b")
    for name, apply, read, appends in (
        ("bare pycrdt", bare.apply_update, bare.get_state, timed),
        (
            "Document",
            lambda u: document.apply_update(u, "yjs:1", None),
            document.doc.get_state,
            timed,
        ),
        (
            "text peer",
            lambda u: followed.apply_update(u, "yjs:1", None),
            followed.doc.get_state,
            timed[: WRITERS * 2],
        ),
    ):
        worst = 0.0
        start = time.perf_counter()
        for update in appends:
            t = time.perf_counter()
            apply(update)
            worst = max(worst, time.perf_counter() - t)
        t = time.perf_counter()
        read()
        worst = max(worst, time.perf_counter() - t)
        mean = (time.perf_counter() - start) / len(appends)
        print(f"{mib:>2} MiB {name:<12} {mean * 1e3:.3f} ms an append, worst {worst * 1e3:.1f} ms")


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
    args = parser.parse_args()
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
        for name in [m for m in sys.modules if m == "collab" or m.startswith("collab.")]:
            del sys.modules[name]  # fanout imported this checkout's
    import collab

    print("collab from", Path(collab.__file__).parent)
    for mib in (1, 4, 16):
        measure(mib)
    load_times()


if __name__ == "__main__":
    main()
