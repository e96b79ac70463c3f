"""One big document's work against the event loop: load, first update, compaction, joins,
in one process, before/after.

    python bench/big_document.py               # an 8 MiB document (a quick run)
    python bench/big_document.py --mib 64      # --max-document-bytes

Builds a document of about `--mib` MiB of text (emoji, CJK, combining marks, CRLF) written
as many records into a FileStore (fsync off), then twice, the old way and the new one, while
a probe (`collab.web.looplag`) wakes every 5 ms and a control coroutine answers a ping
every 2 ms:

- loads it: old, every record applied on the loop; new, as the hub loads it
  (`collab.hub.loading`: the log folded into a snapshot by a worker process first, the
  surrogate index built in a thread);
- takes a new client's first edit (old: the surrogate index is built then, from the whole
  state, by the full decoder);
- compacts it: old, the session's state encoded on the loop and checked against the log in
  a thread (`FileStore.compact`); new, `FileStore.compact_at` (a worker process reads the
  files, builds, checks and writes the snapshot; the loop only switches segments and reads
  the snapshot back in a thread; after the fold, the log it compacts is the one edit).

Printed per phase: wall time, the loop's worst lag, the control's p99 and worst, and the
worst stall this process's own CPU time explains (the rest of a lag is the machine's other
work: on a shared machine, compare that column). Then 20 new peers join one by one (an edit
between each): the session's work to answer each, old (the state encoded by pycrdt) and new
(what is kept encoded: the snapshot and the updates logged since). Numbers, not a test: the
machine may be shared, so compare the rows of one run.

Not covered here (measured at the edge, see bench/README.md): 20 joiners and
`text?at=` against a running server, the Node server and pycrdt-websocket.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Doc, Text

from collab.config import Settings
from collab.hub.compactor import framed_off_loop
from collab.hub.loading import load_stored, open_session
from collab.session import Session, sync_answers
from collab.session.sync_answers import KeptAnswer
from collab.storage.contract import Record, Snapshot
from collab.storage.files import FileStore
from collab.web.looplag import LoopLagProbe
from collab.yjs import protocol

PIECE = "👩‍👩‍👧 中文 e\u0301 the quick brown fox\r\n"
NAME = "big 📚"


def records(mib: int, per_record: int) -> tuple[list[Record], bytes]:
    """Edits that make a text of about `mib` MiB, `per_record` bytes each; and a new
    client's first edit after them (at the end, emoji and CJK: the first Yjs update a
    loaded document gets)."""
    doc = Doc()
    text = doc.get("text", type=Text)
    chunk = PIECE * max(1, per_record // len(PIECE.encode()))
    out = []
    while len(text) < mib * 1024 * 1024:
        before = doc.get_state()
        text.insert(len(text), chunk)
        out.append(Record(len(out) + 1, time.time(), "yjs:1", None, doc.get_update(before)))
    joiner = Doc()
    joiner.apply_update(doc.get_update())
    before = joiner.get_state()
    joined = joiner.get("text", type=Text)
    joined.insert(len(joined), "👩‍👩‍👧 中文 e\u0301\r\n")
    return out, joiner.get_update(before)


async def watched(what: str, work) -> None:
    """Run `work()` while the probe and a control coroutine watch the loop."""
    probe = LoopLagProbe(lambda lag: None, interval=0.005)
    probe.start()
    pings: list[float] = []
    held: list[float] = []  # per ping: the lag this process's own CPU explains
    stop = asyncio.Event()

    async def control() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            asked, cpu = loop.time(), time.process_time()
            await asyncio.sleep(0.002)
            lag = loop.time() - asked - 0.002
            pings.append(lag)
            held.append(min(lag, time.process_time() - cpu))

    pinger = asyncio.create_task(control())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await work()
    took = time.perf_counter() - started
    stop.set()
    await pinger
    await probe.stop()
    p99 = statistics.quantiles(pings, n=100)[98] if len(pings) > 100 else max(pings)
    print(
        f"{what:<34} {took:8.2f} s   worst loop lag {probe.worst * 1000:8.1f} ms   "
        f"control p99 {p99 * 1000:7.1f} ms  worst {max(pings) * 1000:7.1f} ms   "
        f"held by this process {max(held) * 1000:7.1f} ms",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=8)
    parser.add_argument("--record-kb", type=int, default=64)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores shared: compare within the run)")
    built = time.perf_counter()
    log, first = records(args.mib, args.record_kb * 1024)
    print(
        f"{len(log)} records, {sum(len(r.update) for r in log) / 2**20:.1f} MiB of updates "
        f"({time.perf_counter() - built:.1f} s to make)"
    )
    settings = Settings(max_document_bytes=2 * args.mib * 2**20 + 2**20)
    with tempfile.TemporaryDirectory() as directory:
        for attempt, new_way in enumerate((False, True)):
            await one_attempt(Path(directory) / str(attempt), log, first, settings, new_way)


async def one_attempt(
    directory: Path, log: list[Record], first: bytes, settings: Settings, new_way: bool
) -> None:
    """Store the records, load them as the server does, take a new client's first edit,
    compact the old or the new way."""
    store = FileStore(directory, fsync=False)
    for start in range(0, len(log), 64):
        await store.append(NAME, log[start : start + 64])
    sessions: list[Session] = []

    async def load_old() -> None:
        sessions.append(Session(NAME, settings, await store.load(NAME), track_text=False))

    async def load_new() -> None:  # as the hub loads it
        stored = await load_stored(store, NAME, settings)
        sessions.append(await open_session(NAME, settings, stored, track_text=False))

    if new_way:
        await watched("load, log folded by a worker (new)", load_new)
    else:
        await watched("load, log applied on the loop (old)", load_old)
    await first_update(store, sessions[0], first)
    compact = compact_new if new_way else compact_old
    what = "compaction, worker process (new)" if new_way else "compaction, state on loop (old)"
    await watched(what, lambda: compact(store, sessions[0]))
    answer_joiners(sessions[0], new_way)
    await store.close()


async def first_update(store: FileStore, session: Session, update: bytes) -> None:
    """A new client's first edit after the load: its checks, with whatever the document
    builds for them at the first Yjs update (the surrogate index)."""
    session.connect_yjs("first")
    session.take_output()
    message = protocol.encode_sync_update(update)
    took: list[float] = []

    async def receive() -> None:
        started = time.perf_counter()
        session.receive("first", message)
        took.append(time.perf_counter() - started)

    await watched("first Yjs update after the load", receive)
    print(f"{'':<34} the update itself {took[0] * 1000:8.1f} ms", flush=True)
    records = session.take_output().records
    assert records, "the first edit was refused"
    await store.append(NAME, records)


def answer_joiners(session: Session, new_way: bool, count: int = 20) -> None:
    """`count` new peers join one after another, an edit between each (so no answer is
    shared): the session's work for each answer, on the loop (old: the state encoded)."""
    kept_from = sync_answers.KEPT_FROM
    if not new_way:  # as before: every answer encoded from the pycrdt document
        sync_answers.KEPT_FROM = 1 << 62
    times = []
    try:
        for n in range(count):
            session.edit_text([len(session.mirror), f"<{n}😀>"], origin="server:bench")
            session.take_output()
            session.connect_yjs(f"joiner-{n}")
            session.take_output()
            started = time.perf_counter()
            session.receive(f"joiner-{n}", protocol.encode_sync_step1(b"\x00"))
            sent = sum(_size(data) for _, data in session.take_output().messages)
            times.append(time.perf_counter() - started)
    finally:
        sync_answers.KEPT_FROM = kept_from
    what = "kept encoded (new)" if new_way else "encoded on the loop (old)"
    print(
        f"{count} joiners' answers, {what:<22} worst {max(times) * 1000:7.1f} ms   "
        f"median {statistics.median(times) * 1000:7.1f} ms   ({sent / 2**20:.1f} MiB each)",
        flush=True,
    )


def _size(message: bytes | str | KeptAnswer) -> int:
    return message.size if isinstance(message, KeptAnswer) else len(message)


async def compact_old(store: FileStore, session: Session) -> None:
    snapshot = Snapshot(session.rev, session.state, session.snapshot_meta)
    await store.compact(NAME, snapshot)
    session.compacted(snapshot.rev, snapshot.state)


async def compact_new(store: FileStore, session: Session) -> None:
    snapshot = await store.compact_at(NAME, session.rev, session.snapshot_meta)
    assert snapshot is not None
    step2 = await framed_off_loop(snapshot.state)  # as the server's Compactor does
    session.compacted(snapshot.rev, snapshot.state, step2)


if __name__ == "__main__":
    asyncio.run(main())
