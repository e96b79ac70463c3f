"""The Hocuspocus codec: every message round-trips, the provider's own frames decode, and
no frame, however broken, gets anything but a HocuspocusError (naming the document when
its name could be read)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collab.yjs import hocuspocus as hp
from collab.yjs.protocol import encode_awareness, encode_query_awareness, encode_sync_step1

UNICODE = ["😀", "👨\u200d👩\u200d👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "a\r\nb", ""]
texts = st.one_of(
    st.sampled_from(UNICODE),
    st.lists(st.sampled_from(UNICODE), max_size=5).map("".join),
    st.text(max_size=30).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
)
bodies = st.builds(
    lambda kind, rest: bytes((kind,)) + rest,
    st.sampled_from(sorted(hp.FORWARDED)),
    st.binary(max_size=200),
)
named = st.one_of(
    st.builds(hp.Forward, texts, bodies),
    st.builds(hp.Token, texts, texts, st.none() | texts),
    st.builds(hp.PermissionDenied, texts, texts),
    st.builds(hp.Authenticated, texts, st.sampled_from(list(hp.Scope))),
    st.builds(hp.Stateless, texts, texts),
    st.builds(hp.BroadcastStateless, texts, texts),
    st.builds(hp.Close, texts, st.none() | texts),
    st.builds(hp.SyncStatus, texts, st.booleans()),
)
messages = named | st.just(hp.Ping()) | st.just(hp.Pong())


@given(messages)
def test_every_message_round_trips(message: hp.Message) -> None:
    assert hp.decode(hp.encode(message)) == message


@given(named)
def test_every_named_message_starts_with_its_name(message: hp.Message) -> None:
    assert hp.encode(message).startswith(hp.name_prefix(message.name))  # type: ignore[union-attr]


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x05abc")  # a name longer than the frame
@example(b"\x01a")  # no type
@example(b"\x01a\x0b")  # an unknown type
@example(b"\x01a\x02\x07")  # an unknown auth type
@example(b"\x01a\x08\xc0\x80\x80\x80\x80\x80\x80\x80\x80")  # a varInt over 8 bytes
@example(b"\x02\xff\xfe\x00")  # a name that is not UTF-8
def test_garbage_raises_only_hocuspocus_error(data: bytes) -> None:
    try:
        message = hp.decode(data)
    except hp.HocuspocusError as error:
        assert len(error.reason.encode()) <= 120
        return
    assert hp.decode(hp.encode(message)) == message or isinstance(message, hp.Forward)


@given(named, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_after_a_complete_message_are_refused_for_that_document(
    message: hp.Message, extra: bytes
) -> None:
    if isinstance(message, hp.Forward | hp.Close | hp.Token):
        return  # their payload runs to the end of the frame (or has an optional field)
    with pytest.raises(hp.HocuspocusError) as raised:
        hp.decode(hp.encode(message) + extra)
    assert raised.value.name == message.name  # type: ignore[union-attr]


def test_the_providers_frames_decode() -> None:
    """Bytes as @hocuspocus/provider 4.8.0 writes them (read from its OutgoingMessages)."""
    auth = b"\x09notes/\xe4\xb8\xad\x02\x00\x06t\xc3\xb6ken\x054.8.0"
    assert hp.decode(auth) == hp.Token("notes/中", "töken", "4.8.0")
    step1 = b"\x01d" + encode_sync_step1(b"\x00")
    assert hp.decode(step1) == hp.Forward("d", encode_sync_step1(b"\x00"))
    assert hp.decode(b"\x01d" + encode_query_awareness()) == hp.Forward("d", b"\x03")
    awareness = encode_awareness([])
    assert hp.decode(b"\x01d" + awareness) == hp.Forward("d", awareness)
    assert hp.decode(b"\x01d\x07") == hp.Close("d")
    assert hp.decode(b'\x01d\x05\x04{"a"') == hp.Stateless("d", '{"a"')
    assert hp.decode(b"\x0a") == hp.Pong()


def test_sync_reply_of_older_providers_reads_as_sync() -> None:
    assert hp.decode(b"\x01d\x04\x01\x02\x00\x00") == hp.Forward("d", b"\x00\x01\x02\x00\x00")


def test_what_the_provider_reads() -> None:
    """SyncStatus is `varInt(1)` (the provider compares `readVarInt(...) === 1`)."""
    assert hp.encode(hp.SyncStatus("d", True)) == b"\x01d\x08\x01"
    assert hp.encode(hp.SyncStatus("d", False)) == b"\x01d\x08\x00"
    assert hp.encode(hp.Authenticated("d", hp.Scope.READ_WRITE)) == b"\x01d\x02\x02\x0aread-write"
    assert hp.encode(hp.Ping()) == b"\x09"


def test_a_refusal_names_the_document_when_it_can() -> None:
    with pytest.raises(hp.HocuspocusError) as raised:
        hp.decode(b"\x03doc\x0b")
    assert raised.value.name == "doc"
    assert raised.value.close_code == 1003
    assert "unknown message type 11" in raised.value.reason
    with pytest.raises(hp.HocuspocusError) as raised:
        hp.decode(b"\x09do")
    assert raised.value.name is None
    with pytest.raises(hp.HocuspocusError) as raised:
        hp.decode("text frame")
    assert raised.value.close_code == 1003
