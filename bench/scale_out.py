"""Scale-out benchmark: one collab process vs two, on PostgreSQL + Redis, and the file store.

Runs `bench/fanout.py`'s load (documents x Yjs peers, every edit relayed to the other peers
of its document) against, in one run and on one machine:

- file:     one `collab serve` on the file store (fsync always), the single-process default;
- pg-1:     one process on PostgreSQL (fsync on) + Redis;
- pg-2:     `collab serve --workers 2` on the same: the kernel spreads the peers of every
            document over both processes, so every edit also crosses Redis (the worst case
            for the bus; routing by document name would keep a document on one process).

For each, it raises the edit rate step by step and reports deliveries/s, latency p99 and
server CPU per delivery at each rate, then the highest deliveries/s whose p99 stayed under
100 ms. A throwaway PostgreSQL cluster and redis-server are started for the run
(tests/pg_server.py, tests/redis_server.py) and stopped at the end.

    python bench/scale_out.py                             # rates 10 20 40 80, 10 s each
    python bench/scale_out.py --rates 20 40 --seconds 5   # quicker
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pg_server import PgCluster, start_cluster  # noqa: E402
from redis_server import RedisServer  # noqa: E402

P99_LIMIT_MS = 100.0


def fanout(command: str, rate: float, args: argparse.Namespace) -> dict:
    """One fanout.py run of collab started by `command`; its outcome as a dict."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, str(REPO / "bench" / "fanout.py"), "--only", "durable"]
        argv += ["--collab-command", command, "--rate", str(rate), "--seconds", str(args.seconds)]
        argv += ["--docs", str(args.docs), "--peers", str(args.peers), "--procs", "2"]
        argv += ["--server-arg=--log-level=warning", "--json", out.name]
        subprocess.run(argv, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        outcomes = json.loads(Path(out.name).read_text())
    return outcomes[0] if outcomes else {}


def commands(cluster: PgCluster, redis: RedisServer) -> dict[str, callable]:
    python = shlex.quote(sys.executable)

    def shared(workers: int) -> str:
        store = cluster.create_database()  # a fresh database per run
        return f"{python} -m collab serve --store {store} --bus {redis.url} --workers {workers}"

    return {
        "file": lambda: f"{python} -m collab serve",
        "pg-1": lambda: shared(1),
        "pg-2": lambda: shared(2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--peers", type=int, default=10)
    args = parser.parse_args()
    cluster = start_cluster(fsync=True)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="collab-redis-"))).start()
    best: dict[str, float] = {}
    try:
        print("config  edits/s/peer  deliveries/s  p99 ms  cpu us/delivery  load")
        for name, command in commands(cluster, redis).items():
            for rate in args.rates:
                outcome = fanout(command(), rate, args)
                p99 = outcome.get("p99_ms", float("inf"))
                delivered = outcome.get("deliveries_per_s", 0.0)
                print(
                    f"{name:<7} {rate:>12g} {delivered:>13.0f} {p99:>7.1f} "
                    f"{outcome.get('cpu_us_per_delivery', float('nan')):>16.1f} "
                    f"{outcome.get('load_average', float('nan')):>5.1f}",
                    flush=True,
                )
                if p99 < P99_LIMIT_MS and outcome.get("missing", 1) == 0:
                    best[name] = max(best.get(name, 0.0), delivered)
    finally:
        redis.kill()
        cluster.destroy()
    print()
    for name, delivered in best.items():
        print(f"{name}: {delivered:.0f} deliveries/s at p99 < {P99_LIMIT_MS:g} ms")
    if best.get("pg-1") and best.get("pg-2"):
        print(f"two processes vs one (PostgreSQL + Redis): {best['pg-2'] / best['pg-1']:.2f}x")


if __name__ == "__main__":
    main()
