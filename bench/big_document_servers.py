"""A big document against whole servers: collab beside the bare relay, pycrdt-websocket and
the Node server (bench/targets.py), one after another in one run, pinned as the others.

    python bench/big_document_servers.py                    # an 8 MiB document
    python bench/big_document_servers.py --mib 64           # --max-document-bytes
    python bench/big_document_servers.py --main /work/main  # also the code of another checkout

Per server: a control document gets a small edit every 20 ms from one peer, timed until
another peer receives it, through every phase. The phases: `upload` (one peer writes the
big document in 256 KB updates; collab compacts it as it grows, every --compact-log-bytes),
`joiners` (20 new peers join it at once while its writer goes on editing every 50 ms; the
time until every joiner holds it all), `history` (collab: `GET text?at=1`, the document at
an old revision), `current` (collab: `GET text`, the text now), `text` (collab: 5 text
peers join it at once through the OT door, each until it has read its welcome, the whole
text, or was turned away: past --text-door-max-bytes, 2 MiB, a document is for Yjs
clients; this script's `--text-door-max-bytes 0` measures the welcome), `map` (collab: a
service sets a `Y.Map`'s key beside the big text, `POST .../update`), `upload500` (a
500 KB document uploaded as one update, sync step 2 style, 5 times to new documents, the
median reported, from two clients typing with emoji: the time until an observer receives
it). Printed per server: each phase's time, the control's p99 and worst latency in it,
the server's RSS growth, and for collab the event loop's worst lag in each phase
(/metrics, the bound of the highest histogram bucket that gained a sample in the phase).
Compare rows of one run: the machine may be shared (the load average is printed).

Targets (`--only`, repeatable): `pycrdt` (pycrdt-websocket, no store), `node`
(`@y/websocket-server`), `baseline` (the bare relay), `durable` (collab at its defaults: the
file store, fsync on) and `fast` (collab with `--fsync never`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanout import SYNC_STEP1_EMPTY, SYNC_STEP2_EMPTY, EditEncoder, percentile
from pycrdt import Doc, Map
from scenarios import handshake, ws_connect
from targets import DEFAULT_COLLAB, Server, load_average, missing, pin
from update_checks import build
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.wire import CloseCode
from collab.yjs import protocol

TOO_BIG = CloseCode.TOO_BIG

MiB = 1024 * 1024
MARK = re.compile(rb"#C(\d+);")
TARGETS = ("baseline", "pycrdt", "node", "fast", "durable")
COLLAB_NAMES = {"fast": "collab --fsync never", "durable": "collab"}  # durable: the default


class Control:
    """Latency of small edits on another document, by phase."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.samples: dict[str, list[float]] = {}
        self.stop = asyncio.Event()

    async def run(self, server: Server) -> None:
        a, b = await ws_connect(server, "control"), await ws_connect(server, "control")
        for ws in (a, b):
            await (handshake(ws) if server.handshakes else ws.send(SYNC_STEP1_EMPTY))
        sent: dict[int, tuple[float, str]] = {}

        async def read() -> None:
            async for message in b:
                if isinstance(message, bytes):
                    for found in MARK.finditer(message):
                        at, phase = sent.pop(int(found[1]), (None, ""))
                        if at is not None:
                            self.samples.setdefault(phase, []).append(time.perf_counter() - at)

        reader = asyncio.create_task(read())
        encoder = EditEncoder(777)
        seq = 0
        while not self.stop.is_set():
            seq += 1
            sent[seq] = (time.perf_counter(), self.phase)
            await a.send(encoder.message(f"#C{seq};"))
            await asyncio.sleep(0.02)
        await asyncio.sleep(1)
        reader.cancel()
        for ws in (a, b):
            await ws.close()

    def row(self, phase: str) -> str:
        values = sorted(self.samples.get(phase, []))
        if not values:
            return "      -        -"
        return f"{percentile(values, 0.99) * 1000:7.1f} {values[-1] * 1000:8.1f}"


async def synced(ws: object, at_least: int) -> None:
    """Join as a new peer: send step 1, answer the server's, and return once a step 2 has
    come and the updates received (before it too: collab sends a big document's updates
    logged since its snapshot first, then the snapshot) hold at least `at_least` bytes."""
    await ws.send(SYNC_STEP1_EMPTY)  # type: ignore[attr-defined]
    received, stepped = 0, False
    while not (stepped and received >= at_least):
        message = await ws.recv()  # type: ignore[attr-defined]
        if not isinstance(message, bytes):
            continue
        decoded = protocol.decode(message)
        if isinstance(decoded, protocol.SyncStep1):
            await ws.send(SYNC_STEP2_EMPTY)  # type: ignore[attr-defined]
        elif isinstance(decoded, protocol.SyncStep2 | protocol.SyncUpdate):
            received += len(decoded.update)
            stepped = stepped or isinstance(decoded, protocol.SyncStep2)


async def upload(server: Server, mib: int) -> tuple[object, int, EditEncoder]:
    """Write the big document; returns its writer, the bytes written and its encoder."""
    writer = await ws_connect(server, "big")
    await (handshake(writer) if server.handshakes else writer.send(SYNC_STEP1_EMPTY))
    encoder = EditEncoder(4242)
    chunk = "x" * (256 * 1024 - 16)
    written = n = 0
    while written < mib * MiB:
        piece = f"#B{n};{chunk}"
        await writer.send(encoder.message(piece))
        written, n = written + len(piece), n + 1
    if server.handshakes:  # until a new peer gets all of it from the server
        probe = await ws_connect(server, "big")
        await asyncio.wait_for(synced(probe, written), 600)
        await probe.close()
    return writer, written, encoder


async def joiners(server: Server, size: int, count: int = 20) -> float:
    async def join() -> None:
        ws = await ws_connect(server, "big")
        try:
            await asyncio.wait_for(synced(ws, size), 600)
        finally:
            await ws.close()

    start = time.perf_counter()
    await asyncio.gather(*(join() for _ in range(count)))
    return time.perf_counter() - start


async def keep_editing(writer: object, encoder: EditEncoder, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        await writer.send(encoder.message(f"#E{n};"))  # type: ignore[attr-defined]
        n += 1
        await asyncio.sleep(0.05)


def history_seconds(server: Server, query: str = "?at=1") -> float:
    """`GET text?at=1` (the document at an old revision), or with `query` "" the text now."""
    start = time.perf_counter()
    url = f"http://127.0.0.1:{server.port}/api/docs/big/text{query}"
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()
    return time.perf_counter() - start


def map_seconds(server: Server) -> float:
    """A service sets a key of a `Y.Map` beside the big text (`POST .../update`, a Yjs
    update of content other than text): the time until it is committed."""
    doc = Doc()
    doc.get("meta", type=Map)["title"] = "a big document 📄 中文"
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/docs/big/update",
        data=doc.get_update(),
        headers={"Content-Type": "application/octet-stream"},
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
    return time.perf_counter() - start


WELCOME = b'{"type": "welcome"'


async def text_joiners(server: Server, count: int = 5) -> str:
    """`count` text peers join the big document at once; the time until each has read its
    welcome (the whole text: one message, in fragments from `collab serve`), or was turned
    away (1009: past --text-door-max-bytes, the document is for Yjs clients)."""
    refused = 0

    async def join(i: int) -> None:
        nonlocal refused
        url = f"ws://127.0.0.1:{server.port}/ot/big"
        async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
            secret = f"bench-text-peer-{i}-0123456789"
            try:
                await ws.send(json.dumps({"type": "hello", "secret": secret, "user": {}}))
                # Not parsed nor decoded: this process also times the control document.
                while not (await asyncio.wait_for(ws.recv(decode=False), 600)).startswith(WELCOME):
                    pass
            except ConnectionClosed as closed:
                if closed.rcvd is None or closed.rcvd.code != TOO_BIG:
                    raise
                refused += 1

    start = time.perf_counter()
    await asyncio.gather(*(join(i) for i in range(count)))
    took = f"{time.perf_counter() - start:7.2f} s"
    return f"{took} ({refused} refused)" if refused else took


UPLOADS = 5
"""500 KB uploads per server, each to a new document: the phase reports their median."""


async def upload500(server: Server, update: bytes) -> float:
    """The median time of `UPLOADS` uploads until an observer receives the update."""
    return statistics.median(
        [await upload_once(server, update, f"u500-{i}") for i in range(UPLOADS)]
    )


async def upload_once(server: Server, update: bytes, doc: str) -> float:
    observer, uploader = await ws_connect(server, doc), await ws_connect(server, doc)
    for ws in (observer, uploader):
        await (handshake(ws) if server.handshakes else ws.send(SYNC_STEP1_EMPTY))
    start = time.perf_counter()
    await uploader.send(protocol.encode_sync_update(update))
    while True:
        message = await asyncio.wait_for(observer.recv(), 120)
        if isinstance(message, bytes) and len(message) >= len(update) // 2:
            break
    took = time.perf_counter() - start
    for ws in (observer, uploader):
        await ws.close()
    return took


def loop_lag_buckets(server: Server) -> list[tuple[float, float]]:
    """collab's loop-lag histogram: (upper bound, cumulative count); [] when there is none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as response:
            text = response.read().decode()
    except OSError:
        return []
    found = re.findall(r'collab_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    return [(float(bound), float(count)) for bound, count in found]


def worst_lag(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> str:
    """The upper bound of the highest bucket that gained a sample between two readings."""
    if not after:
        return "n/a"
    counts = dict(before)
    gained = [(bound, count - counts.get(bound, 0.0)) for bound, count in after]
    total = gained[-1][1]
    for bound, count in gained:
        if count >= total:
            return f"<= {bound * 1000:g} ms"
    return "-"


class LagByPhase:
    """The loop's worst lag in each phase, from readings of /metrics at phase boundaries."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.worst: dict[str, str] = {}
        self._phase = ""
        self._at: list[tuple[float, float]] = []

    async def enter(self, phase: str) -> None:
        reading = await asyncio.to_thread(loop_lag_buckets, self.server)
        if self._phase:
            self.worst[self._phase] = worst_lag(self._at, reading)
        self._phase, self._at = phase, reading


async def measure(server: Server, args: argparse.Namespace, update: bytes) -> None:
    control = Control()
    controlling = asyncio.create_task(control.run(server))
    rss = server.rss_kib()
    lags = LagByPhase(server)
    await lags.enter("idle")
    await asyncio.sleep(2)
    times: dict[str, str] = {}

    async def phase(name: str, label: str) -> None:
        await lags.enter(name)
        control.phase = name
        print(f"  {label}...", flush=True)

    await phase("upload", "upload")
    start = time.perf_counter()
    writer, size, encoder = await upload(server, args.mib)
    times["upload"] = f"{time.perf_counter() - start:7.1f} s"
    if server.handshakes:
        await phase("joiners", "joiners")
        stop = asyncio.Event()
        editing = asyncio.create_task(keep_editing(writer, encoder, stop))
        times["joiners"] = f"{await joiners(server, size):7.1f} s"
        stop.set()
        await editing
    if server.target not in ("baseline", "pycrdt", "node"):
        await phase("history", "history")
        times["history"] = f"{await asyncio.to_thread(history_seconds, server):7.2f} s"
        await phase("current", "current text")
        times["current"] = f"{await asyncio.to_thread(history_seconds, server, ''):7.2f} s"
        await phase("text", "text peers")
        times["text"] = await text_joiners(server)
        await phase("map", "a map key set")
        times["map"] = f"{await asyncio.to_thread(map_seconds, server) * 1000:7.1f} ms"
    await phase("upload500", "upload500")
    times["upload500"] = f"{await upload500(server, update) * 1000:7.1f} ms"
    await lags.enter("end")
    control.phase = "end"
    control.stop.set()
    await controlling
    await writer.close()  # type: ignore[attr-defined]
    growth = (server.rss_kib() - rss) / 1024
    print(f"  RSS growth {growth:.0f} MiB")
    print(f"  {'phase':<10} {'time':>10}   control p99 / worst (ms)   loop lag (collab)")
    for phase in ("idle", "upload", "joiners", "history", "current", "text", "map", "upload500"):
        if phase == "idle" or phase in times:
            lag = lags.worst.get(phase, "n/a")
            print(f"  {phase:<10} {times.get(phase, ''):>10}   {control.row(phase)}   {lag:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=8)
    parser.add_argument("--only", action="append", choices=TARGETS)
    parser.add_argument("--main", type=Path, help="also collab from this checkout (before)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per server")
    parser.add_argument("--text-door-max-bytes", help="collab's, when not its default")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    pin(args.client_cpu)
    print("building the 500 KB update (two clients typing, emoji)...", flush=True)
    a, _ = build(500)
    update = a.get_update()
    rows: list[tuple[str, dict[str, object]]] = []
    for target in args.only or TARGETS:
        rows.append((target, {}))
    if args.main is not None:
        python = DEFAULT_COLLAB.replace(" -m", " -P -m")  # -P: not this checkout from the cwd
        command = f"env PYTHONPATH={shlex.quote(str(args.main))} {python}"
        rows.append(("fast", {"collab_command": command, "label": "-main"}))
    extra = ["--max-document-bytes", str(2 * args.mib * MiB + 4 * MiB), "--log-level", "warning"]
    if args.text_door_max_bytes is not None:
        extra += ["--text-door-max-bytes", args.text_door_max_bytes]
    with tempfile.TemporaryDirectory(prefix="collab-big-") as workdir:
        for target, options in rows:
            if (why := missing(target)) is not None:
                print(f"{target}: skipped ({why})")
                continue
            name = COLLAB_NAMES.get(target, target) + str(options.get("label", ""))
            print(f"{name} (load {load_average():.2f})", flush=True)
            server = Server(
                target,
                Path(workdir),
                label=str(options.get("label", "")),
                cpu=args.server_cpu,
                collab_command=str(options.get("collab_command", DEFAULT_COLLAB)),
                extra=extra if target in COLLAB_NAMES else [],
            )
            try:
                with server:
                    asyncio.run(asyncio.wait_for(measure(server, args, update), args.timeout))
            except Exception as error:  # one broken server must not lose the others
                print(f"  FAILED: {error!r}")
                with contextlib.suppress(Exception):
                    print(server.log()[-2000:])


if __name__ == "__main__":
    main()
