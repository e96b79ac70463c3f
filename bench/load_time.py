"""How long loading a document with many small edits takes: from its log vs from a snapshot.

    python bench/load_time.py [--edits 100000]

Prints, for each case, the time `FileStore.load` takes (read + decode + checks) and the time
to build the server's `Session` from what it returned (apply the updates), in seconds; then
the log again as the hub loads it (`collab.hub.loading`: folded into a snapshot by a worker
process first, then the session built with its surrogate index made in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pycrdt import Doc, Text

from collab.config import Settings
from collab.hub.loading import load_stored, open_session
from collab.session import Session
from collab.storage.contract import Record, Snapshot
from collab.storage.files import FileStore

PIECES = ["a", "é", "中", "😀", " ", "\r\n"]


def make_records(count: int) -> tuple[list[Record], bytes, str]:
    """`count` one-character edits (every tenth deletes one), the final state and text."""
    doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    length = 0  # in UTF-8 bytes, the unit pycrdt counts in
    for i in range(count):
        if i % 10 == 9 and length:
            first = len(str(text)[0].encode())
            del text[0:first]
            length -= first
        else:
            piece = PIECES[i % len(PIECES)]
            text.insert(length, piece)
            length += len(piece.encode())
    now = time.time()
    records = [Record(i + 1, now, f"yjs:{i % 7}", None, u) for i, u in enumerate(updates)]
    return records, doc.get_update(), str(text)


async def measure(store: FileStore, name: str, expected: str) -> tuple[float, float]:
    """Seconds for `FileStore.load`, then for the server's `Session` built from it."""
    started = time.perf_counter()
    stored = await store.load(name)
    loaded = time.perf_counter()
    assert stored is not None
    session = Session(name, stored=stored, track_text=False)  # as the hub builds it
    built = time.perf_counter()
    assert session.mirror == expected
    return loaded - started, built - loaded


async def main(edits: int) -> None:
    started = time.perf_counter()
    records, snapshot, expected = make_records(edits)
    print(f"made {edits} edits in {time.perf_counter() - started:.2f}s")
    with tempfile.TemporaryDirectory() as data_dir:
        store = FileStore(Path(data_dir), fsync=False)
        for i in range(0, edits, 1000):
            await store.append("log", records[i : i + 1000])
            await store.append("snap", records[i : i + 1000])
        await store.compact("snap", Snapshot(edits, snapshot))
        log_file = store.segments("log")[-1].log
        snap_file = store.segments("snap")[-1].snapshot
        assert snap_file is not None
        await store.close()

        print(f"log:      {log_file.stat().st_size:>10,} bytes")
        print(f"snapshot: {snap_file.stat().st_size:>10,} bytes (text {len(expected):,} chars)")
        for name, label in (("log", "from the log"), ("snap", "from the snapshot")):
            fresh = FileStore(Path(data_dir), fsync=False)  # nothing cached
            load, apply = await measure(fresh, name, expected)
            await fresh.close()  # the data directory is one store's at a time
            print(f"{label:<18} load {load:6.3f}s  session {apply:6.3f}s")
        fresh = FileStore(Path(data_dir), fsync=False)
        load, apply = await measure_hub(fresh, "log", expected)
        await fresh.close()
        print(
            f"{'as the hub loads':<18} load {load:6.3f}s  session {apply:6.3f}s  (load: the fold)"
        )


async def measure_hub(store: FileStore, name: str, expected: str) -> tuple[float, float]:
    """`measure`, as the hub loads: the log folded first by a worker (it changes the store)."""
    settings = Settings()
    started = time.perf_counter()
    stored = await load_stored(store, name, settings)
    loaded = time.perf_counter()
    session = await open_session(name, settings, stored, track_text=False)
    built = time.perf_counter()
    assert session.mirror == expected
    return loaded - started, built - loaded


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().edits))
