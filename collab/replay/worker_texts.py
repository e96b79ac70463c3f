"""A big document's text for HTTP, built by a worker process that reads the store itself.

pycrdt holds the GIL for the whole of each call, and on a long text those calls are long:
loading a 64 MiB state ~140 ms, `str()` of its text ~160 ms, one more 256 KB record of a
writer's long run up to ~80 ms (measured in bench/README.md, "HTTP readers of a big
document"). A thread does not help, so past `--text-worker-bytes` the HTTP readers (the
current text, the text at a revision, one revision's change) have it built by a child
process (`collab.storage.worker`, as compaction does): it opens the store read-only
(`backends.reader_for`), rebuilds the document from the newest snapshot at or before the
revision and the records after it (merged into one update first, `rebuilt`), and writes
the answer's body (UTF-8) to a file the server made. The whole state over HTTP is built
the same way (`state`): a big document that only Yjs peers edit keeps no pycrdt document
in the server (`collab.session.replica`), and its state built there would rebuild one on
the loop (~150 ms at 64 MiB) and keep it for seconds. The server sends that file as it is,
a chunk at a time: no 64 MiB `str` or `bytes` is built in the server (copying 64 MiB alone
holds the GIL ~30 ms).

The current text is the text at the store's last revision, which `X-Collab-Rev` names: every
revision acknowledged to anyone is in the store, and a service's op made against that
revision is transformed by the runner like any other (it catches up with the store first).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from pycrdt import merge_updates

from collab.replay.history import RevisionChange, RevisionInfo, op_of
from collab.replay.rebuild import DocReplay
from collab.storage.contract import Record, RevisionHistory, RevisionsGoneError
from collab.storage.logs import RevisionNotFoundError
from collab.storage.worker import WorkerError, run_in_process
from collab.yjs.fuse import fused

T = TypeVar("T")
Opener = Callable[[], RevisionHistory]
"""Opens the store read-only in the worker (picklable: `backends.reader_for`)."""

LAST = sys.maxsize  # "the last revision the store has", as a revision number
ATTEMPTS = 3  # a compaction that drops old segments may race the reading


@dataclass(frozen=True)
class Counted:
    """What the worker counted of a document's text (for the document list)."""

    rev: int
    chars: int  # code points, as Python counts them
    last_edit: float | None  # the time of the last revision after the snapshot (None: none)


@dataclass(frozen=True)
class Built:
    """What the worker wrote: the revision it is at; `missing` says why nothing was (the
    revision is not kept, no such document)."""

    rev: int
    missing: str | None = None


class WorkerTexts:
    """Runs the builds in worker processes for the web app (one process per request). One
    that takes longer than `timeout` seconds is killed (`run_in_process` on cancel) and
    raises `WorkerError`: a hung worker holds no history slot, nor the list, for good."""

    def __init__(self, opener: Opener, text_name: str = "text", timeout: float = 120.0) -> None:
        self.opener = opener
        self.text_name = text_name
        self.timeout = timeout

    async def text(self, name: str, rev: int | None = None) -> tuple[int, IO[bytes]]:
        """The text at `rev` (None: the store's last revision) and that revision, as an
        open file of UTF-8 (the caller closes it). Raises `RevisionNotFoundError`, or
        `WorkerError` when the worker failed or died."""
        return await self._build(write_text, name, LAST if rev is None else rev)

    async def state(self, name: str) -> tuple[int, IO[bytes]]:
        """The whole document at the store's last revision as one Yjs update (what a new
        Yjs client applies), and that revision (see `text`)."""
        return await self._build(write_state, name, LAST)

    async def change(self, name: str, rev: int) -> IO[bytes]:
        """Revision `rev`'s change as the JSON of `RevisionChange.as_json` (see `text`)."""
        _, body = await self._build(write_change, name, rev)
        return body

    async def count(self, name: str) -> Counted | None:
        """The text's length at the store's last revision, and that revision's time
        (None: no such document). Raises `WorkerError` when the worker failed or died."""
        counted = await self._run(count_text, self.opener, name, self.text_name)
        return counted if isinstance(counted, Counted) else None

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await run_in_process(func, *args)
        except TimeoutError:
            raise WorkerError(f"the worker process took more than {self.timeout:g} s") from None

    async def _build(
        self, build: Callable[..., Built], name: str, rev: int
    ) -> tuple[int, IO[bytes]]:
        fd, path = tempfile.mkstemp(prefix="collab-text-")
        body = os.fdopen(fd, "rb")
        try:
            built = await self._run(build, self.opener, name, self.text_name, rev, path)
        except BaseException:
            body.close()
            raise
        finally:
            os.unlink(path)  # the open file stays readable; nothing is left on disk
        if built.missing is not None:
            body.close()
            raise RevisionNotFoundError(built.missing)
        return built.rev, body


# ---------------------------------------------------------------------- in the worker


def write_text(opener: Opener, name: str, text_name: str, rev: int, path: str) -> Built:
    """The worker's side of `WorkerTexts.text`: the text at `rev` (or `LAST`) to `path`."""
    found = _replayed(opener, name, text_name, rev)
    if isinstance(found, Built):
        return found
    replay, _ = found
    with open(path, "wb") as out:
        out.write(str(replay.text).encode())
    return Built(replay.rev)


def write_state(opener: Opener, name: str, text_name: str, rev: int, path: str) -> Built:
    """The worker's side of `WorkerTexts.state`: the document at `rev` (or `LAST`) as one
    Yjs update to `path`, encoded by pycrdt as the server's own document would be."""
    found = _replayed(opener, name, text_name, rev)
    if isinstance(found, Built):
        return found
    replay, _ = found
    with open(path, "wb") as out:
        out.write(replay.state())
    return Built(replay.rev)


def count_text(opener: Opener, name: str, text_name: str) -> Counted | Built:
    """The worker's side of `WorkerTexts.count`: the text's code points at the last
    revision (the 64 MiB `str` is built here, not in the server)."""
    found = _replayed(opener, name, text_name, LAST)
    if isinstance(found, Built):
        return found
    replay, record = found
    return Counted(replay.rev, len(str(replay.text)), record.time if record else None)


def write_change(opener: Opener, name: str, text_name: str, rev: int, path: str) -> Built:
    """The worker's side of `WorkerTexts.change`: revision `rev`'s change, as JSON."""
    if rev < 1:
        return Built(rev, f"no revision {rev} in the kept history")
    found = _replayed(opener, name, text_name, rev, before=True)
    if isinstance(found, Built):
        return found
    replay, record = found
    assert record is not None
    before = str(replay.text)
    deltas: list[list[dict[str, Any]]] = []
    subscription = replay.text.observe(lambda event: deltas.append(list(event.delta)))
    replay.apply(record.update, record.rev)
    replay.text.unobserve(subscription)
    info = RevisionInfo(rev, record.time, record.origin, record.user, len(record.update))
    change = RevisionChange(info, before, op_of(before, deltas, str(replay.text)))
    with open(path, "wb") as out:  # as Starlette's JSONResponse encodes
        out.write(json.dumps(change.as_json(), ensure_ascii=False, separators=(",", ":")).encode())
    return Built(rev)


def _replayed(
    opener: Opener, name: str, text_name: str, rev: int, before: bool = False
) -> tuple[DocReplay, Record | None] | Built:
    """The document at `rev` (with `before`: at `rev` - 1) and revision `rev`'s record
    (None when `rev` is the snapshot's), from the newest snapshot at or before it; a `Built`
    saying what is missing if not."""

    async def read() -> tuple[DocReplay, Record | None] | Built:
        store = opener()
        try:
            for _ in range(ATTEMPTS - 1):
                try:
                    return await _read(store, name, text_name, rev, before)
                except RevisionsGoneError:
                    continue
            return await _read(store, name, text_name, rev, before)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except (RevisionNotFoundError, RevisionsGoneError) as error:
        return Built(rev, str(error))


async def _read(
    store: RevisionHistory, name: str, text_name: str, rev: int, before: bool
) -> tuple[DocReplay, Record | None]:
    start = await store.history_start(name)
    if start is None:
        raise RevisionNotFoundError(f"no document {name!r} in the store")
    if rev < start:
        raise RevisionNotFoundError(f"revision {rev} is no longer kept: history starts at {start}")
    until = rev - 1 if before else rev
    snapshot = await store.snapshot_at_or_before(name, until)
    base_rev, base = (snapshot.rev, snapshot.state) if snapshot is not None else (0, None)
    if base_rev < start:
        raise RevisionsGoneError(f"{name!r}: the snapshot at rev {start} is gone")
    wanted = None if rev == LAST else rev - base_rev
    records = await store.history_records(name, base_rev, wanted) if wanted != 0 else []
    if rev != LAST and (len(records) < rev - base_rev):
        last = records[-1].rev if records else base_rev
        raise RevisionNotFoundError(f"no revision {rev}: the latest is {last}")
    record = records.pop() if before else (records[-1] if records else None)
    return rebuilt(text_name, base, base_rev, records), record


def rebuilt(text_name: str, base: bytes | None, base_rev: int, records: list[Record]) -> DocReplay:
    """The document of `base` and `records`, merged into one update first: one pycrdt
    integration, where one per record costs each continuation of a writer's long run the
    run's length (a 16 MiB run and 50 small edits: 575 ms one by one, 131 ms merged; a
    merge alone keeps each append an item of its own: each writer's chain is fused first).
    Replayed one by one when the merge fails, for the error that names the record."""
    if len(records) > 1:
        updates = [base] if base else []
        try:
            chains = fused(record.update for record in records)  # see `collab.yjs.fuse`
            merged = merge_updates(*updates, *chains)
            return DocReplay(text_name, merged, records[-1].rev)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # pycrdt panics are BaseExceptions
            pass
    replay = DocReplay(text_name, base, base_rev)
    for record in records:
        replay.apply(record.update, record.rev)
    return replay
