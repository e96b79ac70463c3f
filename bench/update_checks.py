"""Cost of the checks run on every incoming Yjs update (collab.yjs.checks), in µs.

    python bench/update_checks.py              # defaults: 500 KB sync step 2
    python bench/update_checks.py --kb 200 --repeat 5

Two updates: a one-character insert in the middle of a text with emoji (the common case)
and a sync step 2 (the whole document as one update) of about `--kb` KB, built from random
typing, pastes and deletes by two clients, with emoji. Each is timed through the full path
(decoding alone, then `missing_dependencies` + `splits_pair` on the decoded update), then
through the fast scan of `collab.yjs.scan` in Python, and through `check_update` as the
server calls it (the scan in C when it was built, which settles both), against the
server's state vector and a SurrogateIndex holding the document, and beside pycrdt
applying it (the small one to the server's document, the big one to an empty document).
Best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Doc, Text

from collab.yjs import scan
from collab.yjs.checks import SurrogateIndex, check_update, missing_dependencies
from collab.yjs.protocol import write_var_uint as uint
from collab.yjs.scan import python_quick_check, quick_check
from collab.yjs.update import decode_state_vector, decode_update

PIECES = ["a", "b", "c", " ", "é", "中", "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "\n", "the quick "]


def best_us(fn: Callable[[], object], repeat: int, min_seconds: float = 0.2) -> float:
    """Best per-call time in µs over `repeat` rounds of enough calls to last `min_seconds`."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_seconds / 4 or calls >= 1 << 20:
            break
        calls *= 2
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def edit(doc: Doc, rnd: random.Random) -> None:
    text = doc.get("text", type=Text)
    current = str(text)
    at = rnd.randint(0, len(current))
    offset = len(current[:at].encode())
    if current and rnd.random() < 0.2:
        end = min(len(current), at + rnd.randint(1, 5))
        del text[offset : offset + len(current[at:end].encode())]
    elif rnd.random() < 0.02:
        text.insert(offset, "".join(rnd.choices(PIECES, k=200)))
    else:
        text.insert(offset, rnd.choice(PIECES))


def build(kb: int, seed: int = 1) -> tuple[Doc, Doc]:
    """Two docs kept in sync, edited in turn until the state is about `kb` KB."""
    rnd = random.Random(seed)
    a, b = Doc(), Doc()
    while len(a.get_update()) < kb * 1000:
        for _ in range(500):
            source, target = (a, b) if rnd.random() < 0.5 else (b, a)
            before = target.get_state()
            edit(source, rnd)
            target.apply_update(source.get_update(before))
    return a, b


def hostile(groups: int) -> list[tuple[str, bytes]]:
    """Shapes a stranger could send to make the scan's bookkeeping work: many groups of
    distinct clients, each one astral character, and a delete set naming each; and a chain
    of clients, each one's item depending on the next one's."""
    root = bytes([4]) + uint(1) + uint(4) + b"text"
    emoji = uint(4) + "😀".encode()
    many = uint(groups) + b"".join(
        uint(1) + uint(c + 1) + uint(0) + root + emoji for c in range(groups)
    )
    many += uint(groups) + b"".join(
        uint(c + 1) + uint(1) + uint(0) + uint(2) for c in range(groups)
    )
    chain = uint(groups) + b"".join(
        uint(1) + uint(c + 1) + uint(0) + bytes([4 | 0x80]) + uint(c + 2) + uint(0) + b"\x01a"
        for c in range(groups - 1)
    )
    chain += uint(1) + uint(groups) + uint(0) + root + b"\x01a" + b"\x00"
    return [(f"{groups:,} clients", many), (f"{groups:,}-link chain", chain)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=500, help="size of the sync step 2 (KB)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hostile", type=int, default=100_000, help="clients in those shapes")
    args = parser.parse_args()

    started = time.perf_counter()
    a, b = build(args.kb)
    size = len(a.get_update()) / 1000
    print(f"built a {size:.0f} KB document in {time.perf_counter() - started:.1f} s")
    server = Doc()
    server.apply_update(a.get_update())
    state = decode_state_vector(server.get_state())
    index = SurrogateIndex()
    index.add(server.get_update())

    text = b.get("text", type=Text)
    middle = str(text)[: len(str(text)) // 2]
    sent: list[bytes] = []
    b.observe(lambda event: sent.append(event.update))  # what a peer sends: one transaction
    text.insert(len(middle.encode()), "x")
    (small,) = sent
    big = a.get_update()  # what a client with everything sends to an empty server
    empty_state: dict[int, int] = {}

    print(f"index: {len(index)} high surrogates, {len(state)} clients")
    built = "the C scan" if scan._native_quick_check is not None else "NOT BUILT: the Python scan"
    print(f"check_update runs {built}")
    print(
        f"{'update':>14} {'bytes':>8} {'structs':>8} {'full decode':>12} {'full checks':>12}"
        f" {'Python scan':>12} {'check_update':>13} {'pycrdt apply':>13}"
    )
    for name, update, known, apply_it in (
        ("one character", small, state, False),  # applying it twice would change nothing
        ("sync step 2", big, empty_state, True),
    ):
        decoded = decode_update(update)
        assert missing_dependencies(decoded, known) is None
        assert index.splits_pair(decoded) is None
        assert quick_check(update, known, index.highs) is not None  # the fast path settles it
        decode = best_us(lambda u=update: decode_update(u), args.repeat)
        checks = best_us(
            lambda d=decoded, k=known: (missing_dependencies(d, k), index.splits_pair(d)),
            args.repeat,
        )
        python = best_us(
            lambda u=update, k=known: python_quick_check(u, k, index.highs), args.repeat
        )
        total = best_us(lambda u=update, k=known: check_update(u, k, index), args.repeat)
        apply = f"{best_us(lambda u=update: Doc().apply_update(u), args.repeat):11.1f}µs"
        print(
            f"{name:>14} {len(update):>8} {len(decoded.structs):>8} {decode:>10.1f}µs"
            f" {checks:>10.1f}µs {python:>10.1f}µs {total:>11.1f}µs"
            f" {apply if apply_it else '-':>13}"
        )
    print(f"{'hostile shape':>20} {'bytes':>9} {'Python scan':>12} {'check_update':>13}")
    for name, update in hostile(args.hostile):
        python = best_us(lambda u=update: python_quick_check(u, {}, {}), 1, 0)
        total = best_us(lambda u=update: check_update(u, {}, SurrogateIndex()), args.repeat)
        print(f"{name:>20} {len(update):>9} {python / 1000:>10.1f}ms {total / 1000:>11.1f}ms")


if __name__ == "__main__":
    main()
