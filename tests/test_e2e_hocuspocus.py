"""End to end: the real `@hocuspocus/provider` (4.8.0, under Node) against `collab serve`'s
``/hocuspocus`` door, beside y-websocket peers on the very same documents."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from conftest import ServerProcess, free_port, node_available, require, wait_until
from hocuspocus_node import NodeHocuspocus
from records import hold_fsyncs, text_of
from test_e2e_yjs import UNICODE, server_text, utf16_len
from yjs_node import NodeYjs

from collab import Access, Collab, FileStore, Settings
from collab.server.serve import uvicorn_options

pytestmark = pytest.mark.node


@pytest.fixture
def node() -> Iterator[Callable[[], NodeHocuspocus]]:
    """Start Node processes of Hocuspocus providers: `h = node().provider(url, "doc")`."""
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    processes: list[NodeYjs] = []

    def start() -> NodeHocuspocus:
        processes.append(NodeHocuspocus())
        return processes[-1]  # type: ignore[return-value]

    yield start
    for process in processes:
        process.kill()


@pytest.fixture
def ynode() -> Iterator[NodeYjs]:
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    process = NodeYjs()
    yield process
    process.kill()


def test_a_provider_and_a_y_websocket_peer_share_one_document(
    server: ServerProcess, node, ynode: NodeYjs
) -> None:
    hocus = node().provider(server.ws_url, "shared/doc")
    y = ynode.peer(server.ws_url, "shared/doc")
    hocus.insert(0, UNICODE)
    y.wait_text(UNICODE)
    hocus.wait_saved()
    assert hocus.status()["unsynced"] == 0
    y.insert(utf16_len(UNICODE), " ✍️ from y-websocket")
    hocus.wait_text(UNICODE + " ✍️ from y-websocket")
    assert server_text(server, "shared/doc") == UNICODE + " ✍️ from y-websocket"


def test_one_shared_socket_carries_several_documents(
    server: ServerProcess, node, ynode: NodeYjs
) -> None:
    """`HocuspocusProviderWebsocket` shared by three providers (attach()), each document
    as the y-websocket door and the HTTP API see it."""
    hocus = node()
    socket = hocus.socket(server.ws_url)
    names = ["multi/a", "multi/中文 😀", "multi/e\u0301"]
    providers = [hocus.provider(None, name, socket=socket) for name in names]
    for index, (name, provider) in enumerate(zip(names, providers, strict=True)):
        provider.insert(0, f"{index}: {name} {UNICODE}")
    for index, (name, provider) in enumerate(zip(names, providers, strict=True)):
        expected = f"{index}: {name} {UNICODE}"
        ynode.peer(server.ws_url, name.replace(" ", "%20")).wait_text(expected)
        provider.wait_saved()
        assert server_text(server, name) == expected
    events = hocus.events_of(None, "socket-disconnect")  # type: ignore[arg-type]
    assert events == [], "one socket all along"


def test_a_tiptap_fragment_syncs_beside_the_shared_text(
    server: ServerProcess, node, ynode: NodeYjs
) -> None:
    """ProseMirror's XmlFragment is stored and relayed like the text the other doors show."""
    a = node().provider(server.ws_url, "tiptap")
    b = node().provider(server.ws_url, "tiptap")
    a.paragraph("Hello 👋🏽 wörld")
    a.paragraph("第二段 e\u0301")
    expected = "<paragraph>Hello 👋🏽 wörld</paragraph><paragraph>第二段 e\u0301</paragraph>"
    b.wait_xml(expected)
    y = ynode.peer(server.ws_url, "tiptap")
    y.insert(0, "plain 😀")
    a.wait_text("plain 😀")
    a.wait_saved()
    assert server_text(server, "tiptap") == "plain 😀"
    c = node().provider(server.ws_url, "tiptap")  # a late joiner gets both from the server
    c.wait_xml(expected)
    c.wait_text("plain 😀")


def test_awareness_crosses_the_doors_and_leaves_with_the_provider(
    server: ServerProcess, node, ynode: NodeYjs
) -> None:
    y = ynode.peer(server.ws_url, "aware", awareness={"user": {"name": "y 🐍"}})
    hocus = node().provider(server.ws_url, "aware", awareness={"name": "zoë ✍️"})
    y.wait_until(
        lambda p: any(s.get("user") == {"name": "zoë ✍️"} for s in p.awareness_states().values())
    )
    wait_until(
        lambda: any(s.get("user") == {"name": "y 🐍"} for s in hocus.awareness_states().values()),
        what="the provider sees the y-websocket peer",
    )
    hocus.destroy()
    y.wait_until(
        lambda p: all(s.get("user") != {"name": "zoë ✍️"} for s in p.awareness_states().values())
    )


@contextlib.contextmanager
def served_here(settings: Settings, **hooks: Any) -> Iterator[tuple[str, Collab]]:
    """`collab serve`'s server in a thread of this process (so a test can hold its
    fsyncs, or give hooks); yields the ws:// base URL and the engine."""
    settings = settings.replace(port=free_port())
    engine = Collab(settings=settings, **hooks)
    server = uvicorn.Server(uvicorn.Config(engine.app(), **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the server in a thread")
    try:
        yield f"ws://127.0.0.1:{settings.port}", engine
    finally:
        server.should_exit = True
        thread.join(20)


def test_sync_status_waits_for_the_fsync(tmp_path, monkeypatch, node) -> None:
    """SyncStatus (hasUnsyncedChanges false) only once the change is on disk: while the
    store's fsync is held, the provider still counts it pending, though the server has
    answered later messages on the same socket (a whole other document's sync)."""
    settings = Settings(data_dir=tmp_path / "data", fsync="always", log_level="warning")
    with served_here(settings) as (url, _):
        hocus = node()
        socket = hocus.socket(url)
        a = hocus.provider(None, "held/a", socket=socket)
        a.wait_saved()
        entered, release = hold_fsyncs(monkeypatch)
        try:
            a.insert(0, UNICODE)
            assert entered.wait(10), "the change's batch reached its fsync"
            b = hocus.provider(None, "held/b", socket=socket)  # answered after a's update
            b.wait_saved()
            assert a.status()["unsynced"] == 1, "SyncStatus came before the fsync"
        finally:
            release.set()
        a.wait_saved()
        assert a.text() == UNICODE
    stored = FileStore(tmp_path / "data")
    assert text_of(asyncio.run(stored.load("held/a"))) == UNICODE


def test_stateless_messages_reach_the_hook_and_server_broadcasts_reach_providers(
    tmp_path, node
) -> None:
    heard: list[tuple[str, str, str | None]] = []
    engine: list[Collab] = []

    def on_stateless(name: str, payload: str, access: Access) -> None:
        heard.append((name, payload, access.user))
        engine[0].broadcast_stateless(name, f"echo: {payload}")

    settings = Settings(data_dir=tmp_path / "data", fsync="never", log_level="warning")
    with served_here(settings, on_stateless=on_stateless) as (url, collab):
        engine.append(collab)
        hocus = node()
        socket = hocus.socket(url)
        a = hocus.provider(None, "chat", socket=socket)
        b = node().provider(url, "chat")
        other = hocus.provider(None, "elsewhere", socket=socket)
        a.send_stateless('{"ping": "😀"}')
        for peer in (a, b):
            wait_until(lambda p=peer: p.events("stateless"), what="the broadcast")
            assert [e["payload"] for e in peer.events("stateless")] == ['echo: {"ping": "😀"}']
        assert heard == [("chat", '{"ping": "😀"}', None)]
        other.insert(0, "still here")
        other.wait_saved()
        assert other.events("stateless") == []
