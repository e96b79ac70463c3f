"""Messages handed from uvicorn's parser straight to the app (collab.serving receive_directly),
through real sockets against a `collab serve` subprocess."""

from __future__ import annotations

import base64
import json
import os
import socket

import httpx
from conftest import ServerProcess, wait_until
from ot_ids import secret_for
from pyclient import url_name

TEXT = "a😀b👩🏾‍💻c中文e\u0301\r\nz"


def frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    mask, n = os.urandom(4), len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(obj: object) -> bytes:
    return frame(json.dumps(obj, ensure_ascii=False).encode())


def close_frame(code: int = 1000, reason: bytes = b"") -> bytes:
    return frame(code.to_bytes(2, "big") + reason, opcode=0x8)


def upgrade(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def close_of(data: bytes) -> tuple[int, bytes] | None:
    """The server's close frame (unmasked) in what it sent after the 101, if any."""
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else data
    i = 0
    while i + 2 <= len(body):
        opcode, n = body[i] & 0x0F, body[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(body[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(body[i : i + 8], "big"), i + 8
        payload, i = body[i : i + n], i + n
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big"), payload[2:]
    return None


def doc_text(server: ServerProcess, name: str) -> str | None:
    r = httpx.get(f"{server.http_url}/api/docs/{url_name(name)}/text", trust_env=False)
    return r.text if r.status_code == 200 else None


def opened(port: int, path: str) -> socket.socket:
    """A raw WebSocket, its upgrade answered (101)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    sock.sendall(upgrade(port, path))
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, response
        response += byte
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def hello(who: str = "raw") -> bytes:
    return text({"type": "hello", "secret": secret_for(who), "rev": None})


PIECES = ["a", "😀", "👩🏾‍💻", "中文", "e\u0301", "\r\n", "🇫🇷", "z"]


def test_messages_sent_with_the_first_arrive_in_order(start_server) -> None:
    """hello and every op in one write, at once after the 101: some reach the server before
    the app hands it its receiver (queued), the rest after; each op is based on the
    revision the one before it makes, so any reordering is refused or misplaced."""
    server = start_server("--fsync", "never")
    name = "order/中文 😀"
    sock = opened(server.port, f"/ot/{url_name(name)}")
    messages, done = [hello()], ""
    for seq, piece in enumerate(PIECES, 1):
        op: list[int | str] = [len(done), piece] if done else [piece]
        messages.append(text({"type": "op", "seq": seq, "rev": seq - 1, "op": op}))
        done += piece
    sock.sendall(b"".join(messages))
    received = b""
    while f'"seq": {len(PIECES)}'.encode() not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert b'"error"' not in received, received
    assert doc_text(server, name) == done
    sock.sendall(close_frame())
    assert close_of(read_all(sock)) == (1000, b"")


def test_invalid_utf8_sent_with_a_close_is_dropped_and_the_close_answered(start_server) -> None:
    """A text message that is not UTF-8, then the peer's close, in one read: the connection
    is already closing when the message is decoded, so no 1007 can be sent. The message is
    dropped and the close answered, not an exception out of data_received (asyncio logs it
    as a fatal error with its traceback, once per connection, and drops the socket)."""
    server = start_server("--fsync", "never")
    name = "utf8/中文"
    sock = opened(server.port, f"/ot/{url_name(name)}")
    sock.sendall(hello())
    received = b""
    while b'"welcome"' not in received:
        received += sock.recv(65536)
    edit = text({"type": "op", "seq": 1, "rev": 0, "op": ["👩🏾‍💻\r\n"]})
    sock.sendall(edit + frame("é".encode()[:1] + b"\xff") + close_frame(1000, b"bye"))
    assert close_of(read_all(sock)) == (1000, b"bye")
    wait_until(lambda: doc_text(server, name) == "👩🏾‍💻\r\n", 10, "the edit before it")
    assert "Fatal error" not in server.log() and "Traceback" not in server.log()


def test_invalid_utf8_closes_with_1007(start_server) -> None:
    server = start_server("--fsync", "never")
    sock = opened(server.port, "/ot/utf8-alone")
    sock.sendall(hello() + frame(b"ok \xf0\x9f\x98"))  # an emoji cut short
    assert close_of(read_all(sock)) == (1007, b"invalid UTF-8")
    assert "Traceback" not in server.log()
