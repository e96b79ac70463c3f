"""The y-websocket codec: what yjs and pycrdt peers send decodes, what we send they read,
and no frame, however broken, gets anything but a ProtocolError with a close code."""

from __future__ import annotations

import pycrdt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collab.yjs.protocol import (
    MAX_STATE_DEPTH,
    Auth,
    Awareness,
    AwarenessEntry,
    ProtocolError,
    QueryAwareness,
    Reader,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    close_reason,
    decode,
    encode_auth_denied,
    encode_awareness,
    encode_query_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_sync_update,
    read_var_uint,
    write_var_uint,
)

MAX_SAFE = 2**53 - 1
UNICODE = ["😀", "👨\u200d👩\u200d👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "a\r\nb", "\u2028", ""]

texts = st.one_of(
    st.sampled_from(UNICODE),
    st.lists(st.sampled_from(UNICODE), max_size=5).map("".join),
    st.text(max_size=20),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
states = st.none() | st.dictionaries(texts, json_values, max_size=5)
var_uints = st.integers(0, MAX_SAFE) | st.sampled_from([0, 127, 128, 2**32 - 1, MAX_SAFE])
clocks = st.integers(0, MAX_SAFE - 1)  # a "gone" entry is sent at clock + 1
entries = st.builds(AwarenessEntry, var_uints, clocks, states)
payloads = st.binary(max_size=300)

SYNC_KINDS = [
    (encode_sync_step1, SyncStep1, "state_vector"),
    (encode_sync_step2, SyncStep2, "update"),
    (encode_sync_update, SyncUpdate, "update"),
]


def valid_messages() -> st.SearchStrategy[bytes]:
    return st.one_of(
        payloads.map(encode_sync_step1),
        payloads.map(encode_sync_step2),
        payloads.map(encode_sync_update),
        st.lists(entries, max_size=4).map(encode_awareness),
        texts.map(encode_auth_denied),
        st.just(encode_query_awareness()),
    )


def assert_rejected(data: bytes | str, close_code: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.close_code == close_code, info.value.reason
    return info.value


# --- varUint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
        (MAX_SAFE, b"\xff\xff\xff\xff\xff\xff\xff\x0f"),
    ],
)
def test_var_uint_bytes_are_lib0s(n: int, encoded: bytes) -> None:
    assert write_var_uint(n) == encoded
    assert read_var_uint(encoded, 0) == (n, len(encoded))


@given(var_uints, st.binary(max_size=3), st.binary(max_size=3))
def test_var_uint_round_trips_at_any_position(n: int, before: bytes, after: bytes) -> None:
    encoded = write_var_uint(n)
    assert len(encoded) <= 8
    assert encoded == pycrdt.write_var_uint(n)
    assert read_var_uint(before + encoded + after, len(before)) == (n, len(before + encoded))


@pytest.mark.parametrize("n", [-1, MAX_SAFE + 1, 2**64])
def test_write_var_uint_refuses_what_javascript_cannot_read(n: int) -> None:
    with pytest.raises(ValueError):
        write_var_uint(n)


def test_over_long_encoding_of_a_small_number_is_read_as_lib0_does() -> None:
    assert read_var_uint(b"\x80\x80\x00", 0) == (0, 3)


def test_reader_reads_fields_in_sequence() -> None:
    reader = Reader(write_var_uint(300) + b"\x03abc" + "中".encode() + b"\x00")
    assert reader.var_uint() == 300
    assert bytes(reader.var_bytes()) == b"abc"
    assert reader.remaining == 4


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(("encode", "kind", "field"), SYNC_KINDS)
@given(payload=payloads)
def test_sync_messages_round_trip(encode, kind, field, payload: bytes) -> None:
    message = decode(encode(payload))
    assert type(message) is kind
    assert getattr(message, field) == payload


@given(st.lists(entries, max_size=6))
@example([AwarenessEntry(MAX_SAFE, 0, {"user": {"name": "👨\u200d👩\u200d👧 中文 e\u0301\r\n"}})])
@example([AwarenessEntry(1, 0, None), AwarenessEntry(1, 1, {})])
def test_awareness_round_trips(awareness_entries: list[AwarenessEntry]) -> None:
    assert decode(encode_awareness(awareness_entries)) == Awareness(tuple(awareness_entries))


def test_awareness_accepts_any_iterable() -> None:
    generated = (AwarenessEntry(i, i, {"i": i}) for i in range(3))
    assert len(decode(encode_awareness(generated)).entries) == 3


@given(texts)
def test_auth_denied_round_trips(reason: str) -> None:
    assert decode(encode_auth_denied(reason)) == Auth(reason)


def test_query_awareness_round_trips() -> None:
    assert decode(encode_query_awareness()) == QueryAwareness()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_decode_takes_any_byte_buffer(wrap) -> None:
    assert decode(wrap(encode_sync_update(b"\x01\x02"))) == SyncUpdate(b"\x01\x02")


# --- bytes exactly as yjs / y-protocols write them -------------------------------------


def test_golden_bytes_as_yjs_writes_them() -> None:
    # A fresh Y.Doc's state vector is varUint(0): one byte.
    assert encode_sync_step1(b"\x00") == b"\x00\x00\x01\x00"
    assert decode(b"\x00\x00\x01\x00") == SyncStep1(b"\x00")
    # The empty update (0 structs, 0 deletes) as a step2 and as an update.
    assert decode(b"\x00\x01\x02\x00\x00") == SyncStep2(b"\x00\x00")
    assert encode_sync_update(b"\x00\x00") == b"\x00\x02\x02\x00\x00"
    assert encode_query_awareness() == b"\x03"


def test_golden_awareness_as_y_protocols_writes_it() -> None:
    # JSON.stringify output: compact, non-ASCII as UTF-8, \r\n escaped.
    state_json = '{"user":{"name":"Zoë 😀 中文\\r\\n","color":"#f00"}}'.encode()
    inner = b"\x02" + b"\xe7\x07\x03" + bytes([len(state_json)]) + state_json
    inner += b"\x2a\x09\x04null"  # client 42 left (clock 9)
    frame = b"\x01" + bytes([len(inner)]) + inner
    entries = (
        AwarenessEntry(999, 3, {"user": {"name": "Zoë 😀 中文\r\n", "color": "#f00"}}),
        AwarenessEntry(42, 9, None),
    )
    assert decode(frame) == Awareness(entries)
    assert encode_awareness(entries) == frame


def test_golden_permission_denied() -> None:
    assert encode_auth_denied("nope 🚫") == b"\x02\x00\x09nope \xf0\x9f\x9a\xab"


# --- malformed frames ------------------------------------------------------------------

PROTOCOL_ERROR, UNSUPPORTED = 1002, 1003


def awareness_frame(inner: bytes) -> bytes:
    """Wrap an awareness update (count, then entries) into its frame."""
    return b"\x01" + write_var_uint(len(inner)) + inner


MALFORMED = {
    "empty frame": (b"", PROTOCOL_ERROR),
    "truncated type varint": (b"\x80", PROTOCOL_ERROR),
    "truncated length varint": (b"\x00\x02\xff\xff", PROTOCOL_ERROR),
    "varint longer than 8 bytes": (b"\x00\x02" + b"\x80" * 8 + b"\x01", PROTOCOL_ERROR),
    "varint above 2**53-1": (b"\x00\x02" + b"\xff" * 7 + b"\x10", PROTOCOL_ERROR),
    "absurd declared length 2**50": (b"\x00\x02" + write_var_uint(2**50) + b"x", PROTOCOL_ERROR),
    "length one past the end": (b"\x00\x01\x03ab", PROTOCOL_ERROR),
    "no payload after sync type": (b"\x00\x00", PROTOCOL_ERROR),
    "trailing garbage after update": (b"\x00\x02\x01a\x00", PROTOCOL_ERROR),
    "trailing garbage after query-awareness": (b"\x03\x00", PROTOCOL_ERROR),
    "unknown type 7": (b"\x07", UNSUPPORTED),
    "unknown type 2**40": (write_var_uint(2**40), UNSUPPORTED),
    "unknown sync sub-type 5": (b"\x00\x05\x01a", UNSUPPORTED),
    "unknown auth sub-type 1": (b"\x02\x01\x00", UNSUPPORTED),
    "auth reason invalid UTF-8": (b"\x02\x00\x02\xc3\x28", PROTOCOL_ERROR),
    "awareness without its array": (b"\x01", PROTOCOL_ERROR),
    "awareness state is 55": (awareness_frame(b"\x01\x01\x00\x0255"), PROTOCOL_ERROR),
    "awareness state is a list": (awareness_frame(b"\x01\x01\x00\x02[]"), PROTOCOL_ERROR),
    "awareness state is a string": (awareness_frame(b'\x01\x01\x00\x03"x"'), PROTOCOL_ERROR),
    "awareness state is empty": (awareness_frame(b"\x01\xff\xff\x01\x00\x00"), PROTOCOL_ERROR),
    "awareness state invalid JSON": (awareness_frame(b"\x01\x01\x00\x02{x"), PROTOCOL_ERROR),
    "awareness state invalid UTF-8": (awareness_frame(b'\x01\x01\x00\x03"\xff"'), PROTOCOL_ERROR),
    "awareness state NaN": (awareness_frame(b'\x01\x01\x00\x09{"a":NaN}'), PROTOCOL_ERROR),
    "awareness state 1e400": (awareness_frame(b'\x01\x01\x00\x0b{"a":1e400}'), PROTOCOL_ERROR),
    "awareness count 2**40": (
        awareness_frame(write_var_uint(2**40) + b"\x01\x00\x02{}"),
        PROTOCOL_ERROR,
    ),
    "awareness 2nd entry truncated": (
        awareness_frame(b"\x02\x01\x00\x02{}\x02\x00\x05{}"),
        PROTOCOL_ERROR,
    ),
    "trailing bytes inside awareness": (awareness_frame(b"\x01\x01\x00\x02{}\x00"), PROTOCOL_ERROR),
    "text frame": ("\x00\x00\x01\x00", UNSUPPORTED),
}


@pytest.mark.parametrize(("data", "close_code"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_are_refused_with_a_close_code(data: bytes, close_code: int) -> None:
    error = assert_rejected(data, close_code)
    assert error.reason
    assert len(error.reason.encode()) <= 120
    assert isinstance(error, ValueError)


def test_awareness_state_nesting_is_bounded() -> None:
    def nested(depth: int) -> bytes:
        """A state whose objects and arrays nest `depth` deep (the state itself is 1)."""
        value: object = "😀"
        for level in range(depth - 1):
            value = [value] if level % 2 else {"k": value}
        return encode_awareness([AwarenessEntry(1, 1, {"top": value})])

    assert decode(nested(MAX_STATE_DEPTH)).entries[0].client_id == 1
    assert_rejected(nested(MAX_STATE_DEPTH + 1), PROTOCOL_ERROR)
    # Deep enough to exhaust Python's recursion inside json: still a ProtocolError.
    bomb = b"[" * 100_000
    inner = b"\x01\x01\x00" + write_var_uint(len(bomb)) + bomb
    assert_rejected(b"\x01" + write_var_uint(len(inner)) + inner, PROTOCOL_ERROR)


def test_awareness_lone_surrogate_from_javascript_survives_a_round_trip() -> None:
    # JSON.stringify("\ud83d") is the ASCII escape; Python reads it as a lone surrogate.
    state_json = b'{"name":"x\\ud83d"}'
    inner = b"\x01\x01\x00" + bytes([len(state_json)]) + state_json
    message = decode(b"\x01" + bytes([len(inner)]) + inner)
    assert message == Awareness((AwarenessEntry(1, 0, {"name": "x\ud83d"}),))
    assert decode(encode_awareness(message.entries)) == message


# --- nothing but ProtocolError, whatever the bytes -------------------------------------

PREFIXES = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x02\x00", b"\x03"]


def check_decode_never_crashes(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError as error:
        assert error.close_code in (1002, 1003)
        assert 0 < len(error.reason.encode()) <= 120


@given(st.sampled_from(PREFIXES), st.binary(max_size=200))
def test_decode_raises_only_protocol_error_on_random_bytes(prefix: bytes, tail: bytes) -> None:
    check_decode_never_crashes(prefix + tail)


@given(st.lists(st.tuples(var_uints, var_uints, st.binary(max_size=20)), max_size=4))
def test_decode_raises_only_protocol_error_on_random_awareness(raw) -> None:
    inner = write_var_uint(len(raw)) + b"".join(
        write_var_uint(c) + write_var_uint(k) + write_var_uint(len(s)) + s for c, k, s in raw
    )
    check_decode_never_crashes(b"\x01" + write_var_uint(len(inner)) + inner)


@given(valid_messages(), st.data())
def test_decode_raises_only_protocol_error_on_mutated_messages(message: bytes, data) -> None:
    frame = bytearray(message)
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] = data.draw(st.integers(0, 255))
    check_decode_never_crashes(bytes(frame))


@given(valid_messages(), st.binary(min_size=1, max_size=4))
def test_every_truncation_and_any_trailing_byte_is_refused(message: bytes, extra: bytes) -> None:
    decode(message)
    for cut in range(len(message)):
        assert_rejected(message[:cut], PROTOCOL_ERROR)
    assert_rejected(message + extra, PROTOCOL_ERROR)


# --- same bytes as pycrdt ----------------------------------------------------------------


def make_doc(content: str) -> pycrdt.Doc:
    doc = pycrdt.Doc()
    doc["text"] = pycrdt.Text(content)
    return doc


@given(st.lists(st.sampled_from(UNICODE), max_size=6).map("".join))
def test_sync_bytes_match_pycrdt(content: str) -> None:
    doc = make_doc(content)
    state, update = doc.get_state(), doc.get_update()
    assert encode_sync_step1(state) == pycrdt.create_sync_message(doc)
    # pycrdt answers a step1 from an empty peer with a step2 holding the whole document.
    empty_state = pycrdt.Doc().get_state()
    their_step2 = pycrdt.handle_sync_message(encode_sync_step1(empty_state)[1:], doc)
    assert encode_sync_step2(doc.get_update(empty_state)) == their_step2
    assert encode_sync_update(update) == pycrdt.create_update_message(update)
    assert pycrdt.read_message(encode_sync_update(update)[2:]) == update


def test_pycrdt_peer_syncs_through_our_codec() -> None:
    server, client = make_doc("中文 👨\u200d👩\u200d👧 e\u0301\r\n"), pycrdt.Doc()
    step1 = decode(pycrdt.create_sync_message(client))
    assert isinstance(step1, SyncStep1)
    reply = encode_sync_step2(server.get_update(step1.state_vector))
    assert pycrdt.handle_sync_message(reply[1:], client) is None
    assert str(client.get("text", type=pycrdt.Text)) == "中文 👨\u200d👩\u200d👧 e\u0301\r\n"
    # And the other way: pycrdt answers our step1 with a step2 we decode.
    answer = pycrdt.handle_sync_message(encode_sync_step1(pycrdt.Doc().get_state())[1:], server)
    assert decode(answer) == SyncStep2(server.get_update(pycrdt.Doc().get_state()))


def test_awareness_bytes_match_pycrdt_for_ascii_states() -> None:
    peer = pycrdt.Awareness(pycrdt.Doc())
    peer.set_local_state({"user": {"name": "Ann", "color": "#0af"}, "cursor": None})
    clock = peer.meta[peer.client_id]["clock"]
    theirs = pycrdt.create_awareness_message(peer.encode_awareness_update([peer.client_id]))
    entry = AwarenessEntry(peer.client_id, clock, peer.get_local_state())
    assert encode_awareness([entry]) == theirs
    assert decode(theirs) == Awareness((entry,))


@given(st.dictionaries(texts, json_values, max_size=4))
def test_awareness_with_unicode_agrees_with_pycrdt(state: dict) -> None:
    # pycrdt escapes non-ASCII (ensure_ascii); we write UTF-8 as JSON.stringify does.
    # The bytes differ, the meaning does not: each side reads the other's.
    peer = pycrdt.Awareness(pycrdt.Doc())
    peer.set_local_state(state)
    clock = peer.meta[peer.client_id]["clock"]
    theirs = pycrdt.create_awareness_message(peer.encode_awareness_update([peer.client_id]))
    assert decode(theirs) == Awareness((AwarenessEntry(peer.client_id, clock, state),))

    reader = pycrdt.Awareness(pycrdt.Doc())
    ours = encode_awareness([AwarenessEntry(7, 1, state)])
    reader.apply_awareness_update(pycrdt.read_message(ours[1:]), "test")
    assert reader.states[7] == state


REASON_PIECES = ["a", "é", "中", "😀", "👨‍👩‍👧", "e\u0301"]


@given(st.lists(st.sampled_from(REASON_PIECES), max_size=80).map("".join))
def test_close_reason_fits_a_close_frame_and_never_cuts_a_character(text: str) -> None:
    reason = close_reason(text)
    assert len(reason.encode()) <= 120
    assert text.startswith(reason)


def test_awareness_clock_at_the_protocol_limit_is_refused() -> None:
    """Its "gone" entry (clock + 1) could not be encoded when the peer leaves."""
    with pytest.raises(ProtocolError, match="clock"):
        decode(encode_awareness([AwarenessEntry(7, MAX_SAFE, {"user": {"name": "x"}})]))
