"""Refuse a Yjs update before applying it, when applying it would split memory from the log.

Two kinds of updates pycrdt accepts but the server must not (issue 9, "the log is the truth"):

- `missing_dependencies`: an update whose structs depend on items the server does not have.
  pycrdt keeps such structs *pending*; the next update of the peer they point at then
  half-applies and pycrdt raises. A single-server y-websocket client never sends one:
  everything it references came through the server, or from itself in the same or an
  earlier update.
- `SurrogateIndex.splits_pair`: an insert or delete between the two UTF-16 halves of an
  astral character (😀, 👍🏽, 🇫🇷). Yjs peers then show two U+FFFD halves while Yrs keeps
  the character whole: replicas diverge for good.
- `cut_inside_pair`: a struct re-sent from below its client's known clock, cut by it
  between the halves of its own pair (Yrs then holds a state that does not encode to
  itself).

All functions take raw bytes or an `Update` already decoded by `collab.yjs.update`, so that a
caller checking both decodes once (`check_update` does exactly that). Malformed bytes raise
`UpdateFormatError`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from collab.yjs.deletes import DeleteSet, unknown_deletes_at
from collab.yjs.scan import Summary, as_clocks, in_clocks, quick_check, string_highs, summarize
from collab.yjs.update import GC, ID, SKIP, Struct, Update, UpdateFormatError, decode_update

__all__ = [
    "StoredWalk",
    "Summary",
    "SurrogateIndex",
    "Update",
    "UpdateFormatError",
    "check_update",
    "cut_inside_pair",
    "missing_dependencies",
    "walk_stored",
]


def _decoded(update: bytes | Update) -> Update:
    return update if isinstance(update, Update) else decode_update(update)


def _show(dep: ID) -> str:
    return f"{dep[0]}:{dep[1]}"


def missing_dependencies(update: bytes | Update, state: Mapping[int, int]) -> str | None:
    """Why `update` would not integrate fully into a document with this state vector, or None.

    Refused: (a) a struct starting past the next clock known for its client (a gap; a Skip
    is a gap unless what it skips is known), (b) an item whose origin, right origin or
    parent ID is neither known (clock < state[client]) nor in a struct of the update that
    can integrate before it (same client: an earlier clock; dependencies between clients of
    one update are resolved in order, so a cycle is refused too), (c) a deleted range past
    what is known or in the update. Already-known structs are checked too, as Yjs does.
    """
    update = _decoded(update)
    available: dict[int, int] = {}  # client -> end of what is known or in the update
    waits: list[tuple[Struct, ID]] = []  # dependencies on another client's new structs
    for s in update.structs:
        client = s.client
        avail = available.get(client)
        if avail is None:
            avail = available[client] = state.get(client, 0)
        if s.ref == SKIP:
            continue
        if s.clock > avail:
            return f"client {client}: struct at clock {s.clock}, but only {avail} are known"
        if s.clock + s.length > avail:
            available[client] = s.clock + s.length
        for dep in (s.origin, s.right_origin, s.parent):
            if dep is None:
                continue
            if dep[0] == client:
                if dep[1] >= s.clock:
                    return f"item {_show((client, s.clock))} depends on its own later {_show(dep)}"
            elif dep[1] >= state.get(dep[0], 0):
                waits.append((s, dep))
    for s, dep in waits:
        if dep[1] >= available.get(dep[0], 0):
            return f"item {_show((s.client, s.clock))} depends on unknown item {_show(dep)}"
    if waits and (stuck := _cannot_integrate(update, state)):
        return stuck
    for client, clock, length in update.deletes:
        if clock + length > available.get(client, state.get(client, 0)):
            return f"deletes {client}:{clock}+{length}, past the known or sent clocks"
    return None


def _blocker(s: Struct, done: dict[int, int], state: Mapping[int, int]) -> ID | None:
    """A dependency of `s` on another client's struct that is not integrated yet."""
    for dep in (s.origin, s.right_origin, s.parent):
        if dep is None or dep[0] == s.client:
            continue
        if dep[1] >= done.get(dep[0], state.get(dep[0], 0)):
            return dep
    return None


def _cannot_integrate(update: Update, state: Mapping[int, int]) -> str | None:
    """Integrate the structs in dependency order, as Yjs does; report any left stuck.

    Each client's structs go in clock order; a client blocked on another's clock waits in
    that client's heap and is woken once the clock is integrated: O(n log n).
    """
    queues: dict[int, list[Struct]] = {}
    for s in update.structs:
        if s.ref != SKIP:
            queues.setdefault(s.client, []).append(s)
    done = {client: state.get(client, 0) for client in queues}
    next_index = dict.fromkeys(queues, 0)
    waiting: dict[int, list[tuple[int, int]]] = {}
    ready = list(queues)
    while ready:
        client = ready.pop()
        queue, i = queues[client], next_index[client]
        while i < len(queue):
            blocker = _blocker(queue[i], done, state)
            if blocker is not None:
                heapq.heappush(waiting.setdefault(blocker[0], []), (blocker[1], client))
                break
            done[client] = max(done[client], queue[i].clock + queue[i].length)
            i += 1
        next_index[client] = i
        heap = waiting.get(client)
        while heap and heap[0][0] < done[client]:
            ready.append(heapq.heappop(heap)[1])
    for client, queue in queues.items():
        if next_index[client] < len(queue):
            s = queue[next_index[client]]
            return f"item {_show((client, s.clock))} is in a dependency cycle"
    return None


class SurrogateIndex:
    """Where UTF-16 high surrogates sit, per Yjs client, to refuse edits between the halves.

    Feed it every update the server accepts (`add`), after what it was loaded from: the
    full state (``doc.get_update()``), or what is stored (`of_stored`: the snapshot's clocks
    kept as 8 bytes each, the others in sets). It keeps one clock per astral character in
    string content, so memory grows with the number of astral characters ever added, not
    with the text.

    Covered: an item whose origin is a high-surrogate clock or whose right origin is the
    low-surrogate clock just after one (an insert between the halves, whatever the item's
    content), and a delete range that starts on a low half or ends just after a high half,
    including pairs in strings of the checked update itself. Not covered: characters whose
    items the document had already garbage-collected when it was loaded (their text is
    gone from the state: they are deleted, so a split cannot show), and pairs in strings
    that were never `add`-ed.
    """

    __slots__ = ("_highs", "_loaded")

    def __init__(self) -> None:
        self._highs: dict[int, set[int]] = {}
        self._loaded: dict[int, bytes] = {}  # a loaded state's, as `string_highs` gives them

    @classmethod
    def of_stored(cls, state: bytes | None, updates: Sequence[bytes] = ()) -> SurrogateIndex:
        """The index of a stored document (`walk_stored`)."""
        return walk_stored(state, updates).surrogates

    @property
    def highs(self) -> Mapping[int, set[int]]:
        """Client -> clocks of its high surrogates (read only), besides the `loaded` ones."""
        return self._highs

    @property
    def loaded(self) -> Mapping[int, bytes]:
        """Client -> clocks of its high surrogates in the state the index was loaded from
        (`of_stored`), as `collab.yjs.scan.string_highs` gives them (read only)."""
        return self._loaded

    def __len__(self) -> int:
        """Number of high surrogates remembered."""
        loaded = sum(len(clocks) // 8 for clocks in self._loaded.values())
        return loaded + sum(map(len, self._highs.values()))

    def add(self, update: bytes | Update | Summary, known: Mapping[int, int] | None = None) -> None:
        """Remember the high surrogates of `update`'s strings.

        `known` is the state vector before the update was applied: clocks below it were
        ignored by the document (already there), so their content, which a peer may have
        forged, is ignored here too.
        """
        if not isinstance(update, Summary):
            update = summarize(_decoded(update))
        for client, highs in update.highs.items():
            floor = 0 if known is None else known.get(client, 0)
            kept = self._highs.setdefault(client, set())
            kept.update(highs if floor == 0 else (h for h in highs if h >= floor))

    def splits_pair(self, update: bytes | Update) -> str | None:
        """Why `update` would split a surrogate pair, or None."""
        update = _decoded(update)
        highs, loaded = self._highs, self._loaded
        own: dict[int, set[int]] = {}
        for s in update.structs:
            if s.highs:
                own.setdefault(s.client, set()).update(s.highs)

        def is_high(client: int, clock: int) -> bool:
            return (
                clock in highs.get(client, ())
                or clock in own.get(client, ())
                or in_clocks(loaded.get(client), (clock,))
            )

        for s in update.structs:
            if s.ref == GC or s.ref == SKIP:
                continue
            if s.origin is not None and is_high(*s.origin):
                return f"item {s.client}:{s.clock} inserts after high surrogate {_show(s.origin)}"
            right = s.right_origin
            if right is not None and is_high(right[0], right[1] - 1):
                return f"item {s.client}:{s.clock} inserts before low surrogate {_show(right)}"
        for client, clock, length in update.deletes:
            if is_high(client, clock - 1):
                return f"deletes {client}:{clock}+{length}, starting on a low surrogate"
            if is_high(client, clock + length - 1):
                return f"deletes {client}:{clock}+{length}, ending after a high surrogate"
        return None


class StoredWalk(NamedTuple):
    """What a walk over a stored document's bytes gives, without pycrdt (`walk_stored`)."""

    surrogates: SurrogateIndex
    clocks: dict[int, int]
    """The state vector."""
    base_clocks: dict[int, int]
    """The state vector of the snapshot alone."""
    deletes: DeleteSet
    """The deletions of the delete sets stored (`collab.yjs.deletes`)."""


def walk_stored(state: bytes | None, updates: Sequence[bytes] = ()) -> StoredWalk:
    """The surrogate index, state vector and delete set of a stored document: its snapshot's
    `state`, then the `updates` logged since, as `SurrogateIndex.add` would have been fed them.

    For a loader's thread: the state's walk (in C) runs with the GIL released, and its
    clocks are kept as it gives them (8 bytes each, sorted, no object per clock), so a
    64 MiB state costs the event loop neither the full decoder nor a set of millions.
    """
    index, deletes = SurrogateIndex(), DeleteSet()
    known: dict[int, int] = {}
    if state:
        walked = string_highs(state)
        if walked is None:  # not text only: the full decoder, as before
            decoded = _decoded(state)
            summary = summarize(decoded)
            index.add(summary)
            known.update(summary.ends)
            deletes.add(decoded.deletes)
        else:
            known.update(walked[0])
            index._loaded = {client: highs for client, highs in walked[1].items() if highs}
            deletes.add(unknown_deletes_at(deletes, state, walked[2]))
    base_clocks = dict(known)
    for update in updates:
        walked = string_highs(update)
        if walked is None:
            decoded = _decoded(update)
            summary = summarize(decoded)
            ends, highs = summary.ends, summary.highs
            deletes.add(decoded.deletes)
        else:
            ends = walked[0]
            highs = {client: as_clocks(clocks).tolist() for client, clocks in walked[1].items()}
            deletes.add(unknown_deletes_at(deletes, update, walked[2]))
        index.add(Summary(ends, highs, frozenset()), known)
        for client, end in ends.items():
            known[client] = max(end, known.get(client, 0))
    return StoredWalk(index, known, base_clocks, deletes)


def cut_inside_pair(update: bytes | Update, state: Mapping[int, int]) -> str | None:
    """Why `update` would be cut between the halves of one of its own pairs, or None.

    A string struct that starts below its client's known clock is integrated from there
    on. Yjs slices the string at that UTF-16 offset (a lone low half); Yrs drops the half
    yet counts its clock, so its state no longer encodes to itself and compaction fails.
    Honest peers never send such a cut: what the server knows of a client ends on a whole
    character.
    """
    for s in _decoded(update).structs:
        known = state.get(s.client, 0)
        if s.highs and s.clock < known < s.clock + s.length and known - 1 in s.highs:
            return f"item {s.client}:{s.clock} is cut at known clock {known}, inside a pair"
    return None


def check_update(
    update: bytes, state: Mapping[int, int], surrogates: SurrogateIndex
) -> tuple[Summary, str | None]:
    """Run the checks: the update's summary and the first reason to refuse it, or None.

    Text updates that pass are settled by one fast pass over the bytes
    (`collab.yjs.scan`); anything else is decoded in full. Raises `UpdateFormatError` if
    the bytes are not an update. Pass the summary to ``surrogates.add(summary, state)``
    once the document has accepted the update.
    """
    summary = quick_check(update, state, surrogates.highs, surrogates.loaded)
    if summary is not None:
        return summary, None
    decoded = decode_update(update)
    problem = missing_dependencies(decoded, state) or cut_inside_pair(decoded, state)
    return summarize(decoded), problem or surrogates.splits_pair(decoded)
