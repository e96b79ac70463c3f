"""Red-team tests of the C update scan (collab/yjs/_scan.c): it reads untrusted peers' bytes,
so it is built here with AddressSanitizer and UndefinedBehaviorSanitizer and run on crafted
edge cases and fuzzed updates, its answers held to `python_quick_check`'s on each."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from array import array
from pathlib import Path
from types import ModuleType

import pytest
from hostile_updates import uint
from test_update_scan import PIECES, full_check, history, python_string_highs

from collab.yjs.checks import SurrogateIndex
from collab.yjs.scan import Summary, python_quick_check
from collab.yjs.update import decode_state_vector

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "collab" / "yjs" / "_scan.c"
TEXT_ROOT = uint(1) + uint(4) + b"text"  # parent info 1: the root type "text"
BIG = [0, 1, 7, 127, 128, 2**21, 2**32 - 1, 2**32, 2**53 - 3, 2**53 - 2, 2**53 - 1]


def overlong(n: int, extra: int) -> bytes:
    """`n` as a varUint padded with `extra` continuation bytes (lib0 reads it as `n`)."""
    body = bytearray(uint(n))
    if extra:
        body[-1] |= 0x80
        body += b"\x80" * (extra - 1) + b"\x00"
    return bytes(body)


def group(client: int, clock: int, *structs: bytes) -> bytes:
    return uint(len(structs)) + uint(client) + uint(clock) + b"".join(structs)


def update(*groups: bytes, deletes: bytes = b"\x00") -> bytes:
    return uint(len(groups)) + b"".join(groups) + deletes


def string(text: str | bytes, info: int = 0x04, deps: bytes = TEXT_ROOT) -> bytes:
    raw = text if isinstance(text, bytes) else text.encode()
    return bytes([info]) + deps + uint(len(raw)) + raw


ID_7_0 = uint(7) + uint(0)
DELETE_7_0_1 = uint(7) + uint(1) + uint(0) + uint(1)  # client 7: one range, clock 0, length 1
EMOJI = update(group(7, 0, string("a😀b")))  # 😀's high half at clock 1
EDGE_CASES: list[tuple[bytes, dict[int, int], dict[int, set[int] | frozenset[int]]]] = [
    # State clocks up to 2**64 - 1 (the known clock minus one is probed for a cut pair).
    *((EMOJI, {7: known}, {}) for known in (2, 3, 2**53, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1)),
    # varUints: 8 bytes over-long, 9 bytes, 2**53 - 1 and 2**53 as group clock and client.
    (uint(1) + overlong(1, 6) + overlong(7, 7) + overlong(0, 7) + string("x") + b"\x00", {}, {}),
    (uint(1) + overlong(1, 6) + overlong(7, 8) + uint(0) + string("x") + b"\x00", {}, {}),
    (update(group(2**53 - 1, 0, string("x"))), {}, {}),
    (update(group(7, 2**53 - 1, string("x"))), {7: 2**53 - 1}, {}),
    (update(group(7, 2**53 - 2, string("x"))), {7: 2**53 - 2}, {}),
    (uint(1) + uint(1) + uint(7) + b"\x80\x80\x80\x80\x80\x80\x80\x10" + string("x"), {}, {}),
    # GC sums up to and past 2**53 - 1; GC info bytes with high bits.
    (update(group(7, 0, b"\x00" + uint(2**53 - 2), string("x"))), {}, {}),
    (update(group(7, 0, b"\x00" + uint(2**53 - 1), string("x"))), {}, {}),
    (update(group(7, 0, b"\x00" + uint(2**53 - 1), b"\x00" + uint(2**53 - 1))), {}, {}),
    *((update(group(7, 0, bytes([info]) + uint(3), string("x"))), {}, {}) for info in (0x20, 0xE0)),
    *((update(group(7, 0, bytes([info]) + uint(3))), {}, {}) for info in (0x20, 0x80, 0xE0)),
    # Deletes near 2**53 and at -1: (0, 0) probes clock -1 twice.
    (update(deletes=uint(1) + uint(7) + uint(1) + uint(0) + uint(0)), {}, {7: {0}}),
    (update(deletes=uint(1) + uint(7) + uint(1) + uint(2**53 - 2) + uint(1)), {7: 2**53 - 1}, {}),
    (update(deletes=uint(1) + uint(7) + uint(1) + uint(2**53 - 1) + uint(1)), {7: 2**53 - 1}, {}),
    (update(deletes=uint(1) + uint(7) + uint(1) + uint(1) + uint(2**53 - 1)), {7: 2**53}, {}),
    # Origins at -1 probes (right origin at clock 0), at 2**53 - 1, on the group's own pair.
    (update(group(9, 0, string("x", 0x44, uint(7) + uint(0)))), {7: 4}, {7: {0}}),
    (update(group(9, 0, string("x", 0x84, uint(7) + uint(2**53 - 1)))), {7: 2**53}, {}),
    (update(group(7, 0, string("😀"), string("x", 0x84, uint(7) + uint(0)))), {}, {}),
    (update(group(7, 0, string("😀"), string("x", 0x44, uint(7) + uint(1)))), {}, {}),
    # Parent kinds other than 0 and 1 (an ID), a map key, root names: empty, bad UTF-8.
    *((update(group(9, 0, string("x", 0x04, uint(k) + ID_7_0))), {7: 1}, {}) for k in BIG),
    (update(group(9, 0, string("x", 0x24, TEXT_ROOT + uint(1) + b"k"))), {}, {}),
    (update(group(9, 0, string("x", 0x04, uint(1) + uint(0)))), {}, {}),
    (update(group(9, 0, string("x", 0x04, uint(1) + uint(2) + b"\xc3\x28"))), {}, {}),
    (update(group(9, 0, string("x", 0x04, uint(1) + uint(3) + b"\xe4\xb8"))), {}, {}),
    # Strings of length 0; one client twice in the groups and in the delete set.
    (update(group(7, 0, string(""), string(""), string("😀"))), {}, {}),
    (update(group(7, 0, string("x")), group(7, 1, string("y"))), {}, {}),
    (update(group(7, 0, string("ab")), deletes=uint(2) + DELETE_7_0_1 * 2), {}, {}),
    # known_highs values: frozensets, empty sets, clocks past 2**63.
    (update(group(9, 0, string("x", 0x84, uint(7) + uint(1)))), {7: 4}, {7: frozenset({1})}),
    (update(group(9, 0, string("x", 0x84, uint(7) + uint(1)))), {7: 4}, {7: set()}),
    (update(group(9, 0, string("x", 0x84, uint(7) + uint(1)))), {7: 4}, {7: {2**64, -1}}),
]  # fmt: skip


def c_and_python(
    native: ModuleType, data: bytes, state: dict[int, int], highs: dict[int, set[int]]
) -> Summary | None:
    """The C scan's answer, asserted to be the Python one's and accepted by the full checks;
    the same with the highs as a loaded state's sorted bytes; `string_highs` likewise."""
    answer = native.quick_check(data, state, highs)
    fast = None if answer is None else Summary(*answer)
    assert fast == python_quick_check(data, state, highs), (data.hex(), state, highs)
    if all(0 <= clock < 2**53 for clocks in highs.values() for clock in clocks):
        loaded = {c: array("Q", sorted(clocks)).tobytes() for c, clocks in highs.items()}
        again = native.quick_check(data, state, {}, loaded)
        assert (None if again is None else Summary(*again)) == fast, (data.hex(), state, highs)
    assert native.string_highs(data) == python_string_highs(data), data.hex()
    if fast is not None:
        index = SurrogateIndex()
        index.add(
            Summary({}, {client: list(clocks) for client, clocks in highs.items()}, frozenset())
        )
        assert full_check(data, state, index) == (fast, None), (data.hex(), state, highs)
    return fast


def crafted(rnd: random.Random) -> bytes:
    """An update put together from fields near the limits: clients and clocks to 2**53 - 1,
    over-long varUints, GCs, deletions, dependencies, parent kinds, map keys, root names."""
    clients = rnd.sample([1, 2, 5, 7, 200, 2**32, 2**53 - 1], 3)

    def var(n: int) -> bytes:
        return overlong(n, rnd.randrange(1, 3)) if rnd.random() < 0.1 else uint(n)

    def some(pool: list[int]) -> int:
        return rnd.choice(pool) if rnd.random() < 0.5 else rnd.randrange(0, 12)

    def one_struct() -> bytes:
        if rnd.random() < 0.15:
            return bytes([rnd.choice([0x00, 0x20, 0x80, 0xE0])]) + var(some(BIG))
        info = rnd.choice([0x01, 0x04, 0x04]) | rnd.choice([0, 0x20, 0x40, 0x60, 0x80, 0xC0])
        body = bytes([info])
        for bit in (0x80, 0x40):
            if info & bit:
                body += var(some(clients)) + var(some(BIG))
        if not info & 0xC0:
            kind = rnd.choice([1, 1, 0, 2])
            if kind == 1:
                name = rnd.choice([b"text", b"", "文".encode(), b"\xff"])
                body += var(1) + var(len(name)) + name
            else:
                body += var(kind) + var(some(clients)) + var(some(BIG))
            if info & 0x20:
                body += b"\x01k"
        if info & 0x1F == 0x01:
            return body + var(some(BIG))
        text = "".join(rnd.choices(PIECES, k=rnd.randrange(0, 3))).encode()
        return body + var(len(text)) + text

    groups = [
        var(n)
        + var(rnd.choice(clients))
        + var(some(BIG))
        + b"".join(one_struct() for _ in range(n))
        for n in (rnd.randrange(1, 4) for _ in range(rnd.randrange(0, 4)))
    ]
    ranges = [
        var(rnd.choice(clients))
        + var(n)
        + b"".join(var(some(BIG)) + var(some(BIG)) for _ in range(n))
        for n in (rnd.randrange(0, 3) for _ in range(rnd.randrange(0, 3)))
    ]
    return var(len(groups)) + b"".join(groups) + var(len(ranges)) + b"".join(ranges)


def garble(rnd: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randrange(1, 4)):
        at = rnd.randrange(len(out) + 1)
        action = rnd.randrange(5)
        if action == 0 and at < len(out):
            out[at] = rnd.choice([0x00, 0x01, 0x04, 0x20, 0x7F, 0x80, 0xC4, 0xF0, 0xFF])
        elif action == 1:
            out.insert(at, rnd.randrange(256))
        elif action == 2 and at < len(out):
            del out[at]
        elif action == 3:
            out[at:at] = uint(rnd.choice(BIG))
        else:
            start = rnd.randrange(len(out) + 1)
            out[at:at] = out[start : start + rnd.randrange(1, 12)]
    return bytes(out)


def fuzz(native: ModuleType, seed: int, rounds: int) -> int:
    """`rounds` updates, real (pycrdt peers typing emoji, CJK, ZWJ sequences, \\r\\n),
    garbled or crafted, against their state and nearby ones; returns how many the C scan
    accepted."""
    rnd = random.Random(seed)
    accepted = 0
    for _ in range(rounds // 100):
        server, seen = history(rnd.randrange(10**9), rnd.random() < 0.5)
        whole = server.get_update()
        index = SurrogateIndex()
        index.add(whole)
        cases = [(u, decode_state_vector(s)) for s, u, _ in seen] + [(whole, {})]
        for _ in range(100):
            data, state = rnd.choice(cases)
            state = {c: max(0, clock + rnd.randrange(-2, 3)) for c, clock in state.items()}
            pick = rnd.random()
            data = crafted(rnd) if pick < 0.3 else garble(rnd, data) if pick < 0.8 else data
            highs = index.highs if rnd.random() < 0.8 else {7: frozenset({1, 2**53 - 2})}
            accepted += c_and_python(native, data, state, dict(highs)) is not None
    return accepted


def test_edge_cases_get_the_python_scans_answer() -> None:
    native = pytest.importorskip("collab.yjs._scan")
    accepted = [c_and_python(native, *case) is not None for case in EDGE_CASES]  # type: ignore[arg-type]
    assert 10 < sum(accepted) < len(EDGE_CASES)  # both verdicts are exercised


def test_fuzzed_updates_get_the_python_scans_answer() -> None:
    native = pytest.importorskip("collab.yjs._scan")
    assert fuzz(native, seed=1, rounds=3000) > 300


def test_the_c_scan_neither_leaks_nor_steals_references() -> None:
    """`state`'s and `known_highs`' values are borrowed: their counts stay as they were,
    whether the scan accepts, falls back on a split pair or raises on a bad state clock."""
    native = pytest.importorskip("collab.yjs._scan")
    clock, highs = 10**6 + 4, {10**6 + 1, 10**6 + 3}  # not cached small ints
    items = group(9, 0, string("x", 0x84, uint(7) + uint(10**6 + 1)), string("y"))
    loaded = array("Q", sorted(highs)).tobytes()
    before = sys.getrefcount(clock), sys.getrefcount(highs), sys.getrefcount(loaded)
    for _ in range(1000):
        assert native.quick_check(EMOJI, {7: clock}, {7: highs}) is not None
        assert native.quick_check(update(items), {7: clock}, {7: highs}) is None
        assert native.quick_check(update(items), {7: clock}, {}, {7: loaded}) is None
        with pytest.raises(TypeError):
            native.quick_check(update(items), {7: clock, 9: None}, {7: highs})
        assert native.string_highs(EMOJI) is not None
        assert native.string_highs(EMOJI[:-1]) is None
    assert (sys.getrefcount(clock), sys.getrefcount(highs), sys.getrefcount(loaded)) == before


def _sanitizer_libraries() -> list[str]:
    libraries = []
    for name in ("libasan.so", "libubsan.so"):
        found = subprocess.run(
            ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not os.path.isabs(found):  # gcc echoes the bare name when it has no such library
            pytest.skip(f"gcc has no {name}")
        libraries.append(found)
    return libraries


CHILD = """
import importlib.machinery, importlib.util, sys
sys.path.insert(0, sys.argv[2])
loader = importlib.machinery.ExtensionFileLoader("collab.yjs._scan", sys.argv[1])
spec = importlib.util.spec_from_file_location("collab.yjs._scan", sys.argv[1], loader=loader)
native = importlib.util.module_from_spec(spec)
loader.exec_module(native)
import test_redteam_c_scan as t
for case in t.EDGE_CASES:
    t.c_and_python(native, *case)
print("accepted", t.fuzz(native, seed=int(sys.argv[3]), rounds=int(sys.argv[4])))
"""


def test_the_c_scan_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    """Every read bounds-checked, no signed overflow or bad shift, nothing freed twice: a
    sanitizer report aborts the child with it on stderr."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    libraries = _sanitizer_libraries()
    built = tmp_path / f"_scan{sysconfig.get_config_var('EXT_SUFFIX')}"
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            "gcc",
            "-O1",
            "-g",
            *sanitize,
            "-shared",
            "-fPIC",
            f"-I{include}",
            str(SOURCE),
            "-o",
            str(built),
        ],
        check=True,
    )
    env = dict(os.environ, LD_PRELOAD=" ".join(libraries), ASAN_OPTIONS="detect_leaks=0")
    args = [str(built), str(ROOT / "tests"), "2", "3000"]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "runtime error" not in child.stderr, child.stderr[-3000:]
    assert int(child.stdout.split()[-1]) > 300
