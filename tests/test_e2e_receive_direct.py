"""Messages handed from uvicorn's parser straight to the app (collab.server.serve receive_directly),
through real sockets against a `collab serve` subprocess."""

from __future__ import annotations

import json

import httpx
from conftest import ServerProcess, wait_until
from ot_ids import secret_for
from pyclient import url_name
from raw_ws import client_frame, close_frame, close_of, raw_websocket, read_all

TEXT = "a😀b👩🏾‍💻c中文e\u0301\r\nz"


def frame(payload: bytes) -> bytes:
    """A text frame."""
    return client_frame(payload, opcode=0x1)


def text(obj: object) -> bytes:
    return frame(json.dumps(obj, ensure_ascii=False).encode())


def doc_text(server: ServerProcess, name: str) -> str | None:
    r = httpx.get(f"{server.http_url}/api/docs/{url_name(name)}/text", trust_env=False)
    return r.text if r.status_code == 200 else None


def hello(who: str = "raw") -> bytes:
    return text({"type": "hello", "secret": secret_for(who), "rev": None})


PIECES = ["a", "😀", "👩🏾‍💻", "中文", "e\u0301", "\r\n", "🇫🇷", "z"]


def test_messages_sent_with_the_first_arrive_in_order(start_server) -> None:
    """hello and every op in one write, at once after the 101: some reach the server before
    the app hands it its receiver (queued), the rest after; each op is based on the
    revision the one before it makes, so any reordering is refused or misplaced."""
    server = start_server("--fsync", "never")
    name = "order/中文 😀"
    sock = raw_websocket(server.port, f"/ot/{url_name(name)}")
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
    sock = raw_websocket(server.port, f"/ot/{url_name(name)}")
    sock.sendall(hello())
    received = b""
    while b'"welcome"' not in received:
        chunk = sock.recv(65536)
        assert chunk, received  # the server hung up before its welcome
        received += chunk
    edit = text({"type": "op", "seq": 1, "rev": 0, "op": ["👩🏾‍💻\r\n"]})
    sock.sendall(edit + frame("é".encode()[:1] + b"\xff") + close_frame(1000, b"bye"))
    assert close_of(read_all(sock)) == (1000, b"bye")
    wait_until(lambda: doc_text(server, name) == "👩🏾‍💻\r\n", 10, "the edit before it")
    assert "Fatal error" not in server.log() and "Traceback" not in server.log()


def test_invalid_utf8_closes_with_1007(start_server) -> None:
    server = start_server("--fsync", "never")
    sock = raw_websocket(server.port, "/ot/utf8-alone")
    sock.sendall(hello() + frame(b"ok \xf0\x9f\x98"))  # an emoji cut short
    assert close_of(read_all(sock)) == (1007, b"invalid UTF-8")
    assert "Traceback" not in server.log()
