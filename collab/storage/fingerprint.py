"""Whether two Yjs states hold the same document: what compaction checks before it writes.

Byte equality of two updates would be too strict (one state has several valid encodings),
so the comparison is over what an encoding cannot hide: the state vector (which changes
exist), the delete set (which of them were deleted), the root names, and the text of each
root read as a Y.Text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pycrdt import Doc, Text

from collab.storage.errors import CompactionError
from collab.yjs.crdt import InvalidUpdateError, apply_update
from collab.yjs.protocol import ProtocolError, read_var_uint

if TYPE_CHECKING:
    from collab.storage.contract import Record


def verify_snapshot(
    old_snapshot: bytes | None, records: Sequence[Record], new_snapshot: bytes
) -> None:
    """Raise CompactionError unless `new_snapshot` holds the same document as old + records."""
    expected = Doc()
    if old_snapshot is not None:
        apply_checked(expected, old_snapshot, "the current snapshot")
    for record in records:
        apply_checked(expected, record.update, f"the update of rev {record.rev}")
    candidate = Doc()
    apply_checked(candidate, new_snapshot, "the new snapshot")
    if fingerprint(expected) != fingerprint(candidate):
        raise CompactionError("the snapshot differs from the log it should replace")


def apply_checked(doc: Doc, update: bytes, what: str) -> None:
    """Apply `update` to `doc`; CompactionError naming `what` when pycrdt refuses it."""
    try:
        apply_update(doc, update)
    except InvalidUpdateError as error:
        raise CompactionError(f"cannot apply {what}: {error}") from None


def fingerprint(doc: Doc) -> tuple[object, ...]:
    """What makes two documents the same (reading the roots as texts creates them)."""
    try:
        state = _read_state_vector(doc.get_state())
        # An update relative to the full state vector holds no items, only the delete set.
        deletes = _read_delete_set(doc.get_update(doc.get_state()))
    except ProtocolError as error:
        raise CompactionError(f"unexpected Yjs encoding: {error}") from None
    names = sorted(doc.keys())
    texts = [str(doc.get(name, type=Text)) for name in names]
    return state, deletes, names, texts


def _read_state_vector(data: bytes) -> dict[int, int]:
    count, pos = read_var_uint(data, 0)
    clocks = {}
    for _ in range(count):
        client, pos = read_var_uint(data, pos)
        clocks[client], pos = read_var_uint(data, pos)
    return clocks


def _read_delete_set(update: bytes) -> dict[int, list[tuple[int, int]]]:
    """The delete set of an item-less update, as merged (start, end) ranges per client."""
    structs, pos = read_var_uint(update, 0)
    if structs:
        raise CompactionError("unexpected items in a delete-set update")
    clients, pos = read_var_uint(update, pos)
    result: dict[int, list[tuple[int, int]]] = {}
    for _ in range(clients):
        client, pos = read_var_uint(update, pos)
        count, pos = read_var_uint(update, pos)
        ranges = []
        for _ in range(count):
            clock, pos = read_var_uint(update, pos)
            length, pos = read_var_uint(update, pos)
            ranges.append((clock, clock + length))
        if merged := _merge(ranges):
            result[client] = merged
    return result


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
