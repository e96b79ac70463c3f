"""`PostgresStore`: documents in PostgreSQL, written by many processes at once.

A `SharedStore` (one order per document, enforced by the database) and a
`RevisionHistory`. The tables and their migrations are `collab.storage.postgres_schema`;
docs/storage.md describes them column by column.

- A commit (`commit(name)`) is one transaction holding a transaction-scoped advisory lock
  on the document (`pg_advisory_xact_lock`, key from `lock_key(name)`), taken in the same
  round trip as BEGIN. Inside a process, commits of one document also queue on an asyncio
  lock first: they keep their call order and hold one pooled connection, not one each.
- Records are inserted with one statement (arrays through `unnest`), which also checks
  that they continue the document's revisions; the primary key (name, rev) and the unique
  index on (name, client, seq) refuse anything stored twice (`CommitConflictError`).
- A lost server or connection is a `StoreUnavailableError`; lost during COMMIT, a
  `CommitOutcomeUnknownError` (it may have been stored: `records_after` tells).
- Compaction verifies the snapshot without any lock (committed revisions never change),
  then inserts it under the document's lock unless a snapshot as new is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from collab.access.names import storage_key
from collab.storage import generations
from collab.storage import postgres_schema as sql
from collab.storage.contract import (
    CommitConflictError,
    CommitOutcomeUnknownError,
    DocumentCommit,
    DocumentInfo,
    Record,
    Snapshot,
    StoredDocument,
    StoreUnavailableError,
    replaced_by,
)
from collab.storage.errors import CompactionError, CorruptDocumentError
from collab.storage.format import encode_records
from collab.storage.generations import Generation
from collab.storage.postgres_rows import (
    MAX_SEQ,
    UNAVAILABLE,
    PostgresCommit,
    check_follow,
    insert,
    record,
    records_or_gone,
    translated,
    write_snapshot,
)
from collab.storage.postgres_schema import lock_key, migrate
from collab.storage.snapshots import build_snapshot_in_worker
from collab.storage.worker import WorkerError, run_in_process

log = logging.getLogger(__name__)

#: The longest name (UTF-8 bytes) a B-tree index entry surely holds with its other columns.
MAX_NAME_BYTES = 2000


def check_name(name: str) -> str:
    """Refuse the names every store refuses, and those too long for the database's index."""
    storage_key(name)
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"document name longer than {MAX_NAME_BYTES} UTF-8 bytes")
    return name


def _closed(connection: asyncpg.Connection) -> bool:
    """Whether the connection is lost (the pool takes a lost one back at once)."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:  # "released back to the pool": it was closed
        return True


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset: asyncpg already ended any transaction; collab sets no session state,
    so this saves the round trip of the default reset on every release."""


class PostgresStore:
    """Documents in a PostgreSQL database (docs/storage.md, "PostgreSQL").

    The pool opens on first use (or `open()`), which also migrates the schema. Pool sizes:
    a commit holds one connection for a few round trips, whatever the number of
    documents, so a small pool serves many documents (`max_size` bounds this process's
    share of the server's `max_connections`).
    """

    def __init__(
        self,
        dsn: str,
        *,
        keep_history: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.keep_history = keep_history
        self.min_size, self.max_size = min_size, max_size
        self.command_timeout, self.connect_timeout = command_timeout, connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """`postgresql://USER[:PASSWORD]@HOST:PORT/DB[?param=value]` (libpq's URL form; other
        query parameters become server settings, e.g. `?search_path=collab`)."""
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a postgresql:// URL: {url!r}")
        return cls(url, **options)

    async def start(self) -> None:
        """Connect and migrate the schema (done on first use otherwise)."""
        await self._ready()

    async def _ready(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                with translated("connecting", ""):
                    pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        command_timeout=self.command_timeout,
                        timeout=self.connect_timeout,
                        reset=_keep_session,
                    )
                    try:
                        async with pool.acquire() as connection:
                            await migrate(connection)
                    except BaseException:
                        await pool.close()
                        raise
                self._pool = pool
        return self._pool

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def _locked(self, name: str, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction holding the document's lock (this process's first,
        then the database's); committed when the block ends, rolled back on an error."""
        pool = await self._ready()
        async with self._lock(name):
            with translated(what, name):
                connection = await pool.acquire()
            try:
                with translated(what, name):
                    # One round trip: the key is an integer we computed, not text.
                    await connection.execute(
                        f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(name)})"
                    )
                try:
                    yield connection
                except BaseException:
                    with contextlib.suppress(Exception):
                        if not _closed(connection):
                            await connection.execute("ROLLBACK")
                    raise
                if _closed(connection):  # lost before COMMIT was sent: nothing stored
                    raise StoreUnavailableError(f"{name!r}: {what}: connection lost")
                try:
                    status = await connection.execute("COMMIT")
                except UNAVAILABLE as error:
                    raise CommitOutcomeUnknownError(
                        f"{name!r}: {what}: connection lost while committing: the records may "
                        f"or may not be stored: {type(error).__name__}: {error}"
                    ) from error
                if status != "COMMIT":  # the transaction had failed: PostgreSQL rolled back
                    raise CommitConflictError(f"{name!r}: {what}: rolled back ({status})")
            finally:
                with contextlib.suppress(Exception):
                    await pool.release(connection)

    # -- Store --

    async def load(self, name: str) -> StoredDocument | None:
        check_name(name)
        read = await self._read(name, "load", MAX_SEQ)
        if read is None:
            return None
        head, records = read
        snapshot_rev = head["rev"] or 0
        check_follow(name, snapshot_rev, records)
        state = None if head["state"] is None else bytes(head["state"])
        meta = b"" if head["meta"] is None else bytes(head["meta"])
        return StoredDocument(state, snapshot_rev, records, len(encode_records(records)), meta)

    async def _read(self, name: str, what: str, until: int) -> tuple[Any, list[Record]] | None:
        """The newest snapshot and the records after it up to `until`, as one consistent
        read (None: no such document)."""
        pool = await self._ready()
        with translated(what, name):
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                head = await connection.fetchrow(sql.HEAD, name, MAX_SEQ)
                if head is None:
                    return None
                rows = await connection.fetch(sql.RECORDS_BETWEEN, name, head["rev"] or 0, until)
        return head, [record(row) for row in rows]

    async def append(self, name: str, records: Sequence[Record]) -> None:
        check_name(name)
        if not records:
            return
        async with self._locked(name, "append") as connection:
            await insert(connection, name, records)

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        def checked(stored: StoredDocument) -> bytes | None:
            return None if replaced_by(stored, snapshot) is None else snapshot.state

        await self.compact_with(name, snapshot.rev, snapshot.meta, checked)

    async def compact_at(
        self, name: str, rev: int, meta: bytes, memory_limit: int = 0
    ) -> Snapshot | None:
        """`compact` with the state built by a worker process that reads the revisions and
        writes the snapshot over its own connection (`build_snapshot_in_worker`)."""
        check_name(name)
        args = (self.dsn, name, rev, meta, self.keep_history)
        try:
            state = await run_in_process(build_snapshot_in_worker, *args, memory_limit=memory_limit)
        except WorkerError as error:
            raise CompactionError(f"{name!r}: snapshot at rev {rev}: {error}") from None
        return None if state is None else Snapshot(rev, state, meta)

    async def compact_with(
        self, name: str, rev: int, meta: bytes, state_of: Callable[[StoredDocument], bytes | None]
    ) -> bytes | None:
        """Insert the snapshot at `rev` whose state `state_of` makes (in a thread) from the
        stored snapshot and the records up to `rev` (None: nothing to do); that state."""
        check_name(name)
        read = await self._read(name, "compact", rev)  # no lock: revs never change
        if read is None:
            raise CompactionError(f"no document {name!r} to compact")
        head, records = read
        first = head["rev"] or 0
        if rev < first:
            log.info("%r: no compaction at %d: there is a snapshot at %d", name, rev, first)
            return None
        stored = StoredDocument(head["state"] and bytes(head["state"]), first, records, 0)
        state = await asyncio.to_thread(state_of, stored)
        if state is None:
            return None
        async with self._locked(name, "compact") as connection:
            snapshot = Snapshot(rev, state, meta)
            await write_snapshot(connection, name, head["incarnation"], snapshot, self.keep_history)
        return state

    async def list(self) -> list[DocumentInfo]:
        pool = await self._ready()
        with translated("list", ""):
            rows = await pool.fetch(sql.LIST)
        return [DocumentInfo(row["name"], row["size"], row["rev"]) for row in rows]

    async def delete(self, name: str) -> None:
        check_name(name)
        async with self._locked(name, "delete") as connection:
            await connection.execute("DELETE FROM collab_documents WHERE name = $1", name)

    async def generation(self, name: str) -> Generation:
        pool = await self._ready()
        with translated("generation", name):
            data = await pool.fetchval(
                "SELECT generation FROM collab_generations WHERE name = $1", check_name(name)
            )
        return Generation() if data is None else generations.decode(bytes(data))

    async def set_generation(self, name: str, generation: Generation) -> None:
        async with self._locked(check_name(name), "set generation") as connection:
            await connection.execute(
                "INSERT INTO collab_generations VALUES ($1, $2) ON CONFLICT (name) "
                "DO UPDATE SET generation = excluded.generation",
                name,
                generations.encode(generation),
            )

    async def read_all(self) -> AsyncIterator[tuple[str, bytes | None, list[Record]]]:
        """Each document's newest snapshot state and the records after it, all read in
        one REPEATABLE READ transaction: a consistent copy of the store (`collab backup`)."""
        pool = await self._ready()
        with translated("backup", ""):
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                rows = await connection.fetch("SELECT name FROM collab_documents ORDER BY name")
                for name in [row["name"] for row in rows]:
                    head = await connection.fetchrow(sql.HEAD, name, MAX_SEQ)
                    found = await connection.fetch(
                        sql.RECORDS_BETWEEN, name, head["rev"] or 0, MAX_SEQ
                    )
                    state = None if head["state"] is None else bytes(head["state"])
                    yield name, state, [record(row) for row in found]

    async def release(self, name: str) -> None:
        """Nothing is held per document: connections are pooled, not per document."""

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=10)

    # -- SharedStore --

    @asynccontextmanager
    async def commit(self, name: str) -> AsyncIterator[DocumentCommit]:
        check_name(name)
        async with self._locked(name, "commit") as connection:
            commit = PostgresCommit(connection, name)
            yield commit
            if commit.error is not None:  # caught inside the block: the transaction failed
                raise commit.error

    async def records_after(self, name: str, rev: int) -> list[Record]:
        check_name(name)
        pool = await self._ready()
        with translated("records_after", name):
            rows = await pool.fetch(sql.RECORDS_AFTER, name, rev, None)
        return records_or_gone(name, rev, rows)

    # -- RevisionHistory --

    async def history_start(self, name: str) -> int | None:
        check_name(name)
        pool = await self._ready()
        with translated("history", name):
            row = await pool.fetchrow(sql.HISTORY_START, name)
        if row is None:
            return None
        first_record, snapshots = row[0], list(row[1])
        if first_record in (None, 1) and not (first_record is None and snapshots):
            return 0
        if first_record is None:
            return snapshots[-1]
        kept = [rev for rev in snapshots if rev >= first_record - 1]
        if not kept:
            raise CorruptDocumentError(
                "postgresql", first_record, f"{name!r}: no snapshot before rev {first_record}"
            )
        return kept[0]

    async def history_records(
        self, name: str, after_rev: int, limit: int | None = None
    ) -> list[Record]:
        check_name(name)
        pool = await self._ready()
        with translated("history", name):
            rows = await pool.fetch(sql.RECORDS_AFTER, name, after_rev, limit)
        return records_or_gone(name, after_rev, rows)

    async def snapshot_at_or_before(self, name: str, rev: int) -> Snapshot | None:
        check_name(name)
        pool = await self._ready()
        with translated("history", name):
            row = await pool.fetchrow(
                "SELECT rev, state, meta FROM collab_snapshots WHERE name = $1 AND rev <= $2 "
                "ORDER BY rev DESC LIMIT 1",
                name,
                rev,
            )
        return (
            None if row is None else Snapshot(row["rev"], bytes(row["state"]), bytes(row["meta"]))
        )
