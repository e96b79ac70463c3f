"""One piece of work in a child process of its own, awaited from the event loop.

Work proportional to a document's size (building and checking a snapshot of tens of MB)
holds the GIL in pycrdt calls for tens of milliseconds at a time: in a thread it would still
stall every other document. A child process runs it instead, one process per task, so
whatever memory the work took goes back to the system when it ends.

The child is a fresh interpreter (`python -P -c ...`, running `serve`), not a fork: it
inherits none of the server's threads, sockets or locks, and never re-runs the program
that embeds collab (as multiprocessing's spawn and forkserver do with `__main__`). The
task goes in on its stdin and the answer comes back on its stdout, both pickled; a pipe the
server holds open tells the child when the server is gone (kill -9), and it stops at once.
A big bytes answer (a 64 MiB state) is written to a file the server made instead: read
back with its size known, the GIL is released, where unpickling it held the GIL ~45 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from collab.storage.durable import write_all
from collab.storage.format import read_rest

T = TypeVar("T")

_EXIT_ORPHANED = 70
# Background work: on a core it shares with the server (taskset, a busy machine), the
# scheduler lets the event loop run first whenever it has something to do.
NICENESS = 10
BIG_ANSWER = 1 << 20
"""Bytes from which a bytes answer comes back through the answer file, not the pipe."""
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); import collab.storage.worker as w; w.serve()"


class WorkerError(RuntimeError):
    """The child process raised (the message holds its error) or died (killed, out of
    memory): nothing it was asked to do can be trusted to be done."""


async def run_in_process(func: Callable[..., T], *args: Any, memory_limit: int = 0) -> T:
    """`func(*args)` (a module-level function) in a new child process; its result.

    Raises `WorkerError` when the child raised or died. `memory_limit` (bytes, 0: none)
    caps the child's address space: work that needs more fails in the child, never in the
    server. A cancelled caller kills the child and waits for it to end (however often it
    is cancelled meanwhile), so nothing of it outlives the caller's locks."""
    request = pickle.dumps((func, args, memory_limit), protocol=pickle.HIGHEST_PROTOCOL)
    alive_read, alive_write = os.pipe()
    children: list[subprocess.Popen[bytes]] = []
    work = asyncio.ensure_future(asyncio.to_thread(_run, request, alive_read, children))
    try:
        kind, value = await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            for child in children:
                child.kill()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work], timeout=0.05)
        raise
    finally:
        os.close(alive_read)
        os.close(alive_write)
    if kind == "error":
        raise WorkerError(value)
    return value  # type: ignore[no-any-return]


def _run(request: bytes, alive: int, children: list[subprocess.Popen[bytes]]) -> tuple[str, Any]:
    """Start the child, send the task, wait for the answer: ("ok", result) or ("error", why)."""
    with tempfile.TemporaryFile() as answer_file:  # no name: nothing is left behind
        child = _start(alive, answer_file.fileno())
        children.append(child)
        try:
            out, err = child.communicate(request)
        except BrokenPipeError:  # it died before reading its task
            out, err = b"", b""
            child.wait()
        if child.returncode == 0 and out:
            answer: tuple[str, Any] = pickle.loads(out)
            if answer[0] == "in-file":  # written through the same open file: at its end
                answer_file.seek(0)
                return "ok", read_rest(answer_file)
            return answer
    code = child.returncode
    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    last = err.decode(errors="replace").strip().splitlines()[-1:]
    return "error", f"the worker process died ({how}){': ' + last[0] if last else ''}"


def _start(alive: int, answer_file: int) -> subprocess.Popen[bytes]:
    """The child, importing this very copy of collab (whatever the caller's sys.path or
    working directory): `python -P` leaves the directory out, `_CHILD` puts ours first."""
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen(
        [sys.executable, "-P", "-c", _CHILD, root, str(alive), str(answer_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(alive, answer_file),
    )


def serve() -> None:
    """The child (`_CHILD`): run the task from stdin, answer on stdout."""
    alive = int(sys.argv[2])
    threading.Thread(target=_exit_when_orphaned, args=(alive,), daemon=True).start()
    os.nice(NICENESS)
    func, args, limit = pickle.loads(sys.stdin.buffer.read())
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        answer: tuple[str, Any] = ("ok", func(*args))
        if isinstance(answer[1], bytes) and len(answer[1]) >= BIG_ANSWER:
            with open(int(sys.argv[3]), "wb", buffering=0, closefd=False) as out:
                write_all(out, answer[1])
            answer = ("in-file", None)
    except BaseException as error:  # pycrdt panics are BaseExceptions
        where = traceback.extract_tb(error.__traceback__)[-1:]
        at = f" ({where[0].filename}:{where[0].lineno})" if where else ""
        answer = ("error", f"{type(error).__name__}: {error}{at}")
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


def _exit_when_orphaned(alive: int) -> None:
    """The server never writes to this pipe: end of file means it is gone."""
    with contextlib.suppress(OSError):
        os.read(alive, 1)
    os._exit(_EXIT_ORPHANED)
