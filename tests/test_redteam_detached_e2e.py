"""Red team of detached documents through real sockets (issue 19, `collab.session.replica`).

A stranger with a link (a read-only text peer is enough) joins and leaves a big document
again and again while a writer types. Each join needs pycrdt; each leave, or the next Yjs
edit, detached the document again, so each join rebuilt it on the loop (~150 ms at
64 MiB). A rebuilt document now stays attached until the rebuild is paid back
(`REBUILD_SHARE`: 50 times its cost), so joins faster than that rebuild it once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from conftest import ServerProcess
from pyclient import YClient
from test_e2e_lanes import settled
from text_tab import Tab
from websockets.asyncio.client import connect

from collab.session.replica import REBUILD_SHARE
from collab.text.client import TextClient

REBUILT = re.compile(r"a reader needed the pycrdt document: rebuilt in (\d+) ms")
LINE = "👩‍👩‍👧 中文 e\u0301 plain text 🇫🇷\r\n"


async def join_text(url: str) -> Tab:
    """A text peer that takes a welcome of any length."""
    ws = await connect(url, proxy=None, compression=None, max_size=None)
    tab = Tab(ws, TextClient("secret-of-a-stranger-0123456789", {"name": "stranger"}))
    await tab.send([tab.client.hello()])
    await tab.until(lambda: tab.client.joined, "a welcome")
    return tab


def test_a_text_peer_joining_and_leaving_again_and_again_rebuilds_rarely(
    start_server: Callable[..., ServerProcess],
) -> None:
    # Past --text-door-max-bytes text peers are turned away: this is the server without it.
    server = start_server("--detach-from-bytes", "1", "--text-door-max-bytes", "0")
    url = f"{server.ws_url}/yjs/big"
    cycles = 6

    async def run() -> float:
        writer, watcher = await YClient.connect(url), await YClient.connect(url)
        for client in (writer, watcher):
            await client.synced()
        writer.append(LINE * 120_000)  # ~5.6 MiB: a rebuild costs ~10 ms
        await settled([writer, watcher], timeout=60)
        started = time.perf_counter()
        for i in range(cycles):
            tab = await join_text(f"{server.ws_url}/ot/big")
            await tab.close()
            writer.append(f"✍️{i}")  # an edit after it left: that detached the document
            await settled([writer, watcher])
        elapsed = time.perf_counter() - started
        for client in (writer, watcher):
            await client.close()
        return elapsed

    elapsed = asyncio.run(run())
    assert server.stop() == 0
    costs = [int(ms) for ms in REBUILT.findall(server.log())]
    assert costs, "never rebuilt"
    # The fewest seconds between two rebuilds (the log rounds to whole ms).
    window = max(min(costs) - 0.5, 0.0) / 1000 * (1 + 1 / REBUILD_SHARE)
    allowed = 1 + (int(elapsed / window) if window else cycles)
    assert len(costs) <= allowed, (costs, f"{elapsed:.2f} s")
