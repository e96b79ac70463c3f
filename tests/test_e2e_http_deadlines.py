"""HTTP clients that send or read too slowly, through real sockets against `collab serve`.

A request's body has the head's deadline, whether it is dribbled before or after the
response; big responses share a cap and have a send deadline. (Issue 18, findings 6, 11.)
"""

from __future__ import annotations

import socket
import time

from raw_ws import raw_connect


def dribble_until_hung_up(sock: socket.socket, seconds: float) -> bool:
    """Send a byte of body every 0.1 s for up to `seconds`, reading whatever comes;
    True once the server hangs up."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"x")
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def read_response_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_a_body_dribbled_after_the_response_is_closed(start_server) -> None:
    server = start_server("--fsync", "never", "--head-timeout", "1")
    sock = raw_connect(server.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nxx")
    assert read_response_head(sock).startswith(b"HTTP/1.1 200")
    assert dribble_until_hung_up(sock, 8), "a dribbled body kept the connection open"
    assert "request body not received in 1 s" in server.log()
    sock.close()
