"""Bad input gets a clear error and loses nothing (a real `collab serve` subprocess).

For each hostile frame: the peer that sent it is closed with the expected code and a
reason; the good peers on the same document and on another document stay connected and
still exchange edits; nothing invalid reaches anyone; the document is unchanged.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess
from pyclient import YClient, connect_options, eventually, round_trip, state_vector, url_name
from pycrdt import Doc, Text
from raw_ws import client_frame, hung_up, raw_websocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab.yjs import protocol
from collab.yjs.protocol import write_var_uint

UNICODE_TEXT = "héllo 😀 👨‍👩‍👧 👍🏽 🇫🇷 中文 e\u0301\r\nend"
MAX_MESSAGE = 128 * 1024
MAX_DOCUMENT = 256 * 1024


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole module, with small message and document limits."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    flags = ["--fsync", "never", "--max-message-bytes", str(MAX_MESSAGE)]
    flags += ["--max-document-bytes", str(MAX_DOCUMENT)]
    server = ServerProcess(data_dir, flags).start()
    yield server
    server.kill()


def http_client(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10)


async def stored_state(server: ServerProcess, name: str) -> tuple[str, dict[int, int]]:
    """The document's text and state vector, as the HTTP API reports them."""
    async with http_client(server) as http:
        response = await http.get(f"/api/docs/{url_name(name)}/update")
    assert response.status_code == 200, response.text
    doc = Doc()
    doc.apply_update(response.content)
    return str(doc.get("text", type=Text)), state_vector(response.content)


def raw_awareness(client_id: int, clock: int, state_json: str) -> bytes:
    """An awareness frame carrying `state_json` verbatim (valid framing, any JSON)."""
    state = state_json.encode()
    fields = (1, client_id, clock, len(state))
    body = b"".join(write_var_uint(n) for n in fields) + state
    return bytes((protocol.MESSAGE_AWARENESS,)) + write_var_uint(len(body)) + body


def big_update(size: int) -> bytes:
    """A valid Yjs update inserting `size` ASCII characters into a fresh document."""
    doc = Doc()
    doc.get("text", type=Text).insert(0, "x" * size)
    return doc.get_update()


# --- the scene: two good peers on the document under attack, two on another ---------


@dataclass
class Scene:
    server: ServerProcess
    name: str
    a: YClient
    b: YClient
    other_name: str
    c: YClient
    d: YClient

    @property
    def good(self) -> list[YClient]:
        return [self.a, self.b, self.c, self.d]


@asynccontextmanager
async def scene(server: ServerProcess, tag: str) -> AsyncIterator[Scene]:
    suffix = f"{tag}-{random.randrange(10**9)}"
    name, other = f"hostile {suffix}", f"bystander {suffix}"
    url = f"{server.ws_url}/yjs/"
    clients = [await YClient.connect(url + url_name(n)) for n in (name, name, other, other)]
    try:
        for client in clients:
            await client.synced()
        clients[0].insert(0, UNICODE_TEXT)
        clients[2].insert(0, UNICODE_TEXT[::-1])
        await clients[1].wait_text(UNICODE_TEXT)
        await clients[3].wait_text(UNICODE_TEXT[::-1])
        yield Scene(server, name, clients[0], clients[1], other, clients[2], clients[3])
    finally:
        for client in clients:
            await client.close()


async def attack(
    scene: Scene, frame: bytes | str, codes: set[int], *, offender: YClient | None = None
) -> str:
    """Send `frame` from an offending peer on the attacked document; check it is contained.

    Returns the close reason the offender got.
    """
    before = await stored_state(scene.server, scene.name)
    if offender is None:
        offender = await YClient.connect(f"{scene.server.ws_url}/yjs/{url_name(scene.name)}")
        await offender.synced()
    offender.send_raw(frame)
    code, reason = await offender.wait_closed()
    assert code in codes, f"closed with {code} {reason!r}, expected one of {codes}"
    assert reason.strip(), "the close frame must say why"
    await assert_unharmed(scene, before)
    return reason


async def assert_unharmed(scene: Scene, before: tuple[str, dict[int, int]]) -> None:
    """Same document state; good peers connected, still editing, never sent anything bad."""
    assert await stored_state(scene.server, scene.name) == before
    assert scene.a.text == scene.b.text == before[0]
    # An edit still flows both ways on the attacked document and on the other one.
    await round_trip(scene.a, scene.b)
    await round_trip(scene.b, scene.a)
    await round_trip(scene.d, scene.c)
    for client in scene.good:
        assert not client.closed, f"a good peer was closed: {client.close_code}"
        assert client.errors == [], client.errors
    assert scene.a.text == scene.b.text
    assert scene.c.text == scene.d.text
    assert (await stored_state(scene.server, scene.name))[0] == scene.a.text


def assert_not_relayed(scene: Scene, payload: bytes) -> None:
    for client in scene.good:
        for frame in client.received:
            assert payload not in (frame if isinstance(frame, bytes) else frame.encode())


# --- one hostile frame at a time ---------------------------------------------------------


def random_frames() -> list[bytes]:
    """Seeded random bytes, after prefixes that get them past the first checks.

    Each seed was checked once to give an invalid frame (decode or pycrdt refuses it).
    """
    prefixes = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"]
    frames = []
    for seed in range(8):
        rng = random.Random(seed)
        frames.append(rng.choice(prefixes) + rng.randbytes(rng.randrange(1, 300)))
    return frames


def random_updates() -> list[bytes]:
    """Well-formed sync frames around seeded random "updates" (pycrdt refuses all six)."""
    frames = []
    for seed in range(6):
        rng = random.Random(seed)
        frames.append(protocol.encode_sync_update(rng.randbytes(rng.randrange(1, 300))))
    return frames


MALFORMED = 1002
UNSUPPORTED = 1003

HOSTILE_FRAMES: list[tuple[str, bytes | str, set[int]]] = [
    *[(f"random-{i}", frame, {MALFORMED, UNSUPPORTED}) for i, frame in enumerate(random_frames())],
    *[(f"random-update-{i}", frame, {MALFORMED}) for i, frame in enumerate(random_updates())],
    ("empty", b"", {MALFORMED}),
    ("truncated-type-varint", b"\x80", {MALFORMED}),
    ("truncated-length-varint", b"\x00\x02\xff", {MALFORMED}),
    ("varint-over-8-bytes", b"\x00\x02" + b"\xff" * 12 + b"\x01", {MALFORMED}),
    ("absurd-length", b"\x00\x02" + write_var_uint(2**50) + b"abc", {MALFORMED}),
    ("length-past-end", b"\x00\x02\x10abc", {MALFORMED}),
    ("trailing-bytes", protocol.encode_sync_update(b"\x00\x00") + b"junk", {MALFORMED}),
    ("text-frame", "hello", {UNSUPPORTED}),
    ("text-frame-sync-lookalike", "\x00\x02\x02\x00\x00", {UNSUPPORTED}),
    ("unknown-message-type", b"\x2a\x00", {UNSUPPORTED}),
    ("unknown-sync-subtype", b"\x00\x07\x02\x00\x00", {UNSUPPORTED}),
    ("invalid-update", protocol.encode_sync_update(b"garbage!garbage"), {MALFORMED}),
    ("truncated-update", protocol.encode_sync_update(b"\x05\x00"), {MALFORMED}),
    ("invalid-update-in-step2", protocol.encode_sync_step2(b"garbage!garbage"), {MALFORMED}),
    ("awareness-bad-json", raw_awareness(4242, 1, '{"user": '), {MALFORMED}),
    ("awareness-number", raw_awareness(4242, 1, "5"), {MALFORMED}),
    ("awareness-array", raw_awareness(4242, 1, '["a", 1]'), {MALFORMED}),
    ("awareness-string", raw_awareness(4242, 1, '"hi"'), {MALFORMED}),
    ("awareness-nan", raw_awareness(4242, 1, '{"x": NaN}'), {MALFORMED}),
    ("awareness-count-lies", b"\x01\x03\x05\x01\x01", {MALFORMED}),
]


@pytest.mark.parametrize(
    ("frame", "codes"),
    [pytest.param(frame, codes, id=case) for case, frame, codes in HOSTILE_FRAMES],
)
async def test_hostile_frame_closes_only_the_offender(
    hostile_server: ServerProcess, frame: bytes | str, codes: set[int]
) -> None:
    async with scene(hostile_server, "frame") as s:
        await attack(s, frame, codes)
        if isinstance(frame, bytes) and len(frame) >= 4:
            assert_not_relayed(s, frame)
        # The bad awareness client id never shows up anywhere.
        assert all(4242 not in client.awareness for client in s.good)


async def test_hostile_first_frame_before_any_handshake(hostile_server: ServerProcess) -> None:
    async with scene(hostile_server, "first") as s:
        url = f"{hostile_server.ws_url}/yjs/{url_name(s.name)}"
        offender = await YClient.connect(url, handshake=False)
        await attack(
            s, protocol.encode_sync_update(b"garbage!garbage"), {MALFORMED}, offender=offender
        )


async def test_message_over_the_limit_is_refused_with_1009(hostile_server: ServerProcess) -> None:
    frame = protocol.encode_sync_update(big_update(MAX_MESSAGE + 1000))
    async with scene(hostile_server, "big") as s:
        await attack(s, frame, {1009})
        assert all("x" * 1000 not in client.text for client in s.good)


async def test_document_past_its_size_limit_is_refused(hostile_server: ServerProcess) -> None:
    async with scene(hostile_server, "grow") as s:
        url = f"{hostile_server.ws_url}/yjs/{url_name(s.name)}"
        offender = await YClient.connect(url)
        await offender.synced()
        chunk = "y" * (MAX_MESSAGE // 3)
        # Grow the document in accepted steps until the next one would cross the limit.
        while len(offender.text.encode()) + 2 * len(chunk) < MAX_DOCUMENT:
            offender.append(chunk)
            await s.b.wait_text(offender.text)
        before = await stored_state(hostile_server, s.name)
        offender.append(chunk + chunk + "😀")
        code, reason = await offender.wait_closed()
        assert code not in (1000, 1001, 1006), (code, reason)
        assert reason.strip(), "the close frame must say why"
        await assert_unharmed(s, before)


# --- slow and dead peers -----------------------------------------------------------------


async def peers_online(server: ServerProcess, name: str) -> int:
    async with http_client(server) as http:
        documents = (await http.get("/api/docs")).json()["documents"]
    return next((d["peers"] for d in documents if d["name"] == name), 0)


async def drain(ws, doc: Doc, expected: str, timeout: float = 30) -> tuple[int, int | None]:
    """Read a slow peer's backlog: (bytes read, close code or None if it caught up)."""
    received = 0
    deadline = time.monotonic() + timeout
    try:
        while str(doc.get("text", type=Text)) != expected:
            frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            received += len(frame)
            message = protocol.decode(frame)
            if isinstance(message, protocol.SyncStep1):
                await ws.send(protocol.encode_sync_step2(doc.get_update(message.state_vector)))
            elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
                doc.apply_update(message.update)
    except ConnectionClosed:
        return received, ws.close_code
    return received, None


async def test_slow_peer_is_bounded_and_does_not_slow_the_others(start_server) -> None:
    queue_limit = 64 * 1024
    server = start_server("--fsync", "never", "--send-queue-bytes", str(queue_limit))
    url = f"{server.ws_url}/yjs/slow"
    a, b, c = [await YClient.connect(url) for _ in range(3)]
    # The slow peer: a tiny receive buffer, and websockets stops reading after one frame.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    slow = await connect(url, **connect_options(sock=sock, max_queue=1, ping_interval=None))
    await slow.send(protocol.encode_sync_step1(Doc().get_state()))
    try:
        for client in (a, b, c):
            await client.synced()
        a.insert(0, UNICODE_TEXT)
        await c.wait_text(UNICODE_TEXT)
        chunk, sent, worst = "z" * 32 * 1024, 0, 0.0
        # Flood far more than any kernel buffer holds, checking the others stay quick.
        while sent < 24 * 1024 * 1024 and await peers_online(server, "slow") == 4:
            for _ in range(16):
                a.append(chunk)
                a.delete(len(a.text) - len(chunk), len(chunk))
                sent += 2 * len(chunk)
            await b.wait_text(a.text, timeout=20)
            worst = max(worst, await round_trip(b, c, timeout=5))
        assert worst < 5
        received, code = await drain(slow, Doc(), a.text)
        # Resynced (code None) or dropped: either way it never got the whole backlog.
        assert received < sent / 2, f"the slow peer got {received} of {sent} bytes"
        if code is not None:
            assert code == 4001, (code, slow.close_reason)
            assert slow.close_reason
        await round_trip(c, a)
        assert all(not client.closed and not client.errors for client in (a, b, c))
    finally:
        await slow.close()
        for client in (a, b, c):
            await client.close()


async def test_dead_peer_is_dropped_by_ping_timeout(start_server) -> None:
    server = start_server("--fsync", "never", "--ping-interval", "0.5", "--ping-timeout", "1")
    url = f"{server.ws_url}/yjs/ghost"
    a, b = [await YClient.connect(url) for _ in range(2)]
    try:
        for client in (a, b):
            await client.synced()
        dead = raw_websocket(server.port, "/yjs/ghost")
        dead.sendall(client_frame(raw_awareness(777, 1, '{"user":"ghost 👻"}')))
        await a.until(lambda: a.awareness.get(777) is not None, what="the ghost's awareness")
        # Silent from now on: the server pings, nobody answers.
        assert await asyncio.to_thread(hung_up, dead, 20), "the dead peer was kept"
        dead.close()
        await a.until(lambda: a.awareness.get(777, "gone") in (None, "gone"), what="removal")
        await eventually(lambda: peers_online(server, "ghost"), 2)
        await round_trip(a, b)
        await round_trip(b, a)
        assert not a.closed and not b.closed
    finally:
        for client in (a, b):
            await client.close()


# --- hostile names -------------------------------------------------------------------------

ACCEPTED_NAMES = [
    "...",
    ".x",
    "..a",
    "%2F",
    "a/b",
    "a%2F..%2Fb",
    "\\..\\..\\windows",
    "é",  # NFC
    "e\u0301",  # NFD: another document
    "A",
    "a",
    "中文 😀 👨‍👩‍👧",
    "x" * 256,
]
REFUSED_NAMES = ["\x00", "a\x00b", "x" * 257, "x" * 10_000]
ALIASES = {  # the same name, written as the URL path literally
    "/yjs/a%2Fb": "a/b",
    "/yjs/%C3%A9?token=anything": "é",
}
#: Names no address can hold (a browser reads "/" at the end, "." and ".." as "same", "here"
#: and "up"): refused by every door that opens or makes a document, with what to do instead.
UNADDRESSABLE = {
    "notes/": "did you mean 'notes'",
    "/": "ends with '/'",
    ".": "cannot be parts of a name",
    "..": "cannot be parts of a name",
    "../../etc": "cannot be parts of a name",
    "../../../../../../tmp/escaped": "cannot be parts of a name",
    "a/../b": "cannot be parts of a name",
    "a/./b 😀": "cannot be parts of a name",
}
PATHS = {"/yjs/../../etc": "../../etc", "/ot/a/../b": "a/../b"}  # sent literally


async def test_hostile_names_stay_inside_the_data_dir(hostile_server: ServerProcess) -> None:
    base = f"{hostile_server.ws_url}/yjs/"
    texts = {name: f"document {name!r}: {UNICODE_TEXT}" for name in ACCEPTED_NAMES}
    for name, text in texts.items():
        async with await YClient.connect(base + url_name(name)) as writer:
            await writer.synced()
            writer.insert(0, text)
            async with await YClient.connect(base + url_name(name)) as reader:
                await reader.wait_text(text)
    for path, name in ALIASES.items():
        async with await YClient.connect(hostile_server.ws_url + path) as reader:
            await reader.wait_text(texts[name])

    async with http_client(hostile_server) as http:
        for name, text in texts.items():
            response = await http.get(f"/api/docs/{url_name(name)}/text")
            assert response.status_code == 200, (name, response.text)
            assert response.content.decode("utf-8") == text
        listed = {d["name"] for d in (await http.get("/api/docs")).json()["documents"]}
        for name in REFUSED_NAMES:
            response = await http.get(f"/api/docs/{url_name(name)}/text")
            assert response.status_code == 400, (name[:20], response.status_code)
            assert response.json()["error"]
    assert set(ACCEPTED_NAMES) <= listed, set(ACCEPTED_NAMES) - listed
    assert not listed & set(REFUSED_NAMES)

    assert_everything_inside(hostile_server.data_dir)


@pytest.mark.parametrize("name", REFUSED_NAMES, ids=["nul", "inner-nul", "257-chars", "10k-chars"])
async def test_refused_name_over_websocket(hostile_server: ServerProcess, name: str) -> None:
    url = f"{hostile_server.ws_url}/yjs/{url_name(name)}"
    try:
        client = await YClient.connect(url, open_timeout=10)
    except TimeoutError:
        pytest.fail(f"no answer at all to a {len(url)}-byte WebSocket URL (the socket hangs)")
    except InvalidStatus as refused:
        assert refused.response.status_code in (400, 403, 404, 414), refused.response.status_code
        return
    async with client:
        code, reason = await client.wait_closed()
    assert code in (4400, 1008), (code, reason)
    assert reason.strip()


@pytest.mark.parametrize("door", ["yjs", "ot"])
async def test_names_an_address_cannot_hold_are_refused(
    hostile_server: ServerProcess, door: str
) -> None:
    paths = {f"/{door}/{url_name(name)}": name for name in UNADDRESSABLE} | PATHS
    for path, name in paths.items():
        if not path.startswith(f"/{door}/"):
            continue
        async with connect(hostile_server.ws_url + path, **connect_options()) as refused:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(refused.recv(), 10)
        assert refused.close_code == 4400, (path, refused.close_code)
        assert UNADDRESSABLE[name] in refused.close_reason, (path, refused.close_reason)
    async with http_client(hostile_server) as http:
        plain = {"content-type": "text/plain; charset=utf-8"}
        made = await http.put("/api/docs/notes/", content="text 😀", headers=plain)
        assert made.status_code == 400 and "did you mean 'notes'" in made.json()["error"]
        page = await http.get("/d/a/%2E/b")  # "." as a browser never sends it
        assert page.status_code == 400 and "cannot be parts of a name" in page.text
        listed = {d["name"] for d in (await http.get("/api/docs")).json()["documents"]}
    assert not listed & set(UNADDRESSABLE), "a refused name became a document"
    assert_everything_inside(hostile_server.data_dir)


def assert_everything_inside(data_dir: Path) -> None:
    """Every file the server wrote is inside the data dir, and nothing appeared beside it."""
    root = data_dir.resolve()
    for path in data_dir.rglob("*"):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(root), path
    beside = {p.name for p in data_dir.parent.iterdir()} - {data_dir.name}
    assert all(n.startswith("server-") and n.endswith(".log") for n in beside), beside
    assert not (data_dir.parent / "etc").exists()
    assert not list(Path("/tmp").glob("escaped*"))
