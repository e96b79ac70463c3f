"""The ack table: the last op each text client had applied, kept across restarts.

A client re-sends its in-flight op with the same `seq` after a reconnect: an op already
applied must be acked again, never applied twice, however long the client was away. The
table is rebuilt from the log's origins (``ot:<client>:<seq>``) and travels in each
snapshot's metadata, so compaction, unloading and restarts keep it.
"""

from __future__ import annotations

import json

MAX_REMEMBERED_CLIENTS = 10_000
META_VERSION = 1


class AckTable:
    """Text client id -> (last applied seq, its revision), the least recent dropped first."""

    def __init__(self, limit: int = MAX_REMEMBERED_CLIENTS) -> None:
        self.limit = limit
        self._last: dict[str, tuple[int, int]] = {}

    def get(self, client: str) -> tuple[int, int] | None:
        return self._last.get(client)

    def last_seq(self, client: str) -> int:
        known = self._last.get(client)
        return known[0] if known is not None else 0

    def applied(self, client: str, seq: int, rev: int) -> None:
        """The client's op `seq` is revision `rev` (or was acked at `rev`)."""
        self._last.pop(client, None)
        self._last[client] = (seq, rev)
        if len(self._last) > self.limit:
            del self._last[next(iter(self._last))]

    def __len__(self) -> int:
        return len(self._last)

    def encode(self) -> bytes:
        """The table as snapshot metadata (JSON, least recent first)."""
        table = [[client, seq, rev] for client, (seq, rev) in self._last.items()]
        return json.dumps({"version": META_VERSION, "acks": table}).encode()

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
            entries = json.loads(meta)["acks"]
            for client, seq, rev in entries:
                table.applied(str(client), int(seq), int(rev))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"snapshot metadata unreadable: {error!r}") from None
        return table
