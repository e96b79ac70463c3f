"""Replaying what was stored: the one place a document is rebuilt from its records.

Two ways, for two questions:

- `DocReplay` rebuilds the bare Yjs document (~10 µs a record): what the history index,
  `verify` and `collab replay` use to answer "what was the text at revision R?".
- `replay_log` and `Replayer` run the records or a recording's events through the very
  `Session` the server runs, from a `stored_session`: what tests use to check the engine
  reproduces what happened (`collab.testing` is the public face of these).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pycrdt import Doc, Text

from collab.config import Settings
from collab.replay.recording import REPLAY_SETTINGS, Event, read_events
from collab.session import PeerId, Session
from collab.storage.contract import Record, StoredDocument
from collab.storage.errors import HistoryError
from collab.storage.logs import RetainedLog, document_segments, read_history, segments_at
from collab.yjs.crdt import InvalidUpdateError, apply_update

# ---------------------------------------------------------------------- the bare document


class DocReplay:
    """A bare Yjs document at revision `rev`, moved forward one stored update at a time."""

    def __init__(self, text_name: str = "text", state: bytes | None = None, rev: int = 0) -> None:
        self.doc = Doc()
        self.text = self.doc.get(text_name, type=Text)
        self.rev = rev
        if state:
            self.apply(state, rev)

    def apply(self, update: bytes, rev: int) -> None:
        """Apply the update of revision `rev` (or a state at `rev`); HistoryError if it
        does not apply."""
        try:
            apply_update(self.doc, update)
        except InvalidUpdateError as error:
            reason = f"the update of rev {rev} does not apply: {error}"
            raise HistoryError("log", 0, reason) from None
        self.rev = rev

    def state(self) -> bytes:
        return self.doc.get_update()


def texts(log: RetainedLog, text_name: str = "text") -> Iterator[tuple[Record, str]]:
    """Each record with the text right after it, replaying from the start of `log`."""
    replay = DocReplay(text_name, log.base_state, log.base_rev)
    for record in log.records:
        replay.apply(record.update, record.rev)
        yield record, str(replay.text)


def replay_text(
    log: RetainedLog,
    rev: int | None = None,
    text_name: str = "text",
    progress: Callable[[int], None] | None = None,
) -> str:
    """The text at `rev` (default: the last), in one pass over the log.

    Raises `RevisionNotFoundError` for a revision outside the kept history.
    """
    target = log.last_rev if rev is None else rev
    log.check_rev(target)
    replay = DocReplay(text_name, log.base_state, log.base_rev)
    for record in log.records[: target - log.base_rev]:
        replay.apply(record.update, record.rev)
        if progress is not None:
            progress(record.rev - log.base_rev)
    return str(replay.text)


# ---------------------------------------------------------------------- through a Session


def stored_session(
    name: str,
    settings: Settings | None,
    stored: StoredDocument | None,
    clock: Callable[[], float],
    client_id: int | None = None,
) -> Session:
    """A session loaded from `stored` as the hub would load it (None, or nothing stored:
    a new document), whose clock reads replayed times."""
    if stored is not None and not (stored.snapshot or stored.records):
        stored = None
    return Session(name, settings, stored, clock=clock, client_id=client_id)


class Step(NamedTuple):
    """One revision of a replayed log: the stored record, and the text right after it."""

    record: Record
    text: str


class ReplayMismatchError(AssertionError):
    """The engine did not reproduce the log (a revision changed nothing, or the texts differ)."""


def replay_log(
    path: str | Path,
    name: str | None = None,
    *,
    settings: Settings | None = None,
    check: bool = True,
) -> Iterator[Step]:
    """Replay a document's log through a `Session`, yielding each revision and its text.

    `path` is a document's directory or one ``.ylog`` file; with `name`, `path` is a
    ``--data-dir`` and `name` the document. The replay starts from the oldest snapshot
    kept when the oldest revisions were not. With `check`, each step also checks that the
    session's revision number follows the record's and that its code-point text equals
    the Yjs text (a `ReplayMismatchError` otherwise).
    """
    path = Path(path)
    segments = document_segments(path, name) if name is not None else segments_at(path)
    if not segments:
        raise FileNotFoundError(f"no document {name!r} in {path}")
    log = read_history(segments)
    now = [log.records[0].time if log.records else 0.0]
    stored = StoredDocument(log.base_state, log.base_rev, [], 0)
    session = stored_session(name or path.stem, settings, stored, lambda: now[0])
    for record in log.records:
        now[0] = record.time
        applied = session.apply_update(record.update, record.origin, record.user)
        session.take_output()
        if check:
            _check_step(session, record, applied)
        yield Step(record, session.mirror)


def _check_step(session: Session, record: Record, applied: Record | None) -> None:
    if applied is None:
        raise ReplayMismatchError(f"rev {record.rev}: the update changed nothing on replay")
    if applied.rev != record.rev:
        raise ReplayMismatchError(f"rev {record.rev} replayed as rev {applied.rev}")
    yjs_text = str(session.document.text)
    if session.mirror != yjs_text:
        raise ReplayMismatchError(
            f"rev {record.rev}: the engine's text {session.mirror!r} != Yjs text {yjs_text!r}"
        )


# ---------------------------------------------------------------------- recordings


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
            known.setdefault("text_door_max_bytes", 0)  # recorded before there was a limit
            self._run_settings = Settings().replace(**known)

    def _connect(self, event: Event, document: _Document | None) -> _Document:
        meta = event.meta
        client_id = meta.get("client_id")
        if document is None:
            base = event.payload or None
            base_rev = int(meta.get("rev", 0)) if base else 0
            session = self._session(event.doc, base, base_rev, [], client_id)
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
        session = self._session(
            name, document.base, document.base_rev, document.records, meta["client_id"]
        )
        snapshot_rev = int(meta.get("snapshot_rev", 0))
        while session.history and session.history[0].rev <= snapshot_rev:
            session.history.popleft()
        document.session = session

    def _session(
        self,
        name: str,
        base: bytes | None,
        base_rev: int,
        records: list[Record],
        client_id: int | None,
    ) -> Session:
        stored = StoredDocument(base, base_rev, list(records), 0)
        return stored_session(name, self._run_settings, stored, lambda: self.now, client_id)


def recording_steps(
    path: str | Path, settings: Settings | None = None
) -> Iterator[tuple[Event, Session | None]]:
    """Replay a recording event by event: each event and the session it touched, after it.

    `start` events (a server run began) touch no session and come with None.
    """
    replayer = Replayer(settings)
    for event in read_events(path):
        yield event, replayer.feed(event)


def replay_recording(path: str | Path, settings: Settings | None = None) -> dict[str, Session]:
    """Replay a whole recording; the sessions it leaves, by document name.

    `settings` overrides the settings the recording kept (text name, size limits).
    """
    replayer = Replayer(settings)
    for event in read_events(path):
        replayer.feed(event)
    return replayer.sessions
