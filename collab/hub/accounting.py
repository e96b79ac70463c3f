"""Storage accounting: how much log a document has written since its last snapshot.

The runner counts what it commits and compacts when the log passes a limit; the session
knows nothing of it (it only hears where the log starts again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collab.config import Settings
from collab.storage.contract import Record


@dataclass
class LogSize:
    """The log since the last snapshot: when it grows past a limit, a snapshot is due."""

    records: int = 0
    bytes: int = 0

    def add(self, records: Sequence[Record]) -> None:
        self.records += len(records)
        self.bytes += sum(len(record.update) for record in records)

    def merge(self, other: LogSize) -> None:
        """Count `other`'s records too (a compaction that failed: its log is still there)."""
        self.records += other.records
        self.bytes += other.bytes

    def due(self, settings: Settings) -> bool:
        return self.records >= settings.compact_log_records or (
            self.bytes >= settings.compact_log_bytes
        )
