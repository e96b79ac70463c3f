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
from collections.abc import AsyncIterator, Iterator, Sequence
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
    RevisionsGoneError,
    Snapshot,
    StoredDocument,
    StoreUnavailableError,
    check_next_revs,
    replaced_by,
)
from collab.storage.errors import CompactionError, CorruptDocumentError
from collab.storage.format import encode_records
from collab.storage.generations import Generation
from collab.storage.postgres_schema import lock_key, migrate
from collab.wire import parse_text_origin

log = logging.getLogger(__name__)

#: The longest name (UTF-8 bytes) a B-tree index entry surely holds with its other columns.
MAX_NAME_BYTES = 2000
MAX_SEQ = 2**63 - 1

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, crash, cannot connect now
)


def check_name(name: str) -> str:
    """Refuse the names every store refuses, and those too long for the database's index."""
    storage_key(name)
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"document name longer than {MAX_NAME_BYTES} UTF-8 bytes")
    return name


def _record(row: Any) -> Record:
    return Record(row["rev"], row["time"], row["origin"], row["user"], bytes(row["update"]))


def _text_client(origin: str) -> tuple[str | None, int | None]:
    """The (client, seq) the database keeps unique, from a text client's origin."""
    try:
        parsed = parse_text_origin(origin)
    except ValueError:  # digits `int` cannot read ("²")
        parsed = None
    if parsed is None:
        return None, None
    if parsed[1] > MAX_SEQ:
        raise ValueError(f"origin {origin[:80]!r}: seq past 2**63 - 1")
    return parsed


def _columns(records: Sequence[Record]) -> list[list[Any]]:
    """The records as `sql.INSERT` takes them: rev, time, origin, user, update, client, seq."""
    clients = [_text_client(record.origin) for record in records]
    for record in records:
        for text in (record.origin, record.user or ""):
            if "\x00" in text:  # PostgreSQL's text cannot hold NUL
                raise ValueError(f"rev {record.rev}: NUL in origin or user")
    return [
        [record.rev for record in records],
        [record.time for record in records],
        [record.origin for record in records],
        [record.user for record in records],
        [record.update for record in records],
        [client for client, _ in clients],
        [seq for _, seq in clients],
    ]


@contextlib.contextmanager
def _translated(what: str, name: str) -> Iterator[None]:
    """Turn the driver's errors into the store's: conflicts and an unreachable server."""
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        which = "(client, seq)" if "client_seq" in (error.constraint_name or "") else "revision"
        raise CommitConflictError(f"{name!r}: {what}: {which} already stored: {error}") from None
    except _UNAVAILABLE as error:
        message = f"{name!r}: {what}: PostgreSQL unavailable: {type(error).__name__}: {error}"
        raise StoreUnavailableError(message) from error


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
                with _translated("connecting", ""):
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
            with _translated(what, name):
                connection = await pool.acquire()
            try:
                with _translated(what, name):
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
                except _UNAVAILABLE as error:
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
        _check_follow(name, snapshot_rev, records)
        state = None if head["state"] is None else bytes(head["state"])
        meta = b"" if head["meta"] is None else bytes(head["meta"])
        return StoredDocument(state, snapshot_rev, records, len(encode_records(records)), meta)

    async def _read(self, name: str, what: str, until: int) -> tuple[Any, list[Record]] | None:
        """The newest snapshot and the records after it up to `until`, as one consistent
        read (None: no such document)."""
        pool = await self._ready()
        with _translated(what, name):
            async with (
                pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                head = await connection.fetchrow(sql.HEAD, name, MAX_SEQ)
                if head is None:
                    return None
                rows = await connection.fetch(sql.RECORDS_BETWEEN, name, head["rev"] or 0, until)
        return head, [_record(row) for row in rows]

    async def append(self, name: str, records: Sequence[Record]) -> None:
        check_name(name)
        if not records:
            return
        async with self._locked(name, "append") as connection:
            await _insert(connection, name, records)

    async def compact(self, name: str, snapshot: Snapshot) -> None:
        check_name(name)
        read = await self._read(name, "compact", snapshot.rev)  # no lock: revs never change
        if read is None:
            raise CompactionError(f"no document {name!r} to compact")
        head, records = read
        first = head["rev"] or 0
        if snapshot.rev < first:
            log.info(
                "%r: no compaction at %d: there is a snapshot at %d", name, snapshot.rev, first
            )
            return
        stored = StoredDocument(head["state"] and bytes(head["state"]), first, records, 0)
        if await asyncio.to_thread(replaced_by, stored, snapshot) is None:
            return
        async with self._locked(name, "compact") as connection:
            await _write_snapshot(
                connection, name, head["incarnation"], snapshot, self.keep_history
            )

    async def list(self) -> list[DocumentInfo]:
        pool = await self._ready()
        with _translated("list", ""):
            rows = await pool.fetch(sql.LIST)
        return [DocumentInfo(row["name"], row["size"], row["rev"]) for row in rows]

    async def delete(self, name: str) -> None:
        check_name(name)
        async with self._locked(name, "delete") as connection:
            await connection.execute("DELETE FROM collab_documents WHERE name = $1", name)

    async def generation(self, name: str) -> Generation:
        pool = await self._ready()
        with _translated("generation", name):
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
        with _translated("backup", ""):
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
                    yield name, state, [_record(row) for row in found]

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
            commit = _PostgresCommit(connection, name)
            yield commit
            if commit.error is not None:  # caught inside the block: the transaction failed
                raise commit.error

    async def records_after(self, name: str, rev: int) -> list[Record]:
        check_name(name)
        pool = await self._ready()
        with _translated("records_after", name):
            rows = await pool.fetch(sql.RECORDS_AFTER, name, rev, None)
        return _records_or_gone(name, rev, rows)

    # -- RevisionHistory --

    async def history_start(self, name: str) -> int | None:
        check_name(name)
        pool = await self._ready()
        with _translated("history", name):
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
        with _translated("history", name):
            rows = await pool.fetch(sql.RECORDS_AFTER, name, after_rev, limit)
        return _records_or_gone(name, after_rev, rows)

    async def snapshot_at_or_before(self, name: str, rev: int) -> Snapshot | None:
        check_name(name)
        pool = await self._ready()
        with _translated("history", name):
            row = await pool.fetchrow(
                "SELECT rev, state, meta FROM collab_snapshots WHERE name = $1 AND rev <= $2 "
                "ORDER BY rev DESC LIMIT 1",
                name,
                rev,
            )
        return (
            None if row is None else Snapshot(row["rev"], bytes(row["state"]), bytes(row["meta"]))
        )


class _PostgresCommit:
    """One commit: reads and inserts on the connection holding the document's lock."""

    def __init__(self, connection: asyncpg.Connection, name: str) -> None:
        self.connection, self.name = connection, name
        self.error: BaseException | None = None

    async def records_after(self, rev: int) -> list[Record]:
        try:
            with _translated("records_after", self.name):
                rows = await self.connection.fetch(sql.RECORDS_AFTER, self.name, rev, None)
            return _records_or_gone(self.name, rev, rows)
        except BaseException as error:
            self.error = error
            raise

    async def append(self, records: Sequence[Record]) -> None:
        if not records:
            return
        try:
            await _insert(self.connection, self.name, records)
        except BaseException as error:
            self.error = error
            raise


async def _insert(connection: asyncpg.Connection, name: str, records: Sequence[Record]) -> None:
    """Insert `records` in the open transaction; ValueError unless they continue the log."""
    first = records[0].rev
    check_next_revs(first - 1, records)
    columns = _columns(records)
    with _translated("append", name):
        row = await connection.fetchrow(sql.INSERT, name, first, *columns)
    if row["inserted"] != len(records):
        raise ValueError(f"record rev {first} does not follow rev {row['last']}")


async def _write_snapshot(
    connection: asyncpg.Connection, name: str, incarnation: int, snapshot: Snapshot, keep: bool
) -> None:
    """Insert a verified snapshot unless one as new is there (another compaction won)."""
    newest = await connection.fetchrow(
        "SELECT d.incarnation, (SELECT coalesce(max(rev), 0) FROM collab_snapshots s "
        "WHERE s.name = d.name) AS rev FROM collab_documents d WHERE d.name = $1",
        name,
    )
    if newest is None or newest["incarnation"] != incarnation:
        raise CompactionError(f"{name!r} was deleted while it was being compacted")
    if newest["rev"] >= snapshot.rev:
        return
    await connection.execute(
        "INSERT INTO collab_snapshots (name, rev, state, meta) VALUES ($1, $2, $3, $4)",
        name,
        snapshot.rev,
        snapshot.state,
        snapshot.meta,
    )
    if not keep:
        await connection.execute(
            "DELETE FROM collab_revisions WHERE name = $1 AND rev <= $2", name, snapshot.rev
        )
        await connection.execute(
            "DELETE FROM collab_snapshots WHERE name = $1 AND rev < $2", name, snapshot.rev
        )


def _records_or_gone(name: str, rev: int, rows: list[Any]) -> list[Record]:
    """The records of a `sql.RECORDS_AFTER` result; RevisionsGoneError if the next is not kept."""
    records = [_record(row) for row in rows if row["rev"] is not None]
    snapshot_rev = rows[0]["snapshot_rev"] if rows else 0
    if (records and records[0].rev != rev + 1) or (not records and snapshot_rev > rev):
        raise RevisionsGoneError(f"{name!r}: revisions after {rev} were compacted away")
    _check_follow(name, rev, records)
    return records


def _check_follow(name: str, rev: int, records: list[Record]) -> None:
    for expected, record in enumerate(records, start=rev + 1):
        if record.rev != expected:
            raise CorruptDocumentError(
                "postgresql:collab_revisions", record.rev, f"{name!r}: rev {expected} is missing"
            )
