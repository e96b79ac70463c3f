"""Running the engine under uvicorn: one process, or several on one port (`--workers`).

On the fast path (our protocol subclasses, `collab.server.websocket` and
`collab.server.connections`) when `collab.server.internals` finds every private member they
use on the installed uvicorn, websockets and h11; on uvicorn's stock protocols (the public
ASGI path, where the app works as under any ASGI server) otherwise, with one warning.

Startup problems (a data directory another process holds, settings that cannot work
together) end the command with a one-line message and exit status 2, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn

from collab.access.http import is_public_bind
from collab.config import Settings
from collab.server.internals import fast_path_problem
from collab.storage.backends import BackendError
from collab.storage.dirlock import DataDirectoryError

log = logging.getLogger("collab")

PUBLIC_PATH_COST = (
    "no connection caps, no deadlines for request heads, bodies and slow readers, pings "
    "and pongs not counted against their sender, stuck peers not aborted at once"
)


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit code.

    On the fast path (uvicorn's protocols subclassed: `collab.server.websocket`,
    `collab.server.connections`) when `collab.server.internals` finds every private member
    it uses; on uvicorn's stock protocols otherwise, with one warning saying why."""
    from collab.web.engine import Collab

    warn_if_public(settings)
    problem = fast_path_problem()
    if problem is not None:
        log.warning(
            "collab serve runs on uvicorn's stock protocols (the public ASGI path): %s; "
            "the fast path's protections are off (%s): see docs/security.md",
            problem,
            PUBLIC_PATH_COST,
        )
    try:
        if settings.workers > 1:
            return serve_workers(settings, fast=problem is None)
        engine = Collab(settings=settings)
    except (DataDirectoryError, BackendError) as error:
        print(f"collab: {error}", file=sys.stderr)
        return 2
    if problem is None:
        serve_fast(settings, engine)
    else:
        config = uvicorn.Config(engine.app(), **public_options(settings))
        log.info(
            "collab listening on http://%s:%d, %s", settings.host, settings.port, where(settings)
        )
        uvicorn.Server(config).run()
    return 0


def serve_fast(settings: Settings, engine: Any) -> None:
    """One process on the fast path: our protocols, caps and a shutdown that closes peers."""
    from collab.server.connections import quiet_accept_errors

    install_caps(settings, engine)
    config = uvicorn.Config(engine.app(), **fast_options(settings))

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            quiet_accept_errors(asyncio.get_running_loop())
            background_threads(asyncio.get_running_loop())
            await super().startup(sockets)
            tune_collector()

        async def shutdown(self, sockets: Any = None) -> None:
            # Close our peers with 1001 and save before uvicorn closes sockets its own way.
            await engine.close()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after a graceful shutdown; we exit 0 instead.
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    server = Server(config)
    log.info("collab listening on http://%s:%d, %s", settings.host, settings.port, where(settings))
    server.run()


BACKGROUND_NICENESS = 10
"""How much lower the CPU priority of the loop's worker threads is than the process's."""


def background_threads(loop: asyncio.AbstractEventLoop) -> None:
    """The loop's default executor (`asyncio.to_thread`: the store's reads, big appends,
    loads, a compaction's next log) with threads of a lower CPU priority (Linux: each
    thread's own nice value).

    Their work runs mostly without the GIL (CRCs, reads), beside the loop: on a core they
    share with it (taskset, a busy machine) the scheduler split it between them, and the
    loop, busy sending a big document to 20 joiners, waited in its writes (the bench's
    control p99 17.6-21.6 ms in four runs; 12.6-14.2 in three with the threads lower)."""
    if sys.platform != "linux":
        return

    def lower() -> None:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(nice, 19))

    executor = ThreadPoolExecutor(thread_name_prefix="collab-background", initializer=lower)
    loop.set_default_executor(executor)


YOUNG_COLLECTION_EVERY = 7000
"""Allocations (less deallocations) of tracked objects between the collector's young
passes: ten times CPython's default of 700 (3.13 raised its own to 2,000)."""


def tune_collector() -> None:
    """Set the garbage collector for a long-running server, once it listens.

    - What start-up built (modules, the app, the store's state: ~47,000 objects) lives as
      long as the process: frozen (`gc.freeze`), the full passes stop walking it. A full
      pass walks every tracked object and runs each time they grow by a quarter: three
      while 2,000 peers connect, 40-95 ms each (~95 µs of each connection), a third of
      that on the start-up heap.
    - Young passes every `YOUNG_COLLECTION_EVERY` allocations instead of 700: a connection
      keeps ~100 tracked objects for as long as it lives (its protocol, peer,
      coroutines, timers), and each young pass walks the ones made since the last; fewer,
      larger passes walk fewer of them twice, and the full passes (which wait for ten
      middle ones) run less often in a burst. Measured: ~80 µs less per connection set
      up (430 / 410 µs against 490 / 510, four runs of `bench/scenarios.py connections`),
      no change in memory per idle connection. Cycles of garbage wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    log.info(
        "start-up heap: %d objects left out of full collections; young collections every "
        "%d allocations",
        gc.get_freeze_count(),
        YOUNG_COLLECTION_EVERY,
    )


def warn_if_public(settings: Settings) -> None:
    if is_public_bind(settings.host) and not settings.auth_secret:
        log.warning(
            "listening on %s without --auth-secret: anyone who can reach this address can "
            "read and edit every document (see docs/security.md)",
            settings.host,
        )


def install_caps(settings: Settings, engine: Any) -> None:
    """This process's connection caps, below its (raised) file-descriptor limit."""
    from collab.server.connections import Gate, connection_cap, install_gate, raise_fd_limit

    fd_limit = raise_fd_limit()
    total = connection_cap(settings, fd_limit)
    log.info(
        "file-descriptor limit %d: at most %d connections (%d per address)",
        fd_limit,
        total,
        settings.max_connections_per_address,
    )
    install_gate(Gate(settings, total, engine.metrics))


def public_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's own settings (public `uvicorn.Config` parameters: one a release no longer
    takes is left out rather than stopping the server) and its stock protocols."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "http": "auto",
        "ws": "auto",
        "h11_max_incomplete_event_size": 16 * 1024,  # the largest request head accepted
        "timeout_keep_alive": 5,  # an idle keep-alive connection is closed after this
        "ws_max_size": settings.max_message_bytes + 1024,
        "ws_per_message_deflate": settings.ws_compression,
        "ws_ping_interval": settings.ping_interval,
        "ws_ping_timeout": settings.ping_timeout,
        "log_level": settings.log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    taken = inspect.signature(uvicorn.Config).parameters
    return {name: value for name, value in options.items() if name in taken}


def fast_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings with our protocol classes, configured for this process."""
    configure_fast_path(settings)
    from collab.server.connections import HTTPProtocol
    from collab.server.websocket import WebSocketProtocol

    return {**public_options(settings), "http": HTTPProtocol, "ws": WebSocketProtocol}


def configure_fast_path(settings: Settings) -> None:
    """The close timeout and frame caps of this process's WebSocket protocol, and its
    per-connection log lines: at INFO only when asked for (explicit levels: uvicorn logs
    its TRACE lines whenever the level is unset)."""
    from collab.server.websocket import CONNECTION_LOG, WebSocketProtocol

    WebSocketProtocol.close_timeout_setting = settings.close_timeout
    WebSocketProtocol.send_budget_setting = settings.send_queue_bytes
    WebSocketProtocol.early_frames_setting = settings.preauth_max_messages
    if settings.log_level.lower() == "debug":
        CONNECTION_LOG.setLevel(logging.DEBUG)
    else:
        CONNECTION_LOG.setLevel(logging.INFO if settings.connection_log else logging.WARNING)


def where(settings: Settings) -> str:
    """Where documents live, for the start-up line (no password in it)."""
    from collab.storage.backends import is_database_url

    if is_database_url(settings.store):
        target = settings.store or ""
        host = target.split("@")[-1]
        return f"documents in PostgreSQL at {host}, bus {settings.bus or 'none'}"
    data_dir = settings.store or settings.data_dir
    return f"data in {os.path.abspath(data_dir)} (fsync {settings.fsync})"


def serve_workers(settings: Settings, fast: bool) -> int:
    """`--workers N`: N processes on one port, each its own engine on the shared store
    and bus. uvicorn starts them; each reads its settings from the COLLAB_* environment
    (and runs on the path its parent chose: `worker_app` or `public_worker_app`)."""
    from collab.storage.backends import is_database_url

    if not is_database_url(settings.store):
        raise BackendError(
            f"--workers {settings.workers} needs --store postgresql://... and --bus "
            "redis://...: the file store belongs to one process"
        )
    if not settings.bus:
        raise BackendError(f"--workers {settings.workers} needs --bus redis://... too")
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if value is not None:
            os.environ["COLLAB_" + field.name.upper()] = str(value)
    log.info("collab: %d workers on port %d, %s", settings.workers, settings.port, where(settings))
    options = fast_options(settings) if fast else public_options(settings)
    factory = "worker_app" if fast else "public_worker_app"
    uvicorn.run(f"collab.server.serve:{factory}", factory=True, workers=settings.workers, **options)
    return 0


def worker_settings() -> Settings:
    """A worker's settings, from the environment its parent exported."""
    from collab.config import settings_from_environment

    return dataclasses.replace(settings_from_environment(), workers=1)


def worker_app() -> Any:
    """One worker of `--workers` on the fast path: its engine and its caps."""
    from collab.server.connections import quiet_accept_errors
    from collab.web.engine import Collab

    settings = worker_settings()
    configure_fast_path(settings)
    engine = Collab(settings=settings)
    install_caps(settings, engine)
    with contextlib.suppress(RuntimeError):  # uvicorn calls the factory in its loop
        quiet_accept_errors(asyncio.get_running_loop())
        background_threads(asyncio.get_running_loop())
    app = engine.app()
    tune_collector()
    return app


def public_worker_app() -> Any:
    """One worker of `--workers` on uvicorn's stock protocols: its engine."""
    from collab.web.engine import Collab

    return Collab(settings=worker_settings()).app()
