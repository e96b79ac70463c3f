"""Loading a document for the hub without replaying a long log on the event loop.

pycrdt holds the GIL while it applies an update, and a record that extends one writer's
long run costs what the run already holds (Yrs recounts it at each merge): 64 MiB stored
as 1,025 records of 64 KB took 26 s to load on the loop that every document shares. So:

- **A long log is folded first** (`load_stored`): when the log since the snapshot holds
  `FOLD_RECORDS` records or `FOLD_BYTES` bytes, the store's compaction worker
  (`SnapshotBuilder.compact_at`: a child process that reads the store itself, builds,
  checks and writes the snapshot, as every compaction does) folds it into a snapshot at the
  last stored revision, and what the store then holds is loaded: the snapshot's runs are one
  item each, one pycrdt apply. The snapshot carries the ack table the records rebuild
  (`AckTable.from_stored`), as a compaction's does. The log stays the truth until the
  snapshot is durable; a fold that fails (a worker killed or out of memory, a full disk) is
  logged and the log is loaded as it is, on the loop, as before.
- **The surrogate index is built off the loop** (`open_session`): from the stored bytes,
  in a thread, while the loop applies the state (`SurrogateIndex.of_stored`: its walk in C
  releases the GIL), not from the whole state by the full decoder at the first Yjs update.

Left on the loop: pycrdt's one apply of the snapshot (~130 ms at 64 MiB of emoji-heavy
text; it holds the GIL whichever thread calls it) and the records under the thresholds.
Only the document's own first peers wait for the fold (the hub's loading state); the
others' documents go on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from collab.config import Settings
from collab.session import Session
from collab.session.acks import AckTable
from collab.storage.contract import SnapshotBuilder, Store, StoredDocument
from collab.storage.errors import CompactionError
from collab.yjs.checks import SurrogateIndex

log = logging.getLogger(__name__)

FOLD_RECORDS = 100
"""Records since the snapshot from which a load folds them first: ~60-100 us each on the
loop (pycrdt's apply and the session's bookkeeping), so about what a loop turn may take."""
FOLD_BYTES = 64 * 1024
"""Bytes of log since the snapshot from which a load folds them first: one record that
extends a long run of a big document already costs the loop that run's length."""


def worth_folding(stored: StoredDocument) -> bool:
    """Whether replaying `stored`'s log on the loop would cost more than a loop turn."""
    return len(stored.records) >= FOLD_RECORDS or stored.log_bytes >= FOLD_BYTES


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
    except CompactionError as error:
        log.warning(
            "%s: the log since rev %d (%d records) could not be folded before loading, "
            "so it is applied as it is: %s",
            name,
            stored.snapshot_rev,
            len(stored.records),
            error,
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
    """The session of what was stored, its surrogate index built in a thread meanwhile."""
    if stored is None:
        return Session(name, settings, None, track_text=track_text)
    updates = [record.update for record in stored.records]
    index = asyncio.get_running_loop().run_in_executor(
        None, SurrogateIndex.of_stored, stored.snapshot, updates
    )  # started now: it runs while the session applies the state below
    try:
        session = Session(name, settings, stored, track_text=track_text)
    finally:
        built = await asyncio.gather(index, return_exceptions=True)
    if isinstance(built[0], SurrogateIndex):
        session.document.use_surrogates(built[0])
    else:  # never expected: pycrdt took the state; the first update builds the index
        log.error("%s: surrogate index not built at load: %r", name, built[0])
    return session
