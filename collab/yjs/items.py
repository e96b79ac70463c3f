"""The shared text's items in document order, as Yjs orders them: Yjs relative positions.

A Yjs peer's caret is a *relative position*: the id (client, clock) of the character it
sits before, clocks counting UTF-16 units. Turning a code-point index into such an id and
back needs the text's items in document order with their ids, which pycrdt does not expose
(its ``sticky_index`` walks the text in UTF-8 bytes but adds the byte offset to the clock,
so it is wrong inside any item holding non-ASCII text: notes/pycrdt-facts.md).

`TextItems` keeps that order itself, from the same updates pycrdt applies, decoded by
`collab.yjs.update`: each item is integrated as Yjs does it (YATA: origin, right origin,
conflicts ordered by client id), items are split where an origin or a deletion points
inside them, and deletions are marked. Only the shape is kept (ids, UTF-16 lengths and the
clocks of high surrogates), never the characters. Positions are code points; the helpers
follow ``Y.createRelativePositionFromTypeIndex`` and
``Y.createAbsolutePositionFromRelativePosition`` (a deleted item resolves to where it was).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from collab.yjs.update import DELETED, FORMAT, GC, ID, SKIP, Struct, Update, decode_update


class _Item:
    __slots__ = (
        "client",
        "clock",
        "countable",
        "deleted",
        "highs",
        "left",
        "length",
        "origin",
        "right",
        "right_origin",
    )

    def __init__(self, s: Struct, countable: bool) -> None:
        self.client, self.clock, self.length, self.highs = s.client, s.clock, s.length, s.highs
        self.origin, self.right_origin = s.origin, s.right_origin
        self.left: _Item | None = None
        self.right: _Item | None = None
        self.deleted = s.ref == DELETED
        self.countable = countable

    @property
    def visible(self) -> int:
        """Code points this item shows (0 when deleted or not characters)."""
        return 0 if self.deleted or not self.countable else self.length - len(self.highs)


class TextItems:
    """The items of one root text, in document order (a doubly linked list)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start: _Item | None = None
        self.state: dict[int, int] = {}  # client -> next clock, text or not
        self._clocks: dict[int, list[int]] = {}  # client -> start clocks of its text items
        self._items: dict[int, list[_Item]] = {}  # the same items, same order

    @classmethod
    def from_state(cls, name: str, state: bytes) -> TextItems:
        items = cls(name)
        items.apply(state)
        return items

    # ------------------------------------------------------------------ positions

    def length(self) -> int:
        """The text's length in code points."""
        n, item = 0, self.start
        while item is not None:
            n += item.visible
            item = item.right
        return n

    def id_at(self, index: int) -> ID | None:
        """The id of the character at code point `index`; None at (or past) the end.

        As ``Y.createRelativePositionFromTypeIndex(text, index)`` (assoc 0) picks it.
        """
        item = self.start
        while item is not None:
            n = item.visible
            if index < n:
                return item.client, item.clock + _cp_to_utf16(item, index)
            index -= n
            item = item.right
        return None

    def index_of(self, client: int, clock: int, assoc: int = 0) -> int | None:
        """The code point index of item id (client, clock), None when the text lacks it.

        A deleted character resolves to where it was; an id inside a surrogate pair to
        the character's start. As ``Y.createAbsolutePositionFromRelativePosition``.
        """
        target = self._find(client, clock)
        if target is None:
            return None
        index = 0
        if target.visible:
            index = _utf16_to_cp(target, clock - target.clock) + (0 if assoc >= 0 else 1)
        item = target.left
        while item is not None:
            index += item.visible
            item = item.left
        return index

    # ------------------------------------------------------------------ updates

    def apply(self, update: bytes | Update) -> None:
        """Integrate an update pycrdt applied (all its dependencies known, as the server
        checks before applying). Raises ValueError when a struct cannot be integrated."""
        decoded = decode_update(update) if isinstance(update, bytes | bytearray) else update
        queues: dict[int, deque[Struct]] = {}
        for s in decoded.structs:
            queues.setdefault(s.client, deque()).append(s)
        order = sorted(queues, reverse=True)  # as Yjs reads them: highest client first
        while any(queues.values()):
            moved = False
            for client in order:
                queue = queues[client]
                while queue and self._ready(queue[0]):
                    self._integrate(queue.popleft())
                    moved = True
            if not moved:
                raise ValueError("update depends on structs this text does not have")
        for client, clock, length in decoded.deletes:
            self._delete(client, clock, length)

    def _ready(self, s: Struct) -> bool:
        for dep in (s.origin, s.right_origin, s.parent):
            if dep is not None and dep[1] >= self.state.get(dep[0], 0):
                return False
        return True

    def _integrate(self, s: Struct) -> None:
        known = self.state.get(s.client, 0)
        end = s.clock + s.length
        if end <= known:
            return  # already integrated
        if s.clock > known:
            raise ValueError(f"struct {s.client}:{s.clock} leaves a gap after clock {known}")
        if s.clock < known:  # partly known: integrate the rest, after what is known
            highs = tuple(h for h in s.highs if h >= known)
            origin = (s.client, known - 1)
            s = s._replace(clock=known, length=end - known, highs=highs, origin=origin)
        self.state[s.client] = end
        if s.ref in (GC, SKIP):
            return
        if s.origin is not None or s.right_origin is not None:
            left = self._clean_end(s.origin) if s.origin is not None else None
            right = self._clean_start(s.right_origin) if s.right_origin is not None else None
            if left is None and right is None:
                return  # its neighbours are not in this text: neither is it
        elif s.parent is None and s.root == self.name:
            left = right = None
        else:
            return  # another type's item
        item = _Item(s, s.ref not in (DELETED, FORMAT))
        self._place(item, left, right)
        self._add(item)

    def _place(self, item: _Item, left: _Item | None, right: _Item | None) -> None:
        """YATA: between `left` (its origin) and `right` (its right origin), after the
        concurrent items that must come first."""
        o = left.right if left is not None else self.start
        conflicting: set[_Item] = set()
        before_origin: set[_Item] = set()
        while o is not None and o is not right:
            before_origin.add(o)
            conflicting.add(o)
            if item.origin == o.origin:
                if o.client < item.client:
                    left = o
                    conflicting.clear()
                elif item.right_origin == o.right_origin:
                    break
            elif o.origin is not None and (o_origin := self._find(*o.origin)) in before_origin:
                if o_origin not in conflicting:
                    left = o
                    conflicting.clear()
            else:
                break
            o = o.right
        item.left = left
        if left is not None:
            item.right, left.right = left.right, item
        else:
            item.right, self.start = self.start, item
        if item.right is not None:
            item.right.left = item

    def _delete(self, client: int, clock: int, length: int) -> None:
        end = clock + length
        clocks = self._clocks.get(client)
        if not clocks:
            return
        i = max(bisect_right(clocks, clock) - 1, 0)
        items = self._items[client]
        while i < len(items) and items[i].clock < end:
            item = items[i]
            if item.clock + item.length > clock:
                if item.clock < clock:
                    self._split(item, clock - item.clock)
                    i += 1
                    continue
                if item.clock + item.length > end:
                    self._split(item, end - item.clock)
                item.deleted = True
            i += 1

    # ------------------------------------------------------------------ the store

    def _find(self, client: int, clock: int) -> _Item | None:
        clocks = self._clocks.get(client)
        if not clocks:
            return None
        i = bisect_right(clocks, clock) - 1
        if i < 0:
            return None
        item = self._items[client][i]
        return item if clock < item.clock + item.length else None

    def _clean_start(self, id_: ID) -> _Item | None:
        item = self._find(*id_)
        if item is not None and item.clock != id_[1]:
            item = self._split(item, id_[1] - item.clock)
        return item

    def _clean_end(self, id_: ID) -> _Item | None:
        item = self._find(*id_)
        if item is not None and item.clock + item.length - 1 != id_[1]:
            self._split(item, id_[1] - item.clock + 1)
        return item

    def _split(self, item: _Item, diff: int) -> _Item:
        """Cut `item` after `diff` clocks; returns the right part (as Yjs splits items)."""
        at = item.clock + diff
        right = _Item.__new__(_Item)
        right.client, right.clock, right.length = item.client, at, item.length - diff
        right.highs = tuple(h for h in item.highs if h >= at)
        right.origin, right.right_origin = (item.client, at - 1), item.right_origin
        right.deleted, right.countable = item.deleted, item.countable
        right.left, right.right = item, item.right
        if item.right is not None:
            item.right.left = right
        item.right = right
        item.length = diff
        item.highs = tuple(h for h in item.highs if h < at)
        clocks = self._clocks[item.client]
        i = bisect_right(clocks, item.clock)
        clocks.insert(i, at)
        self._items[item.client].insert(i, right)
        return right

    def _add(self, item: _Item) -> None:
        clocks = self._clocks.setdefault(item.client, [])
        i = bisect_right(clocks, item.clock)
        clocks.insert(i, item.clock)
        self._items.setdefault(item.client, []).insert(i, item)


def _cp_to_utf16(item: _Item, cp: int) -> int:
    """The UTF-16 offset in `item` of its code point `cp`."""
    units = cp
    for rank, high in enumerate(item.highs):
        if high - item.clock - rank >= cp:
            break
        units += 1
    return units


def _utf16_to_cp(item: _Item, units: int) -> int:
    """The code point offset in `item` of UTF-16 offset `units` (inside a pair: its start)."""
    return units - sum(1 for high in item.highs if high - item.clock < units)
