"""Connections, big-document joins and a slow peer: collab beside the bare relay,
pycrdt-websocket and the Node server, in one run, server and load pinned to separate cores.

    python bench/scenarios.py connections [--connections 2000]
    python bench/scenarios.py join [--kb 500 --joiners 20]
    python bench/scenarios.py slow-peer [--stall 15 --writers 19 --rate 20 --edit-bytes 2048]
    python bench/scenarios.py all

`connections`: N Yjs peers connect (in waves of 50) to N/10 documents and finish the sync
handshake (send step 1, get the server's step 2; the bare relay never answers, so its peers
only connect and send step 1). Server CPU and RSS are read before the first connection and
once every peer is synced and the server has been quiet for a second: CPU per connection
set up, RSS per idle connection.

`join`: one peer writes a document of --kb KB (2 KB inserts), then --joiners new peers join
it at once; the time from the first connect until every joiner holds the whole text (its
sync step 2 from the server, or, from the bare relay, the writer's answer). Each joiner
sends step 1 and the writer answers joiners' step 1 itself only on the relay (that is how
a relay-based deployment syncs: peer to peer).

`slow-peer`: --writers peers append --edit-bytes edits at --rate/s each to one document;
one more peer stops reading for --stall seconds, then reads again (or reconnects when the
server closed it) and must end with every edit (checked by the markers in the text it
holds, from the updates it received plus a resync on reconnect). Reported: healthy peers'
p99 latency before (the same time, first) and during the stall, the server's RSS growth over
the stall, how the slow peer ended (caught up, reconnected + resynced, or missing edits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's collab

from fanout import (
    HOCUSPOCUS_AUTH,
    SYNC_STEP1_EMPTY,
    SYNC_STEP2_EMPTY,
    SYNC_STEP2_PREFIX,
    EditEncoder,
    add_target_arguments,
    chosen_targets,
    make_server,
    percentile,
    varbytes,
)
from targets import HOCUSPOCUS_TARGETS, TICKS, Server, load_average, pin
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.yjs import hocuspocus, protocol

MARKER = re.compile(rb"#(\d+)\.(\d+)\.(\d+);")


async def ws_connect(server: Server, doc: str, source: str = "127.0.0.1") -> ClientConnection:
    """`source`: the loopback address to connect from (collab caps connections per client
    address at 256 by default: many connections come from many addresses, as in life).
    A Hocuspocus row's connection is wrapped to look like a y-websocket one."""
    hocuspocus_row = server.target in HOCUSPOCUS_TARGETS
    ws = await connect(
        f"{server.url}/hocuspocus" if hocuspocus_row else f"{server.url}/yjs/{doc}",
        local_addr=(source, 0),
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=2,
    )
    if not hocuspocus_row:
        return ws
    await ws.send(hocuspocus.encode(hocuspocus.Token(doc, "", "bench")))
    return OneDocument(ws, doc)  # type: ignore[return-value]


class OneDocument:
    """A Hocuspocus connection as a y-websocket one for one document: the name goes in
    front of what is sent and comes off what is received; what y-websocket has no word
    for (Auth answers, SyncStatus, Ping) is skipped."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.prefix = hocuspocus.name_prefix(name)

    async def send(self, data: bytes) -> None:
        await self.ws.send(self.prefix + data)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes) and message.startswith(self.prefix):
                body = message[len(self.prefix) :]
                if body[:1] in (b"\x00", b"\x01", b"\x03"):  # sync, awareness, query
                    return body

    def __aiter__(self) -> OneDocument:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        await self.ws.close()


async def handshake(ws: ClientConnection, answer: bool = True, at_least: int = 0) -> bytes:
    """Send step 1 (empty state); answer the server's step 1 (if `answer`); return the
    updates received up to the first step 2 that brings them to `at_least` bytes, joined
    (collab answers a big document as it keeps it: the snapshot and the logged updates as
    sync updates, then an empty step 2)."""
    await ws.send(SYNC_STEP1_EMPTY)
    received: list[bytes] = []
    while True:
        message = await ws.recv()
        if not isinstance(message, bytes):
            continue
        decoded = protocol.decode(message)
        if isinstance(decoded, protocol.SyncStep1) and answer:
            await ws.send(SYNC_STEP2_EMPTY)
        elif isinstance(decoded, protocol.SyncUpdate | protocol.SyncStep2):
            received.append(decoded.update)
            if isinstance(decoded, protocol.SyncStep2) and sum(map(len, received)) >= at_least:
                return b"".join(received)


async def hocuspocus_join(server: Server, doc: str, source: str) -> ClientConnection:
    """Connect to a Hocuspocus server and sync one document (its name before every message:
    Auth with the empty token, sync step 1; answer its step 1; done at its step 2)."""
    ws = await connect(
        f"{server.url}/", local_addr=(source, 0), compression=None, max_size=None,
        ping_interval=None, open_timeout=60, close_timeout=2,
    )  # fmt: skip
    prefix = varbytes(doc.encode())
    await ws.send(prefix + HOCUSPOCUS_AUTH)
    await ws.send(prefix + SYNC_STEP1_EMPTY)
    while True:
        message = await ws.recv()
        if not isinstance(message, bytes) or not message.startswith(prefix):
            continue
        body = message[len(prefix) :]
        if body[:2] == b"\x00\x00":
            await ws.send(prefix + SYNC_STEP2_EMPTY)
        elif body[:2] == SYNC_STEP2_PREFIX:
            return ws


# --- connections ------------------------------------------------------------------------


@dataclass
class ConnectionsResult:
    target: str
    connections: int
    seconds: float
    cpu_us_per_connection: float
    rss_kib_per_connection: float
    load: float


async def settle(server: Server, quiet: float = 1.0, limit: float = 20.0) -> float:
    """Wait until the server's CPU stops moving for `quiet` seconds; its CPU then."""
    deadline = time.monotonic() + limit
    last = server.cpu()
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = server.cpu()
        if now - last < 0.011:  # a tick or less
            return now
        last = now
    return server.cpu()


async def connections(server: Server, args: argparse.Namespace) -> ConnectionsResult:
    docs = max(1, args.connections // 10)
    await asyncio.sleep(0.5)
    cpu0 = await settle(server)
    rss0 = server.rss_kib()
    start = time.monotonic()
    sockets: list[ClientConnection] = []
    for wave in range(0, args.connections, 50):

        async def one(i: int) -> ClientConnection:
            source = f"127.0.1.{1 + i // 200}"
            if server.target == "hocuspocus":
                return await hocuspocus_join(server, f"conn-{i % docs}", source)
            ws = await ws_connect(server, f"conn-{i % docs}", source)
            if server.handshakes:
                await handshake(ws)
            else:
                await ws.send(SYNC_STEP1_EMPTY)
            return ws

        count = min(50, args.connections - wave)
        sockets += await asyncio.gather(*(one(wave + i) for i in range(count)))
    seconds = time.monotonic() - start
    cpu1 = await settle(server)
    rss1 = server.rss_kib()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    n = args.connections
    return ConnectionsResult(
        server.target, n, seconds, (cpu1 - cpu0) / n * 1e6, (rss1 - rss0) / n, load_average()
    )


# --- big-document join ------------------------------------------------------------------


@dataclass
class JoinResult:
    target: str
    kb: int
    joiners: int
    seconds: float
    complete: int
    load: float


async def join(server: Server, args: argparse.Namespace) -> JoinResult:
    name = "join-doc"
    writer = await ws_connect(server, name)
    encoder = EditEncoder(12345)
    total = args.kb * 1024
    piece = "x" * 2040
    written = 0
    if server.handshakes:
        await handshake(writer)
    else:
        await writer.send(SYNC_STEP1_EMPTY)
    edits = []
    while written < total:
        text = f"#{written};{piece}"
        edits.append(encoder.message(text))
        written += len(text)
    total = written  # a joiner has it all when its step 2 carries at least this much text
    for edit in edits:
        await writer.send(edit)
    full_update = None
    if not server.handshakes:  # the relay: the writer answers joiners' step 1 itself
        from pycrdt import Doc, Text

        doc = Doc()
        doc.get("text", type=Text)
        for edit in edits:
            doc.apply_update(protocol.decode(edit).update)  # type: ignore[union-attr]
        full_update = doc.get_update()

        async def answer() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in writer:
                    if isinstance(message, bytes) and message[:2] == b"\x00\x00":
                        await writer.send(protocol.encode_sync_step2(full_update))

        answering = asyncio.create_task(answer())
    else:
        # The server holds every edit once a fresh peer's step 2 carries the last marker.
        probe = await ws_connect(server, name)
        deadline = time.monotonic() + 60
        last = edits[-1][-40:]
        while last[-20:] not in await handshake(probe) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await probe.close()
    await asyncio.sleep(0.5)

    async def joiner() -> bool:
        ws = await ws_connect(server, name)
        try:
            # On the relay, other joiners' step 1 and empty step 2 pass by: wait for the
            # full one (from the server, or from the writer on the relay).
            await handshake(ws, answer=server.handshakes, at_least=total)
            return True
        finally:
            await ws.close()

    start = time.monotonic()
    done = await asyncio.wait_for(asyncio.gather(*(joiner() for _ in range(args.joiners))), 120)
    seconds = time.monotonic() - start
    if full_update is not None:
        answering.cancel()
    await writer.close()
    return JoinResult(server.target, args.kb, args.joiners, seconds, sum(done), load_average())


# --- slow peer ----------------------------------------------------------------------------


@dataclass
class SlowPeerResult:
    target: str
    p99_before_ms: float
    p99_during_ms: float
    worst_during_ms: float
    rss_growth_mib: float
    control_growth_mib: float
    slow_peer: str
    closed: list[str] = field(default_factory=list)
    load: float = 0.0


class Writer:
    def __init__(self, ident: int, ws: ClientConnection) -> None:
        self.ident = ident
        self.ws = ws
        self.encoder = EditEncoder(1000 + ident)
        self.seq = 0  # edits sent
        self.seen: dict[tuple[int, int], int] = {}  # (sender, seq) -> receive time (us)


async def slow_peer(server: Server, args: argparse.Namespace) -> SlowPeerResult:
    """Phase 1 (stall seconds): all read. Phase 2 (stall seconds): one peer stops reading."""
    name = "slow-doc"
    writers = []
    for i in range(args.writers):
        ws = await ws_connect(server, name)
        if server.handshakes:
            await handshake(ws)
        else:
            await ws.send(SYNC_STEP1_EMPTY)
        writers.append(Writer(i + 1, ws))
    slow = await ws_connect(server, name)
    if server.handshakes:
        await handshake(slow)
    sent: dict[tuple[int, int], int] = {}  # (sender, seq) -> send time (us)
    slow_got: set[tuple[int, int]] = set()
    stalled = asyncio.Event()
    stalled.set()  # set: reading
    closed: list[str] = []

    async def read(writer: Writer) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in writer.ws:
                now = int(time.monotonic() * 1e6)
                if isinstance(message, bytes):
                    for s, q, _ in MARKER.findall(message):
                        writer.seen.setdefault((int(s), int(q)), now)

    async def read_slow(ws: ClientConnection) -> None:
        try:
            while True:
                await stalled.wait()
                message = await ws.recv()
                if isinstance(message, bytes):
                    for s, q, _ in MARKER.findall(message):
                        slow_got.add((int(s), int(q)))
        except ConnectionClosed:
            closed.append(f"slow peer closed: {ws.close_code} {ws.close_reason}")

    payload = "y" * max(0, args.edit_bytes - 30)
    duration = args.stall

    async def write(writer: Writer, until: float) -> None:
        interval = 1 / args.rate
        due = time.monotonic() + interval * (writer.ident / args.writers)
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.seq += 1
            seq, now = writer.seq, int(time.monotonic() * 1e6)
            sent[(writer.ident, seq)] = now
            edit = writer.encoder.message(f"#{writer.ident}.{seq}.{now};{payload}")
            with contextlib.suppress(ConnectionClosed):
                await writer.ws.send(edit)
            due += interval

    readers = [asyncio.create_task(read(w)) for w in writers]
    slow_reader = asyncio.create_task(read_slow(slow))
    lags: list[tuple[int, int]] = []  # (time, how late the generator woke up), in us
    lag_probe = asyncio.create_task(generator_lag(lags))
    machine = MachineSampler(server, args.server_cpu, args.client_cpu)
    sampler = asyncio.create_task(machine.run())

    def latencies(since: int, until: int) -> list[float]:
        """Every healthy delivery of the edits sent in [since, until), in µs, sorted."""
        found: list[float] = []
        for key, t in sent.items():
            if since <= t < until:
                for w in writers:
                    if w.ident != key[0]:
                        got = w.seen.get(key)
                        found.append(float("inf") if got is None else got - t)
        found.sort()
        return found

    def p99(since: int, until: int) -> float:
        return percentile(latencies(since, until), 0.99) / 1000

    # The generator's own collector would stop every reader for 10-30 ms once the times
    # kept (hundreds of thousands) are many: a latency the server did not cause. Off while
    # measuring (what it would free is a few cycles; the times are kept anyway).
    gc.collect()
    gc.freeze()
    gc.disable()
    # Warm-up (not measured), then phase 1: everyone reads (the control for latency, RSS).
    await asyncio.gather(*(write(w, time.monotonic() + 2.0) for w in writers))
    t0 = int(time.monotonic() * 1e6)
    rss_a = server.rss_kib()
    await asyncio.gather(*(write(w, time.monotonic() + duration) for w in writers))
    rss_b = server.rss_kib()
    t1 = int(time.monotonic() * 1e6)
    # Phase 2: the slow peer stops reading.
    stalled.clear()
    await asyncio.gather(*(write(w, time.monotonic() + duration) for w in writers))
    rss_c = server.rss_kib()
    t2 = int(time.monotonic() * 1e6)
    await asyncio.sleep(1.0)  # stragglers to healthy peers
    lag_probe.cancel()
    sampler.cancel()
    gc.enable()
    gc.unfreeze()
    before, during = p99(t0, t1), p99(t1, t2)
    worst = max(latencies(t1, t2), default=0.0) / 1000  # the "worst latency"
    if args.timeline:  # p99 of each second, from the start of phase 1
        print_timeline(server.target, range(t0, t2, 1_000_000), p99, lags, machine)
    # The slow peer reads again; if the server closed it, it reconnects and resyncs.
    stalled.set()
    outcome = "?"
    everything = set(sent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not slow_reader.done() and slow_got < everything:
        await asyncio.sleep(0.1)
    if slow_got >= everything:
        outcome = "caught up"
    else:
        slow_reader.cancel()
        with contextlib.suppress(Exception):
            await slow.close()
        again = await ws_connect(server, name)
        if server.handshakes:
            update = await asyncio.wait_for(handshake(again), 30)
            slow_got |= {(int(s), int(q)) for s, q, _ in MARKER.findall(update)}
        await again.close()
        lost = len(everything - slow_got)
        outcome = "reconnected, resynced" if not lost else f"MISSING {lost} edits"
    for task in readers:
        task.cancel()
    await asyncio.gather(*(w.ws.close() for w in writers), return_exceptions=True)
    return SlowPeerResult(
        server.target,
        before,
        during,
        worst,
        (rss_c - rss_b) / 1024,
        (rss_b - rss_a) / 1024,
        outcome,
        closed,
        load_average(),
    )


async def generator_lag(lags: list[tuple[int, int]], interval: float = 0.002) -> None:
    """How late the load generator's own loop wakes up (time, lateness in µs): while the
    generator is held, what it receives is timed late, whatever the server did."""
    while True:
        due = time.monotonic() + interval
        await asyncio.sleep(interval)
        lags.append((int(due * 1e6), int((time.monotonic() - due) * 1e6)))


class MachineSampler:
    """Every quarter second: how busy the server's and the generator's cores were, and how
    much of it was the server (its process tree) and the generator. The rest is other jobs
    on the machine, which a latency measured in that second also holds."""

    def __init__(self, server: Server, server_cpu: int | None, client_cpu: int | None) -> None:
        self.server = server
        self.cores = (server_cpu, client_cpu)
        self.samples: list[tuple[int, int, int, float, float]] = []

    async def run(self, interval: float = 0.25) -> None:
        if None in self.cores:
            return
        while True:
            server_core, client_core = core_ticks(self.cores)
            now, own = int(time.monotonic() * 1e6), time.process_time()
            self.samples.append((now, server_core, client_core, tree_cpu(self.server.pid), own))
            await asyncio.sleep(interval)

    def others_ms(self, since: int, until: int) -> tuple[float, float] | None:
        """CPU ms other processes took on (the server's, the generator's) core per second,
        between the last sample before `since` and the first after `until`."""
        before = [s for s in self.samples if s[0] <= since]
        after = [s for s in self.samples if s[0] >= until]
        if not before or not after:
            return None
        (t, a0, a1, s0, g0), (u, b0, b1, s1, g1) = before[-1], after[0]
        tick, scale = 1000 / TICKS, 1e6 / (u - t)
        return (
            ((b0 - a0) * tick - (s1 - s0) * 1000) * scale,
            ((b1 - a1) * tick - (g1 - g0) * 1000) * scale,
        )


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, the living ones found through /proc's
    `children` files (a scan of all of /proc would cost the generator ~2 ms), the ended
    ones in `pid`'s own count of its children's time."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ended = int(fields[13]) + int(fields[14]) if current == pid else 0
            total += (int(fields[11]) + int(fields[12]) + ended) / TICKS
            for children in Path(f"/proc/{current}/task").glob("*/children"):
                todo += [int(child) for child in children.read_text().split()]
    return total


def core_ticks(cores: tuple[int | None, ...]) -> list[int]:
    """Busy clock ticks of each core so far (user, nice, system, irq, softirq, steal)."""
    busy = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(f) for f in fields]
                busy[int(name[3:])] = sum(values[0:3]) + sum(values[5:8])
    return [busy[core] for core in cores if core is not None]


def print_timeline(
    target: str,
    steps: range,
    p99: Callable[[int, int], float],
    lags: list[tuple[int, int]],
    machine: MachineSampler,
) -> None:
    """Per second of both phases: healthy peers' p99, how late the generator's loop ran at
    worst, and the CPU other processes took on the server's and the generator's cores."""
    second = 1_000_000
    steps = range(steps.start, steps.stop - second // 2, second)  # no last sliver of a second
    worst = [max((d for t, d in lags if a <= t < a + second), default=0) for a in steps]
    others = [machine.others_ms(a, a + second) for a in steps]
    print(f"{target} p99 per second:", " ".join(f"{p99(a, a + second):.0f}" for a in steps))
    began = time.time() - (time.monotonic() - steps[0] / 1e6)  # to line up the server's log
    print(f"{target} phase 1 began at {time.strftime('%H:%M:%S', time.gmtime(began))}"
          f".{int(began % 1 * 1000):03d} UTC")  # fmt: skip
    print(f"{target} generator's worst lag, ms:", " ".join(f"{w / 1000:.0f}" for w in worst))
    for i, core in enumerate(("server's", "generator's")):
        shares = " ".join("-" if o is None else f"{max(0.0, o[i]):.0f}" for o in others)
        print(f"{target} others' CPU ms on the {core} core:", shares)


# --- the report ---------------------------------------------------------------------------


def start_profiler(
    server: Server, scenario: str, args: argparse.Namespace
) -> subprocess.Popen[bytes] | None:
    """`--py-spy DIR`: sample the server for the whole scenario into DIR (collapsed stacks,
    one line per stack: `py-spy record --format raw`)."""
    if args.py_spy is None or server.target == "node":
        return None
    args.py_spy.mkdir(parents=True, exist_ok=True)
    output = args.py_spy / f"{scenario}-{server.target}.txt"
    command = ["py-spy", "record", "--pid", str(server.pid), "--format", "raw", "--nonblocking"]
    command += ["--rate", "250", "--output", str(output)]
    if args.client_cpu is not None:
        command = ["taskset", "-c", str(args.client_cpu), *command]
    profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the load starts
    return profiler


# The slow-peer scenario writes ~760 KB/s into one document: collab would write a snapshot
# (compaction) during it, and that costs healthy peers seconds of latency on its own (the
# store re-reads and checks the whole log; see bench/README.md). Kept out of the scenario
# so that it measures what a slow peer costs; `--with-compaction` puts it back.
NO_COMPACTION = ["--compact-log-bytes", "4000000000", "--compact-log-records", "100000000"]


def run(scenario: str, args: argparse.Namespace) -> list[object]:
    pin(args.client_cpu)
    if scenario == "slow-peer" and not args.with_compaction:
        args.server_arg = [*args.server_arg, *NO_COMPACTION]  # variants get them too
    results: list[object] = []
    workdir = Path(tempfile.mkdtemp(prefix="collab-scenarios-"))
    measure = {"connections": connections, "join": join, "slow-peer": slow_peer}[scenario]
    targets = chosen_targets(args)
    if scenario == "slow-peer":  # it reads the socket itself, as y-websocket
        for target in [t for t in targets if t in HOCUSPOCUS_TARGETS]:
            print(f"{target}: skipped: slow-peer speaks y-websocket only", flush=True)
        targets = [t for t in targets if t not in HOCUSPOCUS_TARGETS]
    try:
        for round_, target in [(r, t) for r in range(1, args.repeat + 1) for t in targets]:
            try:
                with make_server(target, workdir, args, round_) as server:
                    print(f"{scenario}: {target} (pid {server.pid})", flush=True)
                    profiler = start_profiler(server, scenario, args)
                    result = asyncio.run(measure(server, args))
                    if profiler is not None:
                        profiler.send_signal(signal.SIGINT)  # py-spy writes what it has
                        profiler.wait(60)
                    result.target = target  # type: ignore[attr-defined]
                    result.round = round_  # type: ignore[attr-defined]
                    results.append(result)
            except Exception as error:  # one broken server must not lose the others
                print(f"{target}: FAILED: {error!r}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report(scenario, results)
    return results


def report(scenario: str, results: list) -> None:
    """One row per server and round; ratios to the bare relay and the Node server of the
    same round."""
    print()
    rounds = sorted({r.round for r in results})
    for round_ in rounds:
        if len(rounds) > 1:
            print(f"round {round_}")
        report_round(scenario, [r for r in results if r.round == round_])


def report_round(scenario: str, results: list) -> None:
    base = next((r for r in results if r.target == "baseline"), None)
    node = next((r for r in results if r.target == "node"), None)

    def ratio(r: object, ref: object, attr: str) -> str:
        if ref is None or not getattr(ref, attr):
            return "   -"
        return f"{getattr(r, attr) / getattr(ref, attr):5.2f}"

    if scenario == "connections":
        print(f"{'server':<10} {'conns':>6} {'s':>6} {'cpu us/conn':>11} {'ratio':>6} "
              f"{'/node':>6} {'KiB/conn':>9} {'ratio':>6} {'/node':>6} {'load':>5}")  # fmt: skip
        for r in results:
            print(
                f"{r.target:<10} {r.connections:>6} {r.seconds:>6.1f} "
                f"{r.cpu_us_per_connection:>11.0f} {ratio(r, base, 'cpu_us_per_connection'):>6} "
                f"{ratio(r, node, 'cpu_us_per_connection'):>6} {r.rss_kib_per_connection:>9.1f} "
                f"{ratio(r, base, 'rss_kib_per_connection'):>6} "
                f"{ratio(r, node, 'rss_kib_per_connection'):>6} {r.load:>5.1f}"
            )
    elif scenario == "join":
        print(f"{'server':<10} {'KB':>5} {'joiners':>7} {'seconds':>8} {'/node':>6} "
              f"{'complete':>8} {'load':>5}")  # fmt: skip
        for r in results:
            print(
                f"{r.target:<10} {r.kb:>5} {r.joiners:>7} {r.seconds:>8.3f} "
                f"{ratio(r, node, 'seconds'):>6} {r.complete:>8} {r.load:>5.1f}"
            )
    else:
        print(f"{'server':<10} {'p99 before':>10} {'p99 during':>10} {'x':>5} {'worst':>7} "
              f"{'RSS +MiB':>8} {'control':>8} {'slow peer':<24} {'load':>5}")  # fmt: skip
        for r in results:
            x = r.p99_during_ms / r.p99_before_ms if r.p99_before_ms else float("nan")
            print(
                f"{r.target:<10} {r.p99_before_ms:>10.2f} {r.p99_during_ms:>10.2f} {x:>5.2f} "
                f"{r.worst_during_ms:>7.1f} "
                f"{r.rss_growth_mib:>8.1f} {r.control_growth_mib:>8.1f} {r.slow_peer:<24} "
                f"{r.load:>5.1f}"
            )
            for line in r.closed[:2]:
                print(f"    {r.target}: {line}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("connections", "join", "slow-peer", "all"))
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=500, help="join: document size (500)")
    parser.add_argument("--joiners", type=int, default=20, help="join: peers joining (20)")
    parser.add_argument("--writers", type=int, default=19, help="slow-peer: writers (19)")
    parser.add_argument("--rate", type=float, default=20.0, help="slow-peer: edits/s each (20)")
    parser.add_argument("--edit-bytes", type=int, default=2048, help="slow-peer: edit size")
    parser.add_argument("--stall", type=float, default=15.0, help="slow-peer: seconds (15)")
    parser.add_argument("--timeline", action="store_true", help="slow-peer: p99 per second")
    parser.add_argument(
        "--with-compaction",
        action="store_true",
        help="slow-peer: let collab compact the document during the run (its default limits)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and data")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, servers interleaved")
    parser.add_argument(
        "--py-spy", type=Path, help="sample each Python server into DIR/<scenario>-<server>.txt"
    )
    add_target_arguments(parser, default="baseline, pycrdt, node, durable")
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = ["baseline", "pycrdt", "node", "durable"]
    if not (1 <= args.connections <= 20_000 and 0 < args.stall <= 120 and args.kb <= 50_000):
        parser.error("--connections in [1, 20000], --stall in (0, 120], --kb <= 50000")
    print(f"load average {load_average():.1f}", flush=True)
    scenarios = ["connections", "join", "slow-peer"] if args.scenario == "all" else [args.scenario]
    for scenario in scenarios:
        chosen = argparse.Namespace(**vars(args))
        run(scenario, chosen)


if __name__ == "__main__":
    main()
