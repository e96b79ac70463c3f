"""The stores: round trips, group commit, compaction, crash recovery, hostile names.

Contract tests run against FileStore, MemoryStore and PostgresStore; file-level tests damage the
files the way crashes and bad disks do and check what `load` makes of it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import v1_snapshot
from pycrdt import Doc, Text
from records import Writer, hold_fsyncs, hold_snapshot_checks, text_of

from collab.access.names import storage_key
from collab.config import Settings
from collab.storage import durable, files, threads
from collab.storage.contract import (
    DocumentInfo,
    HistoryStore,
    Record,
    Snapshot,
    Store,
)
from collab.storage.dirlock import LOCK_FILE
from collab.storage.errors import CompactionError, CorruptDocumentError
from collab.storage.files import FileStore
from collab.storage.format import (
    LOG_HEADER,
    encode_record,
    encode_records,
    read_log_file,
    read_snapshot_file,
)
from collab.storage.fsync_plan import FsyncPlan
from collab.storage.memory import MemoryStore

PIECES = ["héllo", " 😀", " 👨‍👩‍👧", " 👍🏽🇫🇷", " 中文", " e\u0301", "\r\n", "line 2\r\n"]
UNICODE_NAMES = ["notes", "Café", "cafe\u0301", "中文 doc", "😀/👨‍👩‍👧", "🇫🇷 👍🏽"]


class Editor:
    """A pycrdt document that turns each edit into the Record a session would store."""

    def __init__(self) -> None:
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.rev = 0
        self._updates: list[bytes] = []
        self.doc.observe(lambda event: self._updates.append(event.update))

    def edit(self, pieces: Sequence[str]) -> list[Record]:
        records = []
        for i, piece in enumerate(pieces):
            with self.doc.transaction():  # one revision
                self.text += piece
                if i % 3 == 2:  # deletes too: the first character (pycrdt counts UTF-8 bytes)
                    del self.text[0 : len(str(self.text)[0].encode())]
            self.rev += 1
            update = self._updates.pop()
            user = None if i % 2 else "zoë 😀"
            origin = f"ot:client-中:{self.rev}" if i % 2 else f"yjs:{i}"  # (client, seq) unique
            records.append(Record(self.rev, 1_700_000_000.25 + i, origin, user, update))
        return records

    def snapshot(self) -> bytes:
        return self.doc.get_update()


def files_in(root: Path) -> dict[Path, bytes]:
    """Every file of a data directory but the lock (which holds the server's pid)."""
    return {
        path: path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path != root / LOCK_FILE
    }


@pytest.fixture(params=["file", "memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":  # a database of its own (tests/pg_server.py)
        from collab.storage.postgres import PostgresStore

        postgres = PostgresStore.from_url(request.getfixturevalue("postgres_url"))
        yield postgres
        await postgres.close()
        return
    yield FileStore(tmp_path) if request.param == "file" else MemoryStore()


@pytest.fixture
def file_store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "data")


def only_doc_dir(store: FileStore) -> Path:
    (directory,) = (store.docs_dir).iterdir()
    return directory


def current_log(store: FileStore, name: str) -> Path:
    return store.segments(name)[-1].log


# --- Contract: every store ----------------------------------------------------------------------


async def test_unknown_document_loads_as_none(store: Store) -> None:
    assert await store.load("never stored") is None


async def test_append_then_load_round_trips_every_field(store: Store) -> None:
    editor = Editor()
    first, second = editor.edit(PIECES[:3]), editor.edit(PIECES[3:])
    await store.append("doc 😀", first)
    await store.append("doc 😀", second)

    stored = await store.load("doc 😀")

    assert stored is not None
    assert stored.snapshot is None and stored.snapshot_rev == 0
    assert stored.records == first + second
    assert stored.rev == len(PIECES)
    assert stored.log_bytes == len(encode_records(first + second))
    assert text_of(stored) == str(editor.text)
    assert "👨‍👩‍👧" in text_of(stored) and "\r\n" in text_of(stored)


async def test_append_refuses_revisions_that_do_not_follow(store: Store) -> None:
    editor = Editor()
    records = editor.edit(PIECES[:4])
    await store.append("d", records[:2])
    with pytest.raises(ValueError, match="rev 4"):
        await store.append("d", records[3:])
    with pytest.raises(ValueError):
        await store.append("d", records[:1])  # a duplicate
    stored = await store.load("d")
    assert stored is not None and stored.records == records[:2]


async def test_compaction_round_trip_and_appends_after_it(store: Store) -> None:
    editor = Editor()
    await store.append("d", editor.edit(PIECES[:5]))
    await store.compact("d", Snapshot(5, editor.snapshot()))
    later = editor.edit(PIECES[5:])
    await store.append("d", later)

    stored = await store.load("d")

    assert stored is not None
    assert stored.snapshot_rev == 5 and stored.records == later
    assert stored.log_bytes == len(encode_records(later))
    assert text_of(stored) == str(editor.text)


async def test_compaction_keeps_records_past_the_snapshot(store: Store) -> None:
    editor = Editor()
    await store.append("d", editor.edit(PIECES[:3]))
    snapshot_at_3 = editor.snapshot()
    later = editor.edit(PIECES[3:])
    await store.append("d", later)

    await store.compact("d", Snapshot(3, snapshot_at_3))

    stored = await store.load("d")
    assert stored is not None
    assert stored.snapshot_rev == 3 and stored.records == later
    assert text_of(stored) == str(editor.text)


async def test_snapshot_meta_round_trips_through_compaction(store: Store) -> None:
    editor = Editor()
    await store.append("d", editor.edit(PIECES[:3]))
    stored = await store.load("d")
    assert stored is not None and stored.snapshot_meta == b""
    meta = "sessions: 😀".encode() + bytes(range(256))  # opaque: any bytes
    await store.compact("d", Snapshot(3, editor.snapshot(), meta))
    later = editor.edit(PIECES[3:5])
    await store.append("d", later)

    stored = await store.load("d")

    assert stored is not None and stored.snapshot_meta == meta
    assert stored.snapshot_rev == 3 and stored.records == later
    await store.compact("d", Snapshot(5, editor.snapshot()))  # a snapshot without meta
    stored = await store.load("d")
    assert stored is not None and stored.snapshot_meta == b"" and stored.snapshot_rev == 5


async def test_a_snapshot_that_does_not_match_the_log_is_refused(store: Store) -> None:
    editor = Editor()
    await store.append("d", editor.edit(PIECES[:3]))
    missing_rev_4 = editor.snapshot()
    await store.append("d", editor.edit(PIECES[3:4]))
    before = await store.load("d")
    other = Editor()
    other.edit(PIECES[:4])  # same text, different client: a different document
    editor.edit(PIECES[4:5])
    with_rev_5 = editor.snapshot()

    for wrong in (other.snapshot(), missing_rev_4, with_rev_5, b"junk", b""):
        with pytest.raises(CompactionError):
            await store.compact("d", Snapshot(4, wrong))
    with pytest.raises(CompactionError):
        await store.compact("d", Snapshot(9, editor.snapshot()))  # past the end of the log

    assert await store.load("d") == before


async def test_list_and_delete(store: Store) -> None:
    for i, name in enumerate(UNICODE_NAMES):
        records = Editor().edit(PIECES[: i + 1])
        await store.append(name, records)

    listed = await store.list()

    assert sorted(info.name for info in listed) == sorted(UNICODE_NAMES)
    for info in listed:
        assert isinstance(info, DocumentInfo)
        assert info.rev == UNICODE_NAMES.index(info.name) + 1
        assert info.size_bytes > 0
    await store.delete("Café")
    await store.delete("never existed")
    assert await store.load("Café") is None
    assert await store.load("cafe\u0301") is not None  # NFD is another document
    assert "Café" not in [info.name for info in await store.list()]


async def test_unstorable_names_are_refused(store: Store) -> None:
    for name in ["", "a\x00b", "\ud800"]:
        with pytest.raises(ValueError):
            await store.append(name, Editor().edit(["x"]))
        with pytest.raises(ValueError):
            await store.load(name)


# --- FileStore: durability and layout ----------------------------------------------------------


async def test_documents_survive_a_new_store_instance(tmp_path: Path) -> None:
    editor = Editor()
    first = FileStore(tmp_path)
    await first.append("d", editor.edit(PIECES))
    await first.close()

    again = FileStore(tmp_path)
    stored = await again.load("d")

    assert stored is not None and text_of(stored) == str(editor.text)
    assert await again.list() == [
        DocumentInfo("d", sum(len(b) for b in files_in(tmp_path).values()), len(PIECES))
    ]


async def test_one_fsync_per_append_call(
    file_store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = Editor()
    await file_store.append("d", editor.edit(["create"]))
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))

    await file_store.append("d", editor.edit(PIECES))  # 8 records
    assert len(calls) == 1
    await file_store.append("d", editor.edit(["one more"]))
    assert len(calls) == 2


async def test_concurrent_appends_are_written_in_call_order(store: Store) -> None:
    records = Editor().edit(PIECES * 3)
    await asyncio.gather(*(store.append("d", [record]) for record in records))
    stored = await store.load("d")
    assert stored is not None and stored.records == records


async def test_open_logs_are_closed_in_groups_not_one_per_append(tmp_path: Path) -> None:
    """Past `max_open_logs` the store closes the least recently used handles down to three
    quarters of it: a document whose handle was kept is appended to without reopening its
    log, and the scan for idle handles runs once per group, not on every append."""
    store = FileStore(tmp_path, fsync=False, max_open_logs=8)
    names = [f"{name} {n}" for n in range(2) for name in UNICODE_NAMES][:9]
    editors = {name: Editor() for name in names}
    for name in names:
        await store.append(name, editors[name].edit(PIECES[:1]))
    kept = [name for name in names if store._logs[storage_key(name)].handle is not None]
    assert kept == names[3:]  # 9 > 8: the 3 least recently used closed, 6 kept
    handles = {name: store._logs[storage_key(name)].handle for name in kept}
    for name in kept:
        await store.append(name, editors[name].edit(PIECES[1:3]))
        assert store._logs[storage_key(name)].handle is handles[name]
    await store.close()
    again = FileStore(tmp_path, fsync=False)
    for name, editor in editors.items():
        stored = await again.load(name)
        assert stored is not None and text_of(stored) == str(editor.text)
    await again.close()


async def test_many_documents_with_few_open_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path, max_open_logs=2)
    editors = {name: Editor() for name in UNICODE_NAMES}

    def open_handles() -> int:
        return sum(state.handle is not None for state in store._logs.values())

    for round_ in range(3):
        for name, editor in editors.items():
            await store.append(name, editor.edit(PIECES[:2]))
            if round_ == 1:  # a new segment: the old log's handle goes, a new one comes
                await store.compact(name, Snapshot(editor.rev, editor.snapshot()))
            assert store._open_handles == open_handles()  # the count the LRU close trusts
    assert open_handles() <= 2
    await store.release(UNICODE_NAMES[-1])
    assert store._open_handles == open_handles()
    await store.close()
    assert store._open_handles == 0
    for name, editor in editors.items():
        stored = await FileStore(tmp_path, exclusive=False).load(name)
        assert stored is not None and text_of(stored) == str(editor.text)


async def test_no_fsync_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    store = FileStore(tmp_path, fsync=False)
    editor = Editor()
    await store.append("d", editor.edit(PIECES))
    await store.compact("d", Snapshot(editor.rev, editor.snapshot()))
    assert calls == []


def test_from_settings(tmp_path: Path) -> None:
    store = FileStore.from_settings(Settings(data_dir=tmp_path, fsync="never", keep_history=False))
    assert store.data_dir == tmp_path and not store.fsync and not store.keep_history


def test_only_the_file_store_keeps_history(tmp_path: Path) -> None:
    assert isinstance(FileStore(tmp_path, exclusive=False), HistoryStore)
    assert not isinstance(MemoryStore(), HistoryStore)


async def test_layout_on_disk(file_store: FileStore) -> None:
    await file_store.append("My Doc", Editor().edit(["x"]))
    directory = only_doc_dir(file_store)
    assert directory.name == "n-%4Dy%20%44oc"
    assert (directory / "name").read_bytes() == b"My Doc"
    assert sorted(p.name for p in directory.iterdir()) == ["log-000000000000.ylog", "name"]


async def test_compaction_keeps_history_by_default(file_store: FileStore) -> None:
    editor = Editor()
    early = editor.edit(PIECES[:4])
    await file_store.append("d", early)
    snapshot_at_4 = editor.snapshot()
    await file_store.compact("d", Snapshot(4, snapshot_at_4))
    await file_store.append("d", editor.edit(PIECES[4:]))

    segments = file_store.segments("d")

    assert [s.start_rev for s in segments] == [0, 4]
    assert segments[0].snapshot is None and read_log_file(segments[0].log) == early
    assert segments[1].snapshot is not None
    assert read_snapshot_file(segments[1].snapshot, 4) == Snapshot(4, snapshot_at_4)
    stored = await file_store.load("d")
    assert stored is not None and text_of(stored) == str(editor.text)


async def test_snapshot_meta_survives_a_restart(tmp_path: Path) -> None:
    editor = Editor()
    first = FileStore(tmp_path)
    await first.append("d", editor.edit(PIECES[:4]))
    await first.compact("d", Snapshot(4, editor.snapshot(), b'{"client-1": 7}'))
    await first.close()

    stored = await FileStore(tmp_path, exclusive=False).load("d")

    assert stored is not None and stored.snapshot_meta == b'{"client-1": 7}'
    assert stored.snapshot_rev == 4 and text_of(stored) == str(editor.text)


async def test_a_version_1_snapshot_still_loads(file_store: FileStore) -> None:
    """A data directory written before snapshots had meta (docs/storage.md, version 1)."""
    editor = Editor()
    await file_store.append("d", editor.edit(PIECES[:4]))
    await file_store.compact("d", Snapshot(4, editor.snapshot(), b"dropped"))
    later = editor.edit(PIECES[4:])
    await file_store.append("d", later)
    await file_store.close()
    snapshot = file_store.segments("d")[-1].snapshot
    assert snapshot is not None
    state = read_snapshot_file(snapshot).state
    snapshot.write_bytes(v1_snapshot(4, state))

    stored = await FileStore(file_store.data_dir, exclusive=False).load("d")

    assert stored is not None and stored.snapshot == state and stored.snapshot_meta == b""
    assert stored.records == later and text_of(stored) == str(editor.text)


async def test_compaction_without_history_removes_old_segments(tmp_path: Path) -> None:
    store = FileStore(tmp_path, keep_history=False)
    editor = Editor()
    for start in (0, 3, 6):
        await store.append("d", editor.edit(PIECES[start : start + 3]))
        await store.compact("d", Snapshot(editor.rev, editor.snapshot()))

    directory = only_doc_dir(store)
    assert sorted(p.name for p in directory.iterdir()) == [
        "log-000000000008.ylog",
        "name",
        "snapshot-000000000008.ysnap",
    ]
    stored = await store.load("d")
    assert stored is not None and stored.records == [] and stored.snapshot_rev == 8
    assert text_of(stored) == str(editor.text)


async def test_failed_compaction_leaves_every_file_untouched(file_store: FileStore) -> None:
    editor = Editor()
    await file_store.append("d", editor.edit(PIECES[:4]))
    await file_store.compact("d", Snapshot(4, editor.snapshot()))
    await file_store.append("d", editor.edit(PIECES[4:]))
    before = files_in(file_store.data_dir)
    wrong = Editor()
    wrong.edit(PIECES)

    with pytest.raises(CompactionError):
        await file_store.compact("d", Snapshot(editor.rev, wrong.snapshot()))

    assert files_in(file_store.data_dir) == before


async def test_unfinished_compaction_is_ignored(file_store: FileStore) -> None:
    """A crash after the snapshot was written but before its log: the old pair is current."""
    editor = Editor()
    await file_store.append("d", editor.edit(PIECES))
    directory = only_doc_dir(file_store)
    (directory / "snapshot-000000000008.ysnap").write_bytes(b"half-written, never committed")

    stored = await file_store.load("d")

    assert stored is not None and stored.snapshot_rev == 0 and len(stored.records) == 8
    await file_store.compact("d", Snapshot(8, editor.snapshot()))  # replaces the orphan
    stored = await file_store.load("d")
    assert stored is not None and stored.snapshot_rev == 8 and text_of(stored) == str(editor.text)


# --- FileStore: damage ------------------------------------------------------------------------


async def stored_with_three_records(store: FileStore) -> tuple[Path, list[Record], list[int]]:
    """A document "d" with three records appended one by one: its log, records, offsets."""
    records = Editor().edit(PIECES[:3])
    for record in records:
        await store.append("d", [record])
    await store.close()
    offsets = [LOG_HEADER.size]
    for record in records:
        offsets.append(offsets[-1] + len(encode_record(record)))
    return current_log(store, "d"), records, offsets


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
async def test_torn_tail_is_cut_with_a_warning(
    file_store: FileStore, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    log_path, records, offsets = await stored_with_three_records(file_store)
    with open(log_path, "r+b") as file:
        file.truncate(offsets[3] - cut)

    with caplog.at_level(logging.WARNING, logger="collab.storage.files"):
        stored = await file_store.load("d")

    assert stored is not None and stored.records == records[:2]
    assert log_path.stat().st_size == offsets[2]
    assert str(log_path) in caplog.text and f"offset {offsets[2]}" in caplog.text
    await file_store.append("d", records[2:])  # the lost revision can be written again
    stored = await FileStore(file_store.data_dir, exclusive=False).load("d")
    assert stored is not None and stored.records == records


async def test_torn_crc_and_zero_filled_tails_are_cut(file_store: FileStore) -> None:
    log_path, records, offsets = await stored_with_three_records(file_store)
    data = bytearray(log_path.read_bytes())
    data[-1] ^= 0xFF  # last record: its CRC fails, nothing follows
    log_path.write_bytes(bytes(data) + bytes(4096))  # and zeros after it, as after a crash

    stored = await file_store.load("d")

    assert stored is not None and stored.records == records[:2]
    assert log_path.stat().st_size == offsets[2]


@pytest.mark.parametrize("where", ["crc", "length", "body"])
async def test_corruption_in_the_middle_raises_and_changes_nothing(
    file_store: FileStore, where: str
) -> None:
    log_path, _, offsets = await stored_with_three_records(file_store)
    data = bytearray(log_path.read_bytes())
    position = {"length": offsets[1] + 1, "crc": offsets[1] + 5, "body": offsets[1] + 20}[where]
    data[position] ^= 0x55
    log_path.write_bytes(bytes(data))
    before = files_in(file_store.data_dir)

    with pytest.raises(CorruptDocumentError) as caught:
        await file_store.load("d")

    assert caught.value.path == log_path and caught.value.offset == offsets[1]
    assert str(log_path) in str(caught.value) and f"offset {offsets[1]}" in str(caught.value)
    assert files_in(file_store.data_dir) == before
    with pytest.raises(CorruptDocumentError):
        read_log_file(log_path)


async def test_revisions_with_a_gap_on_disk_raise(file_store: FileStore) -> None:
    log_path, records, offsets = await stored_with_three_records(file_store)
    header = log_path.read_bytes()[: LOG_HEADER.size]
    log_path.write_bytes(header + encode_records([records[0], records[2]]))

    with pytest.raises(CorruptDocumentError, match="rev 3, expected 2") as caught:
        await file_store.load("d")
    assert caught.value.offset == offsets[1]


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
async def test_damaged_snapshot_raises_without_falling_back(
    file_store: FileStore, damage: str
) -> None:
    editor = Editor()
    await file_store.append("d", editor.edit(PIECES))
    await file_store.compact("d", Snapshot(8, editor.snapshot()))
    await file_store.close()
    snapshot = file_store.segments("d")[-1].snapshot
    assert snapshot is not None
    data = bytearray(snapshot.read_bytes())
    if damage == "flip":
        data[-10] ^= 1
    elif damage == "truncate":
        del data[-10:]
    elif damage == "magic":
        data[0:4] = b"XXXX"
    else:
        data.clear()
    snapshot.write_bytes(bytes(data))
    before = files_in(file_store.data_dir)

    with pytest.raises(CorruptDocumentError) as caught:
        await file_store.load("d")

    assert caught.value.path == snapshot and str(snapshot) in str(caught.value)
    assert files_in(file_store.data_dir) == before


async def test_a_damaged_log_header_raises(file_store: FileStore) -> None:
    log_path, _, _ = await stored_with_three_records(file_store)
    log_path.write_bytes(b"XLOG" + log_path.read_bytes()[4:])
    with pytest.raises(CorruptDocumentError, match="not a log file"):
        await file_store.load("d")


async def test_read_log_file_reads_a_copy(file_store: FileStore, tmp_path: Path) -> None:
    log_path, records, _ = await stored_with_three_records(file_store)
    copy = tmp_path / "copy.ylog"
    copy.write_bytes(log_path.read_bytes()[:-2])  # copied while torn

    assert read_log_file(copy) == records[:2]
    assert copy.stat().st_size == log_path.stat().st_size - 2  # not modified


# --- FileStore: hostile names -------------------------------------------------------------------

HOSTILE = ["../x", "a/b", ".", "..", "%2e%2e", "..\\x", "/etc/passwd", "CON", "A", "a", "~"]


async def test_hostile_names_stay_inside_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = FileStore(data_dir)
    for name in [*HOSTILE, "x" * 1000, "😀" * 300]:
        await store.append(name, Editor().edit([name]))

    for path in tmp_path.rglob("*"):
        assert path.resolve().is_relative_to(data_dir.resolve()), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    doc_dirs = list((data_dir / "docs").iterdir())
    assert len(doc_dirs) == len(HOSTILE) + 2
    assert len({d.name.lower() for d in doc_dirs}) == len(doc_dirs)
    assert sorted(info.name for info in await store.list()) == sorted(
        [*HOSTILE, "x" * 1000, "😀" * 300]
    )
    for name in HOSTILE:
        stored = await FileStore(data_dir, exclusive=False).load(name)
        assert stored is not None and text_of(stored) == name


async def test_fast_fsyncs_run_on_the_loop_and_slow_ones_off_it_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast disk's fsync runs inline (the hop to a thread and back costs more CPU than
    the fsync); once fsyncs are slow they run on the writer threads, where two documents'
    fsyncs are in flight at once (they share the journal's commits): both start before
    either returns, or the barrier breaks."""
    import threading

    # slow past 5 ms (not the default 1 ms): a loaded machine's 0.1 ms sleep can take 2
    monkeypatch.setattr(
        threads, "FsyncPlan", functools.partial(FsyncPlan, slow=0.005, share=10.0, turn=0.01)
    )
    store = FileStore(tmp_path, fsync=True)
    writers = {name: Writer() for name in ("one", "two")}
    on_loop: list[bool] = []
    real_fsync = os.fsync

    async def append(name: str) -> None:
        await store.append(name, [writers[name].record("中😀e\u0301\r\n👩‍👩‍👧")])

    def fast_fsync(fd: int) -> None:  # a fast disk (this machine's may be slow now)
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.0001)

    def slow_fsync(fd: int) -> None:  # a disk that takes 20 ms a sync
        time.sleep(0.02)
        fast_fsync(fd)
        real_fsync(fd)

    await append("one")  # made, with its files; its first fsync is measured on a thread
    monkeypatch.setattr(os, "fsync", fast_fsync)
    for _ in range(20):  # the real fsyncs' average comes down
        await append("one")
    assert on_loop[-3:] == [True, True, True]

    on_loop.clear()
    monkeypatch.setattr(os, "fsync", slow_fsync)
    await append("one")  # one stall inline, then the threads
    await append("one")
    assert on_loop == [True, False]

    on_loop.clear()
    await append("two")  # made
    both_syncing = threading.Barrier(2, timeout=5)

    def fsync_when_both_sync(fd: int) -> None:
        both_syncing.wait()
        slow_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_when_both_sync)
    await asyncio.gather(append("one"), append("two"))
    monkeypatch.undo()
    assert on_loop[-2:] == [False, False]
    for name, writer in writers.items():
        stored = await store.load(name)
        assert stored is not None and [r.rev for r in stored.records] == list(
            range(1, len(stored.records) + 1)
        )
        assert text_of(stored) == str(writer.text)
    await store.close()


async def test_a_lone_document_fsyncs_inline_and_a_burst_of_documents_on_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsyncs asked for in one turn of the loop are decided together: ten documents
    appending at once overlap on the threads (in a row inline they would stall every
    document ten fsyncs long); one alone runs inline."""
    import threading

    # at most 2 ms in a row per turn (not the default 1 ms): a loaded machine's 0.3 ms
    # sleep can take 1, and ten of them are more than 2 all the same
    monkeypatch.setattr(
        threads, "FsyncPlan", functools.partial(FsyncPlan, slow=1.0, share=10.0, turn=0.002)
    )
    store = FileStore(tmp_path, fsync=True)
    names = [f"burst/{n} 中😀" for n in range(10)]
    writers = {name: Writer() for name in names}

    async def append(name: str) -> None:
        await store.append(name, [writers[name].record("e\u0301\r\n👩‍👩‍👧")])

    for name in names:  # made, with their files, one at a time
        await append(name)
    on_loop: list[bool] = []

    def fsync(fd: int) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.0003)  # a fast disk, 0.3 ms a sync: ten in a row are 3 ms

    monkeypatch.setattr(os, "fsync", fsync)
    for _ in range(20):  # the real fsyncs' average comes down to the fast disk's
        await append(names[0])
    assert on_loop[-1] is True
    on_loop.clear()
    await asyncio.gather(*(append(name) for name in names))
    assert on_loop == [False] * 10
    for _ in range(20):  # the threads' measures (a loaded machine's) come down again
        on_loop.clear()
        await append(names[1])
        if on_loop == [True]:
            break
    assert on_loop == [True]
    monkeypatch.undo()
    for name, writer in writers.items():
        stored = await store.load(name)
        assert stored is not None and text_of(stored) == str(writer.text)
    await store.close()


async def test_an_append_cancelled_during_its_fsync_leaves_no_record_and_a_usable_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task waiting for an fsync is cancelled (a shutdown): the document stays locked
    until the fsync returns, the write is cut (the caller was told nothing was stored), and
    the same revision can be written again."""

    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    first = writer.record("👩‍👩‍👧 ")
    await store.append("doc", [first])
    entered, release = hold_fsyncs(monkeypatch)
    second = writer.record("中e\u0301\r\n")
    append = asyncio.create_task(store.append("doc", [second]))
    assert await asyncio.to_thread(entered.wait, 5)
    append.cancel()
    await asyncio.sleep(0)  # the cancellation reaches the task while the fsync is held
    assert not append.done()  # it waits for the fsync: the lock is still held
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await append
    monkeypatch.undo()
    stored = await store.load("doc")
    assert stored is not None and [r.rev for r in stored.records] == [1]
    await store.append("doc", [second])
    stored = await store.load("doc")
    assert stored is not None and [r.rev for r in stored.records] == [1, 2]
    assert text_of(stored) == "👩‍👩‍👧 中e\u0301\r\n"
    await store.close()


async def test_appends_go_on_while_a_compaction_checks_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a snapshot against a long log takes seconds: the document's appends must
    not wait for it. Those made meanwhile land in the new segment, none lost or doubled."""
    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    for chunk in ["👩‍👩‍👧", " 中", "e\u0301", "\r\n"]:
        await store.append("doc", [writer.record(chunk)])
    snapshot = writer.snapshot()
    checking, release = hold_snapshot_checks(monkeypatch)
    compaction = asyncio.create_task(store.compact("doc", snapshot))
    assert await asyncio.to_thread(checking.wait, 5)
    await asyncio.wait_for(store.append("doc", [writer.record(" 😀")]), 5)  # not held up
    await asyncio.wait_for(store.append("doc", [writer.record("!")]), 5)
    release.set()
    await asyncio.wait_for(compaction, 5)
    stored = await store.load("doc")
    assert stored is not None and stored.snapshot_rev == 4
    assert [r.rev for r in stored.records] == [5, 6]
    assert text_of(stored) == "👩‍👩‍👧 中e\u0301\r\n 😀!"
    await store.append("doc", [writer.record("?")])
    assert text_of(await store.load("doc")) == str(writer.text)  # type: ignore[arg-type]
    await store.close()


async def test_a_document_keeps_one_lock_while_its_log_is_open(tmp_path: Path) -> None:
    """The locks are held weakly (names only looked up leave nothing behind); an open
    log keeps its document's, so appends do not make a new lock each."""
    store = FileStore(tmp_path, fsync=False)
    writer = Writer()
    key = storage_key("中文 😀")
    await store.append("中文 😀", [writer.record("e\u0301\r\n")])
    lock = weakref.ref(store._lock(key))
    gc.collect()
    assert lock() is not None  # nobody here holds it: the open log does
    await store.append("中文 😀", [writer.record("👩‍👩‍👧")])
    assert store._lock(key) is lock()
    await store.close()


@pytest.mark.parametrize(
    "size", [0, 1, durable.SYNC_STEP - 1, durable.SYNC_STEP, 3 * durable.SYNC_STEP + 5]
)
def test_a_big_file_is_written_whole_and_synced_in_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A snapshot of many MB is synced a step at a time (so that one fsync never holds the
    file system's journal for the whole file) and lands whole, under its name only."""
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(os.fstat(fd).st_size) or real(fd))
    data = ("😀 中文 e\u0301\r\n" * (size // 16 + 1)).encode()[:size]
    target = tmp_path / "snapshot-000000000001.ysnap"
    durable.write_new_file(target, data)
    assert target.read_bytes() == data
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
    steps = range(durable.SYNC_STEP, size, durable.SYNC_STEP)  # all but the last, fsynced
    assert synced == list(steps)


async def test_a_new_documents_first_records_are_written_with_its_directory(
    file_store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new document's log is made with its first records: its name and its log synced
    once each, then its directory and the docs directory, four fsyncs before the records
    are durable (six before: an empty log first, then the append's own). The log goes on
    from there; a failure on the way leaves no directory at all."""
    await file_store.append("first", Editor().edit(["x"]))  # the docs directory exists
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    editor = Editor()
    await file_store.append("中文 😀 new", editor.edit(PIECES))
    assert len(calls) == 4
    await file_store.append("中文 😀 new", editor.edit(["\r\n👍🏽 more"]))
    assert len(calls) == 5
    stored = await FileStore(file_store.data_dir, exclusive=False).load("中文 😀 new")
    assert stored is not None and text_of(stored) == str(editor.text)
    assert [r.rev for r in stored.records] == list(range(1, len(PIECES) + 2))

    def failing(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        await file_store.append("e\u0301 failed", Editor().edit(PIECES))
    assert sorted(p.name for p in file_store.docs_dir.iterdir()) == sorted(
        storage_key(name) for name in ("first", "中文 😀 new")
    )
    monkeypatch.setattr(os, "fsync", real_fsync)
    await file_store.append("e\u0301 failed", Editor().edit(PIECES))
    assert (await file_store.load("e\u0301 failed")) is not None


async def test_a_big_append_is_written_off_the_loop_and_a_failed_one_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append of more than `WRITE_ON_LOOP` bytes is encoded and written in a thread (the
    records' CRCs and copies held the loop 12-26 ms a batch; the write can wait tens of ms
    behind another file's fsync); a small one stays on the loop. A big write that fails is
    cut as any failed append: nothing stored, the same revision can be written again."""
    store = FileStore(tmp_path, fsync=True)
    writer = Writer()
    on_loop: list[tuple[str, bool]] = []
    failing = [False]
    real_write_all, real_encode = durable.write_all, files.encode_records

    def write_all(handle: Any, data: Any) -> None:
        on_loop.append(("write", threading.current_thread() is threading.main_thread()))
        if failing[0]:
            raise OSError(28, "No space left on device")
        real_write_all(handle, data)

    def encode_records(records: Any) -> bytes:
        on_loop.append(("encode", threading.current_thread() is threading.main_thread()))
        return real_encode(records)

    monkeypatch.setattr(durable, "write_all", write_all)
    monkeypatch.setattr(files, "encode_records", encode_records)
    await store.append("doc", [writer.record("👩‍👩‍👧 ")])  # makes the document, in a thread
    on_loop.clear()
    await store.append("doc", [writer.record("中e\u0301\r\n")])
    assert on_loop == [("encode", True), ("write", True)]
    on_loop.clear()
    await store.append("doc", [writer.record("😀" * durable.WRITE_ON_LOOP)])
    assert on_loop == [("encode", False), ("write", False)]
    failing[0] = True
    big = writer.record("🇫🇷" * durable.WRITE_ON_LOOP)
    with pytest.raises(OSError):
        await store.append("doc", [big])
    failing[0] = False
    stored = await store.load("doc")
    assert stored is not None and [r.rev for r in stored.records] == [1, 2, 3]
    await store.append("doc", [big])
    assert text_of(await store.load("doc")) == str(writer.text)  # type: ignore[arg-type]
    await store.close()
