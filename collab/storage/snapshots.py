"""Building a compaction's snapshot from what is stored, in a worker process.

The runner asks for a snapshot at a revision; a child process (`collab.storage.worker`)
reads the store itself (the segment's files, or the database's rows), rebuilds the document
from the stored snapshot and the records up to that revision, encodes its state, checks
that the encoding reads back as the same document (`fingerprint.py`) and writes it. The
server's event loop only switches segments afterwards (docs/storage.md, "Compaction").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

from pycrdt import Doc

from collab.storage.contract import Record, Snapshot, StoredDocument, replaced_by
from collab.storage.durable import sync_dir, write_new_file
from collab.storage.errors import CompactionError
from collab.storage.fingerprint import apply_checked, fingerprint
from collab.storage.format import (
    check_contiguous,
    decode_log,
    encode_snapshot,
    log_path,
    read_snapshot_file,
    scan,
    snapshot_path,
)
from collab.yjs.fuse import fused


def build_state(base: bytes | None, records: Sequence[Record]) -> bytes:
    """The state of `base` plus `records`, checked to read back as the same document.

    The records are integrated with each writer's chain of appends fused (`collab.yjs.fuse`:
    a record continuing a long run costs pycrdt that run's length: 500 characters typed at
    the end of a 16 MiB text took 7.3 s one record at a time, the whole build 0.34 s fused);
    should that fail, they are applied one by one, so the error names the record."""
    try:
        joined = fused(record.update for record in records)
        doc = _integrated(base, (("the updates since it", update) for update in joined))
    except CompactionError:
        labelled = ((f"the update of rev {r.rev}", r.update) for r in records)
        doc = _integrated(base, labelled)
    state = doc.get_update()
    again = Doc()
    apply_checked(again, state, "the new snapshot")
    if fingerprint(doc) != fingerprint(again):
        raise CompactionError("the new snapshot does not read back as the document")
    return state


def _integrated(base: bytes | None, labelled: Iterable[tuple[str, bytes]]) -> Doc:
    """A document of `base` and the updates; CompactionError naming one that does not apply."""
    doc = Doc()
    if base is not None:
        apply_checked(doc, base, "the current snapshot")
    for what, update in labelled:
        apply_checked(doc, update, what)
    return doc


def write_file_snapshot(directory: Path, start: int, rev: int, meta: bytes, fsync: bool) -> int:
    """Write `snapshot-rev` for the segment starting at `start` (worker process).

    Returns the offset in `log-start` where the records after `rev` begin: the records up to
    `rev` are complete on disk (they were committed before the compaction was asked for);
    appends may be going on past them meanwhile.
    """
    path = log_path(directory, start)
    decoded = decode_log(path)
    check_contiguous(path, start, decoded)
    count = rev - start
    if not 0 < count <= len(decoded.records):
        raise CompactionError(f"{path}: holds revs {start}..{start + len(decoded.records)}")
    base = read_snapshot_file(snapshot_path(directory, start), start).state if start else None
    state = build_state(base, decoded.records[:count])
    write_new_file(
        snapshot_path(directory, rev), encode_snapshot(Snapshot(rev, state, meta)), fsync
    )
    return decoded.offsets[count] if count < len(decoded.records) else decoded.end


def remove_partial_snapshots(directory: Path, rev: int) -> None:
    """Remove the temp files of a snapshot whose writer died before renaming them."""
    for temp in directory.glob(f".tmp-*-{snapshot_path(directory, rev).name}"):
        temp.unlink(missing_ok=True)


def check_and_write_snapshot(
    directory: Path, stored: StoredDocument, snapshot: Snapshot, fsync: bool
) -> int | None:
    """How many of `stored`'s records the snapshot (made by the caller) replaces, once it
    is checked against them and written (None: nothing to do)."""
    replaced = replaced_by(stored, snapshot)
    if replaced is not None:
        write_new_file(snapshot_path(directory, snapshot.rev), encode_snapshot(snapshot), fsync)
    return replaced


def remove_segments_before(directory: Path, rev: int, fsync: bool) -> None:
    """Delete every snapshot and log older than the segment at `rev` (no history kept)."""
    snapshots, logs = scan(directory)
    for old in sorted(snapshots | logs):
        if old < rev:
            snapshot_path(directory, old).unlink(missing_ok=True)
            log_path(directory, old).unlink(missing_ok=True)
    sync_dir(directory, fsync)


def build_snapshot_in_worker(
    dsn: str, name: str, rev: int, meta: bytes, keep_history: bool
) -> bytes | None:
    """A worker process's side of `compact_at`: its own connection reads the snapshot and
    revisions, the state is built and checked here (`build_state`) and inserted."""

    from collab.storage.postgres import PostgresStore  # asyncpg: only where it is used

    async def run() -> bytes | None:
        store = PostgresStore(dsn, keep_history=keep_history, min_size=1, max_size=1)
        try:
            return await store.compact_with(name, rev, meta, functools.partial(_built_state, rev))
        finally:
            await store.close()

    return asyncio.run(run())


def _built_state(rev: int, stored: StoredDocument) -> bytes | None:
    """The state at `rev` of what `compact_with` read (the records up to `rev`)."""
    if rev == stored.snapshot_rev:
        return None
    if stored.rev != rev:
        held = f"{stored.snapshot_rev}..{stored.rev}"
        raise CompactionError(f"cannot compact at rev {rev}: the store holds {held}")
    return build_state(stored.snapshot, stored.records)
