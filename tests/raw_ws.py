"""A WebSocket client by hand, over a plain socket: for tests that must send what no client
library would (frames cut short, bytes after a close, a peer that never reads) or read the
server's exact bytes (its close frame, an HTTP refusal)."""

from __future__ import annotations

import base64
import os
import socket


def upgrade_request(port: int, path: str) -> bytes:
    """The HTTP request that asks for a WebSocket at `path`."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def raw_connect(port: int) -> socket.socket:
    """A TCP connection to the server that has sent nothing yet."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def raw_websocket(port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A TCP socket that completed a WebSocket handshake (101) and answers nothing by itself.

    `receive_buffer` shrinks its kernel receive buffer (a peer that never reads fills it
    at once)."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request(port, path))
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed during the handshake: {response!r}"
        response += byte
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def client_frame(payload: bytes, opcode: int = 0x2, fin: bool = True) -> bytes:
    """One frame as a client must send it (masked), of any length; binary by default."""
    mask, n = os.urandom(4), len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def close_frame(code: int = 1000, reason: bytes = b"") -> bytes:
    return client_frame(code.to_bytes(2, "big") + reason, opcode=0x8)


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it hangs up (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def hung_up(sock: socket.socket, timeout: float) -> bool:
    """Read (without ever answering) until the server hangs up; False on timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


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
