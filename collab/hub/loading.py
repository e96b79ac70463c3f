"""Loading a document for the hub without replaying a long log on the event loop.

pycrdt holds the GIL while it applies an update, and a record that extends one writer's
long run costs what the run already holds (Yrs recounts it at each merge): 64 MiB stored
as 1,025 records of 64 KB took 26 s to load on the loop that every document shares. So:

- **A long log is folded first** (`load_stored`): when replaying the log since the
  snapshot could hold the loop for more than `FOLD_FROM` (`replay_cost`), the store's
  compaction worker (`SnapshotBuilder.compact_at`: a child process that reads the store
  itself, builds, checks and writes the snapshot, as every compaction does) folds it into
  a snapshot at the last stored revision, and what the store then holds is loaded: the
  snapshot's runs are one item each, one pycrdt apply. The snapshot carries the ack table
  the records rebuild (`AckTable.from_stored`), as a compaction's does. The log stays the
  truth until the snapshot is durable; a fold that fails (a worker killed or out of
  memory, a full disk) is logged and the log is loaded as it is, on the loop, as before.
- **The surrogate index is built off the loop** (`open_session`): from the stored bytes,
  in a thread (`SurrogateIndex.of_stored`: its walk in C releases the GIL), not from the
  whole state by the full decoder at the first Yjs update (~1.5-2 s at 64 MiB).

The snapshot is framed as the sync update new peers get in a thread too (a copy of the
whole state: ~55 ms at 64 MiB). Left on the loop, in one piece: pycrdt's one apply of the
snapshot (~130-160 ms at 64 MiB of emoji-heavy text; it holds the GIL whichever thread
calls it), and a log cheaper than `FOLD_FROM`.
Only the document's own first peers wait for the fold (the hub's loading state); the
other documents go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from collab.config import Settings
from collab.hub.compactor import framed_off_loop
from collab.session import Session
from collab.session.acks import AckTable
from collab.storage.contract import SnapshotBuilder, Store, StoredDocument
from collab.storage.errors import CompactionError
from collab.yjs.checks import StoredWalk, walk_stored

log = logging.getLogger(__name__)

FOLD_FROM = 0.010
"""Seconds of replay on the loop (as `replay_cost` bounds it) from which a load folds first."""
RECORD_COST = 25e-6
"""Seconds a small record costs the loop at load: pycrdt's apply and the session's
bookkeeping (measured 6 us, 20-23 us with the text followed as ops)."""
RUN_COST = 1e-9
"""Seconds per byte of the run a record extends: Yrs recounts the run at each merge
(measured ~0.8 ns a byte: 64 MiB as 1,025 records of 64 KB took 26 s)."""


def replay_cost(stored: StoredDocument) -> float:
    """An upper bound of the seconds that applying `stored`'s log costs the loop: each
    record at most extends a run as long as the whole document."""
    size = len(stored.snapshot or b"") + stored.log_bytes
    return len(stored.records) * (RECORD_COST + size * RUN_COST)


def worth_folding(stored: StoredDocument) -> bool:
    """Whether replaying `stored`'s log could cost the loop more than a turn should take.

    A fold costs a worker process (a few hundred ms for the document's first peers, and
    the snapshot written); a log is there at load only after a crash or a compaction that
    failed, since an unload compacts (or, with PostgreSQL, when another process edits it).
    """
    return replay_cost(stored) >= FOLD_FROM


async def load_stored(store: Store, name: str, settings: Settings) -> StoredDocument | None:
    """What the store holds of `name` (None: never stored), a long log folded into a
    snapshot first by the store's worker when it can build one."""
    stored = await store.load(name)
    if stored is None or not worth_folding(stored) or not isinstance(store, SnapshotBuilder):
        return stored
    started = time.perf_counter()
    limit = settings.max_remembered_clients
    meta = (await asyncio.to_thread(AckTable.from_stored, stored, limit)).encode()
    try:
        await store.compact_at(name, stored.rev, meta, settings.compaction_memory_bytes)
    except Exception as error:  # a compaction changes nothing unless it completes
        log.warning(
            "%s: the log since rev %d (%d records) could not be folded before loading, "
            "so it is applied as it is: %s",
            name,
            stored.snapshot_rev,
            len(stored.records),
            error,
            exc_info=not isinstance(error, CompactionError),
        )
        return stored
    log.info(
        "%s: %d records folded into a snapshot at rev %d before loading, in %.2f s",
        name,
        len(stored.records),
        stored.rev,
        time.perf_counter() - started,
    )
    return await store.load(name)


async def open_session(
    name: str, settings: Settings, stored: StoredDocument | None, track_text: bool
) -> Session:
    """The session of what was stored: its snapshot framed (a big one, in a thread) and its
    surrogate index built (in a thread, meanwhile) off the loop."""
    if stored is None:
        return Session(name, settings, None, track_text=track_text)
    if stored.snapshot and stored.snapshot_message is None:  # not a copy on the loop
        stored = replace(stored, snapshot_message=await framed_off_loop(stored.snapshot))
    updates = [record.update for record in stored.records]
    walk = asyncio.get_running_loop().run_in_executor(
        None, walk_stored, stored.snapshot, updates
    )  # started now: it runs while the session applies the state below
    try:
        session = Session(name, settings, stored, track_text=track_text)
    finally:
        walked = await asyncio.gather(walk, return_exceptions=True)
    if isinstance(walked[0], StoredWalk):
        session.document.use_walk(walked[0])
    else:  # never expected: pycrdt took the state; the first update builds the index
        log.error("%s: surrogate index not built at load: %r", name, walked[0])
    return session
