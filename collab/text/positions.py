"""Every position conversion between the three units that meet in this server.

- code points: text operations, Python ``str`` indices;
- UTF-16 code units: browsers (``selectionStart``, JS string indices);
- UTF-8 bytes: pycrdt ``Text`` positions and ``TextEvent.delta`` (pycrdt 0.14 counts bytes).

Only this module converts between them. A position that falls inside a character (between
the halves of a surrogate pair, or inside a multi-byte UTF-8 sequence) raises `OpError`:
it is always a bug somewhere, and rounding it would hide the bug and diverge replicas. For
ASCII text, which ``str.isascii()`` tells in O(1), the units agree and no work is done.

`delta_to_op` and `op_to_utf8_steps` take a ``str`` or a text that walks itself
(`Measured`: `collab.text.chunks.TextChunks`, which adds up its pieces' lengths and asks
this module only about positions inside one piece).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, TypeAlias

from collab.text.ops import Builder, Op, OpError, require_base

Step: TypeAlias = tuple[Literal["insert"], int, str] | tuple[Literal["delete"], int, int]
"""One edit of a pycrdt ``Text``: ``("insert", byte, s)`` or ``("delete", start, end)``."""


class Walker(Protocol):
    """Consecutive spans of a text, from its start, converted between units."""

    def utf8_len(self, n: int) -> int:
        """The UTF-8 bytes of the next `n` code points; the walk moves past them."""
        ...

    def utf8_span(self, nbytes: int) -> int:
        """The code points the next `nbytes` bytes hold (`OpError` inside a character or
        past the end); the walk moves past them."""
        ...


class Measured(Protocol):
    """A text that is not one ``str`` but knows its lengths and walks itself."""

    def __len__(self) -> int: ...

    def isascii(self) -> bool: ...

    def walker(self) -> Walker: ...


class _StrWalker:
    """`Walker` over a ``str``: each span is sliced and encoded (O(span))."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def utf8_len(self, n: int) -> int:
        self.pos += n
        return utf8_len(self.text, self.pos - n, n)

    def utf8_span(self, nbytes: int) -> int:
        n = utf8_span(self.text, self.pos, nbytes)
        self.pos += n
        return n


def _walker(text: str | Measured) -> Walker:
    return _StrWalker(text) if isinstance(text, str) else text.walker()


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
    return utf8_span(text, 0, b)


def utf8_span(text: str, start: int, nbytes: int) -> int:
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


def utf8_len(text: str, start: int, n: int) -> int:
    """UTF-8 length of `n` code points of `text` from code point `start`."""
    return len(text[start : start + n].encode("utf-8"))


def delta_to_op(old_text: str | Measured, delta: Iterable[Mapping[str, object]]) -> Op:
    """The code point op of a pycrdt ``TextEvent.delta`` on `old_text` (the text before).

    Delta retains and deletes count UTF-8 bytes of the old text; ``attributes`` (formatting)
    are ignored. The op spans the whole old text. An embed (non-str insert) raises
    `OpError`: the shared text is plain text.
    """
    ascii_text = old_text.isascii()
    walker = _walker(old_text)
    out = Builder()
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
            n = walker.utf8_span(nbytes)
        (out.retain if kind == "retain" else out.delete)(n)
        pos += n
    out.retain(len(old_text) - pos)
    return out.op


def op_to_utf8_steps(old_text: str | Measured, op: Sequence[int | str]) -> list[Step]:
    """The edits that apply code point `op` to a pycrdt ``Text`` holding `old_text`.

    Apply the steps in order, in one transaction: each step's byte offsets are in the text
    as the steps before it left it (``text.insert(i, s)``, ``del text[start:end]``).
    """
    require_base(op, len(old_text))
    ascii_text = old_text.isascii()
    walker = _walker(old_text)
    steps: list[Step] = []
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
        size = n if ascii_text else walker.utf8_len(n)
        if component > 0:
            byte += size
        else:
            steps.append(("delete", byte, byte + size))
    return steps
