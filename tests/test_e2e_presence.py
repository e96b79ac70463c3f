"""End to end: carets across the doors, real Yjs clients (Node) and a text client.

The Yjs side resolves cursors exactly as y-codemirror does (UTF-16 indices); the text
client speaks the JSON protocol over a real socket (code points).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from conftest import ServerProcess, node_available, require, wait_until
from websockets.sync.client import ClientConnection, connect
from yjs_node import NodeYjs

from collab.session.presence import awareness_id_for
from collab.text import positions

pytestmark = pytest.mark.node

TEXT = "a😀b 👨‍👩‍👧 🇫🇷 👍🏽 中文 e\u0301\r\nz"


class TextTab:
    """A text-protocol client on a real socket; keeps every message it was sent."""

    def __init__(self, server: ServerProcess, name: str, who: str) -> None:
        self._connection = connect(f"{server.ws_url}/ot/{name}")
        self.ws: ClientConnection = self._connection.__enter__()
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        secret = f"secret-of-{who}-0123456789"
        self.send({"type": "hello", "secret": secret, "rev": None, "user": {"name": who}})
        threading.Thread(target=self._read, daemon=True).start()
        welcome = wait_until(lambda: self.of_type("welcome"), 10, "welcome")
        self.client: str = welcome[0]["client"]  # type: ignore[index]

    def _read(self) -> None:
        try:
            for data in self.ws:
                with self.lock:
                    self.messages.append(json.loads(data))
        except Exception:  # closed
            pass

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["type"] == kind]

    def rev(self) -> int:
        with self.lock:
            revs = [m["rev"] for m in self.messages if m["type"] in ("welcome", "op")]
        return max(revs)

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


@pytest.fixture
def node() -> Any:
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    with NodeYjs() as node:
        yield node


def test_carets_cross_the_doors_and_stay_put_as_others_type(
    server: ServerProcess, node: NodeYjs
) -> None:
    a = node.peer(server.ws_url, "carets")
    b = node.peer(server.ws_url, "carets")
    a.insert(0, TEXT)
    b.wait_text(TEXT)
    tab = TextTab(server, "carets", "Ada 😀")
    wait_until(lambda: tab.rev() >= 1, 10, "the tab has the text")
    anchor, head = TEXT.index("🇫🇷"), TEXT.index("中")
    tab.send({"type": "presence", "rev": tab.rev(), "selection": [[anchor, head]]})
    me = awareness_id_for(tab.client)

    def b_sees(text: str, a_cp: int, h_cp: int) -> bool:
        cursor = b.cursors().get(me)
        expected = {
            "anchor": positions.cp_to_utf16(text, a_cp),
            "head": positions.cp_to_utf16(text, h_cp),
        }
        return cursor is not None and {k: cursor[k] for k in expected} == expected

    wait_until(lambda: b_sees(TEXT, anchor, head), 10, "B sees the tab's caret")
    assert b.cursors()[me]["user"]["name"] == "Ada 😀"
    # Concurrent inserts before the caret, by both Yjs peers (one ZWJ family, one flag...).
    a.insert(0, "👨‍👩‍👧🇫🇷")
    b.insert(0, "中e\u0301👍🏽")
    final = wait_until(lambda: (t := a.text()) == b.text() and len(t) > len(TEXT) and t, 10)
    assert isinstance(final, str)
    shift = len(final) - len(TEXT)
    wait_until(lambda: b_sees(final, anchor + shift, head + shift), 10, "the caret stays put")
    assert a.cursors()[me]["anchor"] == positions.cp_to_utf16(final, anchor + shift)

    # A Yjs peer's caret reaches the tab in code points, with its name and colour.
    a_anchor, a_head = final.index("e\u0301"), final.index("z")
    a.set_cursor(
        positions.cp_to_utf16(final, a_anchor),
        positions.cp_to_utf16(final, a_head),
        user={"name": "Zoë 中", "color": "#00aa00"},
    )

    def tab_sees() -> dict[str, Any] | None:
        shown = [p for p in tab.of_type("presence") if p["client"] == f"yjs:{a.client_id}"]
        return shown[-1] if shown and shown[-1].get("selection") else None

    shown = wait_until(tab_sees, 10, "the tab sees A's caret")
    assert shown["selection"] == [[a_anchor, a_head]]  # type: ignore[index]
    assert shown["user"] == {"name": "Zoë 中", "color": "#00aa00"}  # type: ignore[index]

    # Leaving removes the tab's state from every Yjs peer.
    tab.close()
    for peer in (a, b):
        peer.wait_until(lambda p: me not in p.awareness_states(), 10)


def test_a_staying_text_client_is_renewed_for_yjs_peers(start_server: Any, node: NodeYjs) -> None:
    server = start_server("--awareness-renew-seconds", "0.3")
    y = node.peer(server.ws_url, "renewed")
    tab = TextTab(server, "renewed", "Ada")
    me = awareness_id_for(tab.client)
    y.wait_until(lambda p: me in p.awareness_states(), 10)
    clocks = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        clocks.append(y.node.request("awareness-clock", peer=y.name, client=me)["clock"])
        time.sleep(0.1)
    assert clocks[-1] >= clocks[0] + 3  # renewed about every 0.3 s with no change at all
    assert me in y.awareness_states()
    tab.close()
    y.wait_until(lambda p: me not in p.awareness_states(), 10)
