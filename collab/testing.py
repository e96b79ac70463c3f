"""Test helpers: replay an edit log or a recording through the engine, one step at a time.

A document's log (a `collab serve` data directory, one document's directory, or a single
``.ylog`` file copied from a bug report) replays through the very `Session` the server
runs, and a test asserts on the text after each revision::

    from collab.testing import replay_log

    def test_the_reported_document():
        steps = list(replay_log("tests/data/report-42"))
        assert steps[-1].text == "the text the user expected"
        assert all("\\ufffd" not in step.text for step in steps)

A recording made by ``collab serve --record FILE`` replays the same way, message by
message, with no network::

    from collab.testing import recording_steps, replay_recording

    sessions = replay_recording("tests/data/two-peers.rec")
    assert sessions["notes"].mirror == "hello 😀"
    for event, session in recording_steps("tests/data/two-peers.rec"):
        ...  # `session` is the document the event touched, right after it

`tests/data/make_data.py` shows how such files are made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from collab.config import Settings
from collab.history import document_segments, read_history, segments_at
from collab.recording import Event, Replayer, read_events, replay_recording
from collab.records import Record
from collab.session import Session
from collab.store import StoredDocument

__all__ = ["Step", "recording_steps", "replay_log", "replay_recording"]


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
    records = log.records
    now = [records[0].time if records else 0.0]
    stored = StoredDocument(log.base_state, log.base_rev, [], 0) if log.base_state else None
    session = Session(name or path.stem, settings, stored, clock=lambda: now[0])
    for record in records:
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


def recording_steps(
    path: str | Path, settings: Settings | None = None
) -> Iterator[tuple[Event, Session | None]]:
    """Replay a recording event by event: each event and the session it touched, after it.

    `start` events (a server run began) touch no session and come with None.
    """
    replayer = Replayer(settings)
    for event in read_events(path):
        yield event, replayer.feed(event)
