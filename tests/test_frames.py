"""A broadcast frame built once is the frame the websockets library would build."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from collab.server.frames import FrameCache, server_frame

LENGTHS = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70_000])


@given(st.binary(max_size=300) | LENGTHS.map(lambda n: bytes(i % 251 for i in range(n))))
def test_a_binary_frame_is_what_websockets_serializes(data: bytes) -> None:
    assert server_frame(data) == Frame(Opcode.BINARY, data).serialize(mask=False)


@given(st.text(max_size=300) | LENGTHS.map(lambda n: ("e\u0301😀中\r\n👩‍👩‍👧" * n)[:n]))
def test_a_text_frame_is_what_websockets_serializes(text: str) -> None:
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert server_frame(text) == expected


def test_the_cache_frames_a_message_once_and_never_confuses_equal_ones() -> None:
    cache = FrameCache()
    message = b"\x00\x02" + "😀".encode()
    first = cache.frame(message)
    assert cache.frame(message) is first  # the same object: framed once
    other = bytes(bytearray(message))  # equal, not the same object
    assert cache.frame(other) == first and cache.frame(other) is not first
    assert cache.frame("中") == server_frame("中")
