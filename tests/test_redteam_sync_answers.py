"""Red team of the sync answers (collab/session/sync_answers.py) over real sockets: what a
stranger's sync step 1 costs the event loop on a big document.

A peer that lacks fewer than `KEPT_FROM_LACKING` clocks is answered with a diff pycrdt
encodes on the loop. Its cost is not the clocks lacking: to start a diff inside an item
pycrdt slices the item, which costs as much as the item is long (~11 ms for one clock
short of a 16 MiB item; a pasted or imported text is one item until edited). A peer may
send 200 messages a second (a burst of 1,000), each with another state vector (the
per-batch cache never hits), so one socket keeps the loop of every document busy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from pyclient import YClient, url_name
from test_e2e_hocuspocus import served_here

from collab.config import Settings
from collab.yjs import protocol

NAME = "big-item/中 😀"
ITEM = ("👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 " * 200_000)[:1_500_000]  # ~6 MB of UTF-8, one item
WRITER = 7
STEPS = 100


def state_vector(clocks: dict[int, int]) -> bytes:
    parts = [protocol.write_var_uint(len(clocks))]
    for client, clock in clocks.items():
        parts += [protocol.write_var_uint(client), protocol.write_var_uint(clock)]
    return b"".join(parts)


class DiffEncodes:
    """pycrdt's Doc.get_update watched: the diffs encoded (a state vector other than the
    empty one) and the seconds they took, on whatever thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.seconds = 0.0
        real = pycrdt.Doc.get_update

        def get_update(doc: Any, state: bytes | None = None) -> bytes:
            start = time.perf_counter()
            try:
                return real(doc, state)
            finally:
                if state not in (None, b"\x00"):
                    self.count += 1
                    self.seconds += time.perf_counter() - start

        monkeypatch.setattr(pycrdt.Doc, "get_update", get_update)


async def test_step_1s_just_short_of_a_big_item_do_not_each_encode_a_diff_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data", fsync="never", log_level="warning")
    with served_here(settings) as (url, _):
        address = f"{url}/yjs/{url_name(NAME)}"
        async with await YClient.connect(address, client_id=WRITER, max_size=None) as writer:
            await writer.synced()
            writer.append(ITEM)
            end = len(ITEM.encode("utf-16-le")) // 2
            async with await YClient.connect(address, max_size=None) as watcher:
                await watcher.wait_text(ITEM, 60)  # the server has it
            async with await YClient.connect(address, handshake=False, max_size=None) as stranger:
                await stranger.until(lambda: len(stranger.received) >= 1, 10, "the server's step 1")
                watched = DiffEncodes(monkeypatch)
                for short in range(1, STEPS + 1):  # each one clock further short: no cache hit
                    stranger.send_raw(
                        protocol.encode_sync_step1(state_vector({WRITER: end - short}))
                    )
                answered = len(stranger.received) + STEPS
                await stranger.until(
                    lambda: len(stranger.received) >= answered or stranger.closed, 60, "answers"
                )
    # Measured (load ~3): 100 diffs, 236 ms in all (a 2 M-unit item), on the event loop.
    assert watched.count <= 10, (watched.count, f"{watched.seconds * 1000:.0f} ms")
    assert stranger.close_code == 1002 and "sync step 1 sent too often" in stranger.close_reason
