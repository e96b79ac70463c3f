"""Redis bus benchmark: publish -> deliver latency and messages/s between two processes.

A sender process and a receiver process each run a `RedisBus` on one redis-server (a
fresh one on a free loopback port, or `--redis URL`). For each record size:

- latency: the sender publishes one record per message at a fixed rate (`--rate`, open
  loop) for `--seconds`; each record carries its send time (CLOCK_MONOTONIC is system-wide
  on Linux) and the receiver takes its receive time when the bus hands it the record;
- throughput: the sender publishes `--count` records as fast as the receiver takes them:
  the receiver acknowledges every 200 records over the bus (awareness messages), and the
  sender keeps at most 4 MiB (and 5,000 records) unacknowledged. messages/s is count /
  (last receive - first send). Without that window a sender outruns a Python receiver and
  Redis disconnects the receiver when its output buffer passes 32 MiB
  (`client-output-buffer-limit pubsub`); the bus then resubscribes and the store fills
  the gap, but the benchmark would measure the loss.

Missing messages (never received) are counted; none are expected on an idle loopback.

    python bench/bus.py
    python bench/bus.py --sizes 100,10240 --rate 2000 --seconds 3 --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection

from collab.bus.redis import RedisBus
from collab.storage.contract import Record

DOC = "bench"
MiB = 1024 * 1024


ACK_EVERY = 200


class Collector:
    """The receiver's listener: receive time minus send time per record, and counts; it
    acknowledges every `ACK_EVERY` records with an awareness message."""

    def __init__(self, bus: RedisBus) -> None:
        self.bus = bus
        self.reset()
        self.active = asyncio.Event()
        self.acks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.last = 0.0

    def records(self, records: list[Record]) -> None:
        now = time.monotonic()
        for record in records:
            self.latencies.append(now - record.time)
        self.received += len(records)
        self.last = now
        if self.received % ACK_EVERY == 0:
            ack = asyncio.create_task(self.bus.publish_awareness(DOC, b"%d" % self.received))
            self.acks.add(ack)
            ack.add_done_callback(self.acks.discard)

    def committed(self, rev: int) -> None:
        pass

    def awareness(self, process: str, message: bytes) -> None:
        pass

    def process_gone(self, process: str) -> None:
        pass

    def resubscribed(self) -> None:
        self.active.set()


def receiver(url: str, pipe: Connection) -> None:
    asyncio.run(_receive(url, pipe))


async def _receive(url: str, pipe: Connection) -> None:
    bus = RedisBus.from_url(url)
    await bus.start()
    collector = Collector(bus)
    bus.subscribe(DOC, collector)
    await collector.active.wait()
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command is None:
            break
        expected, timeout = command
        collector.reset()
        pipe.send("ready")
        deadline = time.monotonic() + timeout
        while collector.received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # a benchmark's patience, not synchronisation
        pipe.send((collector.received, collector.last, collector.latencies))
    await bus.close()


def record(rev: int, update: bytes) -> Record:
    return Record(rev=rev, time=time.monotonic(), origin="ot:bench:1", user=None, update=update)


async def latency_phase(bus: RedisBus, size: int, rate: float, seconds: float) -> int:
    update = b"x" * size
    count = int(rate * seconds)
    start = time.monotonic()
    for rev in range(1, count + 1):
        delay = start + rev / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await bus.publish_records(DOC, [record(rev, update)])
    return count


class Acks:
    """The sender's listener: how many records the receiver acknowledged."""

    def __init__(self) -> None:
        self.acked = 0
        self.changed = asyncio.Event()

    def awareness(self, process: str, message: bytes) -> None:
        self.acked = int(message)
        self.changed.set()

    def records(self, records: list[Record]) -> None: ...
    def committed(self, rev: int) -> None: ...
    def process_gone(self, process: str) -> None: ...
    def resubscribed(self) -> None: ...


async def throughput_phase(bus: RedisBus, acks: Acks, size: int, count: int) -> float:
    update = b"x" * size
    window = min(5000, max(ACK_EVERY * 2, 4 * MiB // size))
    acks.acked = 0
    first = time.monotonic()
    for rev in range(1, count + 1):
        while rev - acks.acked > window:
            acks.changed.clear()
            try:
                async with asyncio.timeout(30):
                    await acks.changed.wait()
            except TimeoutError:
                print(f"no ack for 30 s: sent {rev - 1}, acked {acks.acked}", bus.stats)
                return first  # lost: the receiver reports what it got
        await bus.publish_records(DOC, [record(rev, update)])
        if rev % 100 == 0:
            await asyncio.sleep(0)
    return first


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


async def run(url: str, args: argparse.Namespace, pipe: Connection) -> list[dict[str, object]]:
    bus = RedisBus.from_url(url)
    await bus.start()
    acks = Acks()
    bus.subscribe(DOC, acks)
    loop = asyncio.get_running_loop()
    results = []
    try:
        for size in args.sizes:
            count = int(args.rate * args.seconds)
            pipe.send((count, args.seconds + 10))
            await loop.run_in_executor(None, pipe.recv)
            sent = await latency_phase(bus, size, args.rate, args.seconds)
            received, _, latencies = await loop.run_in_executor(None, pipe.recv)
            ms = [value * 1000 for value in latencies]
            row: dict[str, object] = {
                "size": size,
                "rate": args.rate,
                "p50_ms": round(percentile(ms, 0.5), 3),
                "p99_ms": round(percentile(ms, 0.99), 3),
                "max_ms": round(max(ms, default=0.0), 3),
                "missing": sent - received,
            }
            pipe.send((args.count, 60))
            await loop.run_in_executor(None, pipe.recv)
            first = await throughput_phase(bus, acks, size, args.count)
            received, last, _ = await loop.run_in_executor(None, pipe.recv)
            per_second = received / (last - first) if received else 0.0
            row |= {
                "msgs_per_s": round(per_second),
                "MB_per_s": round(per_second * size / 1e6, 1),
                "flood_missing": args.count - received,
            }
            results.append(row)
            print(row, flush=True)
    finally:
        pipe.send(None)
        await bus.close()
    return results


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit("redis-server did not start")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", help="use this Redis instead of starting one")
    parser.add_argument(
        "--sizes", default="100,10240", type=lambda v: [int(x) for x in v.split(",")]
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="latency phase: msgs/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="latency phase: duration")
    parser.add_argument("--count", type=int, default=20_000, help="throughput phase: msgs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        redis, url = (None, args.redis) if args.redis else start_redis(directory)
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(target=receiver, args=(url, theirs))
        child.start()
        try:
            assert ours.recv() == "ready"
            results = asyncio.run(run(url, args, ours))
        finally:
            child.join(30)
            if redis is not None:
                redis.kill()
    print(f"\nlatency at {args.rate:g} msgs/s; missing: latency phase + throughput phase")
    print("| record | p50 | p99 | max | missing | msgs/s | MB/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['size']} B | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms "
            f"| {r['missing']}+{r['flood_missing']} | {r['msgs_per_s']:,} | {r['MB_per_s']} |"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
