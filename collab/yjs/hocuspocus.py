"""The Hocuspocus wire protocol (`@hocuspocus/provider` 4.x): decode and encode one frame.

Pure functions, no I/O. Many documents share one WebSocket: every message starts with its
document's name, then its type, then the payload. The types shared with y-websocket carry
exactly a y-websocket message after the name (`collab.yjs.protocol`), so the session reads
them as it reads a y-websocket peer's.

==========  ============================================================================
frame       ``varString(name)`` ``varUint(type)`` payload; or one byte alone: Ping, Pong
0 Sync      a y-websocket sync message (step 1, step 2, update) after the name
1 Awareness a y-websocket awareness message after the name
2 Auth      ``varUint(0)`` Token + ``varString(token)`` [+ ``varString(provider version)``];
            ``varUint(1)`` PermissionDenied + ``varString(reason)``;
            ``varUint(2)`` Authenticated + ``varString(scope)`` (``read-write``/``readonly``)
3 QueryAw.  no payload
4 SyncReply a sync message answering the server's step 1 (older providers); read as Sync
5 Stateless ``varString(payload)``: for the application, not stored
6 Broadcast ``varString(payload)``: relayed as Stateless to the document's other clients
7 Close     client: no payload (it leaves the document); server: ``varString(reason)``
8 SyncStat. ``varInt(1)``: the client's sync message or update is applied (durable, here);
            ``varInt(0)``: it was not (a read-only client)
9 / 10      Ping / Pong: the one byte alone, no name
==========  ============================================================================

`decode` is strict: anything but one well-formed message raises `HocuspocusError` (with
the document name when it could be read, so the door refuses that document only), and
never any other exception, whatever the bytes. The y-websocket payloads of Sync,
Awareness and QueryAwareness are not looked into here: the session decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TypeAlias

from collab.wire import CloseCode
from collab.yjs.protocol import (
    MESSAGE_AWARENESS,
    MESSAGE_QUERY_AWARENESS,
    MESSAGE_SYNC,
    ProtocolError,
    Reader,
    close_reason,
    write_var_uint,
)


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3
    SYNC_REPLY = 4
    STATELESS = 5
    BROADCAST_STATELESS = 6
    CLOSE = 7
    SYNC_STATUS = 8
    PING = 9
    PONG = 10


class AuthType(IntEnum):
    TOKEN = 0
    PERMISSION_DENIED = 1
    AUTHENTICATED = 2


class Scope(StrEnum):
    """What an Authenticated answer grants (the provider's `authorizedScope`)."""

    READ_WRITE = "read-write"
    READONLY = "readonly"


FORWARDED = frozenset({MESSAGE_SYNC, MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS})
"""The y-websocket message types a `Forward` carries."""


class HocuspocusError(ValueError):
    """A frame that is not one valid Hocuspocus message.

    `name` is the document it is about when the name could be read (None otherwise: the
    frame cannot be answered per document), `close_code` what a y-websocket peer would
    be closed with, `reason` a short text (at most 120 UTF-8 bytes).
    """

    def __init__(
        self, reason: str, name: str | None = None, close_code: int = CloseCode.PROTOCOL_ERROR
    ) -> None:
        reason = close_reason(reason)
        super().__init__(reason)
        self.reason = reason
        self.name = name
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Forward:
    """Sync, Awareness or QueryAwareness: `body` is the y-websocket message for `name`."""

    name: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Token:
    """A client's credentials for one document (Auth/Token); the provider adds its version."""

    name: str
    token: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    name: str
    scope: Scope


@dataclass(frozen=True, slots=True)
class Stateless:
    name: str
    payload: str


@dataclass(frozen=True, slots=True)
class BroadcastStateless:
    name: str
    payload: str


@dataclass(frozen=True, slots=True)
class Close:
    """A client leaving a document (no reason), or the server closing it (a reason)."""

    name: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SyncStatus:
    name: str
    applied: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """Connection level: sent alone, without a document name."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a Ping, alone."""


Message: TypeAlias = (
    Forward
    | Token
    | PermissionDenied
    | Authenticated
    | Stateless
    | BroadcastStateless
    | Close
    | SyncStatus
    | Ping
    | Pong
)

PING = bytes((MessageType.PING,))
PONG = bytes((MessageType.PONG,))
SYNC_STATUS_APPLIED = bytes((MessageType.SYNC_STATUS, 1))
"""The body (after the name) of SyncStatus(true): what the session queues for a peer."""
SYNC_STATUS_REFUSED = bytes((MessageType.SYNC_STATUS, 0))


# --- decoding --------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview | str) -> Message:
    """Decode one frame; raises `HocuspocusError`, and nothing else, if it is not valid."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise HocuspocusError("Hocuspocus messages are binary frames", None, CloseCode.UNSUPPORTED)
    data = bytes(data)
    if len(data) == 1 and data[0] in (MessageType.PING, MessageType.PONG):
        return Ping() if data[0] == MessageType.PING else Pong()
    reader = Reader(data)
    try:
        name = reader.var_string()
    except ProtocolError as error:
        raise HocuspocusError(f"document name: {error.reason}") from None
    try:
        message = _decode_after_name(reader, name, data)
        reader.expect_end("message")
    except ProtocolError as error:
        raise HocuspocusError(error.reason, name, error.close_code) from None
    return message


def _decode_after_name(reader: Reader, name: str, data: bytes) -> Message:
    start = reader.pos
    kind = reader.var_uint()
    if kind in FORWARDED:
        reader.pos = len(data)  # the session reads the y-websocket message
        return Forward(name, data[start:])
    if kind == MessageType.SYNC_REPLY:
        body = bytes((MESSAGE_SYNC,)) + data[reader.pos :]
        reader.pos = len(data)
        return Forward(name, body)
    if kind == MessageType.AUTH:
        return _decode_auth(reader, name)
    if kind == MessageType.STATELESS:
        return Stateless(name, reader.var_string())
    if kind == MessageType.BROADCAST_STATELESS:
        return BroadcastStateless(name, reader.var_string())
    if kind == MessageType.CLOSE:
        return Close(name, reader.var_string() if reader.remaining else None)
    if kind == MessageType.SYNC_STATUS:
        return SyncStatus(name, _read_var_int(reader, data) == 1)
    raise ProtocolError(f"unknown message type {kind}", CloseCode.UNSUPPORTED)


def _decode_auth(reader: Reader, name: str) -> Token | PermissionDenied | Authenticated:
    kind = reader.var_uint()
    if kind == AuthType.TOKEN:
        token = reader.var_string()
        return Token(name, token, reader.var_string() if reader.remaining else None)
    if kind == AuthType.PERMISSION_DENIED:
        return PermissionDenied(name, reader.var_string())
    if kind == AuthType.AUTHENTICATED:
        scope = reader.var_string()
        try:
            return Authenticated(name, Scope(scope))
        except ValueError:
            raise ProtocolError(f"unknown scope {scope[:40]!r}") from None
    raise ProtocolError(f"unknown auth message type {kind}", CloseCode.UNSUPPORTED)


def _read_var_int(reader: Reader, data: bytes) -> int:
    """A lib0 varInt: the sign in bit 6 of the first byte, then 6, 7, 7... value bits."""
    value, negative, shift, pos = 0, False, 0, reader.pos
    while True:
        if pos >= len(data):
            raise ProtocolError("truncated integer")
        if pos - reader.pos >= 8:
            raise ProtocolError("integer longer than 8 bytes")
        byte = data[pos]
        pos += 1
        if shift == 0:
            value, negative, shift = byte & 0x3F, bool(byte & 0x40), 6
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
        if byte < 0x80:
            reader.pos = pos
            return -value if negative else value


# --- encoding --------------------------------------------------------------------------


def _string(text: str) -> bytes:
    encoded = text.encode()
    return write_var_uint(len(encoded)) + encoded


def name_prefix(name: str) -> bytes:
    """What every message about document `name` starts with."""
    return _string(name)


def encode(message: Message) -> bytes:
    """One frame for `message` (the inverse of `decode`)."""
    if isinstance(message, Ping):
        return PING
    if isinstance(message, Pong):
        return PONG
    head = name_prefix(message.name)
    if isinstance(message, Forward):
        return head + message.body
    return head + _payload(message)


def _payload(message: Message) -> bytes:
    if isinstance(message, Token):
        version = b"" if message.version is None else _string(message.version)
        return bytes((MessageType.AUTH, AuthType.TOKEN)) + _string(message.token) + version
    if isinstance(message, PermissionDenied):
        return bytes((MessageType.AUTH, AuthType.PERMISSION_DENIED)) + _string(message.reason)
    if isinstance(message, Authenticated):
        return bytes((MessageType.AUTH, AuthType.AUTHENTICATED)) + _string(message.scope)
    if isinstance(message, Stateless):
        return bytes((MessageType.STATELESS,)) + _string(message.payload)
    if isinstance(message, BroadcastStateless):
        return bytes((MessageType.BROADCAST_STATELESS,)) + _string(message.payload)
    if isinstance(message, Close):
        reason = b"" if message.reason is None else _string(message.reason)
        return bytes((MessageType.CLOSE,)) + reason
    assert isinstance(message, SyncStatus)
    return SYNC_STATUS_APPLIED if message.applied else SYNC_STATUS_REFUSED
