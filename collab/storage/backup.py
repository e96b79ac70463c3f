"""Backups of a whole store (`collab backup DEST`, `collab restore SRC`), taken while the
server runs.

A backup is a directory: ``manifest.json`` (format, time, and per document its name, the
revision it was taken at, its file, size and SHA-256) and one file per document holding its
whole state as one Yjs update. It is written as ``DEST.partial-*`` and renamed into place
once every file is synced, so a backup that exists is whole.

Consistency: every edit acknowledged before the backup starts is in it. PostgreSQL is read
in one REPEATABLE READ transaction. The file store is read without its lock, from its files:
an edit is acknowledged only once its record is in the current log (fsynced), the snapshots
are immutable, and a record being appended while it is read is a torn tail, left out (it
was not acknowledged when the backup started); a segment a compaction removes meanwhile is
read again from the new one.

A restore first checks the whole backup (manifest, sizes, checksums, every state a valid
update): a damaged backup changes nothing. Each document then starts a new generation
(`collab.storage.generations`) whose history begins with one revision holding the backed-up
state, so a copy anyone held of the document before the restore is never merged back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Doc

from collab.access.names import storage_key
from collab.storage.contract import Record
from collab.storage.durable import sync_dir, write_new_file
from collab.storage.errors import CorruptDocumentError
from collab.storage.format import (
    check_contiguous,
    decode_log,
    list_segments,
    read_rest,
    read_snapshot_file,
)
from collab.yjs.update import decode_update

FORMAT = "collab-backup/1"
MANIFEST = "manifest.json"
NAME_FILE = "name"  # FileStore's: the document's name in its directory
READ_ATTEMPTS = 5  # a compaction may replace a segment while it is read: read again


class BackupError(ValueError):
    """A backup that cannot be written or read (the reason says which file and why)."""


@dataclass(frozen=True)
class BackedUp:
    name: str
    rev: int
    state: bytes  # the whole document as one Yjs update


def full_state(snapshot: bytes | None, records: list[Record]) -> bytes:
    """One update holding a snapshot and the records after it."""
    doc = Doc()
    if snapshot:
        doc.apply_update(snapshot)
    for record in records:
        doc.apply_update(record.update)
    return doc.get_update()


# ---------------------------------------------------------------------- reading a store


async def documents(store: Any) -> AsyncIterator[BackedUp]:
    """Every document of `store` as it is now (see the module's notes on consistency)."""
    if hasattr(store, "read_all"):  # PostgreSQL: one REPEATABLE READ transaction
        async for name, snapshot, records in store.read_all():
            rev = records[-1].rev if records else 0
            yield BackedUp(name, rev, await asyncio.to_thread(full_state, snapshot, records))
        return
    docs_dir = getattr(store, "docs_dir", None)
    if docs_dir is not None:  # the file store: its files, without its lock
        entries = sorted(os.listdir(docs_dir)) if Path(docs_dir).is_dir() else []
        for entry in entries:
            if not entry.startswith("."):  # a document being created or deleted
                yield await asyncio.to_thread(read_document_files, Path(docs_dir) / entry)
        return
    for info in await store.list():
        stored = await store.load(info.name)
        if stored is not None:
            state = full_state(stored.snapshot, stored.records)
            yield BackedUp(info.name, stored.rev, state)


async def document(store: Any, name: str) -> BackedUp | None:
    """One document of `store` as it is now (None: there is none), read as `documents`
    reads them (a file store's files without its lock)."""
    docs_dir = getattr(store, "docs_dir", None)
    if docs_dir is not None:
        directory = Path(docs_dir) / storage_key(name)
        exists = directory.is_dir()
        return await asyncio.to_thread(read_document_files, directory) if exists else None
    stored = await store.load(name)
    if stored is None:
        return None
    state = await asyncio.to_thread(full_state, stored.snapshot, stored.records)
    return BackedUp(name, stored.rev, state)


def read_document_files(directory: Path) -> BackedUp:
    """A file-store document read from its files while the server may write them."""
    for _ in range(READ_ATTEMPTS):
        segments = list_segments(directory)
        if not segments:
            raise CorruptDocumentError(directory, 0, "no log segment")
        current = segments[-1]
        try:
            name = (directory / NAME_FILE).read_bytes().decode("utf-8")
            snapshot = None
            if current.snapshot is not None:
                snapshot = read_snapshot_file(current.snapshot, current.start_rev).state
            decoded = decode_log(current.log)  # a torn tail is left out, never read
        except (FileNotFoundError, CorruptDocumentError):
            if list_segments(directory) != segments:
                continue  # a compaction switched segments meanwhile: read the new one
            raise
        check_contiguous(current.log, current.start_rev, decoded)
        rev = decoded.records[-1].rev if decoded.records else current.start_rev
        return BackedUp(name, rev, full_state(snapshot, decoded.records))
    raise CorruptDocumentError(directory, 0, "its segments kept changing while it was read")


# ---------------------------------------------------------------------- the backup directory


async def write(store: Any, dest: Path, fsync: bool = True) -> list[BackedUp]:
    """Back up every document of `store` into the new directory `dest`; what was written."""
    if dest.exists():
        raise BackupError(f"{dest} exists: a backup goes into a new directory")
    partial = dest.with_name(f"{dest.name}.partial-{uuid.uuid4().hex[:8]}")
    (partial / "docs").mkdir(parents=True)
    written: list[BackedUp] = []
    entries: list[dict[str, Any]] = []
    try:
        async for document in documents(store):
            file = f"docs/{len(entries):06d}.yupdate"
            await asyncio.to_thread(write_new_file, partial / file, document.state, fsync)
            digest = hashlib.sha256(document.state).hexdigest()
            entries.append(
                {"name": document.name, "rev": document.rev, "file": file}
                | {"bytes": len(document.state), "sha256": digest}
            )
            written.append(BackedUp(document.name, document.rev, b""))
        manifest = {"format": FORMAT, "created": time.time(), "documents": entries}
        data = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
        write_new_file(partial / MANIFEST, data, fsync)
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    sync_dir(dest.parent, fsync)
    return written


def read(src: Path) -> list[BackedUp]:
    """Every document of a backup, each checked; BackupError names the first damage."""
    try:
        manifest = json.loads((src / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{src}: no {MANIFEST}: not a collab backup") from None
    except (OSError, ValueError) as error:
        raise BackupError(f"{src / MANIFEST}: cannot be read: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST}: not a {FORMAT} manifest")
    documents, names = [], set()
    for entry in manifest.get("documents", []):
        document = _read_entry(src, entry)
        if document.name in names:
            raise BackupError(f"{src / MANIFEST}: {document.name!r} is listed twice")
        names.add(document.name)
        documents.append(document)
    return documents


def _read_entry(src: Path, entry: Any) -> BackedUp:
    try:
        name, rev, file = entry["name"], entry["rev"], entry["file"]
        size, digest = entry["bytes"], entry["sha256"]
        storage_key(name)
    except (KeyError, TypeError, ValueError) as error:
        raise BackupError(f"{src / MANIFEST}: a bad entry: {error}") from None
    path = (src / str(file)).resolve()
    if src.resolve() not in path.parents:
        raise BackupError(f"{src / MANIFEST}: {name!r}: its file is outside the backup")
    try:
        with open(path, "rb") as file:
            state = read_rest(file)  # a big one without holding the GIL
    except OSError as error:
        raise BackupError(f"{path}: {name!r}: cannot be read: {error}") from None
    if len(state) != size or hashlib.sha256(state).hexdigest() != digest:
        raise BackupError(f"{path}: {name!r}: damaged (size or checksum does not match)")
    try:
        decode_update(state)
        Doc().apply_update(state)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # pycrdt's panics are BaseExceptions
        raise BackupError(f"{path}: {name!r}: not a Yjs update: {error}") from None
    return BackedUp(name, int(rev), state)
