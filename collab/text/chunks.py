"""A long text kept in pieces, so an edit or a position costs about the same at any length.

The session follows the shared text for its text peers (`collab.session.document`): every
revision is applied to it, and every Yjs delta (UTF-8 byte offsets) and every op
(code points) is converted between the two units on it. With one Python ``str`` each of
those is a pass over the whole text (145 ms per 2 KB append at 16 MiB of a text with a few
emoji, `bench/append_cost.py`). `TextChunks` keeps
the text as pieces of a few thousand code points, each with its length in code points and
in UTF-8 bytes, in groups that carry their totals: finding a position is a bisection over
the groups' starts and then over one group's pieces, and an edit rewrites the pieces it
touches. The whole ``str`` is built only where it is really needed (`str()`: a welcome,
a whole-text diff, the CLI).

Positions inside a piece are converted by `collab.text.positions`, which stays the one
place that knows the units; this module only adds up whole pieces' lengths.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, pairwise
from operator import attrgetter

from collab.text import positions
from collab.text.ops import Op, OpError, apply, compose, normalize, require_base

PIECE = 4096
"""Code points a piece is cut to; a piece grows to twice that before it is cut again."""
GROUP = 128
"""Pieces a group is cut to; a group grows to twice that before it is cut again."""

Edit = tuple[int, int, str]
"""(start, deleted code points, inserted text), `start` in the text before the op."""


def _utf8(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


class _Group:
    """Consecutive pieces with their lengths, their totals, and (built when asked) where
    each piece starts in the group, in both units."""

    __slots__ = ("cp", "cps", "pieces", "starts", "u8", "u8s")

    def __init__(self, pieces: list[str], u8s: list[int]) -> None:
        self.pieces = pieces
        self.cps = [len(piece) for piece in pieces]
        self.u8s = u8s
        self.cp = sum(self.cps)
        self.u8 = sum(u8s)
        self.starts: tuple[list[int], list[int]] | None = None

    def copy(self) -> _Group:
        return _Group(self.pieces.copy(), self.u8s.copy())

    def piece_starts(self) -> tuple[list[int], list[int]]:
        """Where each piece starts, in code points and in bytes (and the group's end)."""
        if self.starts is None:
            self.starts = (
                list(accumulate(self.cps, initial=0)),
                list(accumulate(self.u8s, initial=0)),
            )
        return self.starts

    def replace(self, first: int, end: int, pieces: list[str], u8s: list[int]) -> None:
        """Pieces [first, end) become `pieces`."""
        self.cp += sum(len(piece) for piece in pieces) - sum(self.cps[first:end])
        self.u8 += sum(u8s) - sum(self.u8s[first:end])
        self.pieces[first:end] = pieces
        self.cps[first:end] = [len(piece) for piece in pieces]
        self.u8s[first:end] = u8s
        self.starts = None


_CP, _U8 = attrgetter("cp"), attrgetter("u8")


class TextChunks:
    """A text in pieces: `len` (code points), `utf8_length`, `str`, ops applied in place,
    and walks that convert between code points and UTF-8 bytes (`walker`)."""

    def __init__(self, text: str = "", piece: int = PIECE, group: int = GROUP) -> None:
        """`piece` and `group` are the sizes pieces and groups are cut to (small in tests,
        so that edits meet their edges)."""
        self._piece, self._group = piece, group
        self._groups: list[_Group] = []
        self._starts: tuple[list[int], list[int]] | None = None
        self._set(text)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._group_starts()[0][-1]

    @property
    def utf8_length(self) -> int:
        return self._group_starts()[1][-1]

    def isascii(self) -> bool:
        """Whether every code point is ASCII (then the units agree everywhere)."""
        return len(self) == self.utf8_length

    def __str__(self) -> str:
        """The whole text, kept until the next change: joiners after one change share it
        (at 64 MiB the join costs ~130 ms, as a copy of a str the size of the text)."""
        if self._joined is None:
            self._joined = "".join(piece for group in self._groups for piece in group.pieces)
        return self._joined

    def copy(self) -> TextChunks:
        """An independent copy (the pieces are shared: a str never changes)."""
        other = TextChunks("", self._piece, self._group)
        other._groups = [group.copy() for group in self._groups]
        other._joined = self._joined
        return other

    def pieces(self) -> Iterator[str]:
        """The text's pieces in order (joined, they are `str(self)`)."""
        for group in self._groups:
            yield from group.pieces

    def walker(self) -> Walker:
        """A walk from the start of the text (`collab.text.positions.Walker`)."""
        return Walker(self)

    # ------------------------------------------------------------------ changing

    def apply(self, op: Sequence[int | str]) -> None:
        """Apply `op` (code points) in place; `OpError` when it does not span the text.

        Each edit rewrites the one or two pieces at its ends. An op with more edits than
        the text has pieces (a big sync's delta) rebuilds the whole text instead: never
        more than a pass over it, as with one str.
        """
        require_base(op, len(self))
        edits = _edits(op)
        many = len(edits) > len(self._groups)  # pieces are more: a cheap first check
        if many and len(edits) > sum(len(group.pieces) for group in self._groups):
            self._set(apply(str(self), op))
            return
        for start, deleted, inserted in reversed(edits):  # earlier positions stay put
            self._splice(start, deleted, inserted)
        if edits:
            self._joined = None

    def _set(self, text: str) -> None:
        self._joined = text  # the text it was made from is the first `str()`
        pieces = self._cut(text)
        size = self._group
        self._groups = [
            _Group(pieces[i : i + size], [_utf8(p) for p in pieces[i : i + size]])
            for i in range(0, len(pieces), size)
        ]
        self._starts = None

    def _cut(self, text: str) -> list[str]:
        """`text` in pieces of about `piece` code points (none empty)."""
        if len(text) <= 2 * self._piece:
            return [text] if text else []
        count = -(-len(text) // self._piece)
        bounds = [len(text) * k // count for k in range(count + 1)]
        return [text[a:b] for a, b in pairwise(bounds)]

    def _splice(self, start: int, deleted: int, inserted: str) -> None:
        """Code points [start, start + deleted) become `inserted`."""
        if not self._groups:
            self._set(inserted)
            return
        gi, pi, at = self._find(start, 0)
        gj, pj, end_at = self._find(start + deleted, 0) if deleted else (gi, pi, at)
        first, last = self._groups[gi].pieces[pi], self._groups[gj].pieces[pj]
        new = first[: start - at] + inserted + last[start + deleted - end_at :]
        if (gi, pi) == (gj, pj):  # the piece's UTF-8 length moves by the edit's
            u8 = self._groups[gi].u8s[pi] - _utf8(first[start - at : start + deleted - at])
            u8 += _utf8(inserted)
        else:
            u8 = _utf8(new)
        pieces = self._cut(new)
        u8s = [u8] if len(pieces) == 1 else [_utf8(p) for p in pieces]
        if gi == gj:
            self._groups[gi].replace(pi, pj + 1, pieces, u8s)
        else:  # the pieces between go, whole groups with them
            self._groups[gj].replace(0, pj + 1, [], [])
            del self._groups[gi + 1 : gj if self._groups[gj].pieces else gj + 1]
            self._groups[gi].replace(pi, len(self._groups[gi].pieces), pieces, u8s)
        self._tidy(gi, pi)

    def _tidy(self, gi: int, pi: int) -> None:
        """After an edit at piece `pi` of group `gi`: an empty group goes, a short piece
        joins a neighbour, and the group stays between a quarter and twice `group` pieces."""
        self._starts = None
        group = self._groups[gi]
        if not group.pieces:
            del self._groups[gi]
            return
        short = pi < len(group.pieces) and len(group.pieces[pi]) < self._piece // 4
        if short and len(group.pieces) > 1:
            first = pi if pi + 1 < len(group.pieces) else pi - 1
            joined = group.pieces[first] + group.pieces[first + 1]
            u8 = group.u8s[first] + group.u8s[first + 1]
            pieces = self._cut(joined)
            u8s = [u8] if len(pieces) == 1 else [_utf8(p) for p in pieces]
            group.replace(first, first + 2, pieces, u8s)
        if len(group.pieces) > 2 * self._group:
            self._split(gi)
        elif len(group.pieces) < self._group // 4 and len(self._groups) > 1:
            other = gi + 1 if gi + 1 < len(self._groups) else gi - 1
            a, b = sorted((gi, other))
            merged = self._groups[a]
            merged.replace(len(merged.pieces), len(merged.pieces), *self._take(b))
            del self._groups[b]
            if len(merged.pieces) > 2 * self._group:
                self._split(a)

    def _split(self, gi: int) -> None:
        """Group `gi` cut into groups of `group` pieces."""
        pieces, u8s, size = self._groups[gi].pieces, self._groups[gi].u8s, self._group
        self._groups[gi : gi + 1] = [
            _Group(pieces[i : i + size], u8s[i : i + size]) for i in range(0, len(pieces), size)
        ]

    def _take(self, gi: int) -> tuple[list[str], list[int]]:
        group = self._groups[gi]
        return group.pieces, group.u8s

    # ------------------------------------------------------------------ finding

    def _group_starts(self) -> tuple[list[int], list[int]]:
        """Where each group starts, in code points and in bytes (and the text's end)."""
        if self._starts is None:
            self._starts = (
                list(accumulate(map(_CP, self._groups), initial=0)),
                list(accumulate(map(_U8, self._groups), initial=0)),
            )
        return self._starts

    def _find(self, index: int, unit: int) -> tuple[int, int, int]:
        """The piece holding position `index` (`unit` 0: code points, 1: UTF-8 bytes) as
        (group, piece, where the piece starts in that unit); at a piece's edge, the piece
        after it (the last piece at the end of the text). The text is not empty."""
        starts = self._group_starts()[unit]
        gi = min(bisect_right(starts, index), len(self._groups)) - 1
        piece_starts = self._groups[gi].piece_starts()[unit]
        pi = min(bisect_right(piece_starts, index - starts[gi]), len(piece_starts) - 1) - 1
        return gi, pi, starts[gi] + piece_starts[pi]

    def locate(self, index: int, unit: int) -> tuple[str, int, int, int]:
        """The piece holding position `index` (`unit` 0: code points, 1: UTF-8 bytes; the
        text is not empty), as (the piece, where it starts in code points and in bytes,
        its length in bytes)."""
        gi, pi, _ = self._find(index, unit)
        group = self._groups[gi]
        cp_starts, u8_starts = self._group_starts()
        piece_cp, piece_u8 = group.piece_starts()
        cp = cp_starts[gi] + piece_cp[pi]
        u8 = u8_starts[gi] + piece_u8[pi]
        return group.pieces[pi], cp, u8, group.u8s[pi]


class Walker:
    """Converts a text's consecutive spans between code points and UTF-8 bytes, from its
    start (`collab.text.positions.Walker`): within the piece the walk is in, from where it
    is; beyond it, from the start of the piece the span ends in."""

    def __init__(self, text: TextChunks) -> None:
        self._text = text
        self._cp = self._u8 = 0  # where the walk is, in both units
        # The piece the walk is in: the piece, where it starts in both units, its bytes.
        self._piece, self._piece_cp, self._piece_u8, self._piece_bytes = "", 0, 0, 0

    def utf8_len(self, n: int) -> int:
        """The UTF-8 bytes of the next `n` code points; the walk moves past them."""
        end = self._cp + n
        if not 0 <= n <= len(self._text) - self._cp:
            raise OpError(f"code point position {end} is outside the text")
        offset = self._cp - self._piece_cp
        if offset + n <= len(self._piece):
            nbytes = positions.utf8_len(self._piece, offset, n)
        else:
            self._enter(end, 0)
            local = positions.utf8_len(self._piece, 0, end - self._piece_cp)
            nbytes = self._piece_u8 + local - self._u8
        self._cp, self._u8 = end, self._u8 + nbytes
        return nbytes

    def utf8_span(self, nbytes: int) -> int:
        """How many code points the next `nbytes` UTF-8 bytes hold; the walk moves past
        them. `OpError` when they end inside a character or past the end of the text."""
        end = self._u8 + nbytes
        if not 0 <= nbytes <= self._text.utf8_length - self._u8:
            raise OpError(f"UTF-8 position {end} is outside the text")
        if end <= self._piece_u8 + self._piece_bytes:
            n = self._span(self._cp - self._piece_cp, nbytes, end)
        else:
            self._enter(end, 1)
            n = self._piece_cp + self._span(0, end - self._piece_u8, end) - self._cp
        self._cp, self._u8 = self._cp + n, end
        return n

    def _enter(self, index: int, unit: int) -> None:
        found = self._text.locate(index, unit)
        self._piece, self._piece_cp, self._piece_u8, self._piece_bytes = found

    def _span(self, offset: int, nbytes: int, end: int) -> int:
        try:
            return positions.utf8_span(self._piece, offset, nbytes)
        except OpError:
            raise OpError(f"UTF-8 position {end} falls inside a character") from None


def deltas_to_op(text: TextChunks, deltas: Sequence[Iterable[Mapping[str, object]]]) -> Op:
    """The op of one transaction's text events (pycrdt deltas) on `text`, the text before."""
    if len(deltas) == 1:
        return positions.delta_to_op(text, deltas[0])
    text = text.copy()  # each delta's old text is what the one before it left
    op: Op = [len(text)] if len(text) else []
    for delta in deltas:
        step = positions.delta_to_op(text, delta)
        text.apply(step)
        op = compose(op, step)
    return normalize(op)


def _edits(op: Sequence[int | str]) -> list[Edit]:
    """The edits of `op`, in order, each at its position in the text before it."""
    edits: list[Edit] = []
    pos, deleted, inserted = 0, 0, ""
    for component in op:
        if isinstance(component, str):
            inserted += component
        elif component < 0:
            deleted -= component
        else:
            if deleted or inserted:
                edits.append((pos, deleted, inserted))
            pos += deleted + component
            deleted, inserted = 0, ""
    if deleted or inserted:
        edits.append((pos, deleted, inserted))
    return edits
