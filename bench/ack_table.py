"""What the ack table costs with many text clients (issue 18, finding 3).

    python bench/ack_table.py [--clients 100000]

Fills one document's `AckTable` with N distinct clients (ids as `client_id_from_secret`
makes them), then prints: the memory per client (tracemalloc, ids included), the snapshot
metadata's size and its encode/decode times (encode runs on the event loop at every
compaction; decode when the document loads), and the latency of a text client's hello
(`Session.receive` to the welcome) with and without the N clients remembered.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
import tracemalloc

from collab.config import Settings
from collab.session import Session
from collab.session.acks import AckTable
from collab.storage.contract import StoredDocument
from collab.wire import client_id_from_secret


def filled(clients: int) -> AckTable:
    table = AckTable(limit=clients)
    for index in range(clients):
        table.applied(client_id_from_secret(secrets.token_hex(16)), 1 + index % 50, index)
    return table


def timed(run, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def hello_latency(meta: bytes, clients: int, hellos: int = 200) -> float:
    """Median seconds from a hello to its welcome (taken out), on a loaded session."""
    source = Session("bench")
    source.replace_text("héllo 👨‍👩‍👧 中")
    stored = StoredDocument(source.state, clients, [], 0, meta)
    session = Session("bench", Settings(max_remembered_clients=max(clients, 1)), stored)
    times = []
    for index in range(hellos):
        session.connect_text(f"p{index}")
        hello = json.dumps({"type": "hello", "secret": secrets.token_hex(16), "rev": 0})
        start = time.perf_counter()
        session.receive(f"p{index}", hello)
        session.take_output()
        times.append(time.perf_counter() - start)
        session.disconnect(f"p{index}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    clients = parser.parse_args().clients
    tracemalloc.start()
    table = filled(clients)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    meta = table.encode()
    print(f"clients: {clients:,}")
    print(f"memory: {used / clients:.0f} bytes per client ({used / 2**20:.1f} MiB)")
    print(f"meta: {len(meta):,} bytes ({len(meta) / clients:.1f} per client)")
    print(f"encode: {timed(table.encode) * 1000:.0f} ms")
    print(f"decode: {timed(lambda: AckTable.decode(meta, clients)) * 1000:.0f} ms")
    print(f"hello -> welcome, none remembered: {hello_latency(b'', 0) * 1e6:.0f} us")
    print(f"hello -> welcome, {clients:,} remembered: {hello_latency(meta, clients) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
