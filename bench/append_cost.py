"""What one 2 KB append costs as the text grows: 19 writers, each appending after its own text
(the slow-peer scenario's writers), at 1, 4 and 16 MB.

    python bench/append_cost.py                    # this checkout's collab
    python bench/append_cost.py --code /work/main  # another checkout's

For bare pycrdt (one transaction per update) and collab's `Document.apply_update` without a
text peer: the mean per append over 40 appends by each writer, everything integrated at
the end included (`Document.doc` is read), and the worst single call. Bounded: a few
seconds per size.
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
    for update in updates(encoders, mib * 512, "a"):
        bare.apply_update(update)
        document.apply_update(update, "yjs:1", None)
    document.doc.get_state()
    timed = updates(encoders, WRITERS * 40, "b")
    for name, apply, read in (
        ("bare pycrdt", bare.apply_update, bare.get_state),
        ("Document", lambda u: document.apply_update(u, "yjs:1", None), document.doc.get_state),
    ):
        worst = 0.0
        start = time.perf_counter()
        for update in timed:
            t = time.perf_counter()
            apply(update)
            worst = max(worst, time.perf_counter() - t)
        t = time.perf_counter()
        read()
        worst = max(worst, time.perf_counter() - t)
        mean = (time.perf_counter() - start) / len(timed)
        print(f"{mib:>2} MiB {name:<12} {mean * 1e3:.3f} ms an append, worst {worst * 1e3:.1f} ms")


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


if __name__ == "__main__":
    main()
