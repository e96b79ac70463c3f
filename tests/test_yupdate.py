"""collab.yjs.update (decoding Yjs updates) and collab.yjs.checks (refusing harmful ones)."""

from __future__ import annotations

import base64
import contextlib
import functools
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import run_node_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText, get_state

from collab.yjs.checks import SurrogateIndex, check_update, missing_dependencies
from collab.yjs.protocol import write_var_uint
from collab.yjs.update import JSON_, STRING, UpdateFormatError, decode_state_vector, decode_update

PIECES = ["a", "Z", " ", "é", "e\u0301", "中文", "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "\r\n", "𝄞x"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def state_of(doc: Doc) -> dict[int, int]:
    return decode_state_vector(doc.get_state())


def recorder(doc: Doc) -> list[bytes]:
    """The update of every transaction of `doc`, in order."""
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def byte_offset(text: str, index: int) -> int:
    """pycrdt Text positions are UTF-8 byte offsets (notes/pycrdt-facts.md)."""
    return len(text[:index].encode())


# --- random documents touching every content kind ------------------------------------

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.lists(st.sampled_from(PIECES), max_size=3).map("".join),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=6,
)
ops = st.lists(
    st.tuples(
        st.sampled_from(["ins", "ins", "del", "fmt", "embed", "map", "nested", "arr", "xml"]),
        st.integers(0, 10**6),
        st.integers(1, 4),
        st.sampled_from(PIECES),
        values,
    ),
    min_size=1,
    max_size=25,
)


def apply_op(doc: Doc, op: tuple[str, int, int, str, Any]) -> None:
    """Apply `op` in one transaction (one update)."""
    with doc.transaction():
        _apply_op(doc, *op)


def _apply_op(doc: Doc, kind: str, where: int, size: int, piece: str, value: Any) -> None:
    text = doc.get("text", type=Text)
    current = str(text)
    at = where % (len(current) + 1)
    if kind == "ins":
        text.insert(byte_offset(current, at), piece * size)
    elif kind == "del" and current:
        start = min(at, len(current) - 1)
        end = min(len(current), start + size)
        del text[byte_offset(current, start) : byte_offset(current, end)]
    elif kind == "fmt":
        text.insert(byte_offset(current, at), piece, {"bold": True, "n": size})
        current = str(text)  # offsets in the text as it is now: never inside a character
        text.format(0, byte_offset(current, min(size, len(current))), {"italic": value})
    elif kind == "embed":
        rich = doc.get("rich", type=Text)  # embeds count in positions but not in str()
        rich.insert_embed(0, {"img": piece, "v": value}, {"w": size})
        rich.insert(0, piece, {"bold": True})
    elif kind == "map":
        doc.get("map", type=Map)[piece] = value
    elif kind == "nested":
        nested = Map({"t": Text(piece), "a": Array([value, b"\x00\xff"]), "d": Doc()})
        doc.get("map", type=Map)[piece] = nested
    elif kind == "arr":
        array = doc.get("array", type=Array)
        array.insert(where % (len(array) + 1), value)
        if len(array) > size:
            del array[0 : size - 1]
    elif kind == "xml":
        fragment = doc.get("xml", type=XmlFragment)
        fragment.children.append(XmlElement("p", {"k": piece}, [XmlText(piece)]))


@SETTINGS
@given(ops, st.booleans())
def test_every_pycrdt_update_decodes_with_its_clock_ranges(op_list: list, skip_gc: bool) -> None:
    doc = Doc(skip_gc=skip_gc)
    updates = recorder(doc)
    server, index = Doc(), SurrogateIndex()
    for op in op_list:
        before = state_of(doc)
        count = len(updates)
        apply_op(doc, op)
        after = state_of(doc)
        for update in updates[count:]:
            decoded = decode_update(update)
            ranges = decoded.ranges()
            changed = {
                c: (before.get(c, 0), end) for c, end in after.items() if end != before.get(c, 0)
            }
            assert ranges == changed
            known = state_of(server)
            assert check_update(update, known, index)[1] is None
            server.apply_update(update)
            index.add(decoded, known)
    whole = decode_update(doc.get_update())
    assert {c: end for c, (_, end) in whole.ranges().items()} == decode_state_vector(
        get_state(doc.get_update())
    )
    assert {c: end for c, (_, end) in whole.ranges().items()} == state_of(doc)
    loaded = SurrogateIndex()
    loaded.add(doc.get_update())
    # The full state holds the strings still there: a subset of all ever added.
    assert all(loaded._highs[c] <= index._highs.get(c, set()) for c in loaded._highs)


def test_string_clock_length_is_utf16() -> None:
    doc = Doc()
    doc.get("text", type=Text).insert(0, "a😀b👨‍👩‍👧中")
    (item,) = decode_update(doc.get_update()).structs
    assert item.ref == STRING
    assert item.length == len("a😀b👨‍👩‍👧中".encode("utf-16-le")) // 2 == 13
    assert item.highs == (1, 4, 7, 10)


# --- malformed updates -----------------------------------------------------------------


@functools.cache
def sample_updates() -> list[bytes]:
    doc = Doc()
    updates = recorder(doc)
    for op in [
        ("ins", 0, 2, "😀", None),
        ("fmt", 1, 2, "a", {"x": [1, 2.5]}),
        ("embed", 0, 1, "b", [None]),
        ("nested", 0, 1, "k", {"deep": [True]}),
        ("arr", 0, 2, "a", "v"),
        ("xml", 0, 1, "p", None),
        ("del", 1, 2, "a", None),
    ]:
        apply_op(doc, op)
    return [*updates, doc.get_update()]


def test_every_truncation_raises_the_one_error() -> None:
    for update in sample_updates():
        decode_update(update)
        for cut in range(len(update)):
            with pytest.raises(UpdateFormatError):
                decode_update(update[:cut])
        with pytest.raises(UpdateFormatError):
            decode_update(update + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_garbled_updates_decode_or_raise_the_one_error(data: st.DataObject) -> None:
    update = bytearray(data.draw(st.sampled_from(sample_updates())))
    for _ in range(data.draw(st.integers(1, 4))):
        update[data.draw(st.integers(0, len(update) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(UpdateFormatError):
        decode_update(bytes(update))


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_the_one_error(data: bytes) -> None:
    for decode in (decode_update, decode_state_vector):
        with contextlib.suppress(UpdateFormatError):
            decode(data)


def uint(n: int) -> bytes:
    return write_var_uint(n)


def vstr(s: str) -> bytes:
    return uint(len(s.encode())) + s.encode()


def item(client: int, clock: int, content: bytes, ref: int, *, origin=None, right=None) -> bytes:
    """One group holding one item (on root type "text" if it has no origins), no deletes."""
    info = ref | (0x80 if origin else 0) | (0x40 if right else 0)
    body = bytes([info])
    for dep in (origin, right):
        if dep:
            body += uint(dep[0]) + uint(dep[1])
    if not (origin or right):
        body += uint(1) + vstr("text")
    return uint(1) + uint(1) + uint(client) + uint(clock) + body + content


def any_content(value_bytes: bytes) -> bytes:
    return uint(1) + value_bytes


@pytest.mark.parametrize(
    ("update", "why"),
    [
        (b"\xff\xff\xff\xff\x0f", "count"),
        (uint(1) + uint(2**40) + b"\x01\x00", "count"),
        (item(1, 0, vstr("x"), 4)[:-2] + b"\x02\xff\xfe" + b"\x00", "UTF-8"),
        (item(1, 0, b"", 12) + b"\x00", "content ref"),
        (item(1, 0, uint(7), 7) + b"\x00", "type ref"),
        (item(1, 0, vstr("{nope"), 5) + b"\x00", "JSON"),
        (item(1, 0, vstr("NaN"), 5) + b"\x00", "JSON"),
        (item(1, 0, any_content(bytes([117, 1]) * 200 + b"\x7e"), 8) + b"\x00", "nested"),
        (item(1, 0, any_content(b"\x50"), 8) + b"\x00", "Any tag"),
        (item(1, 2**53 - 2, uint(5), 1) + b"\x00", "2**32"),
        (item(1, 2**32 - 2, uint(5), 1) + b"\x00", "clock above 2**32 - 1"),  # Yrs: 32 bits
        (b"\x00" + uint(1) + uint(1) + uint(1) + uint(2**32 - 1) + uint(1), "2**32"),
        (uint(2) + item(1, 0, vstr("a"), 4)[1:] + item(1, 1, vstr("b"), 4)[1:] + b"\x00", "two"),
        (b"\x00\x01\x01\x05" + b"\x00" * 4, "delete range count"),
    ],
)
def test_malformed_updates_are_refused_with_a_reason(update: bytes, why: str) -> None:
    with pytest.raises(UpdateFormatError, match=re.escape(why)):
        decode_update(update)


def test_huge_counts_fail_fast_without_allocating() -> None:
    forged = [
        uint(2**53 - 1),
        uint(1) + uint(2**53 - 1) + uint(1) + uint(0),
        b"\x00" + uint(1) + uint(1) + uint(2**53 - 1),
        item(1, 0, uint(2**53 - 1), 2)[:-1],
        item(1, 0, any_content(bytes([118]) + uint(2**53 - 1)), 8),
        item(1, 0, uint(2**53 - 1), 3),
    ]
    start = time.perf_counter()
    for update in forged:
        with pytest.raises(UpdateFormatError):
            decode_update(update)
    assert time.perf_counter() - start < 0.05


def test_all_any_tags_decode() -> None:
    values = (
        b"\x7f\x7e\x79\x78"  # undefined null false true
        + b"\x7d\xc1\x01"  # varInt -65
        + b"\x7c"
        + b"\x00" * 4
        + b"\x7b"
        + b"\x00" * 8
        + b"\x7a"
        + b"\x00" * 8
        + b"\x77"
        + vstr("s")
        + b"\x76"
        + uint(1)
        + vstr("k")
        + b"\x75"
        + uint(1)
        + b"\x74"
        + uint(2)
        + b"ab"
    )
    update = item(1, 0, uint(10) + values, 8) + b"\x00"
    (struct,) = decode_update(update).structs
    assert struct.length == 10


# --- missing dependencies --------------------------------------------------------------


def test_a_dangling_origin_is_accepted_by_pycrdt_but_flagged() -> None:
    server, victim = Doc(), Doc()
    victim_text = victim.get("text", type=Text)
    sent = recorder(victim)
    victim_text += "hello"
    server.apply_update(sent[0])
    victim_text += " world"  # not sent yet: the attacker guesses its clock from the state
    (victim_client,) = state_of(server)
    forged = item(7, 0, vstr("X"), 4, origin=(victim_client, 7)) + b"\x00"
    assert len(forged) < 20
    reason = missing_dependencies(forged, state_of(server))
    assert reason and "unknown item" in reason
    server.apply_update(forged)  # pycrdt takes it as pending: what the check prevents
    assert str(server.get("text", type=Text)) == "hello"


@pytest.mark.parametrize(
    ("update", "why"),
    [
        (item(7, 3, vstr("X"), 4) + b"\x00", "only 0 are known"),
        (item(7, 0, vstr("X"), 4, right=(1, 5)) + b"\x00", "unknown item 1:5"),
        (item(7, 0, vstr("X"), 4, origin=(7, 0)) + b"\x00", "its own later"),
        (item(1, 0, vstr("X"), 4) + b"\x01" + uint(2) + b"\x01\x00\x02", "deletes 2:0+2"),
        (item(1, 0, vstr("X"), 4) + b"\x01" + uint(1) + b"\x01\x00\x02", "deletes 1:0+2"),
        (
            uint(2)
            + item(1, 0, vstr("X"), 4, origin=(2, 0))[1:]
            + item(2, 0, vstr("Y"), 4, origin=(1, 0))[1:]
            + b"\x00",
            "cycle",
        ),
        (
            uint(1)
            + uint(2)
            + uint(7)
            + uint(0)
            + b"\x0a\x02"
            + b"\x04"
            + uint(1)
            + vstr("text")
            + vstr("X")
            + b"\x00",
            "clock 2",
        ),
    ],
)
def test_crafted_dependencies_are_flagged(update: bytes, why: str) -> None:
    assert why in (missing_dependencies(update, {}) or "")


def test_dependencies_between_clients_of_one_update_are_resolved_in_any_group_order() -> None:
    a, b = Doc(), Doc()
    a_text, b_text = a.get("text", type=Text), b.get("text", type=Text)
    a_text += "one "
    b.apply_update(a.get_update())
    b_text += "two "
    a.apply_update(b.get_update())
    a_text += "three"
    whole = a.get_update()  # groups of a and b, each depending on the other
    assert missing_dependencies(whole, {}) is None
    assert missing_dependencies(whole, state_of(Doc())) is None


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from("ab+"), ops), min_size=1, max_size=12))
def test_two_peers_syncing_through_a_server_are_never_flagged(steps: list) -> None:
    server = Doc()
    peers = {name: Doc() for name in "ab"}
    outbox = {name: recorder(doc) for name, doc in peers.items()}
    inbox: dict[str, list[bytes]] = {"a": [], "b": []}
    index = SurrogateIndex()

    def deliver() -> None:
        for name in "ab":
            while outbox[name]:
                update = outbox[name].pop(0)
                known = state_of(server)
                decoded, reason = check_update(update, known, index)
                assert reason is None
                server.apply_update(update)
                index.add(decoded, known)
                inbox["b" if name == "a" else "a"].append(update)

    for who, op_list in steps:
        if who == "+":
            deliver()
            for name, doc in peers.items():
                for update in inbox[name]:
                    doc.apply_update(update)
                outbox[name].clear()  # applying remote updates records them too
                inbox[name] = []
        else:
            for op in op_list[:3]:
                apply_op(peers[who], op)
    deliver()


# --- surrogate pairs, against a real Yjs client ------------------------------------------

NODE_TEXTS = [
    ("a😀b👨‍👩‍👧🇫🇷👍🏽中e\u0301\r\n😀😀z", 1),
    ("a😀b👨‍👩‍👧🇫🇷👍🏽中e\u0301\r\n😀😀z", 2),
    ("😀x👍🏽🇫🇷", 3),
    ("𝄞👨‍👩‍👧 e\u0301中😀", 100),
]


def yjs_edits(**request: Any) -> dict[str, Any]:
    """Run tests/node/yupdates.mjs with `request`; its base64 updates, decoded."""
    result: dict[str, Any] = run_node_script("yupdates.mjs", request)  # type: ignore[assignment]
    decode: Callable[[str], bytes] = base64.b64decode
    return {
        k: [decode(u) for u in v] if isinstance(v, list) else decode(v) for k, v in result.items()
    }


@pytest.mark.node
@pytest.mark.parametrize(("text", "chunk"), NODE_TEXTS)
def test_yjs_edits_inside_a_pair_and_only_those_are_flagged(text: str, chunk: int) -> None:
    edits = yjs_edits(text=text, chunk=chunk)
    units = text.encode("utf-16-le")
    code = [int.from_bytes(units[i : i + 2], "little") for i in range(0, len(units), 2)]
    server, index = Doc(), SurrogateIndex()
    for update in edits["steps"]:
        known = state_of(server)
        decoded, reason = check_update(update, known, index)
        assert reason is None
        server.apply_update(update)
        index.add(decoded, known)
    assert str(server.get("text", type=Text)) == text
    loaded = SurrogateIndex()
    loaded.add(server.get_update())
    assert len(loaded) == len(index) == sum(0xD800 <= c < 0xDC00 for c in code)
    state = state_of(server)
    for i, update in enumerate(edits["inserts"]):
        inside = 0 < i < len(code) and 0xD800 <= code[i - 1] < 0xDC00
        assert missing_dependencies(update, state) is None
        for idx in (index, loaded):
            assert (idx.splits_pair(update) is not None) == inside, (i, idx.splits_pair(update))
    for i, update in enumerate(edits["deletes"]):
        half = 0xD800 <= code[i] < 0xE000
        assert missing_dependencies(update, state) is None
        for idx in (index, loaded):
            assert (idx.splits_pair(update) is not None) == half, (i, idx.splits_pair(update))


@pytest.mark.node
def test_every_content_kind_yjs_writes_decodes_but_xml_hook() -> None:
    edits = yjs_edits(kinds=True)
    update = edits["kinds"]
    decoded = decode_update(update)
    assert {s.ref for s in decoded.structs} == set(range(1, 10)) - {JSON_}
    with pytest.raises(UpdateFormatError, match="XmlHook"):
        decode_update(edits["hook"])
    with pytest.raises(ValueError):  # Yrs reads no hook name, then misreads what follows
        Doc().apply_update(edits["hook"])
    assert decoded.ranges() == {
        c: (0, end) for c, end in decode_state_vector(get_state(update)).items()
    }
    assert missing_dependencies(decoded, {}) is None
    assert SurrogateIndex().splits_pair(decoded) is None


def test_legacy_json_content_decodes() -> None:
    """Yjs 13 reads ContentJSON (ref 2) but no longer writes it: crafted here."""
    content = uint(3) + vstr('{"a": [1]}') + vstr("undefined") + vstr("null")
    (struct,) = decode_update(item(1, 0, content, JSON_) + b"\x00").structs
    assert (struct.ref, struct.length) == (JSON_, 3)
