"""For store tests: records made by a real pycrdt document, the text a stored document
holds, and a compaction or an fsync held where a test wants it."""

from __future__ import annotations

import os
import threading

import pytest
from pycrdt import Doc, Text

from collab.storage.contract import Record, Snapshot, StoredDocument
from collab.storage.fsync_plan import FsyncPlan


class Writer:
    """A pycrdt document whose edits become records, one revision each."""

    def __init__(self) -> None:
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.rev = 0

    def record(self, chunk: str) -> Record:
        """Append `chunk` to the text: the next revision's record."""
        before = self.doc.get_state()
        self.text.insert(len(self.text), chunk)
        self.rev += 1
        return Record(self.rev, 0.0, "yjs:1", "zoë 😀", self.doc.get_update(before))

    def snapshot(self) -> Snapshot:
        return Snapshot(self.rev, self.doc.get_update(), b"")


def text_of(stored: StoredDocument) -> str:
    """The text of a stored document: its snapshot, then its records."""
    doc = Doc()
    text = doc.get("text", type=Text)
    if stored.snapshot is not None:
        doc.apply_update(stored.snapshot)
    for record in stored.records:
        doc.apply_update(record.update)
    return str(text)


def hold_snapshot_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Make FileStore's compactions wait inside their snapshot check (the long part, run
    beside the appends): (checking: set once one is in it, release: set it to let them go)."""
    from collab.storage import snapshots

    checking, release = threading.Event(), threading.Event()
    real_replaced_by = snapshots.replaced_by

    def held_check(*args: object) -> int | None:
        checking.set()
        assert release.wait(5), "the test never released the snapshot check"
        return real_replaced_by(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshots, "replaced_by", held_check)
    return checking, release


def hold_fsyncs(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every os.fsync wait: (entered: set once one is in it, release: let them go).
    A disk that slow has the appends' fsyncs on the writer threads (`FsyncPlan`)."""
    entered, release = threading.Event(), threading.Event()
    monkeypatch.setattr(FsyncPlan, "inline", lambda plan, now, count=1: False)
    real_fsync = os.fsync

    def held_fsync(fd: int) -> None:
        entered.set()
        assert release.wait(5), "the test never released the fsync"
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", held_fsync)
    return entered, release
