"""`collab serve --record FILE`: every event the sessions see from the network, in a file.

Each event — a peer connected, a message arrived, a peer left, server code edited — is one
frame. `collab.replay.rebuild` feeds a recording's events to fresh sessions, which
reproduces every document byte for byte: a bug report becomes a test.

File format (version 2), all integers little-endian, frames as in log files::

    header:  b"CLBREC" u16 version
    frame:   u32 body length, u32 CRC-32 of body, body
    body:    u8 kind, f64 unix time, u32 meta length, meta (UTF-8 JSON object), payload

Version 1 was the same in big-endian; it is refused with a clear error.

Kinds: ``start`` (a server run began; meta holds the settings that shape replay),
``connect`` (meta: doc, peer, kind "yjs"/"text"/"hocuspocus", user, readonly, the server
document's Yjs client id and revision; payload: the document's whole state the first time the run
sees the document, else empty), ``binary`` / ``text`` (a WebSocket message; payload: its
bytes, or its UTF-8 text), ``disconnect``, ``edit`` (a change made by server code,
`Collab.edit`; meta: doc, op, origin, user). The file is flushed after every frame, so a
crash loses at most the frame being written; a torn last frame is ignored on reading.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from collab.config import Settings
from collab.storage.errors import RecordingError
from collab.storage.format import FRAME, frame

if TYPE_CHECKING:
    from collab.session import PeerId, Session

MAGIC = b"CLBREC"
VERSION = 2
_VERSION = struct.Struct("<H")
HEADER = MAGIC + _VERSION.pack(VERSION)
_BODY = struct.Struct("<BdI")  # kind, time, meta length
MAX_FRAME_BYTES = 1 << 30

KINDS = {1: "start", 2: "connect", 3: "binary", 4: "text", 5: "disconnect", 6: "edit"}
KIND_CODES = {kind: code for code, kind in KINDS.items()}

# Settings that change what a session does with the same input: kept in the start frame.
REPLAY_SETTINGS = ("text_name", "max_document_bytes", "history_in_memory", "text_door_max_bytes")


@dataclass(frozen=True)
class Event:
    """One recorded event; `meta` holds the kind-specific fields (see the module doc)."""

    kind: str
    time: float
    meta: dict[str, Any]
    payload: bytes = b""
    offset: int = 0  # where its frame starts in the file

    @property
    def doc(self) -> str:
        return self.meta.get("doc", "")

    @property
    def peer(self) -> PeerId:
        return self.meta.get("peer", "")

    @property
    def data(self) -> bytes | str:
        """The message as the session received it (binary or text frame)."""
        return self.payload.decode() if self.kind == "text" else self.payload


class Recorder:
    """Appends every inbound event to a recording file, flushed per event.

    The hub calls ``recorder(name, peer_id, data)`` for each inbound message, and
    `connect` / `disconnect` for peers coming and going. Appending to an existing
    recording starts a new run: replay treats the peers of the previous run as gone.
    """

    def __init__(
        self,
        path: str | Path,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self._seen: set[str] = set()
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - lives as long as we do
        if self._file.tell() == 0:
            self._file.write(HEADER)
        else:
            _check_header(self.path)
        settings = settings or Settings()
        self._write("start", {name: getattr(settings, name) for name in REPLAY_SETTINGS})

    def __call__(self, name: str, peer_id: PeerId, data: bytes | str) -> None:
        if isinstance(data, str):
            self._write("text", {"doc": name, "peer": peer_id}, data.encode())
        else:
            self._write("binary", {"doc": name, "peer": peer_id}, bytes(data))

    def connect(
        self, session: Session, peer_id: PeerId, kind: str, user: str | None, readonly: bool
    ) -> None:
        """A peer joined `session` (call before the session hears about it)."""
        meta = {
            "doc": session.name,
            "peer": peer_id,
            "kind": kind,
            "user": user,
            "readonly": readonly,
            "client_id": session.document.client_id,
            "rev": session.rev,
            "snapshot_rev": session.document.base_rev,
        }
        state = b""
        if session.name not in self._seen:
            self._seen.add(session.name)
            state = session.state if session.rev else b""
        self._write("connect", meta, state)

    def disconnect(self, name: str, peer_id: PeerId) -> None:
        self._write("disconnect", {"doc": name, "peer": peer_id})

    def edit(self, name: str, op: list[int | str], origin: str, user: str | None) -> None:
        """Server code changed the text (call right after the session applied it)."""
        self._write("edit", {"doc": name, "op": op, "origin": origin, "user": user})

    def close(self) -> None:
        self._file.close()

    def _write(self, kind: str, meta: dict[str, Any], payload: bytes = b"") -> None:
        if self._file.closed:
            return
        encoded = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
        body = _BODY.pack(KIND_CODES[kind], self.clock(), len(encoded)) + encoded + payload
        self._file.write(frame(body))
        self._file.flush()


def _check_header(path: Path) -> None:
    with open(path, "rb") as file:
        header = file.read(len(HEADER))
    if len(header) < len(HEADER) or header[: len(MAGIC)] != MAGIC:
        raise RecordingError(path, 0, "not a collab recording")
    raw = header[len(MAGIC) :]
    if raw == b"\x00\x01":
        reason = "a version 1 recording (big-endian): replay it with the collab that made it"
        raise RecordingError(path, len(MAGIC), reason)
    (version,) = _VERSION.unpack(raw)
    if version != VERSION:
        raise RecordingError(path, len(MAGIC), f"recording version {version} is not {VERSION}")


def read_events(path: str | Path) -> Iterator[Event]:
    """The events of a recording, in order. A torn last frame (a crash) ends the file."""
    path = Path(path)
    _check_header(path)
    with open(path, "rb") as file:
        offset = file.seek(len(HEADER))
        while head := file.read(FRAME.size):
            if len(head) < FRAME.size:
                return
            length, crc = FRAME.unpack(head)
            if not _BODY.size <= length <= MAX_FRAME_BYTES:
                raise RecordingError(path, offset, f"frame length {length} is impossible")
            body = file.read(length)
            if len(body) < length:
                return
            if zlib.crc32(body) != crc:
                raise RecordingError(path, offset, "checksum mismatch")
            yield _decode_body(path, offset, body)
            offset += FRAME.size + length


def _decode_body(path: Path, offset: int, body: bytes) -> Event:
    code, when, meta_length = _BODY.unpack_from(body)
    if code not in KINDS:
        raise RecordingError(path, offset, f"unknown event kind {code}")
    start = _BODY.size
    try:
        meta = json.loads(body[start : start + meta_length])
    except ValueError:
        raise RecordingError(path, offset, "event metadata is not JSON") from None
    return Event(KINDS[code], when, meta, body[start + meta_length :], offset)
