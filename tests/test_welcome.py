"""A text peer's welcome with a long text: encoded part by part, sent as fragments of one
WebSocket text message, received as the same message (issue 19: no single document's
work holds the event loop; `json.dumps` of 64 MiB of text held it ~0.6 s)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from conftest import ServerProcess, both_edges
from hypothesis import given
from hypothesis import strategies as st
from pyclient import YClient
from raw_ws import client_frame, raw_websocket
from websockets.asyncio.client import connect

from collab.metrics import Metrics
from collab.server.frames import fragment_frame, server_frame
from collab.session.welcome import PART_CHARS, LongMessage, welcome_message
from collab.text.chunks import TextChunks
from collab.web.connection import SEND_EXTENSION, StarletteConnection

PIECES = ["😀", "👨‍👩‍👧", "中文", "e\u0301", "\r\n", '"\\', "\t\x01", "a"]
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=40).map("".join)
fields = st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3)


@given(fields, texts, st.integers(min_value=1, max_value=9))
def test_the_parts_are_the_welcome_json(fields: dict[str, Any], text: str, part: int) -> None:
    fields.pop("text", None)
    message = LongMessage(dict(fields), "text", text, part)
    parts = list(message)
    assert json.loads("".join(p for p, _ in parts)) == {**fields, "text": text}
    assert [last for _, last in parts] == [False] * (len(parts) - 1) + [True]
    assert len(parts) == max(1, -(-len(text) // part))
    assert list(message) == parts, "encoded afresh each time, the same"


@given(texts, st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=9))
def test_the_parts_of_a_text_in_pieces_are_the_json_too(text: str, piece: int, part: int) -> None:
    """A followed text (`TextChunks`) is sent from its pieces, never joined whole."""
    chunks = TextChunks(text, piece=piece, group=2)
    parts = list(LongMessage({"type": "welcome"}, "text", chunks, part))
    assert json.loads("".join(p for p, _ in parts)) == {"type": "welcome", "text": text}
    assert [last for _, last in parts] == [False] * (len(parts) - 1) + [True]
    middle = [json.loads(f'"{p}"') for p, _ in parts[1:-1]]
    assert all(part <= len(m) < part + piece for m in middle), "pieces gathered to a part"


def test_a_short_welcome_is_one_json_string() -> None:
    fields = {"type": "welcome", "rev": 3}
    assert welcome_message(dict(fields), "hé 😀") == json.dumps(
        {**fields, "text": "hé 😀"}, ensure_ascii=False
    )
    assert isinstance(welcome_message(dict(fields), "x" * (PART_CHARS + 1)), LongMessage)
    assert json.loads(welcome_message(dict(fields), None)) == fields  # type: ignore[arg-type]


def test_fragment_frames_carry_fin_on_the_last_only() -> None:
    assert fragment_frame(b"ab", True, False)[:2] == bytes([0x01, 2])
    assert fragment_frame(b"ab", False, False)[:2] == bytes([0x00, 2])
    assert fragment_frame(b"ab", False, True)[:2] == bytes([0x80, 2])
    big = b"x" * 70_000
    assert fragment_frame(big, True, True) == server_frame(big.decode())


async def test_each_part_is_sent_on_a_loop_turn_of_its_own() -> None:
    """A socket that takes every part at once (loopback) never makes the sender wait: the
    parts still go one per turn of the event loop, so other documents run between them."""
    turns = 0
    at_part: list[int] = []

    async def send_fragment(data: bytes, first: bool, last: bool) -> None:
        at_part.append(turns)

    async def other_document() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    extension = {"send_now": None, "buffered": None, "send_fragment": send_fragment}
    socket = SimpleNamespace(scope={"extensions": {SEND_EXTENSION: extension}})
    connection = StarletteConnection(socket, Metrics(), "text")  # type: ignore[arg-type]
    other = asyncio.create_task(other_document())
    await asyncio.sleep(0)
    await connection.send_long(LongMessage({}, "text", "中文 😀\r\n" * 100, part_chars=50))
    other.cancel()
    assert len(at_part) == 12  # 600 characters, 50 a part
    assert all(a < b for a, b in itertools.pairwise(at_part)), at_part


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame off a raw socket: (first byte, payload)."""
    head = recv_exactly(sock, 2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(recv_exactly(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(recv_exactly(sock, 8), "big")
    return head[0], recv_exactly(sock, length)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return bytes(data)


def read_fragments(sock: socket.socket, opcode: int) -> tuple[bytes, int]:
    """One message of `opcode` (its fragments joined) and how many frames it came in."""
    frames: list[bytes] = []
    while True:
        first, payload = read_frame(sock)
        if first & 0x0F in (0x9, 0xA):  # a ping or pong between fragments: allowed
            continue
        assert first & 0x0F == (opcode if not frames else 0x0), hex(first)
        frames.append(payload)
        if first & 0x80:
            return b"".join(frames), len(frames)


def read_message(sock: socket.socket) -> tuple[str, int]:
    """One text message (its fragments joined) and how many frames it came in."""
    data, frames = read_fragments(sock, 0x1)
    return data.decode(), frames


def long_text() -> str:
    """Past PART_CHARS characters, with every kind of character a part may end on."""
    line = 'Ünïcödé 😀 👨‍👩‍👧 中文字 e\u0301 "quoted" back\\slash\r\n'
    return line * (PART_CHARS // len(line) * 2 + 3)


async def seed(server: ServerProcess, name: str, text: str) -> None:
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as writer:
        await writer.synced()
        writer.append(text)
        async with await YClient.connect(f"{server.ws_url}/yjs/{name}") as reader:
            await reader.wait_text(text, timeout=30)


def hello(sock: socket.socket, secret: str, rev: int | None = None) -> None:
    message = {"type": "hello", "secret": secret, "rev": rev, "user": {"name": "Zoë 中"}}
    sock.sendall(client_frame(json.dumps(message).encode(), opcode=0x1))


@both_edges
async def test_a_long_text_arrives_whole_in_fragments_then_what_followed(
    server: ServerProcess, edge: str
) -> None:
    """The welcome of a long text comes as fragments of one message (one frame through a
    server without the fragment extension), exact; an edit made while it is on its way
    comes after it, as a message of its own."""
    text = long_text()
    await seed(server, "big", text)
    sock = raw_websocket(server.port, "/ot/big", receive_buffer=64 * 1024)
    try:
        hello(sock, "s" * 32)
        async with await YClient.connect(f"{server.ws_url}/yjs/big") as writer:
            await writer.synced()
            writer.insert(0, "前")  # while the welcome waits on this peer's reading
            async with await YClient.connect(f"{server.ws_url}/yjs/big") as reader:
                await reader.wait_text("前" + text, timeout=30)  # committed
            welcome, frames = read_message(sock)
            following = next_op(sock)
    finally:
        sock.close()
    body = json.loads(welcome)
    assert body["type"] == "welcome"
    assert body["text"] == text
    assert frames == 1 if edge == "public" else frames > 1
    assert following["rev"] == body["rev"] + 1
    assert following["op"] == ["前", len(text)]


def next_op(sock: socket.socket) -> dict[str, Any]:
    """The next op message (presence may come first)."""
    for _ in range(20):
        message = json.loads(read_message(sock)[0])
        if message["type"] == "op":
            return message
    raise AssertionError("no op in 20 messages")


async def test_a_short_welcome_is_still_one_frame(server: ServerProcess) -> None:
    await seed(server, "small", "hi 😀\r\n")
    sock = raw_websocket(server.port, "/ot/small")
    try:
        hello(sock, "t" * 32)
        welcome, frames = read_message(sock)
    finally:
        sock.close()
    assert frames == 1
    assert json.loads(welcome)["text"] == "hi 😀\r\n"


async def test_a_long_welcome_is_whole_through_a_compressed_connection(
    start_server: Callable[..., ServerProcess],
) -> None:
    """With --ws-compression, websockets compresses the fragments of the one message."""
    server = start_server("--fsync", "never", "--ws-compression", "true")
    text = long_text()
    await seed(server, "deflated", text)
    async with connect(f"{server.ws_url}/ot/deflated", max_size=None) as ws:
        assert ws.protocol.extensions, "permessage-deflate was negotiated"
        secret = "d" * 32
        await ws.send(json.dumps({"type": "hello", "secret": secret, "user": {"name": "Zoë"}}))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert welcome["type"] == "welcome"
    assert welcome["text"] == text
