"""End to end: the real `@hocuspocus/provider` (4.8.0, under Node) against `collab serve`'s
``/hocuspocus`` door, beside y-websocket peers on the very same documents."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from conftest import ServerProcess, free_port, node_available, require, wait_until
from hocuspocus_node import NodeHocuspocus
from pycrdt import Doc, XmlFragment
from records import hold_fsyncs, text_of
from test_e2e_exactly_once import Line
from test_e2e_yjs import UNICODE, server_text, utf16_len
from yjs_node import NodeYjs

from collab import Access, Collab, FileStore, Settings
from collab.replay.rebuild import replay_recording
from collab.server.serve import fast_options
from collab.storage.postgres import PostgresStore
from collab.text.client import TextClient

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
    server = uvicorn.Server(uvicorn.Config(engine.app(), **fast_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the server in a thread")
    try:
        yield f"ws://127.0.0.1:{settings.port}", engine
    finally:
        server.should_exit = True
        thread.join(20)


async def stored_text(where: Path | str, name: str) -> str:
    """The text the store (a file store's directory, or a postgresql:// URL) holds for
    `name` (no server using that directory)."""
    store = PostgresStore.from_url(where) if isinstance(where, str) else FileStore(where)
    await store.start()
    try:
        stored = await store.load(name)
    finally:
        await store.close()
    return "" if stored is None else text_of(stored)


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
    assert asyncio.run(stored_text(tmp_path / "data", "held/a")) == UNICODE


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


async def test_a_tiptap_document_beside_the_text_door(server: ServerProcess, node) -> None:
    """TipTap's fragment and the shared text in one document; the text door (the editor
    page's protocol) edits the text while the provider edits both."""
    name = "tiptap-and-textarea"
    hocus = await asyncio.to_thread(lambda: node().provider(server.ws_url, name))
    await asyncio.to_thread(hocus.paragraph, "Título 😀")
    await asyncio.to_thread(hocus.insert, 0, "from tiptap ")
    await asyncio.to_thread(hocus.wait_saved)
    client = TextClient()
    line = await Line.open(f"{server.ws_url}/ot/{name}", client)
    assert client.text == "from tiptap "
    await line.send(client.edit([len(client.text), "and the textarea ✍️ e\u0301\r\n"]))
    await line.synced()
    expected = "from tiptap and the textarea ✍️ e\u0301\r\n"
    await asyncio.to_thread(hocus.wait_text, expected)
    assert await asyncio.to_thread(hocus.xml) == "<paragraph>Título 😀</paragraph>"
    await asyncio.to_thread(hocus.insert, 0, "👋 ")
    await line.read_until(lambda m: client.text == "👋 " + expected)
    await line.close()
    assert server_text(server, name) == "👋 " + expected


def test_a_recording_of_a_hocuspocus_session_replays(start_server, tmp_path, node) -> None:
    recording = tmp_path / "hocus.rec"
    server = start_server("--fsync", "never", "--record", str(recording))
    hocus = node()
    socket = hocus.socket(server.ws_url)
    a = hocus.provider(None, "rec/a", socket=socket)
    b = hocus.provider(None, "rec/b", socket=socket)
    a.insert(0, UNICODE)
    a.paragraph("ProseMirror ✍️")
    b.insert(0, "b 😀")
    a.wait_saved()
    b.wait_saved()
    assert server.stop() == 0
    sessions = replay_recording(recording)
    assert sessions["rec/a"].mirror == UNICODE
    assert sessions["rec/b"].mirror == "b 😀"
    replayed = Doc()
    replayed.apply_update(sessions["rec/a"].state)
    fragment = replayed.get("prosemirror", type=XmlFragment)
    assert str(fragment) == "<paragraph>ProseMirror ✍️</paragraph>"


@pytest.mark.parametrize("store", ["file", "postgresql"])
def test_every_edit_acknowledged_survives_kill_9(
    start_server, tmp_path, node, request, store
) -> None:
    """Append-only typing, the server killed at a random moment each round: the store holds
    at least every chunk typed before the provider last had no unsynced changes (fsync,
    or PostgreSQL's COMMIT)."""
    rounds = random.Random(20)
    data = tmp_path / "data"
    url = request.getfixturevalue("postgres_url") if store == "postgresql" else None
    flags = ["--store", url] if url else []
    for round_ in range(3):
        server = start_server("--fsync", "always", *flags, data_dir=data)
        hocus = node()
        peer = hocus.provider(server.ws_url, f"crash-{round_}")
        typed, saved = "", ""
        kill_at = rounds.randrange(4, 40)
        for index in range(40):
            chunk = f"{index}:{UNICODE[index % len(UNICODE)]} "
            peer.insert(len(typed.encode("utf-16-le")) // 2, chunk)
            typed += chunk
            if index == kill_at:  # this chunk (and maybe more) is still in flight
                server.kill()
                break
            if index % 4 == 3:
                peer.wait_saved()
                saved = typed
        hocus.kill()
        text = asyncio.run(stored_text(url or data, f"crash-{round_}"))
        assert saved and text.startswith(saved), (round_, len(saved), len(text))
        assert typed.startswith(text)


def test_a_forced_sync_is_acknowledged_too(server: ServerProcess, node) -> None:
    """`forceSyncInterval` resets the provider's counter to 1 and sends a step 1: the
    server's step 1 in answer brings the step 2 whose SyncStatus brings it back to 0."""
    peer = node().provider(server.ws_url, "forced", force_sync_ms=100)
    peer.insert(0, UNICODE)
    peer.wait_saved()
    forced = len(
        [e for e in peer.events("outgoingMessage") if e["description"] == "First sync step"]
    )
    wait_until(
        lambda: (
            len(
                [e for e in peer.events("outgoingMessage") if e["description"] == "First sync step"]
            )
            >= forced + 3
        ),
        what="three forced syncs",
    )
    peer.wait_saved()
    assert server_text(server, "forced") == UNICODE


def test_sixty_documents_attached_at_once_on_one_socket(server: ServerProcess, node) -> None:
    """Each provider sends its token, step 1 and awareness before any answer (its awareness
    even before its token, when it is set right after the provider is made): 180 messages
    before the first document is authenticated are within the pre-auth caps (100
    messages), as they are held per document."""
    hocus = node()
    socket = hocus.socket(server.ws_url)
    names = [f"many/{index} 😀" for index in range(60)]
    pending = [
        hocus.send("connect", peer=f"m{i}", socket=socket, doc=name, awareness={"name": str(i)})
        for i, name in enumerate(names)
    ]
    for request in pending:
        request.result()
    for index in range(60):
        hocus.request("wait-synced", 20, peer=f"m{index}", timeoutMs=15000)
    assert hocus.events_of(None, "socket-disconnect") == []  # type: ignore[arg-type]
    refused = [e for i in range(60) for e in hocus.events_of(f"m{i}", "authenticationFailed")]
    assert refused == [], "awareness sent before the token is held, not refused"


def test_providers_resync_after_a_restart_without_duplicates(start_server, node) -> None:
    """A shared socket reconnects by itself when the server goes away (1001 closes the
    socket, so the provider retries; a Close message would end its documents for good)."""
    server = start_server("--fsync", "always")
    hocus = node()
    socket = hocus.socket(server.ws_url)
    a = hocus.provider(None, "restart/a", socket=socket)
    b = hocus.provider(None, "restart/b", socket=socket)
    a.insert(0, UNICODE)
    b.paragraph("TipTap 😀")
    a.wait_saved()
    b.wait_saved()
    assert server.stop() == 0  # graceful: the socket is closed with 1001
    codes = [e["code"] for e in hocus.events_of(None, "socket-disconnect")]  # type: ignore[arg-type]
    assert codes and codes[0] == 1001
    server.start()
    wait_until(lambda: a.status()["synced"] and b.status()["synced"], 20, "both resynced")
    a.insert(0, "again ")
    a.wait_saved()
    assert server_text(server, "restart/a") == "again " + UNICODE
    fresh = node().provider(server.ws_url, "restart/b")
    fresh.wait_xml("<paragraph>TipTap 😀</paragraph>")
    for peer in (a, b):  # the socket's closes (1001, then failed retries), no Close message
        codes = [e["code"] for e in peer.events("close")]
        assert codes[0] == 1001 and 1000 not in codes  # a Close message shows as 1000


def test_two_providers_of_one_document_on_one_socket(server: ServerProcess, node) -> None:
    """`sessionAwareness: true` routes by name + NUL + session id: two providers of one
    document share a socket, each its own peer of that document."""
    hocus = node()
    socket = hocus.socket(server.ws_url)
    a = hocus.provider(None, "twice", socket=socket, session_awareness=True)
    b = hocus.provider(None, "twice", socket=socket, session_awareness=True)
    a.insert(0, UNICODE)
    b.wait_text(UNICODE)
    b.insert(0, "b: ")
    a.wait_text("b: " + UNICODE)
    a.wait_saved()
    b.wait_saved()
    assert server_text(server, "twice") == "b: " + UNICODE
