"""collab.yjs.scan, the fast path of check_update: it accepts only what the full decoder and
checks accept, with the same summary, and it does accept honest text updates. Its two
implementations, C (collab/yjs/_scan.c) and Python, give the same answer on every input."""

from __future__ import annotations

import random
from array import array

from conftest import require
from hostile_updates import item, only_deletes, uint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.yjs import scan
from collab.yjs.checks import (
    Summary,
    SurrogateIndex,
    check_update,
    cut_inside_pair,
    missing_dependencies,
)
from collab.yjs.scan import as_clocks, python_quick_check, quick_check, string_highs, summarize
from collab.yjs.update import UpdateFormatError, decode_state_vector, decode_update

PIECES = ["a", "Z", " ", "é", "e\u0301", "中文", "😀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "\r\n", "𝄞x", ""]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0x00, 0x01, 0x02, 0x04, 0x20, 0x44, 0x7F, 0x80, 0x81, 0x84, 0xC4, 0xF0, 0xFF]


def full_check(
    update: bytes, state: dict[int, int], index: SurrogateIndex
) -> tuple[Summary | None, str | None]:
    """What the full decoder and checks say: (summary, None) or (maybe summary, reason)."""
    try:
        decoded = decode_update(update)
    except UpdateFormatError as error:
        return None, str(error)
    problem = missing_dependencies(decoded, state) or cut_inside_pair(decoded, state)
    return summarize(decoded), problem or index.splits_pair(decoded)


def agree(update: bytes, state: dict[int, int], index: SurrogateIndex) -> Summary | None:
    """The fast path's answer, asserted to be the full checks' when it gives one, and the
    same from its C and Python implementations, with the index's clocks in sets or as a
    loaded state's sorted bytes."""
    fast = quick_check(update, state, index.highs)
    assert python_quick_check(update, state, index.highs) == fast, (update.hex(), state)
    loaded = as_loaded(index)
    assert quick_check(update, state, {}, loaded.loaded) == fast, (update.hex(), state)
    assert python_quick_check(update, state, {}, loaded.loaded) == fast, (update.hex(), state)
    summary, problem = full_check(update, state, index)
    assert full_check(update, state, loaded) == (summary, problem)
    if fast is not None:
        assert problem is None, (update.hex(), state, problem)
        assert fast == summary
    return fast


def as_loaded(index: SurrogateIndex) -> SurrogateIndex:
    """The same clocks as a loaded state's: sorted, in bytes (`SurrogateIndex.of_stored`)."""
    loaded = SurrogateIndex()
    loaded._loaded = {c: array("Q", sorted(h)).tobytes() for c, h in index.highs.items() if h}
    return loaded


def edit(doc: Doc, rnd: random.Random) -> None:
    """One transaction: a few inserts and deletes at random code points."""
    text = doc.get("text", type=Text)
    with doc.transaction():
        for _ in range(rnd.randint(1, 3)):
            current = str(text)
            at = rnd.randint(0, len(current))
            offset = len(current[:at].encode())
            if current and rnd.random() < 0.3:
                end = min(len(current), at + rnd.randint(1, 4))
                del text[offset : offset + len(current[at:end].encode())]
            else:
                text.insert(offset, "".join(rnd.choices(PIECES, k=rnd.randint(1, 4))))


def history(seed: int, small_ids: bool) -> tuple[Doc, list[tuple[bytes, bytes, bool]]]:
    """Three peers editing and syncing through a server doc: (server, [(state before, update,
    whether the server applied it)]): updates the server lacks, or a peer's last
    transaction alone (maybe not applicable yet). Client ids: 1-byte varints, or
    7- and 8-byte ones as pycrdt picks them."""
    rnd = random.Random(seed)
    peers = [Doc(client_id=i + 1 if small_ids else rnd.randrange(2**32, 2**53)) for i in range(3)]
    server = Doc()
    seen: list[tuple[bytes, bytes, bool]] = []
    for _ in range(rnd.randint(1, 12)):
        peer = rnd.choice(peers)
        before = peer.get_state()
        edit(peer, rnd)
        if rnd.random() < 0.6:
            update = peer.get_update(server.get_state())  # what the server lacks of it
            seen.append((server.get_state(), update, True))
            server.apply_update(update)
        else:
            update = peer.get_update(before)  # its transaction only (maybe unsendable yet)
            seen.append((server.get_state(), update, False))
        if rnd.random() < 0.5:
            for other in peers:
                other.apply_update(server.get_update(other.get_state()))
    return server, seen


def index_of(state: bytes) -> SurrogateIndex:
    index = SurrogateIndex()
    index.add(state)
    return index


@SETTINGS
@given(st.integers(0, 10**9), st.booleans())
def test_honest_text_updates_take_the_fast_path_with_the_full_checks_summary(
    seed: int, small_ids: bool
) -> None:
    server, seen = history(seed, small_ids)
    replay, index = Doc(), SurrogateIndex()
    for state, update, applied in seen:
        if not applied:
            continue
        assert replay.get_state() == state
        known = decode_state_vector(state)
        fast = agree(update, known, index)
        assert fast is not None, update.hex()
        replay.apply_update(update)
        index.add(fast, known)
    whole = server.get_update()
    assert agree(whole, {}, SurrogateIndex()) is not None
    assert agree(whole, decode_state_vector(server.get_state()), index_of(whole)) is not None


@SETTINGS
@given(st.integers(0, 10**9), st.booleans(), st.data())
def test_any_update_against_any_state_gets_the_full_checks_verdict(
    seed: int, small_ids: bool, data: st.DataObject
) -> None:
    server, seen = history(seed, small_ids)
    updates = [update for _, update, _ in seen] + [server.get_update()]
    states = [decode_state_vector(state) for state, _, _ in seen] + [{}]
    update = data.draw(st.sampled_from(updates))
    state = dict(data.draw(st.sampled_from(states)))
    for client in list(state):
        state[client] = max(0, state[client] + data.draw(st.integers(-3, 3)))
    index = index_of(data.draw(st.sampled_from([b"\x00\x00", server.get_update()])))
    agree(update, state, index)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**9), st.booleans(), st.data())
def test_garbled_updates_get_the_full_checks_verdict(
    seed: int, small_ids: bool, data: st.DataObject
) -> None:
    server, seen = history(seed, small_ids)
    state_bytes, update, _ = data.draw(st.sampled_from(seen))
    garbled = bytearray(update)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(garbled) - 1))
        byte = data.draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            garbled[at] = byte
        elif action == "insert":
            garbled.insert(at, byte)
        elif len(garbled) > 1:
            del garbled[at]
    agree(bytes(garbled), decode_state_vector(state_bytes), index_of(server.get_update()))


def test_crafted_refusals_are_left_to_the_full_checks() -> None:
    """Each of these is refused by the full checks: the fast path must not settle it."""
    doc = Doc(client_id=5)
    doc.get("text", type=Text).insert(0, "a😀b")  # clocks 0..3: 😀's high half at 1
    state, known = doc.get_update(), decode_state_vector(doc.get_state())
    index = index_of(state)
    crafted = [
        item(7, 3, "X") + b"\x00",  # a gap
        item(7, 0, "X", right=(1, 5)) + b"\x00",  # unknown right origin
        item(7, 0, "X", origin=(7, 0)) + b"\x00",  # its own later item
        item(7, 0, "X", origin=(5, 9)) + b"\x00",  # a known client's unknown clock
        item(7, 0, "X", origin=(5, 1)) + b"\x00",  # between the halves of 😀
        item(7, 0, "X", right=(5, 2)) + b"\x00",  # the same, from the right
        item(7, 0, "X", parent=(5, 9)) + b"\x00",  # unknown parent
        only_deletes([(5, 2, 1)]),  # deletes 😀's low half
        only_deletes([(5, 0, 2)]),  # ends after its high half
        only_deletes([(5, 0, 9)]),  # past the known clocks
        uint(2)
        + item(1, 0, "X", origin=(2, 0))[1:]
        + item(2, 0, "Y", origin=(1, 0))[1:]
        + b"\x00",  # a cycle
        uint(2) + item(1, 0, "X")[1:] + item(1, 1, "Y")[1:] + b"\x00",  # one client twice
        item(7, 0, "X") + b"\x00\x00",  # a byte after the delete set
        item(7, 0, "\U0001f600")[:-4] + b"\xf0\x9f\x98" + b"\x00",  # cut UTF-8
        item(5, 0, "a\U0001f601") + b"\x00",  # known clocks re-sent with other content
    ]
    for update in crafted:
        if full_check(update, known, index)[1] is not None:
            assert quick_check(update, known, index.highs) is None, update.hex()
            assert python_quick_check(update, known, index.highs) is None, update.hex()
            loaded = as_loaded(index).loaded
            assert quick_check(update, known, {}, loaded) is None, update.hex()
            assert python_quick_check(update, known, {}, loaded) is None, update.hex()
    cut = Doc(client_id=9)
    cut.get("text", type=Text).insert(0, "😀😀")
    whole = cut.get_update()
    assert full_check(whole, {9: 1}, SurrogateIndex())[1] is not None  # cut inside a pair
    assert quick_check(whole, {9: 1}, {}) is None
    assert python_quick_check(whole, {9: 1}, {}) is None


def test_the_c_scan_is_built() -> None:
    """`pip install` builds collab/yjs/_scan.c where a C compiler is at hand (CI has one)."""
    require(scan._native_quick_check is not None, "the C scan (a C compiler at install)")


BAD_UTF8 = [
    b"\xc0\x80",  # overlong NUL
    b"\xe0\x9f\xbf",  # overlong 3 bytes
    b"\xed\xa0\x80",  # a surrogate
    b"\xf0\x8f\xbf\xbf",  # overlong 4 bytes
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5 bytes
    b"\xe4\xb8",  # cut
    b"\x80",  # a lone continuation
]


def test_both_scans_refuse_what_is_not_utf8_and_read_what_is() -> None:
    for bad in BAD_UTF8:
        update = uint(1) + item(7, 0, "a")[1:-2] + uint(len(bad)) + bad + b"\x00"
        with_bad_root = uint(1) + uint(1) + uint(7) + uint(0) + b"\x04" + uint(1)
        with_bad_root += uint(len(bad)) + bad + uint(1) + b"a" + b"\x00"
        for data in (update, with_bad_root):
            assert quick_check(data, {}, {}) is None, data.hex()
            assert python_quick_check(data, {}, {}) is None
    for text in ["e\u0301", "中文", "😀", "👨\u200d👩\u200d👧", "\r\n", "\U0010ffff", "\uffff"]:
        update = item(7, 0, text) + b"\x00"
        assert quick_check(update, {}, {}) == python_quick_check(update, {}, {}) is not None


def test_both_scans_agree_on_many_clients_and_deletions() -> None:
    """Hundreds of groups and delete-set clients, in an order other than their ids'."""
    rnd = random.Random(7)
    docs = [Doc(client_id=rnd.randrange(1, 2**53)) for _ in range(300)]
    server = Doc()
    for doc in docs:
        doc.apply_update(server.get_update())
        edit(doc, rnd)
        edit(doc, rnd)
        server.apply_update(doc.get_update(server.get_state()))
    whole = server.get_update()
    assert quick_check(whole, {}, {}) == python_quick_check(whole, {}, {}) is not None
    state = decode_state_vector(server.get_state())
    index = index_of(whole)
    assert quick_check(whole, state, index.highs) == python_quick_check(whole, state, index.highs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.dictionaries(st.integers(0, 2**53), st.integers(0, 2**53)))
def test_both_scans_agree_on_any_bytes(data: bytes, state: dict[int, int]) -> None:
    assert quick_check(data, state, {}) == python_quick_check(data, state, {})


def test_check_update_gives_the_same_reasons_as_before() -> None:
    doc = Doc(client_id=5)
    doc.get("text", type=Text).insert(0, "a😀b")
    known, index = decode_state_vector(doc.get_state()), index_of(doc.get_update())
    _, why = check_update(item(7, 0, "X", origin=(5, 1)) + b"\x00", known, index)
    assert why == "item 7:0 inserts after high surrogate 5:1"
    _, why = check_update(item(7, 0, "X", origin=(5, 9)) + b"\x00", known, index)
    assert why == "item 7:0 depends on unknown item 5:9"


def test_clocks_past_32_bits_are_refused_by_every_check() -> None:
    """Yrs keeps clocks as 32-bit numbers: a GC range to 2**40 then an item would be
    applied at clock 257 while the server's bookkeeping says 2**40 + 1."""
    gc_then_item = (
        uint(1) + uint(2) + uint(7) + uint(0) + b"\x00" + uint(2**40)
        + b"\x04" + uint(1) + uint(4) + b"text" + uint(1) + b"X" + b"\x00"
    )  # fmt: skip
    deletes_far = only_deletes([(7, 2**32 - 1, 1)])
    at_the_limit = item(7, 2**32 - 2, "X") + b"\x00"  # ends at 2**32 - 1: accepted
    for update, state in ((gc_then_item, {}), (deletes_far, {7: 2**32})):
        assert quick_check(update, state, {}) is None
        assert python_quick_check(update, state, {}) is None
        _, why = full_check(update, state, SurrogateIndex())
        assert why is not None and "2**32 - 1" in why, why
    state = {7: 2**32 - 2}
    assert quick_check(at_the_limit, state, {}) == python_quick_check(at_the_limit, state, {})
    assert full_check(at_the_limit, state, SurrogateIndex())[1] is None


def python_string_highs(data: bytes) -> tuple[dict[int, int], dict[int, bytes], int] | None:
    native, scan._native_string_highs = scan._native_string_highs, None
    try:
        return string_highs(data)
    finally:
        scan._native_string_highs = native


def summary_highs(data: bytes) -> tuple[dict[int, int], dict[int, list[int]]]:
    summary = summarize(decode_update(data))
    return summary.ends, summary.highs


@SETTINGS
@given(st.integers(0, 10**9), st.booleans())
def test_string_highs_reads_states_and_updates_as_the_full_decoder(
    seed: int, small_ids: bool
) -> None:
    """C and Python agree, and give the full decoder's ends and (sorted) highs."""
    server, seen = history(seed, small_ids)
    for data in [server.get_update()] + [update for _, update, _ in seen]:
        walked = string_highs(data)
        assert walked == python_string_highs(data), data.hex()
        assert walked is not None, data.hex()  # text, deletions: never the full decoder
        ends, highs, deletes_at = walked
        assert (ends, {c: as_clocks(h).tolist() for c, h in highs.items()}) == summary_highs(data)
        assert deletes_at == decode_update(data).deletes_at


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_string_highs_agree_on_any_bytes(data: bytes) -> None:
    walked = string_highs(data)
    assert walked == python_string_highs(data)
    if walked is not None:  # what it reads, the full decoder reads the same
        ends, highs, deletes_at = walked
        assert (ends, {c: as_clocks(h).tolist() for c, h in highs.items()}) == summary_highs(data)
        assert deletes_at == decode_update(data).deletes_at


@SETTINGS
@given(st.integers(0, 10**9), st.booleans(), st.data())
def test_an_index_of_what_is_stored_holds_what_add_would_have(
    seed: int, small_ids: bool, data: st.DataObject
) -> None:
    """A snapshot then the updates logged since: `of_stored` knows the same clocks as an
    index fed the snapshot and then each update with the state before it."""
    _, seen = history(seed, small_ids)
    applied = [(state, update) for state, update, done in seen if done]
    cut = data.draw(st.integers(0, len(applied)))
    snapshot = Doc()
    for _, update in applied[:cut]:
        snapshot.apply_update(update)
    state = snapshot.get_update()
    fed = index_of(state)
    for before, update in applied[cut:]:
        fed.add(update, decode_state_vector(before))
    stored = SurrogateIndex.of_stored(state, [update for _, update in applied[cut:]])
    clocks = {c: set(h) for c, h in stored.highs.items()}
    for client, highs in stored.loaded.items():
        clocks.setdefault(client, set()).update(as_clocks(highs).tolist())
    assert clocks == {c: h for c, h in fed.highs.items() if h}
    assert len(stored) == len(fed)
