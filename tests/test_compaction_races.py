"""FileStore's two-phase compaction against cancellation, a second compaction, a delete,
and an fsync whose waiter is cancelled twice: the document must stay loadable with every
acknowledged record, once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from records import Writer, hold_fsyncs, hold_snapshot_checks, text_of

from collab.storage import snapshots
from collab.storage.errors import CompactionError
from collab.storage.files import FileStore
from collab.storage.next_log import NextLog

CHUNKS = ["👩‍👩‍👧", " 中文", "e\u0301", "\r\n", " 👍🏽🇫🇷", "!"]


async def wait_for_thread_event(event: threading.Event, what: str) -> None:
    if not await asyncio.to_thread(event.wait, 5):
        raise AssertionError(f"timed out waiting for {what}")


async def written(store: FileStore, name: str, writer: Writer, chunks: list[str]) -> None:
    for chunk in chunks:
        await store.append(name, [writer.record(chunk)])


def hold_log_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event, threading.Event]:
    """Make the new segment's commit point (its log finished and renamed into place, under
    the document's lock) wait: entered, release, done."""
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    real = NextLog.finish

    def held(self: NextLog, *args: Any) -> None:
        entered.set()
        assert release.wait(5)
        try:
            real(self, *args)
        finally:
            done.set()

    monkeypatch.setattr(NextLog, "finish", held)
    return entered, release, done


async def test_a_compaction_cancelled_while_its_segment_switches_leaves_a_loadable_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown cancels the background compaction while its new log is being written
    in a worker thread. The thread goes on and commits log-R; the snapshot it needs must
    still be there (it was deleted by the cancelled coroutine: 'snapshot missing', the
    whole document unreadable)."""
    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    await written(store, "doc 😀", writer, CHUNKS[:4])
    entered, release, done = hold_log_switch(monkeypatch)
    compaction = asyncio.create_task(store.compact("doc 😀", writer.snapshot()))
    await wait_for_thread_event(entered, "the segment switch")
    compaction.cancel()
    release.set()
    await asyncio.wait([compaction], timeout=5)
    assert compaction.done()
    await wait_for_thread_event(done, "the new log's write")
    await store.close()

    reopened = FileStore(tmp_path, fsync=True)
    stored = await reopened.load("doc 😀")  # main: CorruptDocumentError (snapshot missing)
    assert stored is not None
    assert text_of(stored) == "👩‍👩‍👧 中文e\u0301\r\n"
    await reopened.close()


async def test_appends_are_held_until_a_cancelled_segment_switch_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the switch's thread still runs, an append must not slip in on the old log (it
    would be left behind in the old segment, then lost from the new one)."""
    store = FileStore(tmp_path, fsync=False)
    writer = Writer()
    await written(store, "doc", writer, CHUNKS[:4])
    entered, release, done = hold_log_switch(monkeypatch)
    compaction = asyncio.create_task(store.compact("doc", writer.snapshot()))
    await wait_for_thread_event(entered, "the segment switch")
    compaction.cancel()
    await asyncio.wait([compaction], timeout=0.2)  # main: done at once, lock released
    late = asyncio.create_task(store.append("doc", [writer.record(CHUNKS[4])]))
    await asyncio.wait([late], timeout=0.2)
    release.set()
    await asyncio.wait([compaction, late], timeout=5)
    await wait_for_thread_event(done, "the new log's write")
    assert late.done() and late.exception() is None
    await store.close()

    reopened = FileStore(tmp_path, fsync=False)
    stored = await reopened.load("doc")
    assert stored is not None and stored.rev == 5
    assert text_of(stored) == "".join(CHUNKS[:5])
    await reopened.close()


async def test_two_compactions_at_the_same_revision_keep_the_committed_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compactions of one document at one revision (a failed runner's background one
    and its successor's unload, or two callers of the store): the loser must not delete
    the snapshot file the winner's log needs."""
    store = FileStore(tmp_path, fsync=False)
    writer = Writer()
    await written(store, "中文 doc", writer, CHUNKS[:4])
    snapshot = writer.snapshot()
    arrived = [threading.Event(), threading.Event()]
    calls: list[int] = []
    real_replaced_by = snapshots.replaced_by

    def check_side_by_side(*args: Any) -> int | None:
        calls.append(len(calls))
        arrived[len(calls) - 1].set()
        arrived[1].wait(0.5)  # main: both check at once (fixed: the second waits its turn)
        return real_replaced_by(*args)

    monkeypatch.setattr(snapshots, "replaced_by", check_side_by_side)
    results = await asyncio.wait_for(
        asyncio.gather(
            store.compact("中文 doc", snapshot),
            store.compact("中文 doc", snapshot),
            return_exceptions=True,
        ),
        5,
    )
    assert all(r is None or isinstance(r, CompactionError) for r in results), results
    await store.close()

    reopened = FileStore(tmp_path, fsync=False)
    stored = await reopened.load("中文 doc")  # main: CorruptDocumentError (snapshot missing)
    assert stored is not None and stored.snapshot_rev == 4
    assert text_of(stored) == "".join(CHUNKS[:4])
    await reopened.close()


async def test_a_document_deleted_and_made_again_during_a_compaction_keeps_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction read the old document's log; it is deleted and a new document of the
    same name written while the snapshot is checked. The switch must not put the deleted
    document's snapshot over the new one (same log path, different file)."""
    store = FileStore(tmp_path, fsync=False)
    old = Writer()
    await written(store, "doc", old, CHUNKS[:4])
    checking, release = hold_snapshot_checks(monkeypatch)
    compaction = asyncio.create_task(store.compact("doc", old.snapshot()))
    await wait_for_thread_event(checking, "the snapshot check")
    deleted = asyncio.create_task(store.delete("doc"))
    await asyncio.wait([deleted], timeout=0.5)  # main: at once (fixed: after the compaction)
    new = Writer()
    first = new.record("新 e\u0301\r\n")
    if deleted.done():  # the new document is written while the compaction is held
        await asyncio.wait_for(store.append("doc", [first]), 5)
        release.set()
        await asyncio.wait([compaction], timeout=5)
    else:
        release.set()
        await asyncio.wait_for(deleted, 5)
        await asyncio.wait_for(store.append("doc", [first]), 5)
    assert compaction.done() and deleted.done()
    stored = await store.load("doc")
    assert stored is not None
    assert text_of(stored) == "新 e\u0301\r\n"  # main: the deleted document's text
    await store.append("doc", [new.record("😀")])
    await store.close()
    reopened = FileStore(tmp_path, fsync=False)
    stored = await reopened.load("doc")  # main: CorruptDocumentError (rev 2, expected 5)
    assert stored is not None and text_of(stored) == "新 e\u0301\r\n😀"
    await reopened.close()


async def test_an_fsync_cancelled_twice_still_holds_the_document_until_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cancellation (asyncio.timeout inside a TaskGroup, a shutdown that cancels
    again) must not release the document while the fsync runs on its handle."""
    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    await written(store, "doc", writer, CHUNKS[:1])
    entered, release = hold_fsyncs(monkeypatch)
    append = asyncio.create_task(store.append("doc", [writer.record(CHUNKS[1])]))
    await wait_for_thread_event(entered, "the fsync")
    append.cancel()
    await asyncio.wait([append], timeout=0.05)
    append.cancel()
    await asyncio.wait([append], timeout=0.05)
    held = not append.done()  # main: done, the lock released before the fsync returned
    release.set()
    await asyncio.wait([append], timeout=5)
    monkeypatch.undo()
    assert held
    with pytest.raises(asyncio.CancelledError):
        await append
    await store.close()


async def test_appends_go_on_while_a_compaction_copies_what_was_appended_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new segment's log gets every record after the snapshot: on a busy document,
    seconds of appends (3 MB in bench/scenarios.py's slow-peer run). Copied and synced
    under the document's lock, they held every append for 8-19 ms. An append made while
    that copy is synced must go through, and land in the new segment."""
    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    await written(store, "doc 😀", writer, CHUNKS[:2])
    snapshot = writer.snapshot()
    await written(store, "doc 😀", writer, CHUNKS[2:4])  # after the snapshot: copied
    copying, appended = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def first_new_log_sync_held(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".tmp-" in name and "-log-" in name and not copying.is_set():
            copying.set()
            appended.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", first_new_log_sync_held)
    compaction = asyncio.create_task(store.compact("doc 😀", snapshot))
    await wait_for_thread_event(copying, "the new log's sync")
    late = asyncio.create_task(store.append("doc 😀", [writer.record(CHUNKS[4])]))
    await asyncio.wait([late], timeout=2)  # main: held behind the copy
    went_on = late.done()
    appended.set()
    await asyncio.wait_for(asyncio.gather(compaction, late), 5)
    assert went_on, "the append waited for the compaction's copy"
    await store.close()

    reopened = FileStore(tmp_path, fsync=True)
    stored = await reopened.load("doc 😀")
    assert stored is not None and stored.snapshot_rev == 2
    assert [r.rev for r in stored.records] == [3, 4, 5]
    assert text_of(stored) == "".join(CHUNKS[:5])
    await reopened.close()


async def test_a_record_damaged_before_the_commit_point_fails_the_switch_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was appended while the new log's first part was copied is checked when it is
    copied in turn: a record damaged on disk meanwhile fails the compaction, and neither
    the new log's temp file nor the snapshot is left behind."""
    store = FileStore(tmp_path, fsync=False)
    writer = Writer()
    await written(store, "doc", writer, CHUNKS[:3])
    copying, release = threading.Event(), threading.Event()
    real_start = NextLog.start

    def start_then_wait(self: NextLog, *args: Any) -> None:
        real_start(self, *args)
        copying.set()
        assert release.wait(5)

    monkeypatch.setattr(NextLog, "start", start_then_wait)
    compaction = asyncio.create_task(store.compact("doc", writer.snapshot()))
    await wait_for_thread_event(copying, "the new log's first part")
    await store.append("doc", [writer.record(CHUNKS[3])])
    directory = next((tmp_path / "docs").iterdir())
    with open(directory / "log-000000000000.ylog", "r+b") as log:
        log.seek(-3, os.SEEK_END)
        log.write(b"\xff\xff\xff")
    release.set()
    with pytest.raises(CompactionError):
        await asyncio.wait_for(compaction, 5)
    assert sorted(p.name for p in directory.iterdir()) == ["log-000000000000.ylog", "name"]
    await store.close()
