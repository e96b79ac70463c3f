"""One revision of a document as it is stored: the `Record`."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Record:
    """One revision: the Yjs update of exactly one change, and who made it when.

    `origin` says which peer or protocol made the change: ``yjs:<connection>``,
    ``ot:<client>:<seq>``, ``server:<tag>`` or ``import``.
    """

    rev: int
    time: float
    origin: str
    user: str | None
    update: bytes


# --- Binary encoding (docs/storage.md, "Log records") -------------------------------------

#: Version byte at the start of every record body.
RECORD_VERSION = 1
#: ``u32 body_length | u32 crc32(body)`` in front of every body.
RECORD_HEADER = struct.Struct("<II")
#: Fixed part of a body: version, time, rev.
_BODY_HEAD = struct.Struct("<BdQ")
_U16 = struct.Struct("<H")
_NO_USER = 0xFFFF
#: The smallest body: the fixed part, an empty origin and no user.
MIN_BODY = _BODY_HEAD.size + 2 * _U16.size


class RecordFormatError(ValueError):
    """Bytes that are not a valid record, found at byte `offset` of the buffer."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"bad record at offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def encode_record(record: Record) -> bytes:
    """The on-disk bytes of one record: header, then body."""
    origin = record.origin.encode("utf-8")
    if len(origin) > 0xFFFF:
        raise ValueError(f"origin too long ({len(origin)} bytes, at most 65535)")
    parts = [_BODY_HEAD.pack(RECORD_VERSION, record.time, record.rev), _U16.pack(len(origin))]
    parts.append(origin)
    if record.user is None:
        parts.append(_U16.pack(_NO_USER))
    else:
        user = record.user.encode("utf-8")
        if len(user) >= _NO_USER:
            raise ValueError(f"user too long ({len(user)} bytes, at most 65534)")
        parts += [_U16.pack(len(user)), user]
    parts.append(record.update)
    body = b"".join(parts)
    if len(body) > 0xFFFFFFFF:
        raise ValueError("record too large (4 GiB)")
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def encode_records(records: Iterable[Record]) -> bytes:
    """Several records back to back, as one append writes them."""
    return b"".join(encode_record(record) for record in records)


def decode_body(body: bytes | memoryview) -> Record:
    """The record in one body (CRC already checked). Raises ValueError if malformed."""
    if len(body) < MIN_BODY:
        raise ValueError(f"body too short ({len(body)} bytes)")
    version, time, rev = _BODY_HEAD.unpack_from(body, 0)
    if version != RECORD_VERSION:
        raise ValueError(f"unknown record version {version}")
    pos = _BODY_HEAD.size
    (origin_len,) = _U16.unpack_from(body, pos)
    pos += 2
    origin = bytes(body[pos : pos + origin_len]).decode("utf-8")
    pos += origin_len
    if pos + 2 > len(body):
        raise ValueError("origin runs past the body")
    (user_len,) = _U16.unpack_from(body, pos)
    pos += 2
    user = None
    if user_len != _NO_USER:
        if pos + user_len > len(body):
            raise ValueError("user runs past the body")
        user = bytes(body[pos : pos + user_len]).decode("utf-8")
        pos += user_len
    return Record(rev=rev, time=time, origin=origin, user=user, update=bytes(body[pos:]))


@dataclass(frozen=True)
class DecodedRecords:
    """What `decode_records` found in a buffer."""

    records: list[Record]
    #: Offset just past the last good record: where the data should be cut if torn.
    end: int
    #: Why the bytes after `end` are a torn tail (None: the buffer ends on a record).
    torn: str | None = None
    #: Where each of `records` starts in the buffer.
    offsets: list[int] = field(default_factory=list)


def decode_records(data: bytes | memoryview, start: int = 0) -> DecodedRecords:
    """Read records from `data[start:]`, telling a torn tail from corruption in the middle.

    A *torn tail* is what a crash during the last append can leave: from some offset on,
    nothing is a valid record (a header or body running past the end of the data, a CRC
    that fails, zero bytes). It is reported in `.torn`, and the records before it are
    returned. A bad record with a valid record somewhere after it is corruption in the
    middle, and so is a record whose CRC is good but whose body does not parse: both raise
    `RecordFormatError`.
    """
    view = memoryview(data)
    records: list[Record] = []
    offsets: list[int] = []
    pos = start
    while pos < len(view):
        problem = _check_frame(view, pos)
        if problem is None:
            length, _ = RECORD_HEADER.unpack_from(view, pos)
            body = view[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
            try:
                records.append(decode_body(body))
                offsets.append(pos)
            except ValueError as error:
                if any(view[pos:]):
                    raise RecordFormatError(pos, f"bad record with a valid CRC: {error}") from None
                problem = "zero bytes"
        if problem is not None:
            if _valid_record_after(view, pos + 1):
                raise RecordFormatError(pos, f"{problem}, and valid records follow")
            return DecodedRecords(records, pos, problem, offsets)
        pos += RECORD_HEADER.size + length
    return DecodedRecords(records, pos, None, offsets)


def _check_frame(view: memoryview, pos: int) -> str | None:
    """What is wrong with the length or CRC of the record at `pos` (None: nothing)."""
    if pos + RECORD_HEADER.size > len(view):
        return "incomplete record header"
    length, crc = RECORD_HEADER.unpack_from(view, pos)
    end = pos + RECORD_HEADER.size + length
    if end > len(view):
        return f"record length {length} runs past the end of the data"
    if zlib.crc32(view[pos + RECORD_HEADER.size : end]) != crc:
        return "CRC mismatch"
    return None


def _valid_record_after(view: memoryview, pos: int) -> bool:
    """Whether some offset from `pos` on starts a record with a plausible length and good CRC.

    Tells a torn tail (nothing valid after it) from a damaged length field in the middle
    of a log, which must not be mistaken for a torn tail and cut away.
    """
    header = RECORD_HEADER.size
    for at in range(pos, len(view) - header - MIN_BODY + 1):
        length, crc = RECORD_HEADER.unpack_from(view, at)
        end = at + header + length
        if length < MIN_BODY or end > len(view) or view[at + header] != RECORD_VERSION:
            continue
        if zlib.crc32(view[at + header : end]) == crc:
            return True
    return False
