"""`collab serve` runs the loop's worker threads at a lower CPU priority than the loop.

Their work (CRCs, reads of big files) runs mostly without the GIL, beside the loop: on a
core they share with it, the loop waited its turn. Lower, they give way to it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest
from pyclient import YClient

from collab.server.serve import BACKGROUND_NICENESS, background_threads


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
async def test_the_loops_worker_threads_give_way_to_it() -> None:
    loop_nice = own_nice()
    background_threads(asyncio.get_running_loop())
    assert await asyncio.to_thread(own_nice) == min(loop_nice + BACKGROUND_NICENESS, 19)
    assert own_nice() == loop_nice  # the loop's thread (and the process) as they were


def nice_values(pid: int) -> dict[int, int]:
    """Each thread of a process: its nice value (field 19 of /proc/PID/task/TID/stat)."""
    values = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            values[int(task)] = int(stat.read().rsplit(")", 1)[1].split()[16])
    return values


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
async def test_collab_serve_runs_its_worker_threads_lower(start_server) -> None:
    server = start_server()
    async with await YClient.connect(f"{server.ws_url}/yjs/中文 😀") as client:
        client.insert(0, "e\u0301 👨‍👩‍👧\r\n")  # loaded, then written: worker threads
        await client.synced()
    pid = server.process.pid
    values = nice_values(pid)
    assert values.pop(pid) == 0  # the event loop's thread
    assert BACKGROUND_NICENESS in values.values()
