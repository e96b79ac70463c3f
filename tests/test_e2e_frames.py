"""Every frame costs its sender, through real sockets against a `collab serve` subprocess.

Pings, pongs and continuation frames count against the message rate and the budget before
a valid message; pongs count against the peer's send budget; past our close, pings go
unanswered. (Issue 18, findings 4 and 5.)
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from conftest import ServerProcess
from pyclient import url_name
from pycrdt import Doc
from raw_ws import client_frame, raw_websocket, read_all
from test_e2e_bounded import rss_bytes

from collab.yjs import protocol

MiB = 1024 * 1024
PING = 0x9
PONG = 0xA
CLOSE = 0x8


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """The server's whole frames (unmasked) in what it sent after the 101, as (opcode,
    payload); a frame cut at the end of `data` is left out (read on)."""
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        if i + n > len(data):
            break  # the rest of this frame has not arrived yet
        frames.append((opcode, data[i : i + n]))
        i += n
    return frames


def close_in(frames: list[tuple[int, bytes]]) -> tuple[int, str]:
    payload = next((p for opcode, p in frames if opcode == CLOSE), None)
    assert payload is not None, f"no close frame in {len(frames)} frames"
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def flood(sock: socket.socket, frame: bytes, count: int, batch: int = 1000) -> int:
    """Send `frame` up to `count` times without reading; stop when the server stops taking
    them (it closed the connection). Returns how many went out."""
    sock.settimeout(2)
    chunk, sent = frame * batch, 0
    try:
        while sent < count:
            sock.sendall(chunk)
            sent += batch
    except (TimeoutError, ConnectionResetError, BrokenPipeError):
        pass
    return sent


def read_through_close(sock: socket.socket, timeout: float = 10) -> bytes:
    """Read until the server's close frame is in (or it hangs up, or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
            if b"\x88" in chunk and any(op == CLOSE for op, _ in frames_of(data)):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def read_until(sock: socket.socket, prefix: bytes) -> bytes:
    """Read until a message starting with `prefix` came (its answer shows the server reads
    this peer); returns everything read, to be parsed with what follows."""
    sock.settimeout(10)
    data = b""
    while not any(p.startswith(prefix) for op, p in frames_of(data) if op in (0x1, 0x2)):
        chunk = sock.recv(65536)
        assert chunk, f"closed before {prefix!r}: {data!r}"
        data += chunk
    return data


def joined_non_reader(server: ServerProcess, path: str) -> tuple[socket.socket, bytes]:
    """A Yjs peer that sent a valid first message (sync step 1), saw the answer (sync step
    2), and from then on never reads; with what it read."""
    sock = raw_websocket(server.port, path, receive_buffer=4096)
    sock.sendall(client_frame(protocol.encode_sync_step1(Doc().get_state())))
    return sock, read_until(sock, b"\x00\x01")


def test_pings_count_against_the_message_rate(start_server) -> None:
    server = start_server("--fsync", "never", "--close-timeout", "30")
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    sock, head = joined_non_reader(server, "/yjs/" + url_name("pings-🏓"))
    started = time.monotonic()
    flood(sock, client_frame(b"p" * 125, opcode=PING), 100_000)
    elapsed = time.monotonic() - started
    growth = rss_bytes(server.process.pid) - before
    frames = frames_of(head + read_through_close(sock))
    code, reason = close_in(frames)
    assert code == 1008 and "messages per second" in reason
    pongs = sum(1 for opcode, _ in frames if opcode == PONG)
    # The burst (1000), the rate (200/s) while it lasted, 100 before the server read.
    assert pongs <= 1_100 + 200 * elapsed + 50, f"{pongs} pongs in {elapsed:.1f} s"
    assert growth < 32 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
    sock.close()


def test_unread_pongs_count_against_the_send_budget(start_server) -> None:
    budget = 256 * 1024
    server = start_server(
        "--fsync", "never", "--close-timeout", "10", "--send-queue-bytes", str(budget),
        "--max-messages-per-second", "1000000", "--message-burst", "1000000",
    )  # fmt: skip
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    sock, head = joined_non_reader(server, "/yjs/pongs")
    flood(sock, client_frame(b"p" * 125, opcode=PING), 100_000)  # 13 MB of pongs
    growth = rss_bytes(server.process.pid) - before
    frames = frames_of(head + read_through_close(sock))
    code, reason = close_in(frames)
    assert code == 4001 and "unread pongs" in reason
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as response:
        assert b'collab_refusals_total{reason="unread-pongs"} 1.0' in response.read()
    pong_bytes = sum(len(p) + 2 for opcode, p in frames if opcode == PONG)
    # The budget, plus what the kernel's socket buffers took before the server saw it.
    assert pong_bytes < budget + 8 * MiB, f"{pong_bytes / MiB:.0f} MiB of pongs"
    assert growth < 32 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
    sock.close()


def test_pings_after_a_refused_token_go_unanswered(start_server) -> None:
    server = start_server(
        "--fsync", "never", "--close-timeout", "3", "--auth-secret", "s3cret-" * 6
    )
    assert server.process is not None
    before = rss_bytes(server.process.pid)
    sock = raw_websocket(server.port, "/yjs/locked", receive_buffer=4096)
    flood(sock, client_frame(b"p" * 125, opcode=PING), 100_000)
    growth = rss_bytes(server.process.pid) - before
    frames = frames_of(read_all(sock, timeout=10))  # all of it, till it hangs up
    assert close_in(frames)[0] == 4401
    after_close = frames[[opcode for opcode, _ in frames].index(CLOSE) + 1 :]
    assert after_close == []  # no pong after our close
    assert growth < 32 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
    sock.close()


def test_a_message_that_never_ends_is_closed(start_server) -> None:
    server = start_server("--fsync", "never", "--close-timeout", "2")
    sock, head = joined_non_reader(server, "/yjs/endless")
    sock.sendall(client_frame("début ✍️".encode(), opcode=0x2, fin=False))
    flood(sock, client_frame(b"", opcode=0x0, fin=False), 1_000_000)
    code, reason = close_in(frames_of(head + read_through_close(sock)))
    assert code == 1008 and "messages per second" in reason
    sock.close()


def test_continuation_frames_count_before_a_valid_message(start_server) -> None:
    server = start_server("--fsync", "never", "--close-timeout", "2")
    sock = raw_websocket(server.port, "/ot/endless", receive_buffer=4096)
    op = {"type": "op", "seq": 1, "rev": 0, "op": ["✍️ 中文"]}
    sock.sendall(client_frame(json.dumps(op).encode(), opcode=0x1))
    head = read_until(sock, b'{"type": "error"')  # not joined: the server reads this peer
    sock.sendall(client_frame(b'{"type": "hel', opcode=0x1, fin=False))
    flood(sock, client_frame(b"", opcode=0x0, fin=False), 100_000)
    code, reason = close_in(frames_of(head + read_through_close(sock)))
    assert code == 1008 and "before a valid one" in reason
    sock.close()


def test_frames_before_the_server_reads_are_capped(start_server) -> None:
    """Pings and continuation frames sent before the server reads the peer (it is still
    joining) are capped too: at most 100 (the budget before a valid message)."""
    server = start_server("--fsync", "never", "--close-timeout", "2")
    for path, frame in [
        ("/yjs/early", client_frame(b"p" * 125, opcode=PING)),
        ("/ot/early", client_frame(b"", opcode=0x0, fin=False)),
    ]:
        sock = raw_websocket(server.port, path, receive_buffer=4096)
        if path.startswith("/ot"):
            sock.sendall(client_frame(b'{"type": "hel', opcode=0x1, fin=False))
        flood(sock, frame, 100_000)
        frames = frames_of(read_through_close(sock))
        assert close_in(frames)[0] == 1008
        assert sum(1 for opcode, _ in frames if opcode == PONG) <= 101
        sock.close()
