"""Replay: `collab replay`, `--verify`, the recorder, and the `collab.testing` helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import v1_snapshot
from ot_ids import secret_for
from pyclient import YClient, connect_options, state_vector, url_name
from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from collab.replay.history import DocumentHistory
from collab.replay.recording import Recorder, read_events
from collab.replay.verify import verify
from collab.session import Session
from collab.storage.contract import Snapshot, StoredDocument
from collab.storage.errors import RecordingError
from collab.storage.files import FileStore
from collab.storage.format import (
    FRAME,
    LOG_HEADER,
    encode_log,
    encode_snapshot,
    read_log_file,
    read_snapshot_file,
)
from collab.storage.logs import LogReader, segments_at
from collab.testing import ReplayMismatchError, recording_steps, replay_log, replay_recording
from collab.yjs import protocol

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "expected.json").read_text())
NOTES = EXPECTED["unicode-notes"]


def collab(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "collab", "replay", *map(str, args)]
    return subprocess.run(command, capture_output=True, timeout=60)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy of tests/data/unicode-notes as a `collab serve --data-dir`."""
    shutil.copytree(DATA / "unicode-notes", tmp_path / "docs" / "notes")
    return tmp_path


# ---------------------------------------------------------------------- collab.testing


def test_replay_log_gives_the_text_after_each_revision() -> None:
    steps = list(replay_log(DATA / "unicode-notes"))
    assert [step.text for step in steps] == NOTES["texts"]
    assert [step.record.rev for step in steps] == list(range(1, 10))
    assert {step.record.user for step in steps} == {"user0", "user1"}


def test_replay_log_by_data_dir_and_name(data_dir: Path) -> None:
    (data_dir / "docs" / "notes").rename(data_dir / "docs" / "n-x")
    (data_dir / "docs" / "n-x" / "name").write_text("x")
    assert [step.text for step in replay_log(data_dir, "x")] == NOTES["texts"]


def test_replay_log_notices_when_the_engine_does_not_reproduce_it(tmp_path: Path) -> None:
    records = read_log_file(DATA / "unicode-notes" / "log-000000000000.ylog")
    records[1] = dataclasses.replace(records[1], update=b"\x00\x00")  # changes nothing
    log = tmp_path / "log-000000000000.ylog"
    log.write_bytes(encode_log(records))
    steps = replay_log(log)
    assert next(steps).text == NOTES["texts"][0]
    with pytest.raises(ReplayMismatchError, match="rev 2: the update changed nothing"):
        next(steps)


def test_recording_replays_step_by_step() -> None:
    name, final = next(iter(EXPECTED["two-peers.rec"].items()))
    texts = [
        session.mirror
        for event, session in recording_steps(DATA / "two-peers.rec")
        if session is not None and event.kind in ("binary", "text")
    ]
    assert texts[-1] == final
    assert "👨‍👩‍👧 中文" in final and "dup" not in final  # a resent op is not applied twice
    assert replay_recording(DATA / "two-peers.rec")[name].mirror == final


# ---------------------------------------------------------------------- the CLI


def test_cli_prints_the_text_exactly(data_dir: Path) -> None:
    result = collab("--data-dir", data_dir, "notes")
    assert result.returncode == 2  # the directory is named by its key, not "notes"
    directory = data_dir / "docs" / "notes"
    result = collab(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == NOTES["texts"][-1]  # \r\n kept, no newline added
    assert result.stderr == b""  # no progress bar when stderr is not a terminal
    assert collab(directory, "--at", "4").stdout.decode() == NOTES["texts"][3]
    assert collab(directory, "--at", "0").stdout == b""
    at_time = collab(directory, "--time", "2023-11-14T22:13:26Z")  # rev 4 was at :26
    assert at_time.stdout.decode() == NOTES["texts"][3]
    missing = collab(directory, "--at", "99")
    assert missing.returncode == 1 and b"latest is 9" in missing.stderr


def test_cli_steps_prints_every_revision(data_dir: Path) -> None:
    result = collab(data_dir / "docs" / "notes", "--steps")
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["rev"] for line in lines] == list(range(1, 10))
    assert [line["text"] for line in lines] == NOTES["texts"]
    assert lines[0]["origin"] == "server:make_data" and lines[0]["user"] == "user1"
    assert lines[0]["time"] == "2023-11-14T22:13:21.500Z"


def test_cli_replays_a_copied_log_file(tmp_path: Path) -> None:
    first = tmp_path / "first.ylog"
    shutil.copy(DATA / "unicode-notes" / "log-000000000000.ylog", first)
    result = collab(first)
    assert result.stdout.decode() == NOTES["texts"][5]  # the first log ends at the snapshot
    second = tmp_path / "second.ylog"
    shutil.copy(DATA / "unicode-notes" / "log-000000000006.ylog", second)
    result = collab(second)
    assert result.returncode == 1 and b"snapshot-000000000006.ysnap" in result.stderr
    shutil.copy(DATA / "unicode-notes" / "snapshot-000000000006.ysnap", tmp_path)
    assert collab(second).stdout.decode() == NOTES["texts"][-1]


def test_cli_replays_a_recording() -> None:
    name, final = next(iter(EXPECTED["two-peers.rec"].items()))
    result = collab("--recording", DATA / "two-peers.rec", name)
    assert result.stdout.decode() == final
    assert collab("--recording", DATA / "two-peers.rec", "other").returncode == 2


def test_verify_ok(data_dir: Path) -> None:
    result = collab(data_dir / "docs" / "notes", "--verify")
    assert result.returncode == 0, result.stdout
    assert result.stdout.decode().startswith("OK: 9 revisions (last 9) in 2 segments, 1 snapshots")


def test_verify_names_the_file_and_offset_of_a_bad_checksum(data_dir: Path) -> None:
    log = data_dir / "docs" / "notes" / "log-000000000000.ylog"
    data = bytearray(log.read_bytes())
    second = LOG_HEADER.size + FRAME.size + FRAME.unpack_from(data, 8)[0]
    data[second + FRAME.size + 20] ^= 0xFF  # a byte inside the second record's body
    log.write_bytes(bytes(data))
    result = collab(data_dir / "docs" / "notes", "--verify")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert f"{log}: byte {second}: error: CRC mismatch" in out
    assert out.splitlines()[-1].startswith("DAMAGED")


def test_verify_history_and_replay_read_a_version_1_snapshot(data_dir: Path) -> None:
    """A directory written before snapshot meta existed (snapshot format version 1)."""
    directory = data_dir / "docs" / "notes"
    snapshot = directory / "snapshot-000000000006.ysnap"
    state = read_snapshot_file(snapshot).state
    snapshot.write_bytes(v1_snapshot(6, state))

    assert verify(segments_at(directory)).problems == []
    assert [step.text for step in replay_log(directory)] == NOTES["texts"]
    assert collab(directory, "--at", "7").stdout.decode() == NOTES["texts"][6]
    history = DocumentHistory(LogReader(lambda: segments_at(directory)), interval=4)
    history.refresh()
    assert [history.text_at(rev) for rev in range(1, 10)] == NOTES["texts"]
    history.close()


def test_verify_finds_a_snapshot_that_is_not_the_replay(data_dir: Path) -> None:
    directory = data_dir / "docs" / "notes"
    other = Doc()
    other.get("text", type=Text).insert(0, "not what the log says")
    (directory / "snapshot-000000000006.ysnap").write_bytes(
        encode_snapshot(Snapshot(6, other.get_update()))
    )
    report = verify(segments_at(directory))
    assert not report.ok
    (problem,) = report.problems
    assert problem.path.name == "snapshot-000000000006.ysnap"
    assert "differs from the replay of the log up to rev 6" in problem.message


def test_verify_a_torn_last_record_is_only_a_warning(data_dir: Path) -> None:
    log = data_dir / "docs" / "notes" / "log-000000000006.ylog"
    log.write_bytes(log.read_bytes() + b"\x40\x00\x00\x00\x01\x02")
    report = verify(segments_at(data_dir / "docs" / "notes"))
    assert report.ok and report.records == 9
    (problem,) = report.problems
    assert not problem.fatal and "torn" in problem.message


# ---------------------------------------------------------------------- the recorder


def test_recording_survives_a_torn_tail_and_reports_corruption(tmp_path: Path) -> None:
    path = tmp_path / "r.rec"
    shutil.copy(DATA / "two-peers.rec", path)
    events = list(read_events(path))
    with open(path, "ab") as file:
        file.write(b"\x00\x00\x01\x00partial")
    assert len(list(read_events(path))) == len(events)
    data = bytearray(path.read_bytes())
    data[events[3].offset + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=f"at offset {events[3].offset}: checksum"):
        list(read_events(path))


def test_a_version_1_recording_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "old.rec"
    path.write_bytes(b"CLBREC\x00\x01" + bytes(40))  # big-endian, before frames were shared
    with pytest.raises(RecordingError, match="at offset 6: a version 1 recording"):
        list(read_events(path))
    with pytest.raises(RecordingError, match="version 1"):
        Recorder(path)


def test_recording_replays_a_reloaded_document_byte_for_byte(tmp_path: Path) -> None:
    """By hand, as the hub does: the server reloads the document (new Yjs client id)."""
    path = tmp_path / "r.rec"
    recorder = Recorder(path)
    server = Session("d")
    doc = Doc(client_id=99)
    text = doc.get("text", type=Text)

    def yjs_peer(peer_id: int, value: str) -> None:
        recorder.connect(server, peer_id, "yjs", None, False)
        server.connect_yjs(peer_id)
        before = doc.get_state()
        text.insert(len(str(text).encode()), value)
        message = protocol.encode_sync_update(doc.get_update(before))
        recorder("d", peer_id, message)
        server.receive(peer_id, message)

    def text_peer(peer_id: int, client: str, value: str) -> None:
        recorder.connect(server, peer_id, "text", None, False)
        server.connect_text(peer_id)
        for message in (
            {"type": "hello", "secret": secret_for(client), "rev": None},
            {"type": "op", "seq": 1, "rev": server.rev, "op": [len(server.mirror), value]},
        ):
            recorder("d", peer_id, json.dumps(message))
            server.receive(peer_id, json.dumps(message))

    yjs_peer(1, "héllo 😀")
    text_peer(2, "t1", " 👨‍👩‍👧\r\n")
    for peer_id in (1, 2):
        recorder.disconnect("d", peer_id)
        server.disconnect(peer_id)
    server.take_output()
    # The hub unloads the idle document and loads it again: a new session, a new client id.
    server = Session("d", stored=StoredDocument(server.state, server.rev, [], 0))
    text_peer(3, "t2", " 中文 e\u0301")
    yjs_peer(4, " 🇫🇷")
    recorder.close()

    replayed = replay_recording(path)["d"]
    assert replayed.mirror == server.mirror
    assert replayed.state == server.state
    assert replayed.rev == server.rev


def http_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


async def test_recorded_server_session_replays_byte_for_byte(
    start_server: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "server.rec"
    server = start_server("--fsync", "never", "--record", str(recording))
    name = "rec/😀 notes"
    url = f"{server.ws_url}/yjs/{url_name(name)}"
    async with await YClient.connect(url) as ada, await YClient.connect(url) as bob:
        await ada.synced()
        await bob.synced()
        ada.insert(0, "héllo 👨‍👩‍👧")
        await bob.wait_text("héllo 👨‍👩‍👧")
        bob.append(" 🇫🇷\r\n")
        ada.insert(0, "👍🏽 ")
        ada.set_awareness({"user": {"name": "Ada"}})
        async with connect(f"{server.ws_url}/ot/{url_name(name)}", **connect_options()) as ot:
            await ot.send(json.dumps({"type": "hello", "secret": secret_for("cat"), "rev": None}))
            while (welcome := json.loads(await ot.recv()))["type"] != "welcome":
                pass
            length = len(welcome["text"])
            op = ["中文 e\u0301 ", *([length] if length else [])]
            await ot.send(json.dumps({"type": "op", "seq": 1, "rev": welcome["rev"], "op": op}))
            while json.loads(await ot.recv())["type"] != "ack":
                pass
        await ada.until(lambda: ada.text == bob.text and "中文" in ada.text, what="convergence")
    expected_text = ada.text
    state = http_bytes(f"{server.http_url}/api/docs/{url_name(name)}/update")
    assert recording.exists() and recording.stat().st_size > 0, "--record wrote nothing"

    session = replay_recording(recording)[name]
    assert session.mirror == expected_text
    assert state_vector(session.state) == state_vector(state)
    replica = Doc()
    replica.apply_update(state)
    assert str(replica.get("text", type=Text)) == session.mirror


async def test_a_long_replay_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    store = FileStore(tmp_path, fsync=False)
    session = Session("long")
    for number in range(1200):
        session.replace_text(session.mirror + ("😀" if number % 2 else "\r\n"))
    await store.append("long", session.take_output().records)
    await store.close()
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "collab", "replay", "--data-dir", str(tmp_path), "long"]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=terminal, timeout=60)
    os.close(terminal)
    chunks = []
    with contextlib.suppress(OSError):  # EIO: the terminal is closed and drained
        while chunk := os.read(controller, 65536):
            chunks.append(chunk)
    os.close(controller)
    shown = b"".join(chunks).decode()
    assert result.stdout.decode() == session.mirror
    assert "replaying [" in shown and "100% 1200/1200" in shown
