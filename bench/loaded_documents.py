"""FileStore append cost when many documents are loaded and a few are busy.

    python bench/loaded_documents.py                      # 1,000 loaded, 10 busy
    python bench/loaded_documents.py --loaded 5000 --busy 50 --appends 20000

Each loaded document gets one append (so the store knows its log); then the busy ones get
`--appends` appends between them, timed. fsync is off: this measures the store's own
bookkeeping per append (open handles, locks), not the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from records import Writer

from collab.storage.files import FileStore


async def measure(loaded: int, busy: int, appends: int) -> float:
    """Microseconds per append."""
    with tempfile.TemporaryDirectory() as directory:
        store = FileStore(Path(directory), fsync=False)
        writers = [Writer() for _ in range(loaded)]
        for i, writer in enumerate(writers):
            await store.append(f"doc-{i} 😀", [writer.record("é中")])
        start = time.perf_counter()
        for n in range(appends):
            i = n % busy
            await store.append(f"doc-{i} 😀", [writers[i].record("x")])
        took = time.perf_counter() - start
        await store.close()
    return took / appends * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loaded", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=10)
    parser.add_argument("--appends", type=int, default=5000)
    args = parser.parse_args()
    if not 1 <= args.busy <= args.loaded or args.appends < 1:
        parser.error("need 1 <= --busy <= --loaded and --appends >= 1")
    per_append = asyncio.run(measure(args.loaded, args.busy, args.appends))
    print(f"{args.loaded} documents loaded, {args.busy} busy: {per_append:.1f} us per append")


if __name__ == "__main__":
    main()
