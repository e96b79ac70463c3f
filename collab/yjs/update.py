"""Decode an untrusted Yjs update (v1 encoding) and state vector, without applying them.

Pure functions, no I/O, no pycrdt. The server looks inside an update before pycrdt applies
it (`collab.yjs.checks` holds the checks): pycrdt accepts updates that leave the server's
memory and its log apart, and relays bytes that crash or diverge Yjs peers.

An update v1 is, in lib0 encoding (varUint integers, ``varString`` = varUint length + UTF-8)::

    varUint(groups), then per group:
        varUint(structs), varUint(client), varUint(first clock), then per struct:
            uint8 info; info & 0x1F is the content ref:
            0  GC       varUint(length)
            10 Skip     varUint(length)
            1-9 Item    [0x80: origin ID] [0x40: right origin ID]
                        if neither: varUint(parentInfo) == 1 ? varString(root name) : parent ID,
                                    then [0x20: varString(parentSub key)]
                        then the content, by ref (length = clocks the item spans):
                        1 Deleted varUint(len) -> len | 2 JSON varUint(n), n x varString -> n
                        3 Binary varUint8Array -> 1   | 4 String varString -> UTF-16 length
                        5 Embed varString(JSON) -> 1  | 6 Format varString key, varString JSON -> 1
                        7 Type varUint(typeRef); 3 (XmlElement), 5 (XmlHook): varString -> 1
                        8 Any varUint(n), n x lib0 Any -> n | 9 Doc varString guid, Any opts -> 1
    varUint(delete set clients), then per client: varUint(client), varUint(n), n x (clock, len)

An ID is ``varUint(client), varUint(clock)``. The decoder accepts only what both Yjs and Yrs
read the same way: anything else (an unknown ref, a type ref Yjs lacks, an XmlHook, which
Yrs reads without its name, JSON that ``JSON.parse`` refuses, invalid UTF-8, the same client
in two groups, which Yjs reads as only the last one, bytes after the delete set) is an
`UpdateFormatError`. Zero-length structs are accepted: pycrdt writes some (``Text.format``
over CJK text), and Yjs copes.
Every count is checked against the bytes left before it is used, so decoding costs time and
memory proportional to the update's length.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple, TypeAlias

from collab.yjs.protocol import ProtocolError, read_var_uint, write_var_uint

ID: TypeAlias = tuple[int, int]
"""(client, clock) of one item unit."""

MAX_CLOCK = 2**32 - 1
"""The highest clock an update may reach (its structs' and deletions' ends included).
Yjs allows 2**53 - 1, but Yrs (pycrdt) keeps clocks as 32-bit numbers: past this, the
document would wrap what the update says and its replicas would disagree."""

GC, DELETED, JSON_, BINARY, STRING, EMBED, FORMAT, TYPE, ANY, DOC, SKIP = range(11)
"""Content refs (``info & 0x1F``); GC and SKIP are not items."""

NON_TEXT_CONTENT = frozenset({JSON_, BINARY, EMBED, TYPE, ANY, DOC})
"""Content that is not characters: inside a shared text it would be an embed."""

MAX_ANY_DEPTH = 64
"""Deepest nesting of lib0 Any values accepted: Yrs and lib0 decode them recursively, and a
stack overflow in Rust aborts the process."""

_LONG_VAR_UINT = re.compile(rb"[\x80-\xff]{2,7}[\x00-\x7f]")
_LONG_UINTS: dict[bytes, int] = {}
"""Encoded long varUints -> values: client IDs (7-8 bytes) recur in every update."""
_LONG_UINTS_MAX = 4096
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_XML_ELEMENT = 3  # its node name follows
_XML_HOOK = 5
_TYPE_REF_MAX = 6  # YArray, YMap, YText, YXmlElement, YXmlFragment, YXmlHook, YXmlText


class UpdateFormatError(ValueError):
    """The bytes are not a Yjs update v1 (or state vector) that both Yjs and Yrs read alike."""


class Struct(NamedTuple):
    """One struct of an update: a GC range, a Skip range or an item."""

    client: int
    clock: int
    length: int
    """Clocks spanned (string content: UTF-16 code units)."""
    ref: int
    """Content ref: GC, SKIP or an item content (DELETED ... DOC)."""
    origin: ID | None = None
    right_origin: ID | None = None
    parent: ID | None = None
    """The parent item's ID when it is encoded as one (nested types); None otherwise."""
    highs: tuple[int, ...] = ()
    """Clocks of the UTF-16 high surrogates in string content (one per astral character)."""
    root: str | None = None
    """The root type's name when the item is encoded as one of its children (no origins,
    no map key); None otherwise."""


class Update(NamedTuple):
    """A decoded update: structs group by group (each group in clock order), then deletes."""

    structs: list[Struct]
    deletes: list[tuple[int, int, int]]
    """(client, clock, length) ranges of the delete set."""
    deletes_at: int = -1
    """Where the delete set starts in the bytes decoded (-1: not decoded from bytes)."""

    def refs(self) -> set[int]:
        """The content refs the update's structs carry."""
        return {s.ref for s in self.structs}

    def ranges(self) -> dict[int, tuple[int, int]]:
        """Client -> (first clock, end clock) of its struct group."""
        out: dict[int, tuple[int, int]] = {}
        for s in self.structs:
            first = out.get(s.client, (s.clock, 0))[0]
            out[s.client] = (first, s.clock + s.length)
        return out


class _Input:
    """Reads lib0 fields from bytes; every read is bounds-checked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def uint(self) -> int:
        """A varUint; the 1- and 2-byte cases and repeated long ones without a loop."""
        data, pos = self.data, self.pos
        if pos + 1 < len(data):
            first = data[pos]
            if first < 0x80:
                self.pos = pos + 1
                return first
            second = data[pos + 1]
            if second < 0x80:
                self.pos = pos + 2
                return (first & 0x7F) | second << 7
            match = _LONG_VAR_UINT.match(data, pos)
            if match is not None:
                raw = match.group()
                value = _LONG_UINTS.get(raw)
                if value is not None:
                    self.pos = match.end()
                    return value
        value, end = read_var_uint(data, pos)  # also raises the errors
        if end - pos > 2:
            if len(_LONG_UINTS) >= _LONG_UINTS_MAX:
                _LONG_UINTS.clear()
            _LONG_UINTS[data[pos:end]] = value
        self.pos = end
        return value

    def count(self, what: str, min_bytes: int = 1) -> int:
        """A count of things that take at least `min_bytes` each: checked against the rest."""
        n = self.uint()
        if n * min_bytes > len(self.data) - self.pos:
            raise UpdateFormatError(f"{what} count {n} exceeds the {self.left()} bytes left")
        return n

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise UpdateFormatError("truncated update: info byte expected")
        self.pos = pos + 1
        return self.data[pos]

    def raw(self, n: int) -> bytes:
        start, end = self.pos, self.pos + n
        if end > len(self.data):
            raise UpdateFormatError(f"truncated update: {n} bytes expected")
        self.pos = end
        return self.data[start:end]

    def string(self) -> str:
        try:
            return self.raw(self.uint()).decode()
        except UnicodeDecodeError:
            raise UpdateFormatError("string is not valid UTF-8") from None

    def var_int(self) -> None:
        """Skip a lib0 varInt (sign in bit 0x40 of the first byte)."""
        for _ in range(8):
            if self.byte() < 0x80:
                return
        raise UpdateFormatError("varInt longer than 8 bytes")

    def id(self) -> ID:
        return self.uint(), self.uint()

    def end_clock(self, clock: int, length: int) -> int:
        end = clock + length
        if end > MAX_CLOCK:
            raise UpdateFormatError("clock above 2**32 - 1")
        return end


def decode_update(data: bytes | bytearray | memoryview) -> Update:
    """Decode a Yjs update v1; raise `UpdateFormatError`, and nothing else, if malformed."""
    reader = _Input(bytes(data))
    try:
        structs = _read_structs(reader)
        deletes_at = reader.pos
        deletes = _read_deletes(reader)
    except ProtocolError as error:
        raise UpdateFormatError(str(error)) from None
    if reader.left():
        raise UpdateFormatError(f"{reader.left()} bytes after the delete set")
    return Update(structs, deletes, deletes_at)


def decode_state_vector(data: bytes | bytearray | memoryview) -> dict[int, int]:
    """Decode a state vector (``doc.get_state()``): client -> next expected clock."""
    reader = _Input(bytes(data))
    try:
        state = {}
        for _ in range(reader.count("state vector entry", 2)):
            client = reader.uint()
            state[client] = reader.uint()
    except ProtocolError as error:
        raise UpdateFormatError(str(error)) from None
    if reader.left():
        raise UpdateFormatError(f"{reader.left()} bytes after the state vector")
    return state


def encode_state_vector(state: dict[int, int]) -> bytes:
    """The state vector ``doc.get_state()`` would give for these clocks."""
    entries = (write_var_uint(client) + write_var_uint(clock) for client, clock in state.items())
    return write_var_uint(len(state)) + b"".join(entries)


def _read_structs(reader: _Input) -> list[Struct]:
    structs: list[Struct] = []
    seen: set[int] = set()
    for _ in range(reader.count("struct group", 4)):
        n = reader.count("struct", 2)
        client = reader.uint()
        if client in seen:
            raise UpdateFormatError(f"client {client} has two struct groups")
        seen.add(client)
        clock = reader.uint()
        for _ in range(n):
            item = _read_struct(reader, client, clock)
            structs.append(item)
            clock = reader.end_clock(clock, item.length)
    return structs


def _read_struct(reader: _Input, client: int, clock: int) -> Struct:
    info = reader.byte()
    ref = info & 0x1F
    if ref in (GC, SKIP):
        return Struct(client, clock, reader.uint(), ref)
    origin = reader.id() if info & 0x80 else None
    right_origin = reader.id() if info & 0x40 else None
    parent = root = None
    if not info & 0xC0:
        if reader.uint() == 1:
            root = reader.string()  # root type name
        else:
            parent = reader.id()
        if info & 0x20:
            reader.string()  # parentSub: the map key
            root = None
    if ref == STRING:
        length, highs = _string_content(reader.string(), clock)
        return Struct(client, clock, length, ref, origin, right_origin, parent, highs, root)
    length = _read_content(reader, ref)
    return Struct(client, clock, length, ref, origin, right_origin, parent, (), root)


def _string_content(text: str, clock: int) -> tuple[int, tuple[int, ...]]:
    """UTF-16 length of `text` and the clocks of its high surrogates."""
    if text.isascii():
        return len(text), ()
    highs = tuple(clock + m.start() + i for i, m in enumerate(_ASTRAL.finditer(text)))
    return len(text) + len(highs), highs


def _read_content(reader: _Input, ref: int) -> int:
    """Read a non-string item content; return the clocks it spans."""
    if ref == DELETED:
        return reader.uint()
    if ref == JSON_:
        n = reader.count("JSON value")
        for _ in range(n):
            text = reader.string()
            if text != "undefined":
                _check_json(text)
        return n
    if ref == BINARY:
        reader.raw(reader.uint())
    elif ref == EMBED:
        _check_json(reader.string())
    elif ref == FORMAT:
        reader.string()
        _check_json(reader.string())
    elif ref == TYPE:
        type_ref = reader.uint()
        if type_ref > _TYPE_REF_MAX:
            raise UpdateFormatError(f"unknown type ref {type_ref}")
        if type_ref == _XML_HOOK:
            # Yjs writes the hook name after it, Yrs (pycrdt 0.14) reads none: Yrs would
            # take the name for the next fields and diverge.
            raise UpdateFormatError("XmlHook content: Yjs and Yrs decode it differently")
        if type_ref == _XML_ELEMENT:
            reader.string()
    elif ref == ANY:
        n = reader.count("Any value")
        for _ in range(n):
            _skip_any(reader)
        return n
    elif ref == DOC:
        reader.string()  # guid
        _skip_any(reader)  # options
    else:
        raise UpdateFormatError(f"unknown content ref {ref}")
    return 1


def _reject_constant(name: str) -> None:
    raise ValueError(name)


def _check_json(text: str) -> None:
    """Raise unless JavaScript's JSON.parse (which Yjs peers call on it) accepts `text`."""
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise UpdateFormatError("content is not valid JSON") from None


_FIXED_ANY = {124: 4, 123: 8, 122: 8}  # float32, float64, bigint64
_EMPTY_ANY = frozenset((127, 126, 121, 120))  # undefined, null, false, true


def _skip_any(reader: _Input) -> None:
    """Skip one lib0 Any value, iteratively: `todo` holds, per open container, the values
    (and for objects, keys) still to read."""
    todo: list[list[int]] = [[1, 0]]  # [values left, is an object]
    while todo:
        top = todo[-1]
        if top[0] == 0:
            todo.pop()
            continue
        top[0] -= 1
        if top[1]:
            reader.string()  # the key
        tag = reader.byte()
        if tag in _EMPTY_ANY:
            continue
        if tag == 125:
            reader.var_int()
        elif tag in _FIXED_ANY:
            reader.raw(_FIXED_ANY[tag])
        elif tag == 119:
            reader.string()
        elif tag == 116:
            reader.raw(reader.uint())
        elif tag in (118, 117):
            n = reader.count("Any entry", 2 if tag == 118 else 1)
            if len(todo) >= MAX_ANY_DEPTH:
                raise UpdateFormatError(f"Any value nested deeper than {MAX_ANY_DEPTH}")
            todo.append([n, tag == 118])
        else:
            raise UpdateFormatError(f"unknown Any tag {tag}")


def _read_deletes(reader: _Input) -> list[tuple[int, int, int]]:
    deletes = []
    for _ in range(reader.count("delete set client", 2)):
        client = reader.uint()
        for _ in range(reader.count("delete range", 2)):
            clock = reader.uint()
            length = reader.uint()
            if clock + length > MAX_CLOCK:
                raise UpdateFormatError("deleted clock above 2**32 - 1")
            deletes.append((client, clock, length))
    return deletes
