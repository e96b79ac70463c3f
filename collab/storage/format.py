"""The one on-disk format (docs/storage.md): frames, records, log and snapshot files, and
the names of a document's segment files.

Everything here is bytes in, bytes out, plus reading whole files; nothing here writes a
file. Bad bytes raise `CorruptDocumentError(path, offset, reason)`.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from collab.storage.contract import Record, Segment, Snapshot
from collab.storage.errors import CorruptDocumentError

log = logging.getLogger(__name__)

# --- Frames: u32 body length, u32 crc32(body), body (records and recordings) ----------------

DOCS_DIR = "docs"  # a data directory's folder of documents, one entry per storage key

FRAME = struct.Struct("<II")


def frame(body: bytes) -> bytes:
    """`body` with its length and CRC in front."""
    if len(body) > 0xFFFFFFFF:
        raise ValueError("frame too large (4 GiB)")
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def frame_problem(view: memoryview, pos: int) -> str | None:
    """What is wrong with the length or CRC of the frame at `pos` (None: nothing)."""
    if pos + FRAME.size > len(view):
        return "incomplete record header"
    length, crc = FRAME.unpack_from(view, pos)
    end = pos + FRAME.size + length
    if end > len(view):
        return f"record length {length} runs past the end of the data"
    if zlib.crc32(view[pos + FRAME.size : end]) != crc:
        return "CRC mismatch"
    return None


# --- Records (docs/storage.md, "Log records") ------------------------------------------------

#: Version byte at the start of every record body.
RECORD_VERSION = 1
#: Fixed part of a body: version, time, rev.
_BODY_HEAD = struct.Struct("<BdQ")
_U16 = struct.Struct("<H")
_NO_USER = 0xFFFF
#: The smallest body: the fixed part, an empty origin and no user.
MIN_BODY = _BODY_HEAD.size + 2 * _U16.size


def encode_record(record: Record) -> bytes:
    """The on-disk bytes of one record: frame header, then body."""
    return b"".join(_record_parts(record))


def encode_records(records: Iterable[Record]) -> bytes:
    """Several records back to back, as one append writes them (each update copied once)."""
    return b"".join(part for record in records for part in _record_parts(record))


def _record_parts(record: Record) -> list[bytes]:
    """One record's frame header and body, in parts (the update is not copied)."""
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
    length, crc = 0, 0
    for part in parts:
        length += len(part)
        crc = zlib.crc32(part, crc)
    if length > 0xFFFFFFFF:
        raise ValueError("frame too large (4 GiB)")
    return [FRAME.pack(length, crc), *parts]


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
    """What `decode_records` found. Offsets count from the start of the file."""

    records: list[Record]
    #: Offset just past the last good record: where the data should be cut if torn.
    end: int
    #: Why the bytes after `end` are a torn tail (None: the data ends on a record).
    torn: str | None = None
    #: Where each of `records` starts.
    offsets: list[int] = field(default_factory=list)


def decode_records(
    data: bytes | memoryview, start: int = 0, *, path: Path | str = "<buffer>", base: int = 0
) -> DecodedRecords:
    """Read records from `data[start:]`, telling a torn tail from corruption in the middle.

    `data[0]` is at offset `base` of the file `path` (for the offsets reported).

    A *torn tail* is what a crash during the last append can leave: from some offset on,
    nothing is a valid record (a header or body running past the end of the data, a CRC
    that fails, zero bytes). It is reported in `.torn`, and the records before it are
    returned. A bad record with a valid record somewhere after it is corruption in the
    middle, and so is a record whose CRC is good but whose body does not parse: both raise
    `CorruptDocumentError`.
    """
    view = memoryview(data)
    records: list[Record] = []
    offsets: list[int] = []
    pos = start
    while pos < len(view):
        problem = frame_problem(view, pos)
        if problem is None:
            length, _ = FRAME.unpack_from(view, pos)
            try:
                records.append(decode_body(view[pos + FRAME.size : pos + FRAME.size + length]))
                offsets.append(base + pos)
            except ValueError as error:
                if any(view[pos:]):
                    reason = f"bad record with a valid CRC: {error}"
                    raise CorruptDocumentError(path, base + pos, reason) from None
                problem = "zero bytes"
        if problem is not None:
            if _valid_record_after(view, pos + 1):
                reason = f"{problem}, and valid records follow"
                raise CorruptDocumentError(path, base + pos, reason)
            return DecodedRecords(records, base + pos, problem, offsets)
        pos += FRAME.size + length
    return DecodedRecords(records, base + pos, None, offsets)


def _valid_record_after(view: memoryview, pos: int) -> bool:
    """Whether some offset from `pos` on starts a record with a plausible length and good CRC.

    Tells a torn tail (nothing valid after it) from a damaged length field in the middle
    of a log, which must not be mistaken for a torn tail and cut away.
    """
    header = FRAME.size
    for at in range(pos, len(view) - header - MIN_BODY + 1):
        length, crc = FRAME.unpack_from(view, at)
        end = at + header + length
        if length < MIN_BODY or end > len(view) or view[at + header] != RECORD_VERSION:
            continue
        if zlib.crc32(view[at + header : end]) == crc:
            return True
    return False


# --- Log files (.ylog) ------------------------------------------------------------------------

#: Header of a log segment file: magic, format version.
LOG_HEADER = struct.Struct("<4sI")
LOG_MAGIC = b"CLOG"
LOG_VERSION = 1
_REV = struct.Struct("<Q")


def encode_log(records: Iterable[Record] = ()) -> bytes:
    """A whole log file: its header, then `records`."""
    return LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION) + encode_records(records)


def check_log_header(path: Path, header: bytes) -> None:
    """Raise CorruptDocumentError unless `header` is a log file's header of our version."""
    if len(header) < LOG_HEADER.size:
        raise CorruptDocumentError(path, 0, "log shorter than its header")
    magic, version = LOG_HEADER.unpack(header)
    if magic != LOG_MAGIC:
        raise CorruptDocumentError(path, 0, f"not a log file (magic {magic!r})")
    if version != LOG_VERSION:
        raise CorruptDocumentError(path, 4, f"unknown log version {version}")


def read_log_bytes(path: Path, offset: int = 0) -> bytes:
    """The bytes of a log from `offset`, or from the end of its header (checked) when
    `offset` is inside it."""
    try:
        with open(path, "rb") as file:
            if offset <= LOG_HEADER.size:
                check_log_header(path, file.read(LOG_HEADER.size))
                offset = LOG_HEADER.size
            file.seek(offset)
            return read_rest(file)
    except OSError as error:
        raise CorruptDocumentError(path, offset, f"cannot read log: {error}") from None


def read_rest(file: BinaryIO) -> bytes:
    """The rest of an open file as it is now. `read()` without a size held the GIL ~30-40
    ms per 64 MiB (the buffered reader grows and joins its chunks): from a worker thread,
    a stall of the event loop. With the size known it is one read, the GIL released."""
    return file.read(max(os.fstat(file.fileno()).st_size - file.tell(), 0))


def decode_log(path: Path, offset: int = 0) -> DecodedRecords:
    """The records of a log file from `offset` (see `read_log_bytes`)."""
    start = max(offset, LOG_HEADER.size)
    return decode_records(read_log_bytes(path, offset), path=path, base=start)


def read_log_file(path: Path) -> list[Record]:
    """Every good record in a log file, e.g. one copied elsewhere; never changes the file.

    A torn tail is skipped with a warning; damage in the middle raises CorruptDocumentError.
    """
    decoded = decode_log(path)
    if decoded.torn is not None:
        log.warning("%s: ignoring a torn tail at offset %d (%s)", path, decoded.end, decoded.torn)
    return decoded.records


def last_rev_in_log(path: Path, start_rev: int) -> int:
    """The rev of the last complete record of a log, read from the headers only (for list)."""
    with open(path, "rb") as file:
        data = read_rest(file)
    rev = start_rev
    pos = LOG_HEADER.size
    while pos + FRAME.size + MIN_BODY <= len(data):
        length, _ = FRAME.unpack_from(data, pos)
        body = pos + FRAME.size
        if length < MIN_BODY or body + length > len(data):
            break
        (rev,) = _REV.unpack_from(data, body + 9)  # after the version byte and the time
        pos = body + length
    return rev


# --- Snapshot files (.ysnap) ------------------------------------------------------------------

SNAPSHOT_MAGIC = b"CSNP"
SNAPSHOT_VERSION = 2
#: What every version starts with: magic, version, rev, crc32.
_SNAPSHOT_PREFIX = struct.Struct("<4sIQI")
#: After the prefix. Version 1: u64 state length (the CRC covers the state only).
#: Version 2: u32 meta length, u64 state length (the CRC covers these and all after them).
_SNAPSHOT_LENGTHS = {1: struct.Struct("<Q"), 2: struct.Struct("<IQ")}


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """A whole snapshot file, in the current version."""
    lengths = _SNAPSHOT_LENGTHS[SNAPSHOT_VERSION].pack(len(snapshot.meta), len(snapshot.state))
    covered = lengths + snapshot.meta + snapshot.state
    prefix = _SNAPSHOT_PREFIX.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_VERSION, snapshot.rev, zlib.crc32(covered)
    )
    return prefix + covered


def read_snapshot_file(path: Path, rev: int | None = None) -> Snapshot:
    """The snapshot in a file of any version; CorruptDocumentError if it is damaged in any
    way, or (with `rev`) is not the snapshot at `rev`.

    The state is read straight into its own bytes and checksummed in place: no copy of a
    big state is made while holding the GIL (a thread reading 64 MB would stall the loop)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(
                _SNAPSHOT_PREFIX.size + max(s.size for s in _SNAPSHOT_LENGTHS.values())
            )
            version, file_rev, crc, lengths = _snapshot_header(path, head, size, rev)
            meta_length, state_length = lengths
            file.seek(_SNAPSHOT_PREFIX.size + _SNAPSHOT_LENGTHS[version].size)
            meta, state = file.read(meta_length), file.read(state_length)
    except OSError as error:
        raise CorruptDocumentError(path, 0, f"cannot read snapshot: {error}") from None
    start = _SNAPSHOT_PREFIX.size
    body = start + _SNAPSHOT_LENGTHS[version].size
    if version >= 2:
        found = zlib.crc32(state, zlib.crc32(meta, zlib.crc32(head[start:body])))
    else:
        found = zlib.crc32(state)
    if len(meta) + len(state) != meta_length + state_length or found != crc:
        raise CorruptDocumentError(path, start if version >= 2 else body, "snapshot CRC mismatch")
    return Snapshot(file_rev, state, meta)


def _snapshot_header(
    path: Path, head: bytes, size: int, rev: int | None
) -> tuple[int, int, int, tuple[int, int]]:
    """Version, rev, CRC and (meta, state) lengths of a snapshot file, checked against its
    size (so that a damaged length never makes a huge read)."""
    if len(head) < _SNAPSHOT_PREFIX.size:
        raise CorruptDocumentError(path, 0, "snapshot shorter than its header")
    magic, version, file_rev, crc = _SNAPSHOT_PREFIX.unpack_from(head)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptDocumentError(path, 0, f"not a snapshot file (magic {magic!r})")
    if version not in _SNAPSHOT_LENGTHS:
        raise CorruptDocumentError(path, 4, f"unknown snapshot version {version}")
    if rev is not None and file_rev != rev:
        raise CorruptDocumentError(path, 8, f"snapshot says rev {file_rev}, file name {rev}")
    lengths = _SNAPSHOT_LENGTHS[version]
    start = _SNAPSHOT_PREFIX.size
    body = start + lengths.size
    if size < body:
        raise CorruptDocumentError(path, start, "snapshot shorter than its header")
    values = lengths.unpack_from(head, start)
    meta_length, state_length = values if version >= 2 else (0, values[0])
    if size - body != meta_length + state_length:
        reason = f"{size - body} bytes after the header, which says {meta_length} + {state_length}"
        raise CorruptDocumentError(path, start, reason)
    return version, file_rev, crc, (meta_length, state_length)


# --- A document's segment files ----------------------------------------------------------------

_SEGMENT_FILE = re.compile(r"(snapshot|log)-(\d{12})\.(ysnap|ylog)")


def snapshot_path(directory: Path, rev: int) -> Path:
    return directory / f"snapshot-{rev:012d}.ysnap"


def log_path(directory: Path, rev: int) -> Path:
    return directory / f"log-{rev:012d}.ylog"


def scan(directory: Path) -> tuple[set[int], set[int]]:
    """The revs of the snapshot files and of the log files in a document's directory."""
    snapshots: set[int] = set()
    logs: set[int] = set()
    for entry in os.listdir(directory):
        if found := _segment_file(entry):
            (snapshots if found[0] == "snapshot" else logs).add(found[1])
    return snapshots, logs


def _segment_file(filename: str) -> tuple[str, int] | None:
    """("snapshot" or "log", rev) for the name of a segment file, else None."""
    match = _SEGMENT_FILE.fullmatch(filename)
    if match and match[3] == ("ysnap" if match[1] == "snapshot" else "ylog"):
        return match[1], int(match[2])
    return None


def list_segments(directory: Path) -> list[Segment]:
    """The segments in a document's directory, oldest first: every log whose snapshot is
    there (a snapshot without its log is an unfinished compaction, and is left out)."""
    snapshots, logs = scan(directory)
    return [
        Segment(rev, snapshot_path(directory, rev) if rev else None, log_path(directory, rev))
        for rev in sorted(logs)
        if rev == 0 or rev in snapshots
    ]


def segment_of_file(path: Path) -> Segment:
    """The segment one log file starts, e.g. a copy with any name.

    A file named like a segment's log says its start; any other starts before its first
    record. ``snapshot-R.ysnap`` beside it is its starting state, when there is one.
    """
    found = _segment_file(path.name)
    start = found[1] if found and found[0] == "log" else _first_rev(path) - 1
    snapshot = snapshot_path(path.parent, start)
    return Segment(start, snapshot if start and snapshot.exists() else None, path)


def _first_rev(path: Path) -> int:
    """The revision of the first record in a log file (1 when it has none)."""
    data = read_log_bytes(path)
    length = FRAME.unpack_from(data)[0] if len(data) >= FRAME.size else 0
    try:
        decoded = decode_records(data[: FRAME.size + length])
    except CorruptDocumentError:
        return 1
    return decoded.records[0].rev if decoded.records else 1


def check_contiguous(path: Path, start_rev: int, decoded: DecodedRecords) -> None:
    """Raise CorruptDocumentError unless the records are start_rev + 1, + 2, ..."""
    for expected, record, offset in zip(
        range(start_rev + 1, start_rev + 1 + len(decoded.records)),
        decoded.records,
        decoded.offsets,
        strict=True,
    ):
        if record.rev != expected:
            raise CorruptDocumentError(path, offset, f"rev {record.rev}, expected {expected}")


def current_segment(directory: Path) -> int:
    """The rev of a document's current segment: its newest log (a log is written after its
    snapshot, so a snapshot without its log is a compaction that never finished)."""
    snapshots, logs = scan(directory)
    if not logs:
        raise CorruptDocumentError(directory, 0, "no log segment")
    rev = max(logs)
    if rev and rev not in snapshots:
        raise CorruptDocumentError(snapshot_path(directory, rev), 0, "snapshot missing")
    return rev
