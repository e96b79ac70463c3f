"""The ack table: the last op each text client had applied, kept across restarts.

A client re-sends its in-flight op with the same `seq` after a reconnect: an op already
applied must be acked again, never applied twice, however long the client was away. The
table is rebuilt from the log's origins (``ot:<client>:<seq>``) and travels in each
snapshot's metadata, so compaction, unloading and restarts keep it.

It remembers at most `limit` clients (`--max-remembered-clients`), the least recent dropped
first. What it dropped is not silently forgotten: `forgotten` is the highest revision at
which a dropped client's op was acked, kept in the metadata too. A client the table does
not hold that comes back with revision `r > forgotten` had no op applied after `r` (its
entry would be newer than every dropped one), so `0` is the truth for its in-flight op; at
or below `forgotten` the table cannot know, and says so (`None`) instead of `0`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from collab.wire import parse_text_origin

if TYPE_CHECKING:
    from collab.storage.contract import StoredDocument

MAX_REMEMBERED_CLIENTS = 100_000
META_VERSION = 2
V1_LIMIT = 10_000
"""How many clients tables written as metadata version 1 held at most: a full one may
have dropped clients acked at or before its least recent entry."""


class AckTable:
    """Text client id -> (last applied seq, its revision), the least recent dropped first."""

    def __init__(self, limit: int = MAX_REMEMBERED_CLIENTS) -> None:
        self.limit = limit
        self.forgotten: int | None = None  # the highest ack revision of a dropped client
        self._last: dict[str, tuple[int, int]] = {}

    def get(self, client: str) -> tuple[int, int] | None:
        return self._last.get(client)

    def acked(self, client: str, rev: int | None) -> int | None:
        """The highest seq of `client` applied (0: none), for a client at revision `rev`
        (None: it has none); None when the table cannot know: it dropped clients acked at
        `rev` or later, and this one may have been among them."""
        known = self._last.get(client)
        if known is not None:
            return known[0]
        if self.forgotten is None or (rev is not None and rev > self.forgotten):
            return 0
        return None

    def applied(self, client: str, seq: int, rev: int) -> None:
        """The client's op `seq` is revision `rev` (or was acked at `rev`)."""
        self._last.pop(client, None)
        self._last[client] = (seq, rev)
        if len(self._last) > self.limit:
            self._forget(self._last.pop(next(iter(self._last)))[1])

    def _forget(self, rev: int) -> None:
        self.forgotten = rev if self.forgotten is None else max(self.forgotten, rev)

    def __len__(self) -> int:
        return len(self._last)

    def encode(self) -> bytes:
        """The table as snapshot metadata (JSON, least recent first)."""
        table = [[client, seq, rev] for client, (seq, rev) in self._last.items()]
        meta = {"version": META_VERSION, "forgotten": self.forgotten, "acks": table}
        return json.dumps(meta, separators=(",", ":")).encode()

    @classmethod
    def from_stored(cls, stored: StoredDocument | None, limit: int) -> AckTable:
        """The table as the store has it: the snapshot's, then the records' origins."""
        if stored is None:
            return cls(limit)
        acks = cls.decode(stored.snapshot_meta, limit)
        for record in stored.records:
            parsed = parse_text_origin(record.origin)
            if parsed is not None:
                acks.applied(parsed[0], parsed[1], record.rev)
        return acks

    @classmethod
    def decode(cls, meta: bytes, limit: int = MAX_REMEMBERED_CLIENTS) -> AckTable:
        """The table from snapshot metadata; empty for snapshots written without it.

        Raises ValueError when the metadata cannot be read: starting with an empty table
        would apply resubmitted ops twice, so the document refuses to load instead.
        """
        table = cls(limit)
        if not meta:
            return table
        try:
            decoded = json.loads(meta)
            entries = decoded["acks"]
            forgotten = decoded.get("forgotten")
            if forgotten is not None:
                table._forget(int(forgotten))
            elif decoded["version"] == 1 and len(entries) >= V1_LIMIT:
                table._forget(int(entries[0][2]))
            for client, seq, rev in entries:
                table.applied(str(client), int(seq), int(rev))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"snapshot metadata unreadable: {error!r}") from None
        return table
