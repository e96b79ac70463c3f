"""Which clocks a document has deleted, kept beside it without pycrdt.

A reconnecting Yjs peer's sync step 2 re-sends its whole delete set with the items the
server lacks (often none). Such an update changes nothing unless it deletes something the
document still holds, and then only it must become a revision. pycrdt answers that by
encoding the document's delete set before and after applying it; a document that keeps no
pycrdt document (`collab.session.document`, detached) asks this set instead.

The set is fed the delete set of every update the document accepts: a range in it is
deleted for good (Yjs never undeletes a clock). It may lack deletions the document holds
(items sent as deleted content, deletions from before it was started): then a re-sent
deletion is taken for a new one and logged once more, which changes nothing for anyone. It
never holds a clock the document has not deleted, so it never hides a real change.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from collab.yjs.protocol import read_var_uint, write_var_uint
from collab.yjs.scan import Summary
from collab.yjs.update import decode_update

try:  # built from collab/yjs/_scan.c (`collab.yjs.scan`)
    from collab.yjs._scan import deletes_unknown as _native_deletes_unknown
    from collab.yjs._scan import encode_deletes as _native_encode_deletes
except ImportError:  # in Python: the same answers, a Python object per range
    _native_deletes_unknown = _native_encode_deletes = None

Range = tuple[int, int, int]
"""(client, first clock, length)."""
FEW = 16
"""Ranges of one client in one message merged one at a time; more are merged in one pass."""


class DeleteSet:
    """Per client, its deleted clocks as sorted, disjoint, non-adjacent ranges."""

    __slots__ = ("_encoded", "_ends", "_starts")

    def __init__(self) -> None:
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}  # exclusive
        self._encoded: bytes | None = None  # `as_update`, until the next `add`

    def __len__(self) -> int:
        """The number of ranges kept."""
        return sum(map(len, self._starts.values()))

    def add(self, ranges: Iterable[Range]) -> None:
        """Remember `ranges` as deleted (merged with the ranges they touch).

        A message may hold millions of ranges in any order: past `FEW` of a client they are
        sorted, then merged into its lists in one pass (`_merge`), not inserted one at a
        time, which shifted the lists once per range (the square of the count)."""
        added: dict[int, list[tuple[int, int]]] = {}
        for client, clock, length in ranges:
            if length > 0:
                added.setdefault(client, []).append((clock, clock + length))
        if added:
            self._encoded = None
        for client, spans in added.items():
            starts = self._starts.setdefault(client, [])
            ends = self._ends.setdefault(client, [])
            if len(spans) <= FEW:
                for start, end in spans:
                    _insert(starts, ends, start, end)
            else:
                spans.sort()
                _merge(starts, ends, spans)

    @property
    def ranges(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """Client -> the starts of its ranges, and client -> their (exclusive) ends."""
        return self._starts, self._ends

    def covers(self, ranges: Iterable[Range]) -> bool:
        """Whether every clock of `ranges` is known deleted."""
        for client, clock, length in ranges:
            if length <= 0:
                continue
            starts = self._starts.get(client)
            if not starts:
                return False
            at = bisect_right(starts, clock) - 1
            if at < 0 or self._ends[client][at] < clock + length:
                return False
        return True

    def as_update(self) -> bytes:
        """The set as a Yjs update of deletions alone (kept until the next `add`): a peer
        coming back after an edit is sent it, so in C (~1 us a range in Python: 300,000
        ranges held the loop ~300 ms at each reconnect after an edit)."""
        if self._encoded is None and _native_encode_deletes is not None:
            self._encoded = _native_encode_deletes(self._starts, self._ends)
        if self._encoded is None:
            parts = [b"\x00", write_var_uint(len(self._starts))]
            for client, starts in self._starts.items():
                parts += (write_var_uint(client), write_var_uint(len(starts)))
                for start, end in zip(starts, self._ends[client], strict=True):
                    parts += (write_var_uint(start), write_var_uint(end - start))
            self._encoded = b"".join(parts)
        return self._encoded


def _insert(starts: list[int], ends: list[int], start: int, end: int) -> None:
    """Merge one range into the lists in place (the ranges after it shift once)."""
    first = bisect_left(ends, start)  # the first range ending at or after `start`
    last = bisect_right(starts, end)  # past the last range starting at or before `end`
    if first < last:
        start = min(start, starts[first])
        end = max(end, ends[last - 1])
    starts[first:last] = [start]
    ends[first:last] = [end]


def _merge(starts: list[int], ends: list[int], spans: list[tuple[int, int]]) -> None:
    """Merge sorted `spans` into the lists in place: a bisection per span; only the window
    of kept ranges the spans reach is rebuilt, and the ranges after it shift once."""
    low = bisect_left(ends, spans[0][0])
    high = bisect_right(starts, spans[-1][1], low)
    new_starts: list[int] = []
    new_ends: list[int] = []
    kept = low  # the first kept range not yet copied or merged
    for start, end in spans:
        first = bisect_left(ends, start, kept, high)  # the first kept one ending at or after start
        last = bisect_right(starts, end, first, high)  # past the last starting at or before end
        new_starts += starts[kept:first]
        new_ends += ends[kept:first]
        if first < last:
            start, end = min(start, starts[first]), max(end, ends[last - 1])
        if new_ends and start <= new_ends[-1]:  # touches the range written last
            new_ends[-1] = max(new_ends[-1], end)
        else:
            new_starts.append(start)
            new_ends.append(end)
        kept = last
    new_starts += starts[kept:high]
    new_ends += ends[kept:high]
    starts[low:high] = new_starts
    ends[low:high] = new_ends


def unknown_deletes(deleted: DeleteSet, update: bytes, summary: Summary) -> list[Range]:
    """The ranges of `update`'s delete set (`summary`: what its check gave) that `deleted`
    does not cover.

    A peer coming back re-sends its whole delete set, and a stranger may send a million
    ranges in one message again and again, one new among them: in C the ranges are looked
    up where they lie in the bytes, and only those not known become Python objects (in
    Python: ~1 us a range)."""
    if summary.deletes_at < 0:
        return [r for r in decode_update(update).deletes if r[2] > 0 and not deleted.covers([r])]
    return unknown_deletes_at(deleted, update, summary.deletes_at)


def unknown_deletes_at(deleted: DeleteSet, data: bytes, pos: int) -> list[Range]:
    """`unknown_deletes` of the delete set encoded at `data[pos:]` (checked already)."""
    if _native_deletes_unknown is None:
        ranges = read_delete_set(data, pos)
        return [r for r in ranges if r[2] > 0 and not deleted.covers([r])]
    return _native_deletes_unknown(data, pos, *deleted.ranges)  # type: ignore[no-any-return]


def read_delete_set(data: bytes, pos: int) -> list[Range]:
    """The delete set encoded at `data[pos:]` (the bytes were checked already)."""
    return delete_set_at(data, pos)[0]


def delete_set_at(data: bytes, pos: int) -> tuple[list[Range], int]:
    """The delete set encoded at `data[pos:]`, and the position after it; raises
    IndexError or ValueError (read_var_uint's ProtocolError) where the bytes end early."""
    ranges: list[Range] = []
    clients, pos = read_var_uint(data, pos)
    for _ in range(clients):
        client, pos = read_var_uint(data, pos)
        count, pos = read_var_uint(data, pos)
        for _ in range(count):
            clock, pos = read_var_uint(data, pos)
            length, pos = read_var_uint(data, pos)
            ranges.append((client, clock, length))
    return ranges, pos
