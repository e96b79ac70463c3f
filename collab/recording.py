"""Recording every inbound message, and replaying a recording through the engine.

`collab serve --record FILE` writes each event the sessions see from the network — a peer
connected, a message arrived, a peer left — to FILE. `replay_recording(FILE)` feeds the
same events, in the same order, to fresh `Session` objects with no network and no store,
which reproduces every document byte for byte: a bug report becomes a test.

File format (version 1), all integers big-endian::

    header:  b"CLBREC" u16 version
    frame:   u32 body length, u32 CRC-32 of body, body
    body:    u8 kind, f64 unix time, u32 meta length, meta (UTF-8 JSON object), payload

Kinds: ``start`` (a server run began; meta holds the settings that shape replay),
``connect`` (meta: doc, peer, kind "yjs"/"text", user, readonly, the server document's
Yjs client id and revision; payload: the document's whole state the first time the run
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from collab.config import Settings
from collab.records import Record
from collab.session import PeerId, Session

if TYPE_CHECKING:
    from collab.store import StoredDocument

MAGIC = b"CLBREC"
VERSION = 1
HEADER = MAGIC + struct.pack(">H", VERSION)
_FRAME = struct.Struct(">II")  # body length, crc32
_BODY = struct.Struct(">BdI")  # kind, time, meta length
MAX_FRAME_BYTES = 1 << 30

KINDS = {1: "start", 2: "connect", 3: "binary", 4: "text", 5: "disconnect", 6: "edit"}
KIND_CODES = {kind: code for code, kind in KINDS.items()}

# Settings that change what a session does with the same input: kept in the start frame.
REPLAY_SETTINGS = ("text_name", "max_document_bytes", "history_in_memory")


class RecordingError(ValueError):
    """The recording cannot be read: `path`, byte `offset` and what is wrong."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at byte {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason


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
        self._file.write(_FRAME.pack(len(body), zlib.crc32(body)) + body)
        self._file.flush()


def _check_header(path: Path) -> None:
    with open(path, "rb") as file:
        header = file.read(len(HEADER))
    if header[: len(MAGIC)] != MAGIC:
        raise RecordingError(path, 0, "not a collab recording")
    (version,) = struct.unpack(">H", header[len(MAGIC) :])
    if version != VERSION:
        raise RecordingError(path, len(MAGIC), f"recording version {version} is not {VERSION}")


def read_events(path: str | Path) -> Iterator[Event]:
    """The events of a recording, in order. A torn last frame (a crash) ends the file."""
    path = Path(path)
    _check_header(path)
    with open(path, "rb") as file:
        offset = file.seek(len(HEADER))
        while head := file.read(_FRAME.size):
            if len(head) < _FRAME.size:
                return
            length, crc = _FRAME.unpack(head)
            if not _BODY.size <= length <= MAX_FRAME_BYTES:
                raise RecordingError(path, offset, f"frame length {length} is impossible")
            body = file.read(length)
            if len(body) < length:
                return
            if zlib.crc32(body) != crc:
                raise RecordingError(path, offset, "checksum mismatch")
            yield _decode_body(path, offset, body)
            offset += _FRAME.size + length


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


# ---------------------------------------------------------------------- replay


@dataclass
class _Document:
    """One document under replay: its session and what the server's store would hold."""

    session: Session
    base: bytes | None
    base_rev: int
    records: list[Record] = field(default_factory=list)


class Replayer:
    """Feeds recorded events to sessions, one at a time, exactly as the hub did.

    Each session's clock reads the time of the event being replayed, so replayed records
    carry the recorded times. When the server had reloaded a document (its Yjs client id
    changed), the replay reloads it too, from the state it has reached.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.documents: dict[str, _Document] = {}
        self.now = 0.0
        self._run_settings = settings or Settings()
        self._peers: dict[PeerId, str] = {}  # connected peer -> its document

    @property
    def sessions(self) -> dict[str, Session]:
        return {name: document.session for name, document in self.documents.items()}

    def feed(self, event: Event) -> Session | None:
        """Replay one event; returns the session it touched, if any."""
        self.now = event.time
        if event.kind == "start":
            self._start(event)
            return None
        document = self.documents.get(event.doc)
        if event.kind == "connect":
            document = self._connect(event, document)
        if document is None:
            return None
        session = document.session
        if event.kind in ("binary", "text"):
            session.receive(event.peer, event.data)
        elif event.kind == "disconnect":
            self._peers.pop(event.peer, None)
            session.disconnect(event.peer)
        elif event.kind == "edit":
            meta = event.meta
            session.edit_text(meta["op"], origin=meta["origin"], user=meta.get("user"))
        document.records += session.take_output().records
        return session

    def _start(self, event: Event) -> None:
        """A new server run: the previous run's peers are gone."""
        for peer_id, name in list(self._peers.items()):
            session = self.documents[name].session
            session.disconnect(peer_id)
            session.take_output()
        self._peers.clear()
        if self.settings is None:
            known = {k: v for k, v in event.meta.items() if k in REPLAY_SETTINGS}
            self._run_settings = Settings().replace(**known)

    def _connect(self, event: Event, document: _Document | None) -> _Document:
        meta = event.meta
        client_id = meta.get("client_id")
        if document is None:
            base = event.payload or None
            base_rev = int(meta.get("rev", 0)) if base else 0
            session = self._new_session(event.doc, base, base_rev, [], client_id)
            document = _Document(session, base, base_rev)
            self.documents[event.doc] = document
        elif client_id is not None and document.session.document.client_id != client_id:
            self._reload(event.doc, document, meta)
        self._peers[event.peer] = event.doc
        user, readonly = meta.get("user"), bool(meta.get("readonly"))
        if meta.get("kind") == "text":
            document.session.connect_text(event.peer, user, readonly)
        else:
            document.session.connect_yjs(event.peer, user, readonly)
        return document

    def _reload(self, name: str, document: _Document, meta: dict[str, Any]) -> None:
        """The server loaded the document afresh (it had unloaded it, or restarted).

        So does the replay: a new session, with the server's client id, holding in memory
        the revisions after the server's last snapshot, as the server's did.
        """
        session = self._new_session(
            name, document.base, document.base_rev, document.records, meta["client_id"]
        )
        snapshot_rev = int(meta.get("snapshot_rev", 0))
        while session.history and session.history[0].rev <= snapshot_rev:
            session.history.popleft()
        session.document.base_rev = snapshot_rev
        document.session = session

    def _new_session(
        self,
        name: str,
        base: bytes | None,
        base_rev: int,
        records: list[Record],
        client_id: int | None,
    ) -> Session:
        from collab.store import StoredDocument

        stored: StoredDocument | None = None
        if base or records:
            stored = StoredDocument(base, base_rev, list(records), 0)
        return Session(
            name, self._run_settings, stored, clock=lambda: self.now, client_id=client_id
        )


def replay_recording(path: str | Path, settings: Settings | None = None) -> dict[str, Session]:
    """Replay a whole recording; the sessions it leaves, by document name.

    `settings` overrides the settings the recording kept (text name, size limits).
    """
    replayer = Replayer(settings)
    for event in read_events(path):
        replayer.feed(event)
    return replayer.sessions
