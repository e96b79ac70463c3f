"""PostgresStore's rows: a record as a row and back, and what one transaction runs for a
document (its commit, the inserts, a snapshot's write), apart from the store's pool, locks
and compaction (`postgres.py`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

from collab.storage import postgres_schema as sql
from collab.storage.contract import (
    CommitConflictError,
    Record,
    RevisionsGoneError,
    Snapshot,
    StoreUnavailableError,
    check_next_revs,
)
from collab.storage.errors import CompactionError, CorruptDocumentError
from collab.wire import parse_text_origin

MAX_SEQ = 2**63 - 1

UNAVAILABLE = (  # what says the database cannot be reached now: nothing was stored
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, crash, cannot connect now
)


def record(row: Any) -> Record:
    return Record(row["rev"], row["time"], row["origin"], row["user"], bytes(row["update"]))


def text_client(origin: str) -> tuple[str | None, int | None]:
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


def record_columns(records: Sequence[Record]) -> list[list[Any]]:
    """The records as `sql.INSERT` takes them: rev, time, origin, user, update, client, seq."""
    clients = [text_client(record.origin) for record in records]
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
def translated(what: str, name: str) -> Iterator[None]:
    """Turn the driver's errors into the store's: conflicts and an unreachable server."""
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        which = "(client, seq)" if "client_seq" in (error.constraint_name or "") else "revision"
        raise CommitConflictError(f"{name!r}: {what}: {which} already stored: {error}") from None
    except UNAVAILABLE as error:
        message = f"{name!r}: {what}: PostgreSQL unavailable: {type(error).__name__}: {error}"
        raise StoreUnavailableError(message) from error


class PostgresCommit:
    """One commit: reads and inserts on the connection holding the document's lock."""

    def __init__(self, connection: asyncpg.Connection, name: str) -> None:
        self.connection, self.name = connection, name
        self.error: BaseException | None = None

    async def records_after(self, rev: int) -> list[Record]:
        try:
            with translated("records_after", self.name):
                rows = await self.connection.fetch(sql.RECORDS_AFTER, self.name, rev, None)
            return records_or_gone(self.name, rev, rows)
        except BaseException as error:
            self.error = error
            raise

    async def append(self, records: Sequence[Record]) -> None:
        if not records:
            return
        try:
            await insert(self.connection, self.name, records)
        except BaseException as error:
            self.error = error
            raise


async def insert(connection: asyncpg.Connection, name: str, records: Sequence[Record]) -> None:
    """Insert `records` in the open transaction; ValueError unless they continue the log."""
    first = records[0].rev
    check_next_revs(first - 1, records)
    columns = record_columns(records)
    with translated("append", name):
        row = await connection.fetchrow(sql.INSERT, name, first, *columns)
    if row["inserted"] != len(records):
        raise ValueError(f"record rev {first} does not follow rev {row['last']}")


async def write_snapshot(
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


def records_or_gone(name: str, rev: int, rows: list[Any]) -> list[Record]:
    """The records of a `sql.RECORDS_AFTER` result; RevisionsGoneError if the next is not kept."""
    records = [record(row) for row in rows if row["rev"] is not None]
    snapshot_rev = rows[0]["snapshot_rev"] if rows else 0
    if (records and records[0].rev != rev + 1) or (not records and snapshot_rev > rev):
        raise RevisionsGoneError(f"{name!r}: revisions after {rev} were compacted away")
    check_follow(name, rev, records)
    return records


def check_follow(name: str, rev: int, records: list[Record]) -> None:
    for expected, record in enumerate(records, start=rev + 1):
        if record.rev != expected:
            raise CorruptDocumentError(
                "postgresql:collab_revisions", record.rev, f"{name!r}: rev {expected} is missing"
            )
