"""Regenerate the logs and recordings in tests/data (run: python tests/data/make_data.py).

- `unicode-notes/`: one document's directory as `collab serve` stores it (two segments:
  a snapshot at rev 6 and the log after it, the first log kept), made by a `Session`
  editing emoji, ZWJ sequences, flags, CJK, combining marks and \\r\\n.
- `two-peers.rec`: a recording of a Yjs peer and a text-operation peer editing one
  document through the real `Hub` (in-process connections, no network), then a peer
  leaving and a new one joining.
- `expected.json`: what replaying them must give (texts after each revision, final texts).

Times and the peers' Yjs client ids are fixed, so the texts come out the same on every run
(the server session's own client id is random, so the bytes of the recording differ).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from pycrdt import Doc, Text

from collab.config import Settings
from collab.hub import Hub
from collab.replay.recording import Recorder
from collab.session import Session
from collab.storage.contract import Snapshot
from collab.storage.files import FileStore
from collab.storage.memory import MemoryStore
from collab.yjs import protocol

HERE = Path(__file__).resolve().parent
NOTES = "unicode notes/😀"
EDITS = [
    "héllo",
    "héllo 😀",
    "héllo 😀 👨‍👩‍👧",
    "héllo 😀 👨‍👩‍👧\r\n中文",
    "héllo 👨‍👩‍👧\r\n中文",
    "héllo 👨‍👩‍👧\r\n中文 🇫🇷 👍🏽",
    "e\u0301 héllo 👨‍👩‍👧\r\n中文 🇫🇷 👍🏽",
    "e\u0301 héllo 👨‍👩‍👧\r\n中文 🇫🇷",
    "e\u0301 hello 👨‍👩‍👧\r\n中文 🇫🇷\r\n",
]


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


async def make_log(directory: Path) -> list[str]:
    """A document's directory with two segments; returns the text after each revision."""
    data_dir = HERE / ".tmp-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    store = FileStore(data_dir, fsync=False)
    session = Session(NOTES, Settings(), clock=Clock())
    texts = []
    for number, text in enumerate(EDITS, start=1):
        session.replace_text(text, origin="server:make_data", user=f"user{number % 2}")
        await store.append(NOTES, session.take_output().records)
        texts.append(session.mirror)
        if number == 6:
            await store.compact(NOTES, Snapshot(session.rev, session.state))
    await store.close()
    (source,) = (data_dir / "docs").iterdir()
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(source, directory)
    shutil.rmtree(data_dir)
    return texts


class Connection:
    """An in-process socket: what the hub sends is kept, nothing goes anywhere."""

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []

    async def send(self, data: bytes | str) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        pass


def yjs_edit(doc: Doc, text: Text, index: int, value: str) -> bytes:
    before = doc.get_state()
    text.insert(len(str(text)[:index].encode()), value)
    return protocol.encode_sync_update(doc.get_update(before))


async def make_recording(path: Path) -> dict[str, str]:
    """Record two peers (Yjs and text) through a real Hub; returns the final texts."""
    path.unlink(missing_ok=True)
    settings = Settings(idle_unload_seconds=3600)
    recorder = Recorder(path, settings, clock=Clock())
    hub = Hub(MemoryStore(), settings, recorder=recorder)
    runner = await hub.open("shared 中文")

    doc = Doc(client_id=4242)
    text = doc.get("text", type=Text)
    yjs = runner.connect(Connection(), "yjs", "ada", False)
    runner.receive(yjs, protocol.encode_sync_step1(doc.get_state()))
    runner.receive(yjs, yjs_edit(doc, text, 0, "héllo 😀\r\n"))
    await runner.flush()

    ot = runner.connect(Connection(), "text", "bob", False)
    runner.receive(ot, json.dumps({"type": "hello", "secret": "secret-of-bob-1-xyz", "rev": None}))
    await runner.flush()
    rev = runner.rev
    end = len(runner.text)
    runner.receive(ot, json.dumps({"type": "op", "seq": 1, "rev": rev, "op": [end, "👨‍👩‍👧 中文"]}))
    runner.receive(yjs, yjs_edit(doc, text, 6, "🇫🇷 "))  # concurrent with bob's op
    runner.receive(ot, json.dumps({"type": "op", "seq": 1, "rev": rev, "op": [end, "dup"]}))
    runner.receive(yjs, b"\x07garbage")  # closes the Yjs peer: recorded, replayed alike
    await runner.flush()
    runner.disconnect(yjs)

    late = Doc(client_id=777)
    late_text = late.get("text", type=Text)
    late.apply_update(runner.state)
    again = runner.connect(Connection(), "yjs", None, False)
    runner.receive(again, protocol.encode_sync_step1(late.get_state()))
    runner.receive(again, yjs_edit(late, late_text, 0, "e\u0301 👍🏽 "))
    await runner.flush()
    runner.disconnect(again)
    runner.disconnect(ot)
    await hub.close()
    recorder.close()
    return {"shared 中文": runner.text}


async def main() -> None:
    texts = await make_log(HERE / "unicode-notes")
    finals = await make_recording(HERE / "two-peers.rec")
    expected = {"unicode-notes": {"name": NOTES, "texts": texts}, "two-peers.rec": finals}
    (HERE / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n")
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.name != "make_data.py")))


if __name__ == "__main__":
    asyncio.run(main())
