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

from collab.replay.rebuild import (
    ReplayMismatchError,
    Step,
    recording_steps,
    replay_log,
    replay_recording,
)

__all__ = ["ReplayMismatchError", "Step", "recording_steps", "replay_log", "replay_recording"]
