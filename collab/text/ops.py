"""Text operations over code points: check, normalize, apply, compose, transform, invert.

An op is a list of components counted in Unicode code points (Python ``str`` indices), the
wire format of docs/text-protocol.md: a positive int retains that many code points, a str
inserts itself, a negative int deletes that many code points. An op spans the whole text it
applies to; the identity on a text of length ``n`` is ``[n]`` (``[]`` on the empty text).
Conversions to and from UTF-16 and UTF-8 positions live in `collab.text.positions`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeAlias

Op: TypeAlias = list[int | str]
"""Retain ``n > 0``, insert ``str``, delete ``-n``; counted in code points."""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class OpError(ValueError):
    """An op, position or delta that is invalid, or does not fit the text it meets."""


# --- validation and canonical form ------------------------------------------------------


def check(op: object, *, max_components: int | None = None) -> None:
    """Raise `OpError` unless `op` (decoded from untrusted JSON) is a well-formed op.

    Rejects a non-list, components that are neither int nor str, booleans (JSON ``true``
    decodes to a Python int subclass), zero, the empty string, and strings holding a lone
    surrogate (JSON ``"\\ud83d"`` decodes to one). It does not check the op against a text:
    `apply` checks the base length.
    """
    if not isinstance(op, list):
        raise OpError(f"op must be a JSON array, not {type(op).__name__}")
    if max_components is not None and len(op) > max_components:
        raise OpError(f"op has {len(op)} components, more than the limit {max_components}")
    for index, component in enumerate(op):
        if isinstance(component, bool):
            raise OpError(f"op component {index} is a boolean, not a number or string")
        if isinstance(component, int):
            if component == 0:
                raise OpError(f"op component {index} is 0: retain and delete counts are non-zero")
        elif isinstance(component, str):
            if not component:
                raise OpError(f"op component {index} inserts the empty string")
            if not component.isascii() and (bad := _LONE_SURROGATE.search(component)):
                code = ord(bad.group())
                raise OpError(f"op component {index} holds a lone surrogate U+{code:04X}")
        else:
            raise OpError(
                f"op component {index} is a {type(component).__name__}, not an integer or string"
            )


class Builder:
    """Accumulates components into canonical form as they are appended."""

    def __init__(self) -> None:
        self.op: Op = []

    def retain(self, n: int) -> None:
        if n <= 0:
            return
        if self.op and _is_retain(self.op[-1]):
            self.op[-1] += n  # type: ignore[operator]
        else:
            self.op.append(n)

    def insert(self, s: str) -> None:
        if not s:
            return
        op = self.op
        if op and isinstance(op[-1], str):
            op[-1] += s
        elif op and _is_delete(op[-1]):
            # Insert before delete at one spot: same effect, one canonical form.
            if len(op) >= 2 and isinstance(op[-2], str):
                op[-2] += s
            else:
                op.insert(len(op) - 1, s)
        else:
            op.append(s)

    def delete(self, n: int) -> None:
        if n <= 0:
            return
        if self.op and _is_delete(self.op[-1]):
            self.op[-1] -= n  # type: ignore[operator]
        else:
            self.op.append(-n)


def _is_retain(component: int | str) -> bool:
    return isinstance(component, int) and component > 0


def _is_delete(component: int | str) -> bool:
    return isinstance(component, int) and component < 0


def normalize(op: Iterable[int | str]) -> Op:
    """The canonical form of `op`: neighbours of one kind merged, no empty parts (0, ""),
    an insert before a delete at one spot. The trailing retain stays. Idempotent."""
    out = Builder()
    for component in op:
        if isinstance(component, str):
            out.insert(component)
        elif component > 0:
            out.retain(component)
        else:
            out.delete(-component)
    return out.op


def base_length(op: Sequence[int | str]) -> int:
    """The length of the text `op` applies to: its retains plus its deletes."""
    return sum(abs(c) for c in op if isinstance(c, int))


def target_length(op: Sequence[int | str]) -> int:
    """The length of the text `op` produces: its retains plus its inserts."""
    return sum(c if isinstance(c, int) else len(c) for c in op if not _is_delete(c))


def require_base(op: Sequence[int | str], length: int, what: str = "text") -> None:
    base = base_length(op)
    if base != length:
        raise OpError(f"op base length {base} != {what} length {length}")


# --- apply, invert, compose, transform --------------------------------------------------


def apply(text: str, op: Sequence[int | str]) -> str:
    """The text `op` makes of `text`; `OpError` when the op does not span `text`."""
    require_base(op, len(text))
    parts: list[str] = []
    pos = 0
    for component in op:
        if isinstance(component, str):
            parts.append(component)
        elif component > 0:
            parts.append(text[pos : pos + component])
            pos += component
        else:
            pos -= component
    return "".join(parts)


def invert(op: Sequence[int | str], text: str) -> Op:
    """The op that undoes `op` after it was applied to `text` (the text *before* `op`)."""
    require_base(op, len(text))
    out = Builder()
    pos = 0
    for component in op:
        if isinstance(component, str):
            out.delete(len(component))
        elif component > 0:
            out.retain(component)
            pos += component
        else:
            out.insert(text[pos : pos - component])
            pos -= component
    return out.op


class _Reader:
    """Reads an op component by component, splitting components when asked for less."""

    def __init__(self, op: Sequence[int | str]) -> None:
        self._items: Iterator[int | str] = iter(op)
        self.head: int | str | None = None
        self._advance()

    def _advance(self) -> None:
        self.head = next(self._items, None)
        while self.head == 0 or self.head == "":  # tolerate non-canonical input
            self.head = next(self._items, None)

    def size(self) -> int:
        """Length of the head: code points retained, inserted or deleted."""
        head = self.head
        return len(head) if isinstance(head, str) else abs(head)  # type: ignore[arg-type]

    def take(self, n: int | None = None) -> int | str:
        """Consume `n` units of the head (all of it when `n` is None) and return them."""
        head = self.head
        assert head is not None
        if n is None or n >= self.size():
            self._advance()
            return head
        if isinstance(head, str):
            self.head = head[n:]
            return head[:n]
        if head > 0:
            self.head = head - n
            return n
        self.head = head + n
        return -n

    def is_insert(self) -> bool:
        return isinstance(self.head, str)

    def is_delete(self) -> bool:
        return isinstance(self.head, int) and self.head < 0


def compose(a: Sequence[int | str], b: Sequence[int | str]) -> Op:
    """One op with the effect of `a` then `b`: ``apply(apply(s, a), b) == apply(s,
    compose(a, b))``. `OpError` when `b` does not apply to what `a` produces."""
    if target_length(a) != base_length(b):
        raise OpError(
            f"cannot compose: first op's target length {target_length(a)} "
            f"!= second op's base length {base_length(b)}"
        )
    ra, rb, out = _Reader(a), _Reader(b), Builder()
    while ra.head is not None or rb.head is not None:
        if ra.is_delete():  # deleted by a: b never sees it
            out.delete(-ra.take())  # type: ignore[operator]
        elif rb.is_insert():  # inserted by b: a never had it
            out.insert(rb.take())  # type: ignore[arg-type]
        else:
            n = min(ra.size(), rb.size())
            left, right = ra.take(n), rb.take(n)
            if _is_retain(right):  # b keeps what a left or inserted
                if isinstance(left, str):
                    out.insert(left)
                else:
                    out.retain(n)
            elif not isinstance(left, str):  # b deletes what a retained
                out.delete(n)
            # else: b deletes what a inserted, nothing remains of either
    return out.op


def transform(
    a: Sequence[int | str], b: Sequence[int | str], *, a_first: bool = True
) -> tuple[Op, Op]:
    """Transform two concurrent ops on one text into ``(a2, b2)`` with
    ``apply(apply(s, a), b2) == apply(apply(s, b), a2)``.

    Pass as `a` the op that is already applied: on the server, the logged revision; on a
    client, the server's op (it reached the server first). When both insert at one spot,
    `a`'s insert ends up left of `b`'s (``a_first=False`` puts `b`'s first). The server
    transforms a late op against each logged revision in turn (`rebase`), never against
    their composition.
    """
    require_base(b, base_length(a), "the other op's base")
    # Canonical order (insert before delete) makes the tie rule independent of how the
    # ops were written: ``[-1, "x"]`` and ``["x", -1]`` must transform alike.
    return _transform_canonical(normalize(a), normalize(b), a_first)


def _transform_canonical(a: Op, b: Op, a_first: bool) -> tuple[Op, Op]:
    """`transform` of two canonical ops with equal base lengths (not checked here)."""
    ra, rb = _Reader(a), _Reader(b)
    a2, b2 = Builder(), Builder()
    while ra.head is not None or rb.head is not None:
        if ra.is_insert() and (a_first or not rb.is_insert()):
            s = ra.take()
            a2.insert(s)  # type: ignore[arg-type]
            b2.retain(len(s))  # type: ignore[arg-type]
        elif rb.is_insert():
            s = rb.take()
            a2.retain(len(s))  # type: ignore[arg-type]
            b2.insert(s)  # type: ignore[arg-type]
        else:
            n = min(ra.size(), rb.size())
            left, right = ra.take(n), rb.take(n)
            if _is_retain(left) and _is_retain(right):
                a2.retain(n)
                b2.retain(n)
            elif _is_delete(left) and _is_retain(right):
                a2.delete(n)
            elif _is_retain(left):  # b deletes what a retained
                b2.delete(n)
            # both delete the same text: neither has to any more
    return a2.op, b2.op


def rebase(
    op: Sequence[int | str], applied: Iterable[Sequence[int | str]], *, canonical: bool = False
) -> Op:
    """`op`, made concurrently with the ops in `applied` (in the order they were applied),
    transformed to apply after all of them. Ties go to the applied ops (theirs stay left).

    ``canonical=True`` promises that the applied ops are canonical and chained (each
    applies to what the one before made), as the session's revisions are: then only the
    first base length is checked and nothing is re-normalised per revision, so the cost is
    one pass over both ops per revision.
    """
    result = normalize(op)
    first = True
    for other in applied:
        if canonical and not first:
            _, result = _transform_canonical(other, result, True)  # type: ignore[arg-type]
            continue
        first = False
        require_base(result, base_length(other), "the other op's base")
        _, result = _transform_canonical(normalize(other), result, True)
    return result


def transform_position(pos: int, op: Sequence[int | str], *, is_own: bool = False) -> int:
    """Where a caret at `pos` (code points, before `op`) is after `op`.

    A text inserted exactly at the caret leaves the caret before it when someone else made
    the op (``is_own=False``): a remote user typing where my caret rests does not drag my
    caret along. For the caret owner's own op (``is_own=True``) the caret moves after the
    insert, as when typing. A caret inside a deleted range goes to where the range was,
    after any text inserted in its place.
    """
    return transform_positions([pos], normalize(op), is_own=is_own)[0]


def transform_positions(
    positions: Sequence[int], op: Sequence[int | str], *, is_own: bool = False
) -> list[int]:
    """`transform_position` of many positions through a canonical `op`, in one pass.

    `op` must be canonical (as revisions are; `normalize` others first): nothing is
    normalised here, so moving every caret of a document through a revision costs one
    pass over the op plus sorting the carets, whatever their number.
    """
    return transform_positions_through(positions, [op], is_own=is_own)


def transform_positions_through(
    positions: Sequence[int], ops: Sequence[Sequence[int | str]], *, is_own: bool = False
) -> list[int]:
    """`transform_positions` through canonical, chained `ops` in turn.

    Moving positions keeps their order, so they are sorted once and each op costs one
    pass over its components and the positions, nothing more.
    """
    if not positions or not ops:
        return list(positions)
    length = base_length(ops[0])
    if min(positions) < 0 or max(positions) > length:
        bad = next(p for p in positions if not 0 <= p <= length)
        raise OpError(f"position {bad} is outside the text (length {length})")
    order = sorted(range(len(positions)), key=positions.__getitem__)
    moved = [positions[index] for index in order]
    for op in ops:
        moved = _move_sorted(moved, op, is_own)
    out = [0] * len(positions)
    for index, pos in zip(order, moved, strict=True):
        out[index] = pos
    return out


def _move_sorted(positions: list[int], op: Sequence[int | str], is_own: bool) -> list[int]:
    """Sorted positions through one canonical op (see `transform_position`)."""
    out = []
    i, end, old, delta = 0, len(op), 0, 0  # delta: inserted minus deleted before `old`
    for pos in positions:
        moved = pos + delta
        while i < end:
            component = op[i]
            if isinstance(component, str):
                if old == pos and not is_own:
                    break  # someone else's insert at the caret stays after it
                delta += len(component)
            elif component > 0:
                if old + component > pos:
                    break
                old += component
            else:
                if old - component > pos:  # the caret is inside the deleted range
                    moved = old + delta
                    break
                old -= component
                delta += component
            i += 1
            moved = pos + delta
        out.append(moved)
    return out


def diff(old: str, new: str, cursor_hint: int | None = None) -> Op:
    """An op turning `old` into `new`: one replace, found by common prefix and suffix.

    `cursor_hint` is the caret in `new` right after the user's edit (after typed text,
    where deleted text was). In a run of equal characters the edit is placed to end at the
    hint, so typing "a" into "aaa" at 1 is an insert at 1, not at 3. The hint never makes
    the edit larger than the smallest single replace.
    """
    limit = min(len(old), len(new))
    prefix = _common_prefix(old, new, limit)
    suffix = _common_suffix(old, new, limit - prefix)
    if cursor_hint is not None and 0 <= cursor_hint <= len(new):
        end_cap = min(limit, len(new) - cursor_hint)
        hinted_suffix = _common_suffix(old, new, end_cap)
        hinted_prefix = _common_prefix(old, new, limit - hinted_suffix)
        if hinted_prefix + hinted_suffix == prefix + suffix:
            prefix, suffix = hinted_prefix, hinted_suffix
    out = Builder()
    out.retain(prefix)
    out.insert(new[prefix : len(new) - suffix])
    out.delete(len(old) - prefix - suffix)
    out.retain(suffix)
    return out.op


def _common_prefix(a: str, b: str, limit: int) -> int:
    """Length of the common prefix of `a` and `b`, at most `limit` (binary search on
    slices: C-speed comparisons even for megabyte texts)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix of `a` and `b`, at most `limit`."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo
