"""Fan-out benchmark: R documents x P Yjs peers through real sockets, against three servers.

Every peer appends small edits to its document's shared text at a fixed rate; the server
relays each edit to the document's P-1 other peers. The same load runs, one after another,
against

- baseline: `bench/bare_relay.py`, a bare relay of the same bytes on the same stack,
- durable:  `collab serve --fsync always`,
- fast:     `collab serve --fsync never`,

each a fresh subprocess on a free loopback port, and the results print as one table:
delivered edits per second, latency p50/p99 (an edit's send time to each other peer's
receive time), and the server's CPU seconds per delivered edit (utime+stime of the server
process tree from /proc, over the measured window), with its ratio to the bare relay.

How edits are made and counted cheaply:

- Each edit inserts an ASCII marker `#<sender>.<seq>.<send-time-us>;` at the end of the
  peer's own previous insert. The Yjs update for that is a fixed byte pattern, encoded here
  by hand (`EditEncoder`, checked against pycrdt at start-up): no CRDT work in the generator.
- The marker travels as plain UTF-8 inside whatever update the server sends, so a regex on
  the raw message finds every edit in it, including when collab merges several edits into
  one message (group commit). Deliveries are counted per edit, not per message, and each
  (receiver, sender, seq) is counted once.
- The send time is in the marker (CLOCK_MONOTONIC is system-wide on Linux), so the
  generator can run in several processes (`--procs`) and still measure latency.

    python bench/fanout.py                      # all three, default load
    python bench/fanout.py --only baseline --only fast --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's collab

from targets import (
    ALL_TARGETS,
    COLLAB_TARGETS,
    DEFAULT_COLLAB,
    HOCUSPOCUS_TARGETS,
    Server,
    load_average,
    missing,
    pin,
)

from collab.yjs import hocuspocus
from collab.yjs.protocol import read_var_uint, write_var_uint

TARGETS = ALL_TARGETS
INF = math.inf
MARKER = re.compile(rb"#(\d+)\.(\d+)\.(\d+);")
SYNC_STEP1_EMPTY = b"\x00\x00\x01\x00"  # sync, step1, state vector of 0 clients
SYNC_STEP2_EMPTY = b"\x00\x01\x02\x00\x00"  # sync, step2, the empty update
SYNC_STEP2_PREFIX = b"\x00\x01"
# Hocuspocus: the document's name (varString) before every message, Auth (2) with a Token
# (0) first; then the y-websocket messages (it answers a sync step 1 with a sync step 2).
HOCUSPOCUS_AUTH = b"\x02\x00\x00"  # Auth, Token, the empty token


# --- Yjs updates, by hand ---------------------------------------------------------------


def varbytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


class EditEncoder:
    """The y-websocket update messages of one Yjs client appending ASCII text after itself.

    Each edit is one item whose left origin is the last character of the client's previous
    item; the first is placed at the start of the root text type. This is exactly what a
    Yjs client that only ever sees its own edits would send, at a few microseconds per edit.
    """

    def __init__(self, client_id: int, text_name: str = "text") -> None:
        self.client = write_var_uint(client_id)
        self.clock = 0
        self.parent = b"\x01" + varbytes(text_name.encode())  # parent is a root type by key

    def message(self, ascii_text: str) -> bytes:
        content = ascii_text.encode("ascii")
        if self.clock == 0:
            item = b"\x04" + self.parent + varbytes(content)  # string content, no origin
        else:
            # 0x84: string content with a left origin (client, clock of the previous char).
            item = b"\x84" + self.client + write_var_uint(self.clock - 1) + varbytes(content)
        update = b"\x01\x01" + self.client + write_var_uint(self.clock) + item + b"\x00"
        self.clock += len(content)
        return b"\x00\x02" + varbytes(update)  # sync message, update


def check_encoder() -> None:
    """Apply hand-made updates to a pycrdt document: the bytes must mean what we think."""
    from pycrdt import Doc, Text

    doc = Doc()
    text = doc.get("text", type=Text)
    encoders = {1234567890: EditEncoder(1234567890), 7: EditEncoder(7)}
    expected = dict.fromkeys(encoders, "")
    for i in range(300):
        client = (1234567890, 7)[i % 2]
        marker = f"#{client}.{i}.{i * 1000};"
        expected[client] += marker
        message = encoders[client].message(marker)
        assert message[:2] == b"\x00\x02", "not a sync update message"
        doc.apply_update(unwrap_varbytes(message[2:]))
    got = str(text)
    ok = all(v in got for v in expected.values()) and len(got) == sum(map(len, expected.values()))
    assert ok, "hand-encoded Yjs updates do not apply as expected"


def unwrap_varbytes(data: bytes) -> bytes:
    """The payload of a lib0 varUint8Array."""
    length, start = read_var_uint(data, 0)
    return data[start : start + length]


# --- the load generator (runs in worker processes) ---------------------------------------


@dataclass(frozen=True)
class Load:
    url: str  # ws://127.0.0.1:P
    docs: int
    peers: int
    rate: float
    handshake: bool  # wait for the server's sync step2 (not from the bare relay: it never answers)
    doc_prefix: str
    hocuspocus: bool = False  # speak the Hocuspocus protocol on /hocuspocus


@dataclass(frozen=True)
class Timing:
    """Monotonic times: sending starts at `start`, the measured window is [t0, t1)."""

    start: float
    t0: float
    t1: float
    drain: float  # after t1, wait this long at most for stragglers


@dataclass
class WorkerResult:
    sent_total: int = 0
    sent_window: int = 0
    delivered_total: int = 0  # unique (receiver, sender, seq), whole run
    delivered_window: int = 0  # unique, received inside the window
    duplicates: int = 0
    echoes: int = 0  # a peer got its own edit back
    messages_window: int = 0
    latencies_us: list[int] = field(default_factory=list)  # deliveries of edits sent in the window
    send_lag_us: list[int] = field(default_factory=list)  # how late sends were vs. schedule
    cpu_window: float = 0.0  # this process's CPU seconds inside the window
    closed: list[str] = field(default_factory=list)  # peers the server closed, and why
    received_per_sender: dict[int, int] = field(default_factory=dict)


class Peer:
    def __init__(self, ident: int, doc: int, ws: ClientConnection, name: bytes = b"") -> None:
        self.ident = ident
        self.doc = doc
        self.ws = ws
        self.name = name  # the Hocuspocus name prefix of every message (b"": y-websocket)
        self.encoder = EditEncoder(random.getrandbits(31) | 1)
        self.last_seq: dict[int, int] = {}


PEERS_PER_ADDRESS = 200  # collab caps connections per client address at 256 by default


async def open_peer(load: Load, doc: int, index: int) -> Peer:
    name = f"{load.doc_prefix}{doc}"
    url = f"{load.url}/hocuspocus" if load.hocuspocus else f"{load.url}/yjs/{name}"
    ident = doc * load.peers + index
    source = f"127.0.1.{1 + ident // PEERS_PER_ADDRESS % 254}"  # many peers, many addresses
    ws = await connect(
        url,
        local_addr=(source, 0),
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=30,
    )
    prefix = hocuspocus.name_prefix(name) if load.hocuspocus else b""
    peer = Peer(ident, doc, ws, prefix)
    if load.hocuspocus:  # the token first, as the provider sends it
        await ws.send(hocuspocus.encode(hocuspocus.Token(name, "", "bench")))
    await ws.send(peer.name + SYNC_STEP1_EMPTY)
    if load.handshake:
        async with asyncio.timeout(30):
            while True:
                message = await ws.recv()
                if not isinstance(message, bytes) or not message.startswith(peer.name):
                    continue
                body = message[len(peer.name) :]
                if body[:2] == b"\x00\x00":
                    await ws.send(peer.name + SYNC_STEP2_EMPTY)  # our state: nothing yet
                elif body[:2] == SYNC_STEP2_PREFIX:
                    break
    return peer


async def open_peers(load: Load, slots: list[tuple[int, int]]) -> list[Peer]:
    """Documents in parallel, the peers of one document one after another (pycrdt-websocket
    0.16.5 hangs when several clients join a new room at the same moment)."""
    by_doc: dict[int, list[int]] = {}
    for doc, index in slots:
        by_doc.setdefault(doc, []).append(index)

    async def one_doc(doc: int, indexes: list[int]) -> list[Peer]:
        return [await open_peer(load, doc, index) for index in indexes]

    opened = await asyncio.gather(*(one_doc(d, i) for d, i in by_doc.items()))
    return [peer for peers in opened for peer in peers]


async def send_edits(peer: Peer, load: Load, timing: Timing, result: WorkerResult) -> None:
    """Open loop: one edit every 1/rate seconds on a fixed schedule, late or not."""
    interval = 1.0 / load.rate
    due = timing.start + random.random() * interval
    seq = 0
    loop = asyncio.get_running_loop()
    while due < timing.t1:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        seq += 1
        message = peer.name + peer.encoder.message(f"#{peer.ident}.{seq}.{int(now * 1e6)};")
        try:
            await peer.ws.send(message)
        except ConnectionClosed:
            return
        result.sent_total += 1
        if timing.t0 <= now < timing.t1:
            result.sent_window += 1
            result.send_lag_us.append(int((now - due) * 1e6))
        due += interval


async def receive_edits(
    peer: Peer, timing: Timing, result: WorkerResult, last: list[float]
) -> None:
    """Count every edit marker in every message, once per (sender, seq)."""
    t0_us, t1_us = int(timing.t0 * 1e6), int(timing.t1 * 1e6)
    last_seq = peer.last_seq
    per_sender = result.received_per_sender
    try:
        async for message in peer.ws:
            now_us = int(time.monotonic() * 1e6)
            last[0] = now_us / 1e6
            if not isinstance(message, bytes):
                continue
            inside = t0_us <= now_us < t1_us
            if inside:
                result.messages_window += 1
            for sender_b, seq_b, sent_b in MARKER.findall(message):
                sender, seq = int(sender_b), int(seq_b)
                if sender == peer.ident:
                    result.echoes += 1
                    continue
                if seq <= last_seq.get(sender, 0):
                    result.duplicates += 1
                    continue
                last_seq[sender] = seq
                per_sender[sender] = per_sender.get(sender, 0) + 1
                result.delivered_total += 1
                if inside:
                    result.delivered_window += 1
                sent_us = int(sent_b)
                if t0_us <= sent_us < t1_us:  # latency is over edits sent in the window
                    result.latencies_us.append(now_us - sent_us)
    except ConnectionClosed:
        pass
    close = peer.ws.close_code
    if close is not None and close != 1000 and time.monotonic() < timing.t1 + timing.drain:
        result.closed.append(f"peer {peer.ident}: {close} {peer.ws.close_reason}")


async def cpu_at(moment: float, into: list[float]) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))
    into.append(time.process_time())


async def run_worker(load: Load, slots: list[tuple[int, int]], conn: Connection) -> None:
    peers = await open_peers(load, slots)
    conn.send("ready")
    timing: Timing = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    result = WorkerResult()
    last_receive = [time.monotonic()]
    receivers = [asyncio.create_task(receive_edits(p, timing, result, last_receive)) for p in peers]
    cpu: list[float] = []
    meters = [
        asyncio.create_task(cpu_at(timing.t0, cpu)),
        asyncio.create_task(cpu_at(timing.t1, cpu)),
    ]
    await asyncio.gather(*(send_edits(p, load, timing, result) for p in peers), *meters)
    result.cpu_window = cpu[1] - cpu[0]
    # Drain: until nothing arrived for a while, or the drain time is up.
    while time.monotonic() < timing.t1 + timing.drain and time.monotonic() - last_receive[0] < 0.5:
        await asyncio.sleep(0.05)
    await asyncio.gather(*(p.ws.close() for p in peers), return_exceptions=True)
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    conn.send(result)


def worker_main(
    load: Load, slots: list[tuple[int, int]], conn: Connection, cpu: int | None
) -> None:
    pin(cpu)
    try:
        asyncio.run(run_worker(load, slots, conn))
    except BaseException as error:
        conn.send(f"error: {error!r}")
        raise


# --- one run ------------------------------------------------------------------------------


@dataclass
class Outcome:
    target: str
    round: int
    load_average: float  # the machine's 1-minute load average at the end of the window
    seconds: float
    deliveries_per_s: float
    edits_per_s: float
    messages_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    cpu_us_per_delivery: float
    cpu_us_per_edit: float  # per edit sent in the window (the measure with --peers 1)
    server_rss_mib: float
    expected_deliveries: int
    missing: int
    duplicates: int
    echoes: int
    generator_cpu_pct: list[float]
    send_lag_p99_ms: float
    closed: list[str]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def split_slots(docs: int, peers: int, procs: int) -> list[list[tuple[int, int]]]:
    slots: list[list[tuple[int, int]]] = [[] for _ in range(procs)]
    for n, slot in enumerate((d, p) for d in range(docs) for p in range(peers)):
        slots[n % procs].append(slot)
    return [s for s in slots if s]


def run_load(server: Server, args: argparse.Namespace) -> Outcome:
    load = Load(
        url=server.url,
        docs=args.docs,
        peers=args.peers,
        rate=args.rate,
        handshake=server.handshakes,
        doc_prefix="bench-",
        hocuspocus=server.target in HOCUSPOCUS_TARGETS,
    )
    context = multiprocessing.get_context("fork")
    workers = []
    for slots in split_slots(args.docs, args.peers, args.procs):
        parent, child = context.Pipe()
        process = context.Process(
            target=worker_main, args=(load, slots, child, args.client_cpu), daemon=True
        )
        process.start()
        workers.append((process, parent))
    try:
        return _measure(server, args, workers)
    finally:
        for process, _ in workers:
            process.join(10)
            if process.is_alive():
                process.kill()


def start_profiler(server: Server, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """`--py-spy DIR`: sample the server over the measured window into DIR/<target>.svg."""
    if not args.py_spy:
        return None
    args.py_spy.mkdir(parents=True, exist_ok=True)
    suffix = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}[args.py_spy_format]
    output = args.py_spy / f"{server.target}-{server.pid}.{suffix}"
    command = ["py-spy", "record", "--pid", str(server.pid), "--nonblocking", "--output"]
    command += [str(output), "--duration", str(max(1, int(args.seconds)))]
    command += ["--format", args.py_spy_format, "--rate", "400"]
    if args.client_cpu is not None:  # the sampler takes CPU too: not the server's core
        command = ["taskset", "-c", str(args.client_cpu), *command]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _receive(conn: Connection, timeout: float) -> object:
    if not conn.poll(timeout):
        raise RuntimeError("a load generator process did not answer in time")
    message = conn.recv()
    if isinstance(message, str) and message.startswith("error"):
        raise RuntimeError(f"load generator failed: {message}")
    return message


def _measure(server: Server, args: argparse.Namespace, workers: list) -> Outcome:
    for _, conn in workers:
        if _receive(conn, 60) != "ready":
            raise RuntimeError("load generator did not get ready")
    start = time.monotonic() + 0.2
    timing = Timing(start, start + args.warmup, start + args.warmup + args.seconds, args.drain)
    for _, conn in workers:
        conn.send(timing)
    time.sleep(max(0.0, timing.t0 - time.monotonic()))
    cpu0 = server.cpu()
    profiler = start_profiler(server, args)
    time.sleep(max(0.0, timing.t1 - time.monotonic()))
    cpu1 = server.cpu()
    rss = server.rss_kib() / 1024
    if profiler:
        profiler.wait(60)
    results: list[WorkerResult] = [
        _receive(conn, args.drain + 60)  # type: ignore[misc]
        for _, conn in workers
    ]
    return summarize(server.target, args, results, cpu1 - cpu0, rss)


def summarize(
    target: str, args: argparse.Namespace, results: list[WorkerResult], cpu: float, rss: float
) -> Outcome:
    """One row of the table from the workers' counts (round is filled in by the caller)."""
    # Latency over every (edit sent in the window, other peer): never delivered = infinite.
    sent_window = sum(r.sent_window for r in results)
    latencies: list[float] = sorted(v for r in results for v in r.latencies_us)
    latencies += [INF] * max(0, sent_window * (args.peers - 1) - len(latencies))
    lags = sorted(v for r in results for v in r.send_lag_us)
    delivered = sum(r.delivered_window for r in results)
    sent_total = sum(r.sent_total for r in results)
    expected = sent_total * (args.peers - 1)
    return Outcome(
        target=target,
        round=1,
        load_average=load_average(),
        seconds=args.seconds,
        deliveries_per_s=delivered / args.seconds,
        edits_per_s=sum(r.sent_window for r in results) / args.seconds,
        messages_per_s=sum(r.messages_window for r in results) / args.seconds,
        p50_ms=percentile(latencies, 0.50) / 1000,
        p99_ms=percentile(latencies, 0.99) / 1000,
        max_ms=(latencies[-1] / 1000) if latencies else float("nan"),
        server_cpu_s=cpu,
        cpu_us_per_delivery=cpu / delivered * 1e6 if delivered else float("nan"),
        cpu_us_per_edit=cpu / sent_window * 1e6 if sent_window else float("nan"),
        server_rss_mib=rss,
        expected_deliveries=expected,
        missing=expected - sum(r.delivered_total for r in results),
        duplicates=sum(r.duplicates for r in results),
        echoes=sum(r.echoes for r in results),
        generator_cpu_pct=[round(100 * r.cpu_window / args.seconds, 1) for r in results],
        send_lag_p99_ms=percentile(lags, 0.99) / 1000,
        closed=[c for r in results for c in r.closed],
    )


# --- the report ---------------------------------------------------------------------------


def cost(o: Outcome) -> float:
    """CPU µs per delivery; per edit when nothing is delivered (`--peers 1`)."""
    return o.cpu_us_per_edit if math.isnan(o.cpu_us_per_delivery) else o.cpu_us_per_delivery


def _per_round(outcomes: list[Outcome], target: str) -> dict[int, float]:
    return {o.round: cost(o) for o in outcomes if o.target == target}


def print_table(outcomes: list[Outcome]) -> None:
    """All rows; `ratio` is CPU per delivery relative to the baseline of the same round,
    `/node` relative to the Node server's."""
    rounds = max(o.round for o in outcomes)
    bases = _per_round(outcomes, "baseline")
    nodes = _per_round(outcomes, "node")
    head = (
        f"{'server':<11} {'deliv/s':>8} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'cpu s':>6} {'us/edit':>7} {'us/deliv':>8} {'ratio':>6} {'/node':>6} {'rss MiB':>7} "
        f"{'missing':>7} {'gen cpu %':>10} {'lag p99':>7} {'load':>5}"
    )
    print(head)
    print("-" * len(head))
    nan = float("nan")
    for o in outcomes:
        name = o.target if rounds == 1 else f"{o.target}#{o.round}"
        ratio = cost(o) / bases.get(o.round, nan)
        to_node = cost(o) / nodes.get(o.round, nan)
        gen = "+".join(f"{p:.0f}" for p in o.generator_cpu_pct)
        print(
            f"{name:<11} {o.deliveries_per_s:>8.0f} {o.messages_per_s:>8.0f} "
            f"{o.p50_ms:>7.2f} {o.p99_ms:>7.2f} {o.max_ms:>7.1f} {o.server_cpu_s:>6.2f} "
            f"{o.cpu_us_per_edit:>7.1f} {o.cpu_us_per_delivery:>8.1f} {ratio:>6.2f} "
            f"{to_node:>6.2f} {o.server_rss_mib:>7.0f} {o.missing:>7} {gen:>10} "
            f"{o.send_lag_p99_ms:>7.1f} {o.load_average:>5.1f}"
        )
    if rounds > 1:
        print_medians(outcomes, bases)
    for o in outcomes:
        if o.closed:
            print(f"{o.target}: the server closed {len(o.closed)} peers, e.g. {o.closed[0]}")
        if o.duplicates or o.echoes:
            print(f"{o.target}: {o.duplicates} duplicate deliveries, {o.echoes} echoes to sender")
        if any(p > 85 for p in o.generator_cpu_pct):
            print(f"{o.target}: a generator process was near a full core: try --procs 2")


def print_medians(outcomes: list[Outcome], bases: dict[int, float]) -> None:
    print()
    for target in dict.fromkeys(o.target for o in outcomes):
        rows = [o for o in outcomes if o.target == target]
        cpu = statistics.median(cost(o) for o in rows)
        ratio = statistics.median(cost(o) / bases.get(o.round, float("nan")) for o in rows)
        p50 = statistics.median(o.p50_ms for o in rows)
        p99 = statistics.median(o.p99_ms for o in rows)
        print(
            f"median of {len(rows)} {target}: {cpu:.1f} us/delivery (or edit), ratio {ratio:.2f}, "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


def make_server(name: str, workdir: Path, args: argparse.Namespace, round_: int) -> Server:
    """A target by name: one of TARGETS or a `--variant` (collab with extra flags)."""
    label = f"-{round_}"
    variants = dict(args.variant)
    if name in variants:
        extra = [*variants[name], *args.server_arg]
        return Server(
            "durable", workdir, label=f"-{name}{label}", cpu=args.server_cpu,
            collab_command=args.collab_command, extra=extra,
        )  # fmt: skip
    extra = args.server_arg if name in COLLAB_TARGETS else []
    return Server(
        name, workdir, label=label, cpu=args.server_cpu,
        collab_command=args.collab_command, extra=extra,
    )  # fmt: skip


def run_target(target: str, workdir: Path, args: argparse.Namespace, round_: int) -> Outcome:
    with make_server(target, workdir, args, round_) as server:
        print(f"{target} (pid {server.pid}): {' '.join(server.command)}", flush=True)
        outcome = run_load(server, args)
        outcome.target = target
        outcome.round = round_
        return outcome


def variant(text: str) -> tuple[str, list[str]]:
    name, _, flags = text.partition("=")
    if not name or name in TARGETS:
        raise argparse.ArgumentTypeError(f"a variant is NAME=FLAGS with a new name: {text!r}")
    return name, flags.split()


def add_target_arguments(parser: argparse.ArgumentParser, default: str = "all") -> None:
    """--only, --variant, --server-cpu, --client-cpu, --collab-command, --server-arg."""
    parser.add_argument(
        "--only",
        action="append",
        choices=TARGETS,
        help=f"run only this server (repeatable); default: {default}",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=variant,
        default=[],
        metavar="NAME=FLAGS",
        help="also run collab (--fsync always) with these flags as row NAME, "
        "e.g. --variant 'window25=--batch-window 0.025'",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for every collab row, e.g. --server-arg=--log-level=warning",
    )
    parser.add_argument(
        "--collab-command",
        default=DEFAULT_COLLAB,
        help="how to start collab (default: %(default)s)",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="core the server is pinned to (default 0)"
    )
    parser.add_argument(
        "--client-cpu",
        type=int,
        default=1,
        help="core the load generators are pinned to (default 1; -1: not pinned)",
    )


def chosen_targets(args: argparse.Namespace) -> list[str]:
    """The rows to run, in table order; those not installed are skipped with a note."""
    if args.client_cpu is not None and args.client_cpu < 0:
        args.client_cpu = None
    if args.server_cpu is not None and args.server_cpu < 0:
        args.server_cpu = None
    names = [t for t in TARGETS if t in (args.only or TARGETS)]
    names += [name for name, _ in args.variant]
    runnable = []
    for name in names:
        why = missing(name)
        if why:
            print(f"{name}: skipped: {why}", flush=True)
        else:
            runnable.append(name)
    return runnable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark: collab, the bare relay, pycrdt-websocket and the Node "
        "server, through real sockets, in one run."
    )
    parser.add_argument("--docs", type=int, default=10, help="documents (default 10)")
    parser.add_argument("--peers", type=int, default=10, help="Yjs peers per document (10)")
    parser.add_argument("--rate", type=float, default=20.0, help="edits/s per peer (20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before measuring (3)")
    parser.add_argument("--drain", type=float, default=5.0, help="max wait for stragglers (5)")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes (default 1)")
    add_target_arguments(parser)
    parser.add_argument(
        "--py-spy", type=Path, help="profile each server over the window into DIR/<server>.svg"
    )
    parser.add_argument(
        "--py-spy-format",
        choices=("flamegraph", "raw", "speedscope"),
        default="flamegraph",
        help="raw: collapsed stacks, one line per stack (grep-able)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run all servers this many times, interleaved"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and data")
    args = parser.parse_args(argv)
    if min(args.docs, args.peers, args.procs, args.repeat) < 1 or args.rate <= 0:
        parser.error("need --docs, --peers, --procs, --repeat >= 1, --rate > 0")
    if args.seconds <= 0 or args.seconds > 600 or args.warmup < 0:
        parser.error("--seconds must be in (0, 600], --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_encoder()
    targets = chosen_targets(args)
    print(
        f"load: {args.docs} docs x {args.peers} peers x {args.rate:g} edits/s = "
        f"{args.docs * args.peers * args.rate:g} edits/s in, "
        f"{args.docs * args.peers * (args.peers - 1) * args.rate:g} deliveries/s out; "
        f"{args.warmup:g} s warm-up, {args.seconds:g} s measured; "
        f"{args.procs} generator process(es); server on cpu {args.server_cpu}, "
        f"generators on cpu {args.client_cpu}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="collab-fanout-"))
    outcomes = []
    try:
        for round_ in range(1, args.repeat + 1):
            for target in targets:
                try:
                    outcomes.append(run_target(target, workdir, args, round_))
                except RuntimeError as error:  # one broken server must not lose the others
                    print(f"{target}: FAILED: {error}", flush=True)
    finally:
        if args.keep:
            print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    if outcomes:
        print_table(outcomes)
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))


if __name__ == "__main__":
    main()
