"""Hostile Yjs updates, crafted against a document's current state (issue 9).

Each generator takes the server's whole state (one Yjs update) and a `random.Random` and
returns ``(kind, update, must_refuse)``: the update bytes and whether the server must
refuse it. Used by the session-level state machine and by the end-to-end run.

The crafted ones: items whose origin, right origin or parent is an item the server does
not have (a peer's next, not yet sent item: 13 bytes), gaps in a client's clocks, deletes
past the known clocks, inserts and deletes between the two UTF-16 halves of an astral
character, embeds in the shared text. The rest may be accepted or refused, but must never
leave memory, the log and the replicas apart: garbage, truncated updates, huge counts,
known clocks re-sent with forged content.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pycrdt import Doc, Map, Text

from collab.text.positions import cp_to_utf8
from collab.yjs.protocol import write_var_uint
from collab.yjs.update import STRING, decode_state_vector, decode_update

Hostile = tuple[str, bytes, bool]


def uint(n: int) -> bytes:
    return write_var_uint(n)


def vstr(s: str) -> bytes:
    data = s.encode()
    return uint(len(data)) + data


def item(
    client: int,
    clock: int,
    text: str,
    *,
    origin: tuple[int, int] | None = None,
    right: tuple[int, int] | None = None,
    parent: tuple[int, int] | None = None,
    root: str = "text",
) -> bytes:
    """One struct group of one string item (no delete set): on `root` unless it has an
    origin, a right origin or a `parent` item."""
    info = STRING | (0x80 if origin else 0) | (0x40 if right else 0)
    body = bytes([info])
    for dep in (origin, right):
        if dep:
            body += uint(dep[0]) + uint(dep[1])
    if not (origin or right):
        body += uint(0) + uint(parent[0]) + uint(parent[1]) if parent else uint(1) + vstr(root)
    return uint(1) + uint(1) + uint(client) + uint(clock) + body + vstr(text)


def deletes(ranges: list[tuple[int, int, int]]) -> bytes:
    """A delete set: (client, clock, length) ranges, one client each."""
    out = uint(len(ranges))
    for client, clock, length in ranges:
        out += uint(client) + uint(1) + uint(clock) + uint(length)
    return out


def only_deletes(ranges: list[tuple[int, int, int]]) -> bytes:
    return uint(0) + deletes(ranges)


def doc_of(state: bytes) -> Doc:
    doc = Doc()
    if state:
        doc.apply_update(state)
    return doc


def fresh_client(rng: random.Random, state: bytes) -> int:
    known = known_clocks(state)
    while (client := rng.randrange(1, 2**32)) in known:
        pass
    return client


def known_clocks(state: bytes) -> dict[int, int]:
    return decode_state_vector(doc_of(state).get_state())


def highs_of(state: bytes) -> list[tuple[int, int]]:
    """(client, clock) of every UTF-16 high surrogate in the state's strings."""
    if not state:
        return []
    return [(s.client, h) for s in decode_update(state).structs for h in s.highs]


# ---------------------------------------------------------------------- must be refused


def dangling(rng: random.Random, state: bytes, victim: int, next_clock: int) -> Hostile:
    """An item pointing at `victim`'s next item, which the server does not have yet."""
    which = rng.choice(["origin", "right", "parent"])
    target = (victim, next_clock + rng.randrange(0, 3))
    update = item(fresh_client(rng, state), 0, "X", **{which: target}) + uint(0)
    return f"dangling {which}", update, True


def gap(rng: random.Random, state: bytes) -> Hostile:
    clocks = known_clocks(state)
    client = rng.choice(sorted(clocks)) if clocks else fresh_client(rng, state)
    start = clocks.get(client, 0) + rng.randrange(1, 5)
    return "gap", item(client, start, "G") + uint(0), True


def delete_past(rng: random.Random, state: bytes) -> Hostile:
    clocks = known_clocks(state)
    client = rng.choice(sorted(clocks)) if clocks else fresh_client(rng, state)
    end = clocks.get(client, 0)
    start = rng.randrange(0, end + 1)
    return (
        "delete past known",
        only_deletes([(client, start, end - start + rng.randrange(1, 4))]),
        True,
    )


def mid_surrogate(rng: random.Random, state: bytes) -> Hostile | None:
    highs = highs_of(state)
    if not highs:
        return None
    client, high = rng.choice(highs)
    kind = rng.choice(
        ["insert", "insert after high", "insert before low", "delete low", "delete high"]
    )
    if kind == "delete low":
        return kind, only_deletes([(client, high + 1, rng.randrange(1, 3))]), True
    if kind == "delete high":
        start = max(0, high - rng.randrange(0, 2))
        return kind, only_deletes([(client, start, high + 1 - start)]), True
    origin = (client, high) if kind != "insert before low" else None
    right = (client, high + 1) if kind != "insert after high" else None
    return kind, item(fresh_client(rng, state), 0, "✂", origin=origin, right=right) + uint(0), True


def embed(rng: random.Random, state: bytes) -> Hostile:
    """What a Yjs client's ``ytext.insertEmbed`` sends."""
    doc = doc_of(state)
    text = doc.get("text", type=Text)
    before = doc.get_state()
    current = str(text)
    at = cp_to_utf8(current, rng.randint(0, len(current)))
    text.insert_embed(at, {"image": "cat.png", "n": rng.randrange(100)})
    return "embed", doc.get_update(before), True


# ---------------------------------------------------------------------- either way


def garbage(rng: random.Random, state: bytes) -> Hostile:
    return "garbage", rng.randbytes(rng.randrange(1, 40)), False


def truncated(rng: random.Random, state: bytes) -> Hostile:
    doc = doc_of(state)
    text = doc.get("text", type=Text)
    before = doc.get_state()
    text.insert(cp_to_utf8(str(text), rng.randint(0, len(str(text)))), "trunc😀")
    update = doc.get_update(before)
    return "truncated", update[: rng.randrange(1, len(update))], False


def huge_count(rng: random.Random, state: bytes) -> Hostile:
    update = rng.choice(
        [
            b"\xff\xff\xff\xff\x0f",
            uint(1) + uint(2**40) + b"\x01\x00",
            uint(1) + uint(1) + uint(7) + uint(2**53 - 2) + b"\x01" + uint(5) + uint(0),
            uint(0) + uint(1) + uint(7) + uint(2**31) + b"\x00\x01",
        ]
    )
    return "huge count", update, False


def forged_known(rng: random.Random, state: bytes) -> Hostile:
    """Known clocks re-sent with other content (ignored by the server), some new after."""
    clocks = known_clocks(state)
    if not clocks:
        return garbage(rng, state)
    client = rng.choice(sorted(clocks))
    start = rng.randrange(0, clocks[client])
    return "forged known", item(client, start, "😀z" * rng.randrange(1, 3)) + uint(0), False


def other_root(rng: random.Random, state: bytes) -> Hostile:
    """A valid change to another shared type: not the text, allowed."""
    doc = doc_of(state)
    before = doc.get_state()
    doc.get("meta", type=Map)[f"k{rng.randrange(5)}"] = rng.choice([1, "x", [1, 2], {"a": None}])
    return "other root", doc.get_update(before), False


REFUSED: list[Callable[[random.Random, bytes], Hostile | None]] = [
    gap,
    delete_past,
    mid_surrogate,
    embed,
]
EITHER: list[Callable[[random.Random, bytes], Hostile | None]] = [
    garbage,
    truncated,
    huge_count,
    forged_known,
    other_root,
]
