"""Red team of the upgrade fast path (collab/server/connections.py): a whole upgrade head in
a connection's first read skips h11, so websockets' parser is the only one to read it. It
must not let through a head h11 refuses (h11's path answers 400): two Host headers (a
proxy that routes on the last one while the Host check reads the first), control
characters in the request target (h11 takes visible ASCII only)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ServerProcess, both_edges
from test_e2e_upgrade import UPGRADE, VERSION, answer

from collab.server.connections import websocket_upgrade_head


def request(target: str, *lines: str) -> bytes:
    text = "\r\n".join([f"GET {target} HTTP/1.1", *lines, *UPGRADE, VERSION])
    return (text + "\r\n\r\n").encode("latin-1")


HOST = "Host: 127.0.0.1"
REFUSED_BY_H11 = {
    "two Host headers": request("/yjs/doc", HOST, "Host: evil.example"),
    "two Host headers, one empty": request("/yjs/doc", HOST, "Host:"),
    "a control character in the target": request("/yjs/a\x01b", HOST),
    "a tab in the target": request("/yjs/a\tb", HOST),
    "DEL in the target": request("/yjs/a\x7fb", HOST),
}


@both_edges
@pytest.mark.parametrize("case", sorted(REFUSED_BY_H11))
def test_heads_h11_refuses_are_refused_in_one_read_too(start_server: Any, case: str) -> None:
    server: ServerProcess = start_server("--fsync", "never")
    response = answer(server.port, REFUSED_BY_H11[case])
    assert response.startswith(b"HTTP/1.1 400"), response
    assert server.process is not None and server.process.poll() is None  # still serving
    whole = answer(server.port, request("/yjs/doc", f"Host: 127.0.0.1:{server.port}"))
    assert whole.startswith(b"HTTP/1.1 101"), whole  # and an honest head still upgrades


def test_the_fast_path_leaves_those_heads_to_h11() -> None:
    for case, head in REFUSED_BY_H11.items():
        assert websocket_upgrade_head(head) is None, case
    no_host = request("/yjs/doc")
    assert websocket_upgrade_head(no_host) is None  # h11: 400, as before
    http_10 = request("/yjs/doc", HOST).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    assert websocket_upgrade_head(http_10) is None  # h11's path upgrades it, as before
    assert websocket_upgrade_head(request("/yjs/doc?token=a%20b", HOST)) is not None
