"""The y-websocket wire protocol: decode and encode one WebSocket binary frame.

Pure functions, no I/O. One frame carries one message: ``varUint(type)`` then the payload.

==========  ===============================================================================
type 0      sync: ``varUint(0)`` step1 + ``varUint8Array(state vector)``,
            ``varUint(1)`` step2 + ``varUint8Array(update)``,
            ``varUint(2)`` update + ``varUint8Array(update)``
type 1      awareness: ``varUint8Array(varUint(n) then n x (varUint client id, varUint clock,
            varString JSON state))``; the state ``null`` removes the client
type 2      auth (server to client): ``varUint(0)`` then ``varString(reason)``: permission denied;
            (client to server, collab's own): ``varUint(1)`` then ``varString(token)``: a
            fresh access token for this connection (`decode_auth_token`)
type 3      query-awareness: no payload
==========  ===============================================================================

Integers are lib0 varUints (7 bits a byte, least significant group first, high bit set
while more bytes follow; at most 8 bytes and 2**53 - 1, the largest JavaScript safe
integer). ``varString`` is ``varUint8Array(UTF-8 bytes)``.

`decode` is strict: anything but one well-formed message raises `ProtocolError`, and never
any other exception, whatever the bytes. y-protocols (the y-websocket provider, yjs 13)
writes exactly these fields and nothing after them, so trailing bytes are an error too.
Yjs update and state-vector contents are not looked at here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

from collab.access.storable import storable
from collab.wire import CloseCode

CLOSE_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
"""Close code for a malformed, truncated or otherwise invalid message."""
CLOSE_UNSUPPORTED_DATA = CloseCode.UNSUPPORTED
"""Close code for a message type we do not accept (unknown type or sub-type, text frame)."""

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0
AUTH_TOKEN = 1  # collab's own: a client presents a fresh token without reconnecting

MAX_VAR_UINT = 2**53 - 1
"""The largest varUint: JavaScript's Number.MAX_SAFE_INTEGER, as lib0 enforces."""
MAX_VAR_UINT_BYTES = 8
MAX_STATE_DEPTH = 32
"""Deepest nesting of arrays/objects accepted in an awareness state (a y-codemirror cursor
needs 4). Python's json recurses, so a deeper state that parsed here could still fail to
re-encode when relayed from a deeper call stack."""

_MIN_AWARENESS_ENTRY_BYTES = 5
"""1-byte client id, 1-byte clock, 1-byte length and the shortest valid state, ``{}``."""
_MAX_REASON_BYTES = 120


def close_reason(text: str) -> str:
    """`text` cut to 120 UTF-8 bytes on a character boundary: it fits in a close frame (a
    NUL or lone surrogate, from input a reason quotes, becomes U+FFFD)."""
    text = storable(text)
    encoded = text.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[:_MAX_REASON_BYTES].decode(errors="ignore")


class ProtocolError(ValueError):
    """A frame that is not one valid y-websocket message.

    `close_code` is the WebSocket close code to answer with and `reason` a short text
    (at most 120 UTF-8 bytes, so it fits in a close frame).
    """

    def __init__(self, reason: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        reason = close_reason(reason)
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """A peer's state vector: "send me what I miss". Answer with `SyncStep2`."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The answer to a `SyncStep1`: an update with everything the asker was missing."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental document update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state; `state` None means the client is gone."""

    client_id: int
    clock: int
    state: dict[str, Any] | None
    size: int = field(default=0, compare=False)  # length of the state's JSON, as received


@dataclass(frozen=True, slots=True)
class Awareness:
    """Awareness states of one or more clients."""

    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the receiver knows."""


@dataclass(frozen=True, slots=True)
class Auth:
    """Permission denied, with the server's reason (server to client)."""

    reason: str


Message: TypeAlias = SyncStep1 | SyncStep2 | SyncUpdate | Awareness | QueryAwareness | Auth


# --- low-level reading and writing -----------------------------------------------------

_SMALL_VAR_UINTS = [bytes((i,)) for i in range(128)]


def write_var_uint(n: int) -> bytes:
    """Encode `n` (0 <= n <= 2**53 - 1) as a lib0 varUint."""
    if 0 <= n < 128:
        return _SMALL_VAR_UINTS[n]
    if not 0 <= n <= MAX_VAR_UINT:
        raise ValueError(f"varUint out of range: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def read_var_uint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a varUint at `pos`; return it and the position just after it.

    Raises `ProtocolError` if it is truncated, longer than 8 bytes or above 2**53 - 1.
    Over-long encodings of small numbers (``80 00`` for 0) are accepted, as lib0 does.
    """
    end = len(data)
    if pos >= end:
        raise ProtocolError("truncated message: integer expected")
    byte = data[pos]
    if byte < 0x80:  # the common one-byte case
        return byte, pos + 1
    value = 0
    stop = min(end, pos + MAX_VAR_UINT_BYTES)
    for i in range(pos, stop):
        byte = data[i]
        value |= (byte & 0x7F) << (7 * (i - pos))
        if byte < 0x80:
            if value > MAX_VAR_UINT:
                raise ProtocolError("integer above 2**53 - 1")
            return value, i + 1
    if stop - pos == MAX_VAR_UINT_BYTES:
        raise ProtocolError("integer longer than 8 bytes")
    raise ProtocolError("truncated integer")


class Reader:
    """Reads lib0 fields one after the other from a buffer, without copying it."""

    __slots__ = ("_view", "pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
            view = memoryview(view.tobytes())
        self._view = view
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._view) - self.pos

    def var_uint(self) -> int:
        value, self.pos = read_var_uint(self._view, self.pos)
        return value

    def var_bytes(self) -> memoryview:
        """Read a varUint8Array; the declared length is checked before anything is used."""
        length = self.var_uint()
        if length > self.remaining:
            raise ProtocolError(f"declared length {length} exceeds the {self.remaining} bytes left")
        start = self.pos
        self.pos = start + length
        return self._view[start : self.pos]

    def var_string(self) -> str:
        try:
            return str(self.var_bytes(), "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not valid UTF-8") from None

    def expect_end(self, what: str) -> None:
        if self.remaining:
            raise ProtocolError(f"trailing data after the {what} ({self.remaining} bytes)")


# --- decoding --------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview | str) -> Message:
    """Decode one frame. Raises `ProtocolError`, and nothing else, if it is not valid.

    A text frame (str) is refused with close code 1003: y-websocket is binary only.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("y-websocket messages are binary frames", CLOSE_UNSUPPORTED_DATA)
    reader = Reader(data)
    if not reader.remaining:
        raise ProtocolError("empty message")
    message_type = reader.var_uint()
    if message_type == MESSAGE_SYNC:
        message: Message = _decode_sync(reader)
    elif message_type == MESSAGE_AWARENESS:
        message = Awareness(_decode_awareness_update(reader.var_bytes()))
    elif message_type == MESSAGE_QUERY_AWARENESS:
        message = QueryAwareness()
    elif message_type == MESSAGE_AUTH:
        message = _decode_auth(reader)
    else:
        raise ProtocolError(f"unknown message type {message_type}", CLOSE_UNSUPPORTED_DATA)
    reader.expect_end("message")
    return message


def _decode_sync(reader: Reader) -> SyncStep1 | SyncStep2 | SyncUpdate:
    sub_type = reader.var_uint()
    if sub_type == SYNC_UPDATE:
        return SyncUpdate(bytes(reader.var_bytes()))
    if sub_type == SYNC_STEP1:
        return SyncStep1(bytes(reader.var_bytes()))
    if sub_type == SYNC_STEP2:
        return SyncStep2(bytes(reader.var_bytes()))
    raise ProtocolError(f"unknown sync message type {sub_type}", CLOSE_UNSUPPORTED_DATA)


def _decode_auth(reader: Reader) -> Auth:
    sub_type = reader.var_uint()
    if sub_type != AUTH_PERMISSION_DENIED:
        raise ProtocolError(f"unknown auth message type {sub_type}", CLOSE_UNSUPPORTED_DATA)
    return Auth(reader.var_string())


def _decode_awareness_update(update: memoryview) -> tuple[AwarenessEntry, ...]:
    reader = Reader(update)
    count = reader.var_uint()
    if count * _MIN_AWARENESS_ENTRY_BYTES > reader.remaining:
        raise ProtocolError(f"awareness entry count {count} exceeds the message size")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint()
        clock = reader.var_uint()
        try:
            text = reader.var_string()
        except ProtocolError as error:
            raise ProtocolError(f"awareness state: {error.reason}") from None
        state = _parse_state(text)
        # A state is kept and removed later with clock + 1, which must stay a varUint; a
        # removal at the largest clock (the server's own "gone" entry) is fine.
        if clock >= MAX_VAR_UINT and state is not None:
            raise ProtocolError(f"awareness clock {clock} is out of range")
        entries.append(AwarenessEntry(client_id, clock, state, len(text)))
    reader.expect_end("awareness entries")
    return tuple(entries)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # "1e400": JSON.stringify never writes it
        raise ValueError("number out of range")
    return value


def _parse_state(text: str) -> dict[str, Any] | None:
    """Parse an awareness state: a JSON object or null, as JSON.stringify writes it."""
    try:
        state = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_finite_float)
    except RecursionError:
        raise ProtocolError("awareness state nested too deeply") from None
    except ValueError:  # JSONDecodeError, NaN/Infinity, 1e400, ints over 4300 digits
        raise ProtocolError("awareness state is not valid JSON") from None
    if state is not None and not isinstance(state, dict):
        raise ProtocolError("awareness state must be a JSON object or null")
    # Cheap bound first: depth cannot exceed the number of opening brackets.
    if text.count("{") + text.count("[") > MAX_STATE_DEPTH and _too_deep(state):
        raise ProtocolError("awareness state nested too deeply")
    return state


def _too_deep(value: Any) -> bool:
    """Whether arrays/objects nest deeper than MAX_STATE_DEPTH (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_STATE_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


# --- encoding --------------------------------------------------------------------------

_SYNC_STEP1_PREFIX = bytes((MESSAGE_SYNC, SYNC_STEP1))
_SYNC_STEP2_PREFIX = bytes((MESSAGE_SYNC, SYNC_STEP2))
_SYNC_UPDATE_PREFIX = bytes((MESSAGE_SYNC, SYNC_UPDATE))
_AWARENESS_PREFIX = bytes((MESSAGE_AWARENESS,))
_AUTH_DENIED_PREFIX = bytes((MESSAGE_AUTH, AUTH_PERMISSION_DENIED))
_QUERY_AWARENESS = bytes((MESSAGE_QUERY_AWARENESS,))


def encode_sync_step1(state_vector: bytes | bytearray | memoryview) -> bytes:
    return b"".join((_SYNC_STEP1_PREFIX, write_var_uint(len(state_vector)), state_vector))


def encode_sync_step2(update: bytes | bytearray | memoryview) -> bytes:
    return b"".join((_SYNC_STEP2_PREFIX, write_var_uint(len(update)), update))


def encode_sync_update(update: bytes | bytearray | memoryview) -> bytes:
    return b"".join((_SYNC_UPDATE_PREFIX, write_var_uint(len(update)), update))


def encode_query_awareness() -> bytes:
    return _QUERY_AWARENESS


def encode_auth_denied(reason: str) -> bytes:
    """The server's "permission denied" message; the client logs `reason`."""
    encoded = reason.encode()
    return b"".join((_AUTH_DENIED_PREFIX, write_var_uint(len(encoded)), encoded))


_AUTH_TOKEN_PREFIX = bytes((MESSAGE_AUTH, AUTH_TOKEN))


def encode_auth_token(token: str) -> bytes:
    """A client's fresh token (collab's extension of the auth message)."""
    encoded = token.encode()
    return b"".join((_AUTH_TOKEN_PREFIX, write_var_uint(len(encoded)), encoded))


def decode_auth_token(data: bytes | str) -> str | None:
    """The token of a fresh-token message; None for any other message. Raises
    `ProtocolError` for a fresh-token message that is not well formed."""
    if type(data) is not bytes or len(data) < 2 or data[0] != MESSAGE_AUTH or data[1] != AUTH_TOKEN:
        return None  # checked on every message: indexing, no slice
    reader = Reader(data)
    reader.pos = 2
    token = reader.var_string()
    reader.expect_end("token")
    return token


def encode_awareness(entries: Iterable[AwarenessEntry]) -> bytes:
    """An awareness message with these entries, in order (a None state removes a client)."""
    parts = [b""]  # placeholder for the entry count
    count = 0
    for entry in entries:
        state = _dump_state(entry.state)
        parts += (write_var_uint(entry.client_id), write_var_uint(entry.clock))
        parts += (write_var_uint(len(state)), state)
        count += 1
    parts[0] = write_var_uint(count)
    size = sum(map(len, parts))
    return b"".join((_AWARENESS_PREFIX, write_var_uint(size), *parts))


def _dump_state(state: dict[str, Any] | None) -> bytes:
    """JSON as JSON.stringify writes it: compact, non-ASCII characters as themselves."""
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (JS strings may hold one): escape it as \udxxx, as JS does.
        return json.dumps(state, separators=(",", ":"), allow_nan=False).encode()
