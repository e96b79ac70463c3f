"""Store records made by a real pycrdt document, and the text a stored document holds."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.storage.contract import Record, Snapshot, StoredDocument


class Writer:
    """A pycrdt document whose edits become records, one revision each."""

    def __init__(self) -> None:
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.rev = 0

    def record(self, chunk: str) -> Record:
        """Append `chunk` to the text: the next revision's record."""
        before = self.doc.get_state()
        self.text.insert(len(self.text), chunk)
        self.rev += 1
        return Record(self.rev, 0.0, "yjs:1", "zoë 😀", self.doc.get_update(before))

    def snapshot(self) -> Snapshot:
        return Snapshot(self.rev, self.doc.get_update(), b"")


def text_of(stored: StoredDocument) -> str:
    """The text of a stored document: its snapshot, then its records."""
    doc = Doc()
    text = doc.get("text", type=Text)
    if stored.snapshot is not None:
        doc.apply_update(stored.snapshot)
    for record in stored.records:
        doc.apply_update(record.update)
    return str(text)
