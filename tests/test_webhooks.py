"""Signed webhooks (issue 22), to a real receiver: a Starlette app served by uvicorn on the
loopback that checks every signature the way docs/webhooks.md tells receivers to, and that
goes down and comes back, or answers slowly."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import ServerProcess, free_port
from pyclient import YClient, round_trip
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.access import tokens

SECRET = "webhook-signing-secret-😀-0123456789"
AUTH = "auth-secret-for-webhook-tests-0123456789abcdef"
NAME = "hooked 文书 😀"
URL_NAME = "hooked%20%E6%96%87%E4%B9%A6%20%F0%9F%98%80"
USER = "Zoë 👩‍👩‍👧"


def verify(secret: str, headers: Any, body: bytes, window: float = 300) -> bool:
    """What a receiver does (docs/webhooks.md): the HMAC of timestamp + "." + body, and a
    timestamp no older than `window` seconds."""
    stamp = headers["collab-webhook-timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest("v1=" + mac.hexdigest(), headers["collab-webhook-signature"]):
        return False
    return abs(time.time() - int(stamp)) <= window


class Receiver:
    """A webhook receiver on the loopback: records verified calls, refuses forged ones."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.forged = 0
        self.delay = 0.0
        self.arrived = asyncio.Condition()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        if not verify(SECRET, request.headers, body):
            self.forged += 1
            return Response(status_code=401)
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow receiver
        call = json.loads(body)
        assert call["id"] == request.headers["collab-webhook-id"]
        async with self.arrived:
            self.calls.append(call)
            self.ids.append(call["id"])
            self.arrived.notify_all()
        return Response(status_code=204)

    async def start(self) -> Receiver:
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        await self.task

    async def until(self, condition: Any, timeout: float = 15, what: str = "") -> None:
        async with self.arrived:
            try:
                await asyncio.wait_for(
                    self.arrived.wait_for(lambda: condition(self.calls)), timeout
                )
            except TimeoutError:
                raise AssertionError(f"no {what} in {timeout} s: {self.calls}") from None


def hooked_server(start_server: Any, *urls: str, extra: tuple[str, ...] = ()) -> ServerProcess:
    args = ["--fsync", "never", "--auth-secret", AUTH, "--webhook-secret", SECRET]
    for url in urls:
        args += ["--webhook", url]
    return start_server(*args, *extra)


async def peer(server: ServerProcess) -> YClient:
    token = tokens.mint(AUTH, NAME, user=USER)
    client = await YClient.connect(f"{server.ws_url}/yjs/{URL_NAME}?token={token}")
    await client.synced()
    return client


async def metric(server: ServerProcess, line_start: str) -> float:
    async with httpx.AsyncClient(trust_env=False) as http:
        token = tokens.mint(AUTH, "*")
        answer = await http.get(
            server.http_url + "/metrics", headers={"authorization": f"Bearer {token}"}
        )
    for line in answer.text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


async def test_created_then_changed_debounced_signed_and_ending_with_the_latest_rev(
    start_server: Any,
) -> None:
    receiver = await Receiver().start()
    server = hooked_server(start_server, receiver.url)
    writer = await peer(server)
    writer.append("a 😀")
    await receiver.until(lambda calls: calls, what="created")
    created = receiver.calls[0]
    assert created["event"] == "document.created" and created["document"] == NAME
    assert created["rev"] >= 1 and created["users"] == [USER]
    start = time.monotonic()
    for piece in ["中", "👩‍👩‍👧", "e\u0301", "\r\n"] * 10:  # 40 revisions in about 2 s
        writer.append(piece)
        await asyncio.sleep(0.05)
    typed = time.monotonic() - start
    async with httpx.AsyncClient(trust_env=False) as http:
        token = tokens.mint(AUTH, "*")
        listed = await http.get(
            server.http_url + "/api/docs", headers={"authorization": f"Bearer {token}"}
        )
    last_rev = next(d["rev"] for d in listed.json()["documents"] if d["name"] == NAME)
    assert last_rev >= 41
    await receiver.until(lambda calls: calls[-1]["rev"] == last_rev, what="the latest rev")
    changed = receiver.calls[1:]
    assert all(call["event"] == "document.changed" for call in changed)
    assert len(changed) <= typed / 1.0 + 2, "more than one call a second"
    assert changed[0]["since_rev"] == created["rev"] + 1
    for before, after in itertools.pairwise(changed):
        assert after["since_rev"] == before["rev"] + 1  # every revision reported once
        assert after["revisions"] == after["rev"] - after["since_rev"] + 1  # one process
    assert receiver.forged == 0 and len(set(receiver.ids)) == len(receiver.ids)
    await writer.close()
    await receiver.stop()


async def test_calls_wait_for_a_receiver_that_is_down_and_arrive_when_it_returns(
    start_server: Any,
) -> None:
    receiver = await Receiver().start()
    server = hooked_server(start_server, receiver.url)
    writer = await peer(server)
    writer.append("first ")
    await receiver.until(lambda calls: calls, what="created")
    await receiver.stop()
    writer.append("while down ✍️")
    deadline = time.monotonic() + 15
    while await metric(server, "collab_webhook_failures_total") < 2:  # tried, and retried
        assert time.monotonic() < deadline, "no failed attempt counted"
        await asyncio.sleep(0.1)
    receiver.server = None
    restarted = Receiver()
    restarted.port = receiver.port
    await restarted.start()
    await restarted.until(lambda calls: calls, timeout=30, what="the retried call")
    assert restarted.calls[-1]["event"] == "document.changed"
    assert restarted.calls[-1]["rev"] == 2
    await writer.close()
    await restarted.stop()


async def test_a_slow_receiver_never_slows_editing(start_server: Any) -> None:
    receiver = await Receiver().start()
    receiver.delay = 5.0
    server = hooked_server(start_server, receiver.url, receiver.url, receiver.url)
    writer, reader = await peer(server), await peer(server)
    for _ in range(20):
        assert await round_trip(writer, reader) < 1.0
    await writer.close()
    await reader.close()
    await receiver.stop()


async def test_what_cannot_be_delivered_is_dropped_counted_and_logged(start_server: Any) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    extra = ("--webhook-retry-seconds", "1", "--webhook-queue", "2")
    server = hooked_server(start_server, nobody, extra=extra)
    writer = await peer(server)
    for piece in "абвгд":
        writer.append(piece)
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + 20
    while await metric(server, 'collab_webhook_dropped_total{reason="gave-up"}') < 1:
        assert time.monotonic() < deadline, "nothing counted as given up"
        await asyncio.sleep(0.1)
    assert "webhook to http://127.0.0.1" in server.log() and "dropped" in server.log()
    await writer.close()


def test_webhooks_need_a_secret(tmp_path: Any) -> None:
    server = ServerProcess(tmp_path / "data", ["--webhook", "http://127.0.0.1:9/hook"])
    with pytest.raises(AssertionError, match="webhook-secret"):
        server.start(timeout=15)
    server.kill()


async def test_deleted_is_sent_when_the_lifecycle_calls_the_hub() -> None:
    from collab import Collab, MemoryStore, Settings

    receiver = await Receiver().start()
    settings = Settings(webhooks=receiver.url, webhook_secret=SECRET)
    engine = Collab(store=MemoryStore(), settings=settings)
    await engine.hub.start()
    await engine.edit(NAME, ["ünïcode 😀"])
    await receiver.until(lambda calls: calls, what="created")
    engine.hub.deleted(NAME, 1)
    await receiver.until(lambda calls: calls[-1]["event"] == "document.deleted", what="deleted")
    assert receiver.calls[-1]["document"] == NAME and receiver.calls[-1]["rev"] == 1
    await engine.close()
    await receiver.stop()


async def test_two_processes_report_each_revision_once(
    start_server: Any, postgres_url: str, redis_server: Any
) -> None:
    """Two processes on one PostgreSQL and Redis edit one document: the calls of both,
    together, cover every revision exactly once (no event is sent once per process)."""
    receiver = await Receiver().start()
    extra = ("--store", postgres_url, "--bus", redis_server.url)
    servers = [hooked_server(start_server, receiver.url, extra=extra) for _ in range(2)]
    writers = [await peer(server) for server in servers]
    for index in range(30):
        writer = writers[index % 2]
        writer.append(["😀", "中", "\r\n"][index % 3])
        await writer.wait_text(writer.text)  # its own change is in
        await asyncio.sleep(0.03)
    await round_trip(writers[0], writers[1])
    await round_trip(writers[1], writers[0])
    async with httpx.AsyncClient(trust_env=False) as http:
        bearer = {"authorization": "Bearer " + tokens.mint(AUTH, "*")}
        listed = await http.get(servers[0].http_url + "/api/docs", headers=bearer)
    last = next(d["rev"] for d in listed.json()["documents"] if d["name"] == NAME)
    counted = lambda calls: sum(call["revisions"] for call in calls)  # noqa: E731
    await receiver.until(lambda calls: counted(calls) >= last, what="every revision reported")
    assert counted(receiver.calls) == last  # each revision once, by the process that made it
    assert max(call["rev"] for call in receiver.calls) == last
    revs = [call["rev"] for call in receiver.calls]
    assert len(set(revs)) == len(revs)
    assert [call["event"] for call in receiver.calls].count("document.created") == 1
    for writer in writers:
        await writer.close()
    await receiver.stop()


async def test_changes_still_pending_at_shutdown_are_sent() -> None:
    from collab import Collab, MemoryStore, Settings

    receiver = await Receiver().start()
    settings = Settings(webhooks=receiver.url, webhook_secret=SECRET)
    engine = Collab(store=MemoryStore(), settings=settings)
    await engine.hub.start()
    for piece in ["a", "😀", "中"]:  # created, then changed at once, then debounced
        await engine.set_text(NAME, (await engine.get_text(NAME) if piece != "a" else "") + piece)
    await engine.close()  # the debounced change goes out before the engine stops
    assert receiver.calls[-1]["rev"] == 3 and receiver.calls[-1]["event"] == "document.changed"
    await receiver.stop()
