"""What goes wrong reading stored bytes: one error shape, naming the file and the offset.

Every reader of the storage package's files (logs, snapshots, recordings) reports bad
bytes as a `FileFormatError(path, offset, reason)`; the subclasses only say which kind of
file, so a caller that cares catches the subclass and one that does not catches the base.
"""

from __future__ import annotations

from pathlib import Path


class FileFormatError(ValueError):
    """Bytes in `path` at `offset` that are not what the format says; nothing was changed."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at offset {offset}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


class CorruptDocumentError(FileFormatError):
    """A document's stored files (name, log, snapshot) are damaged: it cannot be read."""


class HistoryError(FileFormatError):
    """The retained history cannot be followed (a segment is missing, an update fails)."""


class RecordingError(FileFormatError):
    """A `collab serve --record` file cannot be read."""


class CompactionError(Exception):
    """A snapshot was refused: it is not the state of the log it should replace."""
