"""Commit throughput and latency: PostgresStore against FileStore, in one run.

Each store gets the same commits: `--commits` commits of 1 record and of 50 records
(origins `ot:<client>:<seq>`, ~40-byte updates), made through `SharedStore.commit` for
PostgreSQL (lock, `records_after`, `append`, COMMIT: what the hub's runner does) and
through `append` for FileStore (its whole commit). Two loads:

- `1 doc`: one document, one commit after the other: the latency of one commit.
- `8 docs`: eight documents committing at once (one writer each): what the server does
  with many busy documents; PostgreSQL can group the WAL flushes of concurrent commits.

PostgreSQL is a throwaway cluster started here (tests/pg_server.py) with fsync ON and the
default synchronous_commit; FileStore fsyncs every append (`--fsync always`). Both write
to the same filesystem (the temp dir). A last table times the INSERT alone inside a
transaction: the store's one statement over unnest() arrays vs a check query + executemany.

    python bench/store_commit.py                 # defaults: 300 commits per case
    python bench/store_commit.py --commits 1000 --json /tmp/store_commit.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pg_server import start_cluster  # noqa: E402

from collab.storage.contract import Record  # noqa: E402
from collab.storage.files import FileStore  # noqa: E402
from collab.storage.postgres import PostgresStore  # noqa: E402
from collab.storage.postgres_rows import record_columns  # noqa: E402


def records(first: int, count: int, client: str) -> list[Record]:
    payload = os.urandom(40)
    return [
        Record(rev, time.time(), f"ot:{client}:{rev}", "bench user", payload)
        for rev in range(first, first + count)
    ]


async def run_writer(store: object, name: str, batch: int, commits: int) -> list[float]:
    """One document's writer: `commits` commits of `batch` records; each one's seconds."""
    latencies = []
    rev = 0
    for _ in range(commits):
        chunk = records(rev + 1, batch, name)
        start = time.perf_counter()
        if isinstance(store, PostgresStore):
            async with store.commit(name) as commit:
                await commit.records_after(rev)
                await commit.append(chunk)
        else:
            await store.append(name, chunk)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - start)
        rev += batch
    return latencies


async def measure(store: object, docs: int, batch: int, commits: int, tag: str) -> dict:
    per_doc = max(1, commits // docs)
    start = time.perf_counter()
    results = await asyncio.gather(
        *(run_writer(store, f"{tag}-{batch}-{docs}-{i}", batch, per_doc) for i in range(docs))
    )
    seconds = time.perf_counter() - start
    latencies = sorted(x for result in results for x in result)
    return {
        "commits": len(latencies),
        "commits_per_s": len(latencies) / seconds,
        "records_per_s": len(latencies) * batch / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def insert_methods(store: PostgresStore, batch: int, rounds: int) -> dict[str, float]:
    """Median ms of the INSERT of `batch` records in a transaction, two ways: the store's
    one statement (continuity check, document row and unnest() insert), or a query for the
    last rev followed by executemany (one round trip each, asyncpg pipelines the rows)."""
    pool = await store._ready()
    timings: dict[str, list[float]] = {"unnest": [], "check+executemany": []}
    from collab.storage import postgres_schema as sql

    async with pool.acquire() as connection:
        for method in timings:
            name = f"insert-{method}-{batch}"
            method_name = method.replace("+", "-")
            await connection.execute("INSERT INTO collab_documents (name) VALUES ($1)", name)
            rev = 0
            for _ in range(rounds):
                chunk = records(rev + 1, batch, method_name)
                async with connection.transaction():
                    start = time.perf_counter()
                    if method == "unnest":
                        await connection.fetchrow(sql.INSERT, name, rev + 1, *record_columns(chunk))
                    else:  # the continuity check is then a query of its own
                        await connection.fetchval(
                            "SELECT coalesce(max(rev), 0) FROM collab_revisions WHERE name = $1",
                            name,
                        )
                        rows = list(zip(*record_columns(chunk), strict=True))
                        await connection.executemany(
                            'INSERT INTO collab_revisions (name, rev, time, origin, "user", '
                            "update, client, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                            [(name, *row) for row in rows],
                        )
                    timings[method].append(time.perf_counter() - start)
                rev += batch
    return {method: statistics.median(values) * 1000 for method, values in timings.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=300, help="commits per case")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    cluster = start_cluster(fsync=True)
    results: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="collab-bench-") as data_dir:
            postgres = PostgresStore.from_url(cluster.create_database(), max_size=10)
            await postgres.start()
            files = FileStore(Path(data_dir), fsync=True)
            stores = [("postgres", postgres), ("file", files)]
            for docs in (1, 8):
                for batch in (1, 50):
                    for label, store in stores:
                        result = await measure(store, docs, batch, args.commits, label)
                        results.append({"store": label, "docs": docs, "batch": batch, **result})
            inserts = {batch: await insert_methods(postgres, batch, 100) for batch in (1, 50)}
            await postgres.close()
            await files.close()
    finally:
        cluster.destroy()

    print(f"{'store':<9} {'load':<7} {'records':>7} {'commits/s':>10} {'records/s':>10}"
          f" {'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
    for r in results:
        print(
            f"{r['store']:<9} {str(r['docs']) + ' doc' + 's' * (r['docs'] > 1):<7}"
            f" {r['batch']:>7} {r['commits_per_s']:>10.0f} {r['records_per_s']:>10.0f}"
            f" {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
        )
    print("\nINSERT alone, in a transaction (median ms):")
    for batch, timing in inserts.items():
        print(f"  {batch:>2} records: one statement (unnest) {timing['unnest']:.3f},"
              f" check + executemany {timing['check+executemany']:.3f}")  # fmt: skip
    print(f"\nload average: {os.getloadavg()[0]:.2f} (2 cores shared: above ~2, noisy)")
    if args.json:
        args.json.write_text(json.dumps({"commits": results, "inserts": inserts}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
