"""The fast path of `collab.yjs.checks.check_update`: one pass over the bytes of a text update.

The full decoder (`collab.yjs.update`) builds an object per struct and the checks walk them
again: a 500 KB sync step 2 of 15,000 structs took ~85 ms, against ~6 ms for pycrdt to
apply it. This scan reads the same bytes without building structs: it keeps only what the
checks need (dependencies across clients, the clocks to probe for surrogate halves, the
clock ranges) in flat lists, skips string content without decoding it (UTF-16 lengths are
counted on the UTF-8 bytes, all of them validated at once at the end) and checks the
surrogate probes and the integration order in bulk.

The scan is written twice: in C (`collab/yjs/_scan.c`, built by `pip install` when a C
compiler is at hand: no Python object per struct at all) and here in Python (the reference,
and the fallback where the C one was not built), held to the same answers by property tests.

It only ever *accepts*: `quick_check` returns the update's `Summary` when the update is
well formed and every check passes, and None in every other case (content other than
strings, deletions and GC ranges, a Skip, a map key, anything malformed, any check that
would fail or that it does not settle cheaply). The caller then runs the full decoder
and checks, which give the exact reason. So its refusals are the full checks' own; a
property test holds the two to the same verdict and the same summary. The price: an
update refused only at its end is read twice (~90 ms for 500 KB instead of ~70).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from itertools import chain, compress
from typing import NamedTuple, TypeVar

from collab.yjs.protocol import read_var_uint
from collab.yjs.update import DELETED, GC, MAX_CLOCK, SKIP, STRING, Update

try:  # built from collab/yjs/_scan.c by `pip install` when a C compiler is at hand
    from collab.yjs._scan import quick_check as _native_quick_check
    from collab.yjs._scan import string_highs as _native_string_highs
except ImportError:  # the Python scan: the same answers, ~9x slower on a big update
    _native_quick_check = _native_string_highs = None

_V = TypeVar("_V")

_HIGH_MASK = bytes(int(0xD8 <= b <= 0xDB) for b in range(256))
"""Maps the high byte of a UTF-16 unit to 1 if the unit is a high surrogate, else 0."""


class Summary(NamedTuple):
    """What the server needs of an update it accepts, whichever path checked it."""

    ends: dict[int, int]
    """Client -> end clock of its structs that integrate (Skips excluded)."""
    highs: dict[int, list[int]]
    """Client -> clocks of the UTF-16 high surrogates in its string content."""
    refs: frozenset[int]
    """The content refs of its structs."""
    nested: bool = False
    """Whether an item names its parent item by ID (a child of a nested type): only pycrdt
    knows whether that item is a type it may hold children (it refuses the update if not)."""
    deletes_at: int = -1
    """Where the update's delete set starts in its bytes (`collab.yjs.deletes`; -1: not known)."""


def summarize(update: Update) -> Summary:
    """The `Summary` of an update the full decoder read."""
    ends: dict[int, int] = {}
    highs: dict[int, list[int]] = {}
    for s in update.structs:
        if s.ref != SKIP:
            ends[s.client] = max(ends.get(s.client, 0), s.clock + s.length)
        if s.highs:
            highs.setdefault(s.client, []).extend(s.highs)
    nested = any(s.parent is not None for s in update.structs)
    refs = frozenset(s.ref for s in update.structs)
    return Summary(ends, highs, refs, nested, update.deletes_at)


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    """A varUint and the position after it; 1 to 3 bytes without a loop."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    c = data[pos + 1]
    if c < 0x80:
        return (b & 0x7F) | c << 7, pos + 2
    d = data[pos + 2]
    if d < 0x80:
        return (b & 0x7F) | (c & 0x7F) << 7 | d << 14, pos + 3
    return read_var_uint(data, pos)


_ID_SHIFTS = ((), (1,), (0,), (0, 1))
"""By an item's info >> 6 (0x80: origin, 0x40: right origin), the IDs that follow, each as
what to subtract from its clock to get the unit that must not be a high surrogate."""


class _Fallback(Exception):
    """Not settled here: the full decoder and checks decide."""


def quick_check(
    data: bytes,
    state: Mapping[int, int],
    known_highs: Mapping[int, set[int]],
    loaded_highs: Mapping[int, bytes] | None = None,
) -> Summary | None:
    """The update's `Summary` if it is well formed and passes every check; None when the
    full decoder and checks must decide (they may still accept it).

    `state` is the document's state vector, `known_highs` the `SurrogateIndex`'s clocks,
    `loaded_highs` more of them as `string_highs` gives them (sorted clocks in bytes).
    """
    if _native_quick_check is None:
        return python_quick_check(data, state, known_highs, loaded_highs)
    answer = _native_quick_check(data, _dict(state), _dict(known_highs), _dict(loaded_highs or {}))
    return None if answer is None else Summary(*answer)


def string_highs(data: bytes) -> tuple[dict[int, int], dict[int, bytes], int] | None:
    """The end clock of each client's structs, the clocks of the high surrogates in its
    strings as bytes (sorted native unsigned 64-bit integers: `as_clocks` reads them), and
    where the delete set starts, of a whole state or of any update of strings, deletions and
    GC ranges with one group per client; nothing is checked. None when the full decoder
    must read it.

    8 bytes a surrogate pair, where a set of ints takes ~60; in C the walk runs with the
    GIL released, so a loader's thread walks a big state beside the event loop.
    """
    if _native_string_highs is not None:
        return _native_string_highs(bytes(data))  # type: ignore[no-any-return]
    try:
        walked = _Walk(data, _EVERYTHING_KNOWN).run()
    except (_Fallback, IndexError, ValueError):
        return None
    highs = {c: array("Q", clocks).tobytes() for c, clocks in walked.highs.items()}
    return walked.ends, highs, walked.deletes_at


def as_clocks(highs: bytes) -> memoryview:
    """`string_highs`'s clocks of one client as a sorted sequence of ints, not copied."""
    return memoryview(highs).cast("Q")


def in_clocks(highs: bytes | None, clocks: Iterable[int]) -> bool:
    """Whether any of `clocks` is among `highs` (`string_highs`'s bytes of one client)."""
    if not highs:
        return False
    sorted_clocks = as_clocks(highs)
    count = len(sorted_clocks)
    for clock in clocks:
        at = bisect_left(sorted_clocks, clock)
        if clock >= 0 and at < count and sorted_clocks[at] == clock:
            return True
    return False


class _EverythingKnown(dict[int, int]):
    """A state vector in which every clock is known: `_Walk` then checks no gap and
    collects no wait (`string_highs`: nothing is checked)."""

    def get(self, key: int, default: object = None) -> int:  # type: ignore[override]
        return MAX_CLOCK + 1


_EVERYTHING_KNOWN = _EverythingKnown()


def _dict(mapping: Mapping[int, _V]) -> dict[int, _V]:
    return mapping if type(mapping) is dict else dict(mapping)


def python_quick_check(
    data: bytes,
    state: Mapping[int, int],
    known_highs: Mapping[int, set[int]],
    loaded_highs: Mapping[int, bytes] | None = None,
) -> Summary | None:
    """`quick_check` in Python: the reference the C one is tested against, and the fallback
    where it was not built."""
    try:
        walked = _Walk(data, state).run()
        _no_split_pairs(walked, state, known_highs, loaded_highs or {})
        _integrates(walked, state)
    except (_Fallback, IndexError, ValueError):  # ValueError: read_var_uint's ProtocolError
        return None
    return Summary(walked.ends, walked.highs, walked.refs, walked.nested, walked.deletes_at)


class _Walked(NamedTuple):
    """What one pass over an update's bytes collects for the checks."""

    starts: dict[int, int]
    """Client -> first clock of its group."""
    ends: dict[int, int]
    """Client -> end clock of its group."""
    waits: dict[int, list[tuple[int, int, int]]]
    """Client -> (clock, dep, k) of its items depending on another client's unknown item
    (clients with none are left out)."""
    probes: dict[int, list[int]]
    """Client -> clocks that must not be high surrogates (an item or deletion edge there
    would split a pair)."""
    highs: dict[int, list[int]]
    """Client -> clocks of the high surrogates in its strings (clients with none left out)."""
    refs: frozenset[int]
    """The content refs seen."""
    nested: bool
    """Whether an item names its parent item by ID."""
    deletes_at: int
    """Where the delete set starts."""


class _Walk:
    """One pass over an update's bytes, collecting what the checks need."""

    def __init__(self, data: bytes, state: Mapping[int, int]) -> None:
        self.data = data
        self.state = state
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self.waits: dict[int, list[tuple[int, int, int]]] = {}
        self.probes: dict[int, list[int]] = {}
        # Strings with astral characters, per client: their clock ranges and the high bytes
        # of their UTF-16 units.
        self.astral: dict[int, tuple[list[int], list[int], list[bytes]]] = {}
        self.refs: set[int] = set()
        self.nested = False

    def run(self) -> _Walked:
        deletes_at = self._structs()
        if self._deletes(deletes_at) != len(self.data):
            raise _Fallback
        highs = self._highs()
        refs = frozenset(self.refs)
        return _Walked(
            self.starts, self.ends, self.waits, self.probes, highs, refs, self.nested, deletes_at
        )

    def _structs(self) -> int:
        data, state, starts, ends = self.data, self.state, self.starts, self.ends
        groups, pos = _uint(data, 0)
        if groups * 4 > len(data) - pos:
            raise _Fallback
        for _ in range(groups):
            n, pos = _uint(data, pos)
            if n * 2 > len(data) - pos or n == 0:
                raise _Fallback
            start = pos
            client, pos = _uint(data, pos)
            if client in starts:
                raise _Fallback  # two groups of one client
            own = data[start:pos]  # the client as encoded: its own origins repeat it
            clock, pos = _uint(data, pos)
            if clock > state.get(client, 0):
                raise _Fallback  # a gap before the group
            starts[client] = clock
            pos, ends[client] = self._group(pos, n, client, own, clock)
            if ends[client] > MAX_CLOCK:
                raise _Fallback
        return pos

    def _group(self, pos: int, n: int, client: int, own: bytes, clock: int) -> tuple[int, int]:
        """Read the `n` structs of one client's group; return the position and end clock.

        The hot loop of the scan, so written for CPython's speed: locals only, varUints of
        one or two bytes read inline, the group's own client and the last other client
        recognised by their encoded bytes."""
        data, state, refs, probes_of = self.data, self.state, self.refs, self.probes
        probes = probes_of.setdefault(client, [])
        waits: list[tuple[int, int, int]] = []
        starts, stops, high_bytes = self.astral.setdefault(client, ([], [], []))
        own_len = len(own)
        other, other_client, other_known, other_probes = own, client, 0, probes
        saw_string = saw_deleted = False
        for _ in range(n):
            info = data[pos]
            pos += 1
            ref = info & 0x1F
            if ref != STRING and ref != DELETED:
                if ref != GC:
                    raise _Fallback
                refs.add(GC)
                length, pos = _uint(data, pos)
                clock += length
                continue
            for shift in _ID_SHIFTS[info >> 6]:  # origin (probe k), right origin (k - 1)
                if data.startswith(own, pos):
                    dep, pos = client, pos + own_len
                elif data.startswith(other, pos):
                    dep, pos = other_client, pos + len(other)
                else:
                    start = pos
                    dep, pos = _uint(data, pos)
                    if dep != client:
                        other, other_client = data[start:pos], dep
                        other_known, other_probes = state.get(dep, 0), probes_of.setdefault(dep, [])
                k = data[pos]
                if k < 0x80:
                    pos += 1
                elif data[pos + 1] < 0x80:
                    k, pos = (k & 0x7F) | data[pos + 1] << 7, pos + 2
                else:
                    k, pos = _uint(data, pos)
                if dep == client:
                    if k >= clock:
                        raise _Fallback  # depends on its own later item
                    probes.append(k - shift)
                else:
                    if k >= other_known:
                        waits.append((clock, dep, k))
                    other_probes.append(k - shift)
            if not info & 0xC0:
                pos = self._parent(pos, client, clock, waits, info)
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _uint(data, pos)
            if ref == DELETED:
                saw_deleted = True
            else:
                saw_string = True
                end = pos + length
                raw = data[pos:end]
                if len(raw) != length:
                    raise _Fallback
                if not raw.isascii():
                    text = raw.decode()  # UnicodeDecodeError is a ValueError
                    units = text.encode("utf-16-le")
                    length = len(units) >> 1
                    if length != len(text):
                        starts.append(clock)
                        stops.append(clock + length)
                        high_bytes.append(units[1::2])
                pos = end
            clock += length
        if waits:
            self.waits[client] = waits
        refs.update(ref for ref, seen in ((STRING, saw_string), (DELETED, saw_deleted)) if seen)
        return pos, clock

    def _dep(
        self, client: int, clock: int, dep: int, k: int, waits: list[tuple[int, int, int]]
    ) -> None:
        """A dependency on item (dep, k): known, or to integrate from this update first."""
        if dep == client:
            if k >= clock:
                raise _Fallback
        elif k >= self.state.get(dep, 0):
            waits.append((clock, dep, k))

    def _parent(
        self, pos: int, client: int, clock: int, waits: list[tuple[int, int, int]], info: int
    ) -> int:
        """Skip an item's parent (a root type's name or a parent item's ID)."""
        data = self.data
        kind, pos = _uint(data, pos)
        if kind == 1:
            length, pos = _uint(data, pos)
            if pos + length > len(data):
                raise _Fallback
            data[pos : pos + length].decode()  # UnicodeDecodeError is a ValueError
            pos += length
        else:
            dep, pos = _uint(data, pos)
            k, pos = _uint(data, pos)
            self._dep(client, clock, dep, k, waits)
            self.nested = True
        if info & 0x20:
            raise _Fallback  # a map key: not text
        return pos

    def _deletes(self, pos: int) -> int:
        data, state, starts, ends = self.data, self.state, self.starts, self.ends
        clients, pos = _uint(data, pos)
        if clients * 2 > len(data) - pos:
            raise _Fallback
        for _ in range(clients):
            client, pos = _uint(data, pos)
            n, pos = _uint(data, pos)
            if n * 2 > len(data) - pos:
                raise _Fallback
            available = state.get(client, 0)
            if client in starts:
                available = max(available, ends[client])
            available = min(available, MAX_CLOCK)  # the full decoder's limit
            probes = self.probes.setdefault(client, [])
            for _ in range(n):
                clock, pos = _uint(data, pos)
                length, pos = _uint(data, pos)
                if clock + length > available:
                    raise _Fallback
                probes.append(clock - 1)
                probes.append(clock + length - 1)
        return pos

    def _highs(self) -> dict[int, list[int]]:
        """The clocks of the high surrogates in the strings, in bulk per client: a mask of
        the strings' UTF-16 units (1 on a high surrogate) picks them from their clocks."""
        highs: dict[int, list[int]] = {}
        for client, (starts, stops, high_bytes) in self.astral.items():
            if not starts:
                continue
            mask = b"".join(high_bytes).translate(_HIGH_MASK)
            highs[client] = list(compress(chain.from_iterable(map(range, starts, stops)), mask))
        return highs


def _no_split_pairs(
    walked: _Walked,
    state: Mapping[int, int],
    known_highs: Mapping[int, set[int]],
    loaded_highs: Mapping[int, bytes],
) -> None:
    """No item or deletion starts or ends between the halves of a pair, and no string is
    cut inside one of its own pairs at the known clock (its high half is just below it: the
    string, which holds the low half too, straddles it)."""
    mine = {client: set(clocks) for client, clocks in walked.highs.items()}
    for client, clocks in mine.items():
        if state.get(client, 0) - 1 in clocks:
            raise _Fallback
    for client, probes in walked.probes.items():
        known = known_highs.get(client)
        if known and not known.isdisjoint(probes):
            raise _Fallback
        if in_clocks(loaded_highs.get(client), probes):
            raise _Fallback
        if client in mine and not mine[client].isdisjoint(probes):
            raise _Fallback


def _integrates(walked: _Walked, state: Mapping[int, int]) -> None:
    """Every struct integrates: the dependencies across clients resolve in some order
    (as `collab.yjs.checks._cannot_integrate` decides it, on the waits alone)."""
    all_waits, starts, ends = walked.waits, walked.starts, walked.ends
    if not all_waits:
        return
    for waits in all_waits.values():
        for _, dep, k in waits:
            if dep not in starts or k >= max(ends[dep], state.get(dep, 0)):
                raise _Fallback  # depends on an unknown item
    done = {c: max(ends[c], state.get(c, 0)) for c in starts if c not in all_waits}
    for c in all_waits:
        done[c] = state.get(c, 0)
    next_index = dict.fromkeys(all_waits, 0)
    waiting: dict[int, list[tuple[int, int]]] = {}
    ready = list(all_waits)
    while ready:
        client = ready.pop()
        waits, i = all_waits[client], next_index[client]
        floor = state.get(client, 0)
        while i < len(waits):
            clock, dep, k = waits[i]
            if k >= done[dep]:
                heapq.heappush(waiting.setdefault(dep, []), (k, client))
                done[client] = max(floor, clock)
                break
            i += 1
        else:
            done[client] = max(floor, ends[client])
        next_index[client] = i
        heap = waiting.get(client)
        while heap and heap[0][0] < done[client]:
            ready.append(heapq.heappop(heap)[1])
    if any(next_index[c] < len(w) for c, w in all_waits.items()):
        raise _Fallback  # a dependency cycle
