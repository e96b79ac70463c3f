"""Red team of collab/yjs/scan.py, the fast path of check_update: updates built field by
field (not garbled bytes), so that most are well formed and reach the checks: several
clients (1-byte to 6-byte ids, some written as over-long varUints, as lib0 accepts),
strings with astral characters, ZWJ and combining marks, Deleted items, GC ranges with
stray info bits, origins, right origins and parents on known, unknown, own and later
clocks, map keys, delete sets, any state vector and any known high surrogates. Whatever
the scan accepts, the full decoder and checks must accept with the same summary.

Run at 20,000 examples while red-teaming: no divergence."""

from __future__ import annotations

from hostile_updates import uint, vstr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.yjs.checks import Summary, SurrogateIndex, cut_inside_pair, missing_dependencies
from collab.yjs.scan import quick_check, summarize
from collab.yjs.update import DELETED, STRING, decode_update

CLIENTS = [1, 2, 3, 200, 2**40 + 7]
TEXTS = ["a", "😀", "a😀", "😀b", "中", "e\u0301", "👍🏽", "", "ab", "🇫🇷x", "\r\n"]
Case = tuple[bytes, dict[int, int], dict[int, set[int]]]


def overlong(n: int) -> bytes:
    """`n` as a varUint one byte longer than needed."""
    data = uint(n)
    return data[:-1] + bytes([data[-1] | 0x80, 0x00])


@st.composite
def client_id(draw: st.DrawFn, own: int | None = None) -> bytes:
    choices = CLIENTS if own is None else [*CLIENTS, own, own]
    client = draw(st.sampled_from(choices))
    return overlong(client) if draw(st.booleans()) else uint(client)


@st.composite
def struct(draw: st.DrawFn, own: int) -> bytes:
    kind = draw(st.sampled_from(["string", "string", "string", "deleted", "gc"]))
    if kind == "gc":
        return bytes([draw(st.sampled_from([0x00, 0x20, 0x80, 0xE0]))]) + uint(
            draw(st.integers(0, 3))
        )
    origin, right, key = draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 9)) == 0
    ref = STRING if kind == "string" else DELETED
    out = bytes([ref | 0x80 * origin | 0x40 * right | 0x20 * key])
    for present in (origin, right):
        if present:
            out += draw(client_id(own)) + uint(draw(st.integers(0, 8)))
    if not (origin or right):
        if draw(st.booleans()):
            out += uint(1) + vstr("text")
        else:
            out += uint(0) + draw(client_id(own)) + uint(draw(st.integers(0, 8)))
        if key:
            out += vstr("k")
    if ref == STRING:
        return out + vstr(draw(st.sampled_from(TEXTS)))
    return out + uint(draw(st.integers(0, 3)))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    state = draw(st.dictionaries(st.sampled_from(CLIENTS), st.integers(0, 10), min_size=2))
    clients = draw(st.lists(st.sampled_from(CLIENTS), max_size=3, unique=True))
    data = uint(len(clients))
    for client in clients:
        structs = draw(st.lists(struct(client), min_size=1, max_size=4))
        encoded = overlong(client) if draw(st.booleans()) else uint(client)
        start = draw(st.integers(0, state.get(client, 0) + 1))  # mostly no gap
        data += uint(len(structs)) + encoded + uint(start) + b"".join(structs)
    ranges = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 4)), max_size=3)
    deletes = draw(st.lists(st.tuples(st.sampled_from(CLIENTS), ranges), max_size=2))
    data += uint(len(deletes))
    for client, spans in deletes:
        data += uint(client) + uint(len(spans))
        data += b"".join(uint(clock) + uint(length) for clock, length in spans)
    highs = st.dictionaries(st.sampled_from(CLIENTS), st.sets(st.integers(0, 8)), max_size=3)
    return data, state, draw(highs)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_what_the_scan_accepts_the_full_checks_accept_with_its_summary(case: Case) -> None:
    data, state, highs = case
    fast = quick_check(data, state, highs)
    if fast is None:
        return
    decoded = decode_update(data)  # raises if the scan took malformed bytes
    index = SurrogateIndex()
    index.add(
        Summary({}, {client: sorted(clocks) for client, clocks in highs.items()}, frozenset())
    )
    problem = missing_dependencies(decoded, state) or cut_inside_pair(decoded, state)
    problem = problem or index.splits_pair(decoded)
    assert problem is None, (data.hex(), state, highs, problem)
    assert fast == summarize(decoded)


def test_an_insert_between_the_halves_of_a_pair_of_the_same_update_is_left_to_the_full_checks() -> (
    None
):
    """The generator above rarely builds this one: the update's own 😀, then an item of the
    same client after its high half (or a deletion of its low half)."""
    emoji = bytes([STRING]) + uint(1) + vstr("text") + vstr("😀")
    after_high = bytes([STRING | 0x80]) + uint(1) + uint(0) + vstr("x")
    before_low = bytes([STRING | 0x40]) + uint(1) + uint(1) + uint(1) + vstr("x")
    for second, deletes in ((after_high, b"\x00"), (before_low, b"\x00")):
        data = uint(1) + uint(2) + uint(1) + uint(0) + emoji + second + deletes
        assert quick_check(data, {}, {}) is None, data.hex()
    low_deleted = uint(1) + uint(1) + uint(1) + uint(0) + emoji + uint(1) + uint(1) + uint(1)
    assert quick_check(low_deleted + uint(1) + uint(1), {}, {}) is None
