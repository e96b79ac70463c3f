"""The tables of `PostgresStore`, created and migrated by collab itself (docs/storage.md),
and the statements the store runs against them.

`MIGRATIONS` is the schema's whole history, oldest first; never edit one that was released,
add the next. `migrate` applies the missing ones in order, in one transaction, holding a
transaction-scoped advisory lock, so processes that start together do not race: the
first migrates, the others wait and then find nothing to do. A database whose schema is
newer than this collab knows is refused rather than written.
"""

from __future__ import annotations

import hashlib
from typing import Any


class SchemaError(RuntimeError):
    """The database cannot hold collab's tables as this version writes them."""


def lock_key(text: str) -> int:
    """A 64-bit advisory lock key for `text`: the first 8 bytes of its BLAKE2b, signed.

    Computed here rather than with the server's `hashtextextended`, so the key is the same
    whatever the server's version, and can go into a statement as an integer literal.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: The key every process takes while it migrates the schema.
SCHEMA_LOCK = lock_key("collab schema migration")

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS collab_schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
)
"""

_V1 = """
CREATE TABLE collab_documents (
    name text COLLATE "C" PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT clock_timestamp(),
    incarnation bigint GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE collab_revisions (
    name text COLLATE "C" NOT NULL REFERENCES collab_documents ON DELETE CASCADE,
    rev bigint NOT NULL CHECK (rev > 0),
    time double precision NOT NULL,
    origin text NOT NULL,
    "user" text,
    update bytea NOT NULL,
    client text COLLATE "C",
    seq bigint,
    PRIMARY KEY (name, rev),
    CHECK ((client IS NULL) = (seq IS NULL))
);

CREATE UNIQUE INDEX collab_revisions_client_seq
    ON collab_revisions (name, client, seq) WHERE client IS NOT NULL;

CREATE TABLE collab_snapshots (
    name text COLLATE "C" NOT NULL REFERENCES collab_documents ON DELETE CASCADE,
    rev bigint NOT NULL CHECK (rev > 0),
    state bytea NOT NULL,
    meta bytea NOT NULL DEFAULT ''::bytea,
    created timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, rev)
);
"""

# Revoked tokens (`collab token revoke`): every process polls them (collab.access.live).
_V2 = """
CREATE TABLE collab_revocations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    before double precision NOT NULL,
    token_id text,
    "user" text,
    created timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

# A name's generation outlives its document (collab.storage.generations): no foreign key.
_V3 = """
CREATE TABLE collab_generations (
    name text COLLATE "C" PRIMARY KEY,
    generation bytea NOT NULL
);
"""

#: (version, what it does, SQL), oldest first.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "documents, revisions and snapshots", _V1),
    (2, "revoked tokens", _V2),
    (3, "document generations", _V3),
]
LATEST = MIGRATIONS[-1][0]


async def migrate(connection: Any) -> int:
    """Bring the schema up to `LATEST` (an asyncpg connection); returns the version found.

    Raises `SchemaError` for a database that is not UTF-8 or whose schema is newer.
    """
    encoding = await connection.fetchval("SHOW server_encoding")
    if encoding.upper() not in ("UTF8", "UTF-8"):
        raise SchemaError(
            f"the database's encoding is {encoding}: collab needs UTF8 "
            "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
        )
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await connection.execute(VERSION_TABLE)
        found = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM collab_schema_version"
        )
        if found > LATEST:
            raise SchemaError(
                f"the database's collab schema is version {found}; this collab knows up to "
                f"{LATEST}: upgrade collab"
            )
        for version, description, sql in MIGRATIONS:
            if version > found:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO collab_schema_version (version, description) VALUES ($1, $2)",
                    version,
                    description,
                )
    return found


# ---------------------------------------------------------------------- the store's statements

# Records after $2 (at most $3), and the newest snapshot's rev: one row even when there is
# no record, so "nothing new" and "compacted away" are told apart in one round trip.
RECORDS_AFTER = """
SELECT s.snapshot_rev, r.rev, r.time, r.origin, r."user", r.update
FROM (SELECT coalesce(max(rev), 0) AS snapshot_rev FROM collab_snapshots WHERE name = $1) s
LEFT JOIN LATERAL (
    SELECT rev, time, origin, "user", update FROM collab_revisions
    WHERE name = $1 AND rev > $2 ORDER BY rev LIMIT $3
) r ON true
ORDER BY r.rev
"""

# Insert records $3.. (revs $2, $2 + 1, ...) if they continue the document; the document's
# row is made with its first records. Returns the last rev found and how many went in.
INSERT = """
WITH last AS (
    SELECT greatest(
        (SELECT coalesce(max(rev), 0) FROM collab_revisions WHERE name = $1),
        (SELECT coalesce(max(rev), 0) FROM collab_snapshots WHERE name = $1)) AS rev
), document AS (
    INSERT INTO collab_documents (name) SELECT $1 FROM last WHERE last.rev = 0 AND $2 = 1
    ON CONFLICT (name) DO NOTHING
), inserted AS (
    INSERT INTO collab_revisions (name, rev, time, origin, "user", update, client, seq)
    SELECT $1, r.* FROM unnest(
        $3::bigint[], $4::float8[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::bigint[]
    ) AS r
    WHERE (SELECT rev FROM last) = $2 - 1
    RETURNING 1
)
SELECT (SELECT rev FROM last) AS last, (SELECT count(*) FROM inserted) AS inserted
"""

HEAD = """
SELECT d.incarnation, s.rev, s.state, s.meta FROM collab_documents d
LEFT JOIN LATERAL (
    SELECT rev, state, meta FROM collab_snapshots WHERE name = d.name AND rev <= $2
    ORDER BY rev DESC LIMIT 1
) s ON true
WHERE d.name = $1
"""

RECORDS_BETWEEN = """
SELECT rev, time, origin, "user", update FROM collab_revisions
WHERE name = $1 AND rev > $2 AND rev <= $3 ORDER BY rev
"""

LIST = """
SELECT d.name,
    greatest(
        (SELECT coalesce(max(rev), 0) FROM collab_revisions WHERE name = d.name),
        (SELECT coalesce(max(rev), 0) FROM collab_snapshots WHERE name = d.name)) AS rev,
    (SELECT coalesce(sum(octet_length(update) + octet_length(origin)), 0)
        FROM collab_revisions WHERE name = d.name)
    + (SELECT coalesce(sum(octet_length(state) + octet_length(meta)), 0)
        FROM collab_snapshots WHERE name = d.name) AS size
FROM collab_documents d ORDER BY d.name
"""

HISTORY_START = """
SELECT (SELECT min(rev) FROM collab_revisions WHERE name = d.name),
    ARRAY(SELECT rev FROM collab_snapshots WHERE name = d.name ORDER BY rev)
FROM collab_documents d WHERE d.name = $1
"""
