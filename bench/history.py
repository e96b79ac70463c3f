"""How fast is the text at a revision on a long history?

    python bench/history.py                 # 100,000 revisions
    python bench/history.py --revisions 20000 --interval 500

Writes a document of N revisions (two writers typing at their cursors, jumping,
deleting; emoji, CJK, \\r\\n) through the file store, compacting every 10,000 revisions with
history kept, as `collab serve` does. Then measures: building the history index, the text
at random revisions, slider-like steps forward and back, following new revisions, and
for comparison a replay from the start.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pycrdt import Doc, Text

from collab.replay.history import DocumentHistory
from collab.replay.rebuild import replay_text
from collab.storage.contract import Record, Snapshot
from collab.storage.files import FileStore
from collab.storage.logs import LogReader, document_segments, read_history

NAME = "bench/long history"
PIECES = ["😀", "中文", "\r\n", "👨‍👩‍👧", "e\u0301"]
LETTERS = "abcdefghij klmnopqrstuvwxyzé"


class Writers:
    """Two Yjs documents typing into one shared text; each keystroke is one revision."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.docs = [Doc(client_id=1000 + i) for i in range(2)]
        self.texts = [doc.get("text", type=Text) for doc in self.docs]
        self.cursors = [0, 0]
        self.mirror = ""
        self.updates: list[bytes] = []
        for doc in self.docs:
            doc.observe(lambda event: self.updates.append(event.update))

    def keystroke(self) -> bytes:
        rnd, writer = self.rnd, self.rnd.randrange(2)
        text, mirror = self.texts[writer], self.mirror
        cursor = min(self.cursors[writer], len(mirror))
        if rnd.random() < 0.05:
            cursor = rnd.randint(0, len(mirror))
        self.updates.clear()
        if cursor and (rnd.random() < 0.15 or len(mirror) > 20_000):
            count = min(cursor, rnd.randint(1, 3))
            start = len(mirror[: cursor - count].encode())
            del text[start : start + len(mirror[cursor - count : cursor].encode())]
            self.mirror = mirror[: cursor - count] + mirror[cursor:]
            cursor -= count
        else:
            piece = rnd.choice(PIECES) if rnd.random() < 0.1 else rnd.choice(LETTERS)
            text.insert(len(mirror[:cursor].encode()), piece)
            self.mirror = mirror[:cursor] + piece + mirror[cursor:]
            cursor += len(piece)
        self.cursors[writer] = cursor
        update = self.updates[0]
        self.docs[1 - writer].apply_update(update)
        return update


async def write_document(data_dir: Path, revisions: int) -> dict[int, str]:
    """The document on disk; returns the text at a few revisions, to check against."""
    store = FileStore(data_dir, fsync=False)
    writers = Writers(seed=1)
    known: dict[int, str] = {0: ""}
    check = set(random.Random(2).sample(range(1, revisions + 1), 20)) | {revisions}
    batch: list[Record] = []
    for rev in range(1, revisions + 1):
        update = writers.keystroke()
        batch.append(Record(rev, 1_700_000_000 + rev * 0.25, f"yjs:{rev % 2}", None, update))
        if rev in check:
            known[rev] = writers.mirror
        if len(batch) == 1000 or rev == revisions:
            await store.append(NAME, batch)
            batch = []
        if rev % 10_000 == 0:
            await store.compact(NAME, Snapshot(rev, writers.docs[0].get_update()))
    await store.close()
    return known


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"p50 {ms(statistics.median(ordered))}, p95 {ms(p95)}, max {ms(ordered[-1])}"


def timed(function, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revisions", type=int, default=100_000)
    parser.add_argument("--interval", type=int, default=1000, help="revisions per checkpoint")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--keep", type=Path, help="keep the document in this directory and reuse it next time"
    )
    args = parser.parse_args()
    rnd = random.Random(3)

    with tempfile.TemporaryDirectory() as temp:
        data_dir = args.keep or Path(temp)
        if args.keep and document_segments(data_dir, NAME):
            log = read_history(document_segments(data_dir, NAME))
            known = {log.last_rev: replay_text(log)}
            print(f"reusing {log.last_rev} revisions in {data_dir}")
            args.revisions = log.last_rev
        else:
            took, known = timed(asyncio.run, write_document(data_dir, args.revisions))
            print(f"wrote {args.revisions} revisions in {took:.1f} s")
        segments = document_segments(data_dir, NAME)
        print(f"text: {len(known[args.revisions])} code points, {len(segments)} segments")

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        history = DocumentHistory(LogReader(lambda: segments), interval=args.interval)
        took, _ = timed(history.refresh)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
        print(f"index built in {took:.2f} s (peak RSS +{grown:.0f} MiB)")
        for rev, text in known.items():
            assert history.text_at(rev) == text, rev

        random_revs = [rnd.randint(1, args.revisions) for _ in range(args.samples)]
        samples = [timed(history.text_at, rev)[0] for rev in random_revs]
        print(f"text at a random revision ({args.samples}): {percentiles(samples)}")

        start = rnd.randint(1, args.revisions - 300)
        forward = [timed(history.text_at, rev)[0] for rev in range(start, start + 200)]
        print(f"slider forward one revision at a time: {percentiles(forward)}")
        back = [timed(history.text_at, rev)[0] for rev in range(start + 200, start, -1)]
        print(f"slider back one revision at a time: {percentiles(back)}")

        scratch = Path(temp) / "more"
        shutil.copytree(data_dir, scratch)
        more = DocumentHistory(LogReader(lambda: document_segments(scratch, NAME)))
        more.refresh()
        asyncio.run(append_more(scratch, args.revisions, 100))
        took, added = timed(more.refresh)
        print(f"following {added} new revisions: {ms(took)}")

        log = read_history(segments)
        doc = Doc()
        text = doc.get("text", type=Text)
        start_time = time.perf_counter()
        for record in log.records[: args.revisions // 2]:
            doc.apply_update(record.update)
        str(text)
        print(
            f"for comparison, replay from the start to rev {args.revisions // 2}: "
            f"{ms(time.perf_counter() - start_time)}"
        )


async def append_more(data_dir: Path, last: int, count: int) -> None:
    store = FileStore(data_dir, fsync=False)
    stored = await store.load(NAME)
    assert stored is not None
    doc = Doc()
    text = doc.get("text", type=Text)
    if stored.snapshot:
        doc.apply_update(stored.snapshot)
    for record in stored.records:
        doc.apply_update(record.update)
    records = []
    for number in range(1, count + 1):
        updates: list[bytes] = []
        subscription = doc.observe(lambda event, out=updates: out.append(event.update))
        text.insert(0, "x")
        doc.unobserve(subscription)
        records.append(Record(last + number, 1_800_000_000.0 + number, "yjs:9", None, updates[0]))
    await store.append(NAME, records)
    await store.close()


if __name__ == "__main__":
    main()
