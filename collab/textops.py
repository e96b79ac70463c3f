"""Text operations over code points, and every position conversion between units.

An op is a list of components counted in Unicode code points (Python ``str`` indices), the
wire format of docs/text-protocol.md: a positive int retains that many code points, a str
inserts itself, a negative int deletes that many code points. An op spans the whole text it
applies to; the identity on a text of length ``n`` is ``[n]`` (``[]`` on the empty text).

Three units meet in this server and only this module converts between them:

- code points: ops, Python ``str`` indices;
- UTF-16 code units: browsers (``selectionStart``, JS string indices);
- UTF-8 bytes: pycrdt ``Text`` positions and ``TextEvent.delta`` (notes/pycrdt-facts.md).

A position that falls inside a character (between the halves of a surrogate pair, or
inside a multi-byte UTF-8 sequence) raises `OpError`: it is always a bug somewhere, and
rounding it would hide the bug and diverge replicas. For ASCII text, which ``str.isascii()``
tells in O(1), the three units agree and no conversion work is done.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal, TypeAlias

Op: TypeAlias = list[int | str]
"""Retain ``n > 0``, insert ``str``, delete ``-n``; counted in code points."""

Step: TypeAlias = tuple[Literal["insert"], int, str] | tuple[Literal["delete"], int, int]
"""One edit of a pycrdt ``Text``: ``("insert", byte, s)`` or ``("delete", start, end)``."""

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


class _Builder:
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
    out = _Builder()
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


def _require_base(op: Sequence[int | str], length: int, what: str = "text") -> None:
    base = base_length(op)
    if base != length:
        raise OpError(f"op base length {base} != {what} length {length}")


# --- apply, invert, compose, transform --------------------------------------------------


def apply(text: str, op: Sequence[int | str]) -> str:
    """The text `op` makes of `text`; `OpError` when the op does not span `text`."""
    _require_base(op, len(text))
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
    _require_base(op, len(text))
    out = _Builder()
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
    ra, rb, out = _Reader(a), _Reader(b), _Builder()
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
    _require_base(b, base_length(a), "the other op's base")
    # Canonical order (insert before delete) makes the tie rule independent of how the
    # ops were written: ``[-1, "x"]`` and ``["x", -1]`` must transform alike.
    return _transform_canonical(normalize(a), normalize(b), a_first)


def _transform_canonical(a: Op, b: Op, a_first: bool) -> tuple[Op, Op]:
    """`transform` of two canonical ops with equal base lengths (not checked here)."""
    ra, rb = _Reader(a), _Reader(b)
    a2, b2 = _Builder(), _Builder()
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
        _require_base(result, base_length(other), "the other op's base")
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
    out = _Builder()
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


# --- position conversions ---------------------------------------------------------------


def _check_range(index: int, length: int, unit: str) -> None:
    if not 0 <= index <= length:
        raise OpError(f"{unit} position {index} is outside the text (length {length})")


def cp_to_utf16(text: str, i: int) -> int:
    """The UTF-16 index (JavaScript) of code point index `i` in `text`."""
    _check_range(i, len(text), "code point")
    if text.isascii():
        return i
    return len(text[:i].encode("utf-16-le")) // 2


def utf16_to_cp(text: str, i16: int) -> int:
    """The code point index of UTF-16 index `i16`; `OpError` inside a surrogate pair."""
    if text.isascii() or i16 < 0:
        _check_range(i16, len(text), "UTF-16")
        return i16
    # A code point index is never larger than its UTF-16 index: a prefix of i16 code
    # points holds the answer.
    units = text[:i16].encode("utf-16-le")[: 2 * i16]
    if len(units) < 2 * i16:
        raise OpError(f"UTF-16 position {i16} is outside the text")
    if i16 and 0xD800 <= int.from_bytes(units[-2:], "little") <= 0xDBFF:
        raise OpError(f"UTF-16 position {i16} falls inside a surrogate pair")
    return len(units.decode("utf-16-le"))


def cp_to_utf8(text: str, i: int) -> int:
    """The UTF-8 byte offset (pycrdt) of code point index `i` in `text`."""
    _check_range(i, len(text), "code point")
    if text.isascii():
        return i
    return len(text[:i].encode("utf-8"))


def utf8_to_cp(text: str, b: int) -> int:
    """The code point index of UTF-8 byte offset `b`; `OpError` inside a character."""
    if text.isascii() or b < 0:
        _check_range(b, len(text), "UTF-8")
        return b
    return _utf8_span(text, 0, b)


def _utf8_span(text: str, start: int, nbytes: int) -> int:
    """How many code points, from code point `start`, make `nbytes` UTF-8 bytes."""
    # n bytes never hold more than n code points: encode just that slice.
    chunk = text[start : start + nbytes].encode("utf-8")
    if len(chunk) < nbytes:
        raise OpError(f"{_where(start, nbytes)} is outside the text")
    if len(chunk) > nbytes and 0x80 <= chunk[nbytes] < 0xC0:
        raise OpError(f"{_where(start, nbytes)} falls inside a character")
    return len(chunk[:nbytes].decode("utf-8"))


def _where(start: int, nbytes: int) -> str:
    if start == 0:
        return f"UTF-8 position {nbytes}"
    return f"UTF-8 position {nbytes} bytes after code point {start}"


def _utf8_len(text: str, start: int, n: int) -> int:
    """UTF-8 length of `n` code points of `text` from code point `start`."""
    return len(text[start : start + n].encode("utf-8"))


def delta_to_op(old_text: str, delta: Iterable[Mapping[str, object]]) -> Op:
    """The code point op of a pycrdt ``TextEvent.delta`` on `old_text` (the text before).

    Delta retains and deletes count UTF-8 bytes of the old text; ``attributes`` (formatting)
    are ignored. The op spans the whole old text. An embed (non-str insert) raises
    `OpError`: the shared text is plain text.
    """
    ascii_text = old_text.isascii()
    out = _Builder()
    pos = 0  # code points of old_text consumed
    for index, part in enumerate(delta):
        if "insert" in part:
            inserted = part["insert"]
            if not isinstance(inserted, str):
                raise OpError(f"delta part {index} inserts a {type(inserted).__name__}")
            out.insert(inserted)
            continue
        kind = "retain" if "retain" in part else "delete"
        nbytes = part.get(kind)
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise OpError(f"delta part {index} is not an insert, retain or delete: {part!r}")
        if ascii_text:
            n = nbytes
            if pos + n > len(old_text):
                raise OpError(f"delta part {index} runs past the end of the text")
        else:
            n = _utf8_span(old_text, pos, nbytes)
        (out.retain if kind == "retain" else out.delete)(n)
        pos += n
    out.retain(len(old_text) - pos)
    return out.op


def op_to_utf8_steps(old_text: str, op: Sequence[int | str]) -> list[Step]:
    """The edits that apply code point `op` to a pycrdt ``Text`` holding `old_text`.

    Apply the steps in order, in one transaction: each step's byte offsets are in the text
    as the steps before it left it (``text.insert(i, s)``, ``del text[start:end]``).
    """
    _require_base(op, len(old_text))
    ascii_text = old_text.isascii()
    steps: list[Step] = []
    cp = 0  # code points of old_text consumed
    byte = 0  # offset in the live text
    last = len(op) - 1
    for index, component in enumerate(op):
        if isinstance(component, str):
            steps.append(("insert", byte, component))
            byte += len(component) if component.isascii() else len(component.encode("utf-8"))
            continue
        n = abs(component)
        if component > 0 and index == last:
            break  # a trailing retain needs no conversion
        size = n if ascii_text else _utf8_len(old_text, cp, n)
        if component > 0:
            byte += size
        else:
            steps.append(("delete", byte, byte + size))
        cp += n
    return steps
