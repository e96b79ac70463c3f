"""Drive real Hocuspocus providers (`@hocuspocus/provider` under Node) from the tests.

One `node tests/node/hocusclient.mjs` process (the plumbing of `yjs_node.NodeYjs`) holds
shared sockets and providers:

    with NodeHocuspocus() as node:
        a = node.provider(server.ws_url, "doc")
        a.insert(0, "héllo 😀")
        a.wait_saved()  # SyncStatus: the server has it on disk
"""

from __future__ import annotations

import itertools
from typing import Any

from yjs_node import NodeYjs


class NodeHocuspocus(NodeYjs):
    """One Node process holding Hocuspocus providers and shared sockets."""

    def __init__(self) -> None:
        super().__init__("hocusclient.mjs")
        self._sockets = itertools.count(1)

    def socket(self, ws_url: str) -> str:
        """A shared `HocuspocusProviderWebsocket`; pass its name as `socket=`."""
        name = f"s{next(self._sockets)}"
        self.request("socket", socket=name, url=f"{ws_url}/hocuspocus")
        return name

    def provider(
        self,
        ws_url: str | None,
        doc: str,
        *,
        socket: str | None = None,
        token: str | None = None,
        awareness: dict[str, Any] | None = None,
        force_sync_ms: int | None = None,
        session_awareness: bool = False,
        wait_synced: bool = True,
    ) -> HocusPeer:
        """A provider of document `doc`: on its own socket, or attached to `socket`;
        `force_sync_ms`: its `forceSyncInterval` (a sync step 1 that often);
        `session_awareness`: its messages routed by name + NUL + its session id."""
        name = f"h{next(self._names)}"
        url = None if ws_url is None else f"{ws_url}/hocuspocus"
        self.request(
            "connect",
            peer=name,
            url=url,
            socket=socket,
            doc=doc,
            token=token,
            awareness=awareness,
            forceSyncMs=force_sync_ms or False,
            sessionAwareness=session_awareness,
        )
        peer = HocusPeer(self, name)
        if wait_synced:
            peer.wait_synced()
        return peer


class HocusPeer:
    """One HocuspocusProvider and its Y.Doc; text positions are UTF-16 units."""

    def __init__(self, node: NodeHocuspocus, name: str) -> None:
        self.node = node
        self.name = name

    def _call(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        return self.node.request(cmd, timeout, peer=self.name, **args)

    def insert(self, index: int, text: str) -> None:
        self._call("insert", index=index, text=text)

    def paragraph(self, text: str) -> None:
        """Append a TipTap-style paragraph to the XmlFragment "prosemirror"."""
        self._call("paragraph", text=text)

    def text(self) -> str:
        return self._call("text")["text"]

    def xml(self) -> str:
        return self._call("xml")["xml"]

    def status(self) -> dict[str, Any]:
        """synced, unsynced (the pending-change counter), authenticated, scope."""
        return self._call("status")

    def wait_synced(self, timeout: float = 10.0) -> None:
        self._call("wait-synced", timeout + 5, timeoutMs=int(timeout * 1000))

    def wait_saved(self, timeout: float = 10.0) -> None:
        """Until `hasUnsyncedChanges` is false: the server said SyncStatus for everything."""
        self._call("wait-saved", timeout + 5, timeoutMs=int(timeout * 1000))

    def wait_text(self, expected: str, timeout: float = 10.0) -> None:
        self._call("wait-text", timeout + 5, text=expected, timeoutMs=int(timeout * 1000))

    def wait_xml(self, expected: str, timeout: float = 10.0) -> None:
        self._call("wait-xml", timeout + 5, xml=expected, timeoutMs=int(timeout * 1000))

    def awareness_states(self) -> dict[int, Any]:
        return {int(k): v for k, v in self._call("awareness-states")["states"].items()}

    def send_stateless(self, payload: str) -> None:
        self._call("stateless", payload=payload)

    def destroy(self) -> None:
        self._call("destroy")

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.node.events_of(self.name, kind)
