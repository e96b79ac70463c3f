"""collab.storage.worker: a task in a child process; its errors, its death, its cancellation."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from pathlib import Path

import pytest

from collab.storage import worker
from collab.storage.worker import BIG_ANSWER, NICENESS, WorkerError, run_in_process


def write_pid_and_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_the_result_comes_back_from_another_process_of_lower_priority() -> None:
    assert await run_in_process(os.getpid) != os.getpid()
    assert await run_in_process(os.nice, 0) == os.nice(0) + NICENESS
    assert await run_in_process(str.upper, "héllo 😀 中文") == "HÉLLO 😀 中文"


async def test_a_big_answer_comes_back_through_a_file_not_the_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unpickling a 64 MiB bytes answer held the GIL ~45 ms (a compaction's state on
    PostgreSQL): from `BIG_ANSWER` on, bytes come back through a file the server made and
    are read with their size known (the GIL released); what crosses the pipe is small."""
    piped: list[int] = []
    loads = pickle.loads
    monkeypatch.setattr(worker.pickle, "loads", lambda data: piped.append(len(data)) or loads(data))
    text = "👨‍👩‍👧 中文 e\u0301\r\n" * (BIG_ANSWER // 20)
    assert await run_in_process(str.encode, text) == text.encode()
    assert piped[-1] < 1024
    small = text[: BIG_ANSWER // 64]
    assert await run_in_process(str.encode, small) == small.encode()
    assert piped[-1] > len(small.encode())  # through the pipe, pickled


async def test_an_error_or_a_death_in_the_child_is_a_worker_error() -> None:
    with pytest.raises(WorkerError, match="ValueError: invalid literal"):
        await run_in_process(int, "x")
    with pytest.raises(WorkerError, match=r"died \(exit status 3\)"):
        await run_in_process(os._exit, 3)
    with pytest.raises(WorkerError, match=r"MemoryError|died"):
        await run_in_process(bytearray, 512 * 1024 * 1024, memory_limit=256 * 1024 * 1024)


async def test_a_cancelled_caller_kills_its_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = str(Path(__file__).resolve().parent)  # the child imports this module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run_in_process(write_pid_and_sleep, str(pid_file), 60))
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # twice: still waits for the child to be gone
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(pid)
