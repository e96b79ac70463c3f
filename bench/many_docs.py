"""The common load: many documents with few editors each, then cheap connections, in one run.

    python bench/many_docs.py                          # every row, both parts
    python bench/many_docs.py --only baseline --only node --only durable --only fast
    python bench/many_docs.py --repeat 2 --seconds 10 --no-connections
    python bench/many_docs.py --docs 2000 --peers 2 --rate 1 --no-connections

Part 1 is `fanout.py` at 200 documents x 3 Yjs peers x 2 edits/s (1,200 edits/s in, 2,400
deliveries/s out): each document sees one edit at a time, so the group commit that makes
busy documents cheap has nothing to merge. Every `fanout.py` flag works and overrides these
defaults. Part 2 is `scenarios.py connections`: 2,000 peers connect to 200 documents and
finish the Yjs sync (the bare relay's only connect). Same rows, same pinning (server on
core 0, load generators on core 1), one after another; both stop by themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout
import scenarios
from targets import load_average

MANY_DOCS = ["--docs", "200", "--peers", "3", "--rate", "2", "--seconds", "15", "--warmup", "3"]
ALL_ROWS = ["baseline", "pycrdt", "node", "hocuspocus", "durable", "fast"]
# The flags both parts take (fanout's other flags go to part 1 only).
SHARED = ("--only", "--variant", "--server-arg", "--collab-command", "--server-cpu",
          "--client-cpu", "--repeat")  # fmt: skip


def shared_flags(argv: list[str]) -> list[str]:
    """The part of `argv` that `scenarios.py connections` takes too."""
    kept: list[str] = []
    i = 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        if flag in SHARED:
            takes_value = "=" not in argv[i]
            kept += argv[i : i + 1 + takes_value]
            i += 1 + takes_value
        else:
            i += 1
    return kept


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--no-connections", action="store_true", help="skip part 2")
    parser.add_argument("--no-fanout", action="store_true", help="skip part 1")
    parser.add_argument("--connections", default="2000", help="part 2: peers (2000)")
    ours, rest = parser.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        print("\nPart 1 takes every flag of bench/fanout.py:")
        fanout.main(["--help"])
    if not any(a.split("=")[0] == "--only" for a in rest):
        rest += [f"--only={row}" for row in ALL_ROWS]
    print(f"load average {load_average():.1f}", flush=True)
    if not ours.no_fanout:
        fanout.main([*MANY_DOCS, *rest])
        print(flush=True)
    if not ours.no_connections:
        scenarios.main(["connections", "--connections", ours.connections, *shared_flags(rest)])


if __name__ == "__main__":
    main()
