"""Where revocations are stored, so that they survive restarts and reach every process.

- The file store: ``<data-dir>/revocations.json``, replaced atomically by `collab token
  revoke` (which may run while the server holds the directory's lock: this one file is
  shared on purpose, and writers take ``revocations.lock`` so that two never lose each
  other's rule). The server looks at the file's metadata every poll and reads it when it
  changed.
- PostgreSQL: the table ``collab_revocations`` (migration 2); every process polls its row
  count and largest id, and reads the rules when either changed (a row whose id was given
  out earlier but committed later changes the count, so it is not missed).

A damaged revocations file stops the server's start (refusing access it cannot judge is
safer than granting it); once running, a file that cannot be read is logged and the rules
known are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from collab.access.revocations import Revocation, dumps, loads
from collab.storage.durable import write_new_file

FILE = "revocations.json"
LOCK = "revocations.lock"


class FileRevocations:
    """Revocations in a file of the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    async def read_since(self, cursor: object) -> tuple[Sequence[Revocation], object]:
        """All the rules when the file changed since `cursor` (adding one twice is harmless)."""
        signature = self._signature()
        if cursor is not None and signature == cursor:
            return [], cursor
        return self.read(), signature

    def read(self) -> list[Revocation]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return loads(data)
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None

    def add(self, rule: Revocation) -> None:
        """Store one more rule (atomically; concurrent writers wait for each other)."""
        with self._locked():
            rules = self.read()
            rules.append(rule)
            write_new_file(self.path, dumps(rules))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def close(self) -> None:
        pass


COUNT = "SELECT count(*) AS n, coalesce(max(id), 0) AS last FROM collab_revocations"
ALL = 'SELECT before, token_id, "user" FROM collab_revocations ORDER BY id'
INSERT = 'INSERT INTO collab_revocations (before, token_id, "user") VALUES ($1, $2, $3)'


class PostgresRevocations:
    """Revocations in PostgreSQL, on a connection of their own (opened again when lost)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._connection: Any = None

    async def _connect(self) -> Any:
        import asyncpg

        from collab.storage.postgres_schema import migrate

        if self._connection is None or self._connection.is_closed():
            connection = await asyncpg.connect(self.dsn, timeout=5, command_timeout=5)
            try:
                await migrate(connection)
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
        return self._connection

    async def read_since(self, cursor: object) -> tuple[Sequence[Revocation], object]:
        try:
            connection = await self._connect()
            counted = await connection.fetchrow(COUNT)
            signature = (counted["n"], counted["last"])
            if cursor is not None and signature == cursor:
                return [], cursor
            rows = await connection.fetch(ALL)
        except BaseException:
            await self.close()
            raise
        return [Revocation(row["before"], row["token_id"], row["user"]) for row in rows], signature

    async def add(self, rule: Revocation) -> None:
        connection = await self._connect()
        await connection.execute(INSERT, rule.before, rule.token_id, rule.user)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
