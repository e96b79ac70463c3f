"""Several `collab serve` processes on one PostgreSQL and one Redis: real servers, real faults.

Typists are text clients (`TextClient` over real WebSockets) that each type numbered
tokens, one at a time, and count a token as acknowledged only when the server acked it
(which it does once the token is committed in PostgreSQL). Whatever is killed, every
acknowledged token must be in the final text exactly once, and every process, client and
Yjs peer must end with the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import types
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from conftest import REPO, ServerProcess, both_edges, free_port
from ot_ids import secret_for
from pg_server import PgCluster, pg_bin_dir, start_cluster
from pyclient import YClient
from redis_server import RedisServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from collab.text.client import TextClient

DOC = "shared/ünï 😀"
DOC_URL = "shared%2F%C3%BCn%C3%AF%20%F0%9F%98%80"
PIECES = ["😀", "👨‍👩‍👧", "🇫🇷", "中文", "e\u0301", "\r\n", "👍🏽"]
TOKEN = re.compile(r"<[a-z0-9]+\.\d+>")


class Typist:
    """A text client typing `<name.i>` tokens; reconnects to the next server on failure."""

    def __init__(self, name: str, servers: list[ServerProcess], rng: random.Random) -> None:
        self.name = name
        self.servers = servers
        self.server_index = rng.randrange(len(servers))
        self.client = TextClient(secret_for(name), {"name": name})
        self.acked: list[str] = []
        self.rng = rng
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._news = asyncio.Event()
        self.current: str | None = None  # the token typed and not acknowledged yet

    async def run(self, stop: asyncio.Event) -> None:
        """Type tokens until `stop`; a token in flight when a server dies is not typed
        again: the client re-sends it (same seq) when it reconnects."""
        while not stop.is_set():
            try:
                await self._connected()
                if self.current is None:
                    self.current = f"<{self.name}.{len(self.acked)}>"
                    piece = self.rng.choice(PIECES)
                    text = self.client.text
                    op = [len(text), self.current + piece] if text else [self.current]
                    await self._send(self.client.edit(op))
                await self._until_acked(stop)
                self.acked.append(self.current)
                self.current = None
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                await self._drop()
                self.server_index = (self.server_index + 1) % len(self.servers)
                await asyncio.sleep(0.05)

    async def settle(self, timeout: float = 30.0) -> None:
        """Connected, nothing pending."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self._connected()
                await self._until_acked(None)
                if self.current is not None:
                    self.acked.append(self.current)
                    self.current = None
                return
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                await self._drop()
                self.server_index = (self.server_index + 1) % len(self.servers)
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _connected(self) -> None:
        if self.ws is not None and self._reader is not None and not self._reader.done():
            return
        await self._drop()
        server = self.servers[self.server_index]
        self.ws = await asyncio.wait_for(
            connect(f"{server.ws_url}/ot/{DOC_URL}", proxy=None, compression=None), 5
        )
        self._reader = asyncio.create_task(self._read(self.ws))
        await self.ws.send(json.dumps(self.client.hello()))

    async def _until_acked(self, stop: asyncio.Event | None) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while self.client.pending or not self.client.joined:
            if self._reader is None or self._reader.done():
                raise ConnectionClosed(None, None)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), 0.5)

    async def _send(self, messages: list[dict]) -> None:
        assert self.ws is not None
        for message in messages:
            await self.ws.send(json.dumps(message))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                for answer in self.client.receive(json.loads(frame)):
                    await ws.send(json.dumps(answer))
                self._news.set()
        self._news.set()

    async def _drop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.ws, self._reader = None, None
        self.client.joined = False


@pytest.fixture
def processes(
    start_server: Callable[..., ServerProcess], postgres_url: str, redis_server: RedisServer
) -> Callable[..., list[ServerProcess]]:
    def start(count: int = 2, *, store: str | None = None, redis: str | None = None):
        args = ["--store", store or postgres_url, "--bus", redis or redis_server.url]
        args += ["--ping-interval", "2", "--ping-timeout", "2", "--idle-unload-seconds", "60"]
        return [start_server(*args) for _ in range(count)]

    return start


async def server_text(server: ServerProcess) -> str | None:
    async with httpx.AsyncClient() as http:
        with contextlib.suppress(httpx.HTTPError):
            response = await http.get(f"{server.http_url}/api/docs/{DOC_URL}/text", timeout=5)
            if response.status_code == 200:
                return response.text
    return None


async def converged(servers: list[ServerProcess], typists: list[Typist], timeout: float = 30):
    """The one text every process and typist ends with."""
    for typist in typists:
        await typist.settle()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        texts = [await server_text(server) for server in servers]
        texts += [typist.client.text for typist in typists]
        if len(set(texts)) == 1 and texts[0] is not None:
            return texts[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no convergence: {texts!r}")
        await asyncio.sleep(0.05)


def assert_exactly_once(text: str, typists: list[Typist]) -> None:
    tokens = TOKEN.findall(text)
    doubled = {t for t in tokens if tokens.count(t) > 1}
    assert not doubled, f"applied twice: {sorted(doubled)[:5]}"
    missing = [t for typist in typists for t in typist.acked if t not in tokens]
    assert not missing, f"acknowledged but lost: {missing[:5]}"


async def type_for(typists: list[Typist], seconds: float) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(typist.run(stop)) for typist in typists]
    await asyncio.sleep(seconds)  # the load runs for this long; nothing waits on it
    stop.set()
    await asyncio.gather(*tasks)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261130)


async def test_clients_on_two_processes_converge_yjs_and_text(processes, rng) -> None:
    servers = processes(2)
    typists = [Typist(f"t{i}", servers, rng) for i in range(4)]
    peers = [await YClient.connect(f"{s.ws_url}/yjs/{DOC_URL}") for s in servers]
    for peer in peers:
        await peer.synced()
    loads = asyncio.create_task(type_for(typists, 2.0))
    for step in range(20):
        peer = peers[step % 2]
        peer.insert(len(peer.text), f"[y{step % 2}.{step}]{rng.choice(PIECES)}")
        await asyncio.sleep(0.05)
    await loads
    text = await converged(servers, typists)
    for peer in peers:
        await peer.wait_text(text)
    assert_exactly_once(text, typists)
    assert all(f"[y{step % 2}.{step}]" in text for step in range(20))
    assert sum(len(t.acked) for t in typists) > 10
    for peer in peers:
        await peer.close()


async def test_kill_9_of_one_process_under_load_loses_no_acknowledged_edit(processes, rng) -> None:
    servers = processes(2)
    typists = [Typist(f"k{i}", servers, rng) for i in range(4)]
    for _ in range(20):
        stop = asyncio.Event()
        tasks = [asyncio.create_task(typist.run(stop)) for typist in typists]
        await asyncio.sleep(rng.uniform(0.2, 0.5))
        rng.choice(servers).restart()  # SIGKILL, then start again on the same port
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    text = await converged(servers, typists)
    assert_exactly_once(text, typists)
    assert sum(len(t.acked) for t in typists) >= 20


async def test_redis_going_away_loses_nothing(
    start_server: Callable[..., ServerProcess],
    postgres_url: str,
    own_redis_server: RedisServer,
    rng: random.Random,
) -> None:
    args = ["--store", postgres_url, "--bus", own_redis_server.url]
    servers = [start_server(*args) for _ in range(2)]
    typists = [Typist(f"r{i}", servers, rng) for i in range(4)]
    await type_for(typists, 0.5)
    own_redis_server.kill()
    await type_for(typists, 1.0)  # editing goes on without the bus
    own_redis_server.restart()
    await type_for(typists, 0.5)
    text = await converged(servers, typists)
    assert_exactly_once(text, typists)


@pytest.fixture
def own_postgres() -> Iterator[PgCluster]:
    from conftest import require

    require(pg_bin_dir() is not None, "PostgreSQL (apt-get install postgresql)")
    cluster = start_cluster(fsync=True)  # durable commits: stopping it must lose nothing
    yield cluster
    cluster.destroy()


async def test_postgres_going_away_acknowledges_nothing_then_resumes(
    start_server: Callable[..., ServerProcess],
    own_postgres: PgCluster,
    redis_server: RedisServer,
    rng: random.Random,
) -> None:
    store = own_postgres.create_database()
    args = ["--store", store, "--bus", redis_server.url]
    servers = [start_server(*args) for _ in range(2)]
    typists = [Typist(f"p{i}", servers, rng) for i in range(3)]
    await type_for(typists, 0.5)
    before = sum(len(t.acked) for t in typists)
    own_postgres.stop()
    await type_for(typists, 1.0)
    assert sum(len(t.acked) for t in typists) == before, "acknowledged without PostgreSQL"
    assert all(s.process is not None and s.process.poll() is None for s in servers)
    own_postgres.start()
    await type_for(typists, 0.5)
    text = await converged(servers, typists)
    assert_exactly_once(text, typists)
    assert sum(len(t.acked) for t in typists) > before


@both_edges
async def test_workers_share_one_port(
    start_server: Callable[..., ServerProcess],
    postgres_url: str,
    redis_server: RedisServer,
    rng: random.Random,
    edge: str,
) -> None:
    server = start_server("--store", postgres_url, "--bus", redis_server.url, "--workers", "2")
    typists = [Typist(f"w{i}", [server], rng) for i in range(4)]
    await type_for(typists, 1.5)
    text = await converged([server], typists)
    assert_exactly_once(text, typists)
    # On the public path the parent says why once; its workers say nothing more.
    assert server.log().count("uvicorn's stock protocols") == (edge == "public")


def shared_app_example() -> str:
    """docs/several-servers.md's shared_app.py block."""
    page = (REPO / "docs/several-servers.md").read_text()
    blocks = re.findall(r"```python\n(# shared_app\.py.*?)```", page, re.S)
    assert len(blocks) == 1, "docs/several-servers.md's shared_app.py example is missing"
    return blocks[0]


async def test_the_documented_shared_app_runs_in_two_processes_worth_of_engines(
    postgres_url: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    servers, tasks, bases = [], [], []
    for index in range(2):
        module = types.ModuleType(f"shared_app_{index}")
        exec(
            compile(shared_app_example(), "docs/several-servers.md:shared_app.py", "exec"),
            module.__dict__,
        )
        port = free_port()
        config = uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
        bases.append(f"ws://127.0.0.1:{port}/collab/yjs/{DOC_URL}")
    for server, task in zip(servers, tasks, strict=True):
        while not server.started:
            assert not task.done(), "the example app did not start"
            await asyncio.sleep(0.01)
    peers = [await YClient.connect(base) for base in bases]
    for peer in peers:
        await peer.synced()
    peers[0].insert(0, "from A 😀 ")
    peers[1].insert(0, "from B 中文 ")
    for peer in peers:
        await peer.until(
            lambda p=peer: "from A 😀" in p.text and "from B 中文" in p.text, 10, "both edits"
        )
    assert peers[0].text == peers[1].text
    for peer in peers:
        await peer.close()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)
