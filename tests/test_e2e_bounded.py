"""Bounded cost per message, through real sockets against a `collab serve` subprocess.

A stranger's message must cost the server a bounded amount of time and memory: peers that
never read are dropped and their buffers freed, awareness clocks and reserved ids cannot
make an encode raise, deeply nested JSON gets an error and the connection goes on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
from conftest import ServerProcess
from pyclient import YClient, connect_options, round_trip, url_name
from pycrdt import Doc
from raw_ws import client_frame, raw_websocket
from websockets.asyncio.client import connect

from collab.session.presence import awareness_id_for
from collab.wire import client_id_from_secret
from collab.yjs import protocol

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def non_reader(port: int, path: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that, after the handshake, never reads."""
    return raw_websocket(port, path, receive_buffer=4096)


async def peers_online(server: ServerProcess, name: str) -> int:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as http:
        documents = (await http.get("/api/docs")).json()["documents"]
    return next((d["peers"] for d in documents if d["name"] == name), 0)


async def documents_loaded(server: ServerProcess) -> int:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as http:
        return (await http.get("/healthz")).json()["documents_loaded"]


async def wait_for(probe, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll an async condition until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


# --- finding 9: peers that never read -------------------------------------------------------


async def test_peers_that_never_read_are_dropped_and_memory_stays_bounded(start_server) -> None:
    """N clients ask for a 4 MB document (sync step 1) and never read: each is dropped once
    its queue plus one message passes the cap, and aborted when its close frame cannot be
    sent; the server's memory stays bounded and a healthy peer keeps getting updates."""
    cap, n, doc_bytes = MiB, 8, 4 * MiB
    server = start_server(
        "--fsync", "never", "--send-queue-bytes", str(cap), "--close-timeout", "1"
    )
    assert server.process is not None
    url = f"{server.ws_url}/yjs/big"
    writer, healthy = await YClient.connect(url), await YClient.connect(url)
    try:
        await writer.synced()
        await healthy.synced()
        for _ in range(doc_bytes // MiB):
            writer.append("x" * MiB)
        await healthy.wait_text(writer.text, timeout=30)
        before = rss_bytes(server.process.pid)
        step1 = client_frame(protocol.encode_sync_step1(Doc().get_state()))
        readers = [non_reader(server.port, "/yjs/big") for _ in range(n)]
        for sock in readers:
            sock.sendall(step1)
        await wait_for(lambda: peers_online(server, "big"), 10, "the non-readers to join")
        peak, deadline = before, time.monotonic() + 60
        # Keep editing: updates pile up for the non-readers until their queues overflow.
        while await peers_online(server, "big") > 2:
            assert time.monotonic() < deadline, "peers that never read are still connected"
            writer.append("y" * 64 * 1024)
            await healthy.wait_text(writer.text, timeout=10)
            peak = max(peak, rss_bytes(server.process.pid))
        growth = peak - before
        # Each non-reader holds at most one message in the socket plus a queue under the
        # cap; before the fix they held it for ever and were never dropped.
        assert growth < n * (doc_bytes + cap) + 64 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
        await round_trip(writer, healthy)
        await round_trip(healthy, writer)
        assert not writer.closed and not healthy.closed
        assert writer.errors == healthy.errors == []
        for sock in readers:
            sock.close()
    finally:
        await writer.close()
        await healthy.close()


async def test_a_dead_peer_is_aborted_after_the_ping_timeout(start_server) -> None:
    """A peer with a full socket never answers pings: uvicorn's close would wait for the
    buffer to drain for ever; the connection is aborted after the close timeout."""
    server = start_server(
        "--fsync", "never", "--ping-interval", "0.5", "--ping-timeout", "1", "--close-timeout", "1"
    )
    url = f"{server.ws_url}/yjs/idle-big"
    writer = await YClient.connect(url)
    try:
        await writer.synced()
        for _ in range(4):
            writer.append("x" * MiB)
        sock = non_reader(server.port, "/yjs/idle-big")
        sock.sendall(client_frame(protocol.encode_sync_step1(Doc().get_state())))
        await wait_for(lambda: _equals(peers_online(server, "idle-big"), 2), 10, "it to join")
        await wait_for(lambda: _equals(peers_online(server, "idle-big"), 1), 15, "the abort")
        sock.close()
        assert not writer.closed
    finally:
        await writer.close()


async def _equals(probe, expected: object) -> bool:  # type: ignore[no-untyped-def]
    return await probe == expected


# --- finding 10: deeply nested JSON ---------------------------------------------------------


async def test_deeply_nested_json_gets_bad_json_and_the_connection_goes_on(server) -> None:
    async with connect(f"{server.ws_url}/ot/{url_name('nested')}", **connect_options()) as ws:
        await ws.send(json.dumps({"type": "hello", "secret": "s" * 32, "rev": None}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        depth = 100_000
        nested = '{"type": "op", "seq": 1, "rev": 0, "op": ' + "[" * depth + "]" * depth + "}"
        await ws.send(nested)
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and error["code"] == "bad-json", error
        await ws.send(json.dumps({"type": "op", "seq": 1, "rev": 0, "op": ["still here"]}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack == {"type": "ack", "seq": 1, "rev": 1}, ack


# --- finding 8: awareness clocks and ids reserved for text clients ----------------------------

MAX_CLOCK = 2**53 - 1


def awareness_frame(client_id: int, clock: int, state: dict | None) -> bytes:
    return protocol.encode_awareness([protocol.AwarenessEntry(client_id, clock, state)])


async def test_awareness_clocks_and_text_clients_ids_never_keep_a_document_loaded(
    start_server,
) -> None:
    """A Yjs peer at the largest clock, or holding a text client's awareness id before that
    client comes, must not make any encode raise: the text clients are welcomed, everyone
    leaves and the document unloads. (Before a fix the text client's "gone" entry, clock
    2**53, raised.) Once a text client is here, only the server speaks for its id."""
    server = start_server("--fsync", "never", "--idle-unload-seconds", "0.2")
    secret, late_secret = "r" * 32, "q" * 32
    text_id = awareness_id_for(client_id_from_secret(secret))
    late_id = awareness_id_for(client_id_from_secret(late_secret))
    url = f"{server.ws_url}/yjs/clocks"
    hostile, healthy = await YClient.connect(url), await YClient.connect(url)
    await hostile.synced()
    await healthy.synced()
    hostile.send_raw(awareness_frame(text_id, 7, {"user": {"name": "not you"}}))
    hostile.send_raw(awareness_frame(late_id, MAX_CLOCK - 1, {"user": {"name": "late"}}))
    hostile.send_raw(awareness_frame(4343, 1, {"user": {"name": "hostile"}}))
    hostile.send_raw(awareness_frame(4242, MAX_CLOCK - 1, {"user": {"name": "late"}}))
    await healthy.until(lambda: 4242 in healthy.awareness, what="the hostile's own state")
    async with connect(f"{server.ws_url}/ot/clocks", **connect_options()) as ws:
        await ws.send(json.dumps({"type": "hello", "secret": secret, "rev": None}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await healthy.until(
            lambda: (healthy.awareness.get(text_id) or {}).get("collab", {}).get("kind") == "text",
            what="the text client, in place of the hostile's state",
        )
        shown = healthy.awareness[text_id]
        hostile.send_raw(awareness_frame(text_id, MAX_CLOCK - 1, {"user": {"name": "me"}}))
        hostile.send_raw(awareness_frame(text_id, MAX_CLOCK - 1, None))
        forged = {"user": {"name": "x"}, "collab": {"kind": "text", "client": "c-x"}}
        hostile.send_raw(awareness_frame(99, 1, forged))
        hostile.send_raw(awareness_frame(4242, MAX_CLOCK - 1, None))  # after the others
        await healthy.until(lambda: healthy.awareness.get(4242) is None, what="the marker")
        assert healthy.awareness[text_id] == shown, "a Yjs peer spoke for a text client"
        assert 99 not in healthy.awareness, "a Yjs peer passed for a text client"
        late = await connect(f"{server.ws_url}/ot/clocks", **connect_options())
        await late.send(json.dumps({"type": "hello", "secret": late_secret, "rev": None}))
        assert json.loads(await late.recv())["type"] == "welcome"
        await late.close()
        await hostile.close()
        await healthy.until(lambda: healthy.awareness.get(4343) is None, what="hostile gone")
        assert healthy.awareness[text_id] == shown, "the hostile's leaving took the text client"
    await healthy.until(lambda: healthy.awareness.get(text_id) is None, what="text client gone")
    over = await YClient.connect(url)
    over.send_raw(awareness_frame(77, MAX_CLOCK, {"user": {"name": "over"}}))
    assert (await over.wait_closed())[0] == 1002
    await healthy.close()
    await over.close()
    await wait_for(lambda: _equals(documents_loaded(server), 0), 10, "the document to unload")
