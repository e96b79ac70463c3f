"""End to end: real Yjs clients (y-websocket providers under Node) against `collab serve`.

Every test runs the real server as a subprocess and real Yjs peers in Node processes
(tests/node/yclient.mjs, driven through tests/yjs_node.py). Positions are UTF-16 units, as
in every Yjs client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from conftest import ServerProcess, both_edges, node_available, require, wait_until
from yjs_node import NodeYjs, YPeer

pytestmark = pytest.mark.node

UNICODE = "héllo 😀 👨‍👩‍👧 👍🏽 🇫🇷 中文 e\u0301\r\nnext line"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def http_get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def server_text(server: ServerProcess, name: str) -> str | None:
    """The document's text from `GET /api/docs/{name}/text`; None when it is unknown (404)."""
    status, body = http_get(server, f"/api/docs/{urllib.parse.quote(name, safe='/')}/text")
    if status == 404:
        return None
    assert status == 200, (status, body)
    return body.decode("utf-8")


def document_names(server: ServerProcess) -> set[str]:
    status, body = http_get(server, "/api/docs")
    assert status == 200, body
    return {doc["name"] for doc in json.loads(body)["documents"]}


def converged(peers: list[YPeer], server: ServerProcess, name: str) -> str:
    """Wait until every peer and the server hold the same text; return it."""

    def same() -> str | None:
        texts = {peer.text() for peer in peers} | {server_text(server, name)}
        return texts.pop() if len(texts) == 1 else None

    return wait_until(same, 20, f"{len(peers)} peers and the server agree on {name!r}")  # type: ignore[return-value]


@pytest.fixture
def node() -> Iterator[Callable[[], NodeYjs]]:
    """Start Node processes of Yjs peers: `a = node().peer(server.ws_url, "doc")`."""
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    processes: list[NodeYjs] = []

    def start() -> NodeYjs:
        processes.append(NodeYjs())
        return processes[-1]

    yield start
    for process in processes:
        process.kill()


@both_edges
def test_two_providers_converge_both_ways(server: ServerProcess, node) -> None:
    a = node().peer(server.ws_url, "two")
    b = node().peer(server.ws_url, "two")

    a.insert(0, UNICODE)
    b.wait_text(UNICODE)

    b.insert(0, "👋 ")
    b.insert(utf16_len("👋 " + UNICODE), "\r\n末尾 🇫🇷")
    expected = "👋 " + UNICODE + "\r\n末尾 🇫🇷"
    a.wait_text(expected)

    a.delete(0, utf16_len("👋 "))
    expected = UNICODE + "\r\n末尾 🇫🇷"
    b.wait_text(expected)
    assert converged([a, b], server, "two") == expected


def test_late_joiner_receives_ten_thousand_edits(server: ServerProcess, node) -> None:
    writer = node().peer(server.ws_url, "big")
    piece = "é😀"
    assert writer.insert_many(piece, 10_000) == 10_000 * utf16_len(piece)
    expected = piece * 10_000

    late = node().peer(server.ws_url, "big")
    late.wait_text(expected, timeout=30)
    wait_until(lambda: server_text(server, "big") == expected, 10, "server text")


def test_offline_edits_merge_without_duplication(server: ServerProcess, node) -> None:
    a = node().peer(server.ws_url, "offline")
    b = node().peer(server.ws_url, "offline")
    a.insert(0, "shared 中文 ")
    b.wait_text("shared 中文 ")

    b.disconnect()
    wait_until(lambda: not b.connected(), 5, "b offline")
    a.insert(utf16_len("shared 中文 "), "online 😀")
    b.insert(0, "offline 👨‍👩‍👧\r\n")
    assert b.text() == "offline 👨‍👩‍👧\r\nshared 中文 "

    b.reconnect()
    expected = "offline 👨‍👩‍👧\r\nshared 中文 online 😀"
    b.wait_text(expected)
    a.wait_text(expected)
    assert converged([a, b], server, "offline") == expected


def test_four_providers_typing_concurrently_converge(server: ServerProcess, node) -> None:
    first, second = node(), node()
    peers = [process.peer(server.ws_url, "race") for process in (first, second, first, second)]
    typing = [peer.type_randomly(100, seed=i + 1) for i, peer in enumerate(peers)]
    for pending in typing:
        pending.result(timeout=60)

    text = converged(peers, server, "race")
    assert text, "400 random edits, about a quarter of them deletes, left some text"
    assert "\ufffd" not in text


def test_awareness_appears_on_join_and_disappears_on_close(server: ServerProcess, node) -> None:
    alice = node().peer(server.ws_url, "aware", awareness={"user": "Zoë 😀", "cursor": 3})
    bob_process = node()
    bob = bob_process.peer(server.ws_url, "aware", awareness={"user": "bob 中文"})
    carol = node().peer(server.ws_url, "aware", awareness={"user": "carol"})

    everyone = {alice.client_id, bob.client_id, carol.client_id}
    for peer in (alice, bob, carol):
        peer.wait_until(lambda p: set(p.awareness_states()) == everyone)
    assert alice.awareness_states()[bob.client_id] == {"user": "bob 中文"}
    assert carol.awareness_states()[alice.client_id] == {"user": "Zoë 😀", "cursor": 3}

    alice.set_awareness({"user": "Zoë 😀", "cursor": 7})
    carol.wait_until(lambda p: p.awareness_states()[alice.client_id]["cursor"] == 7)

    # A crash (no goodbye): the server removes bob's state and tells the others, long
    # before the 30 s after which Yjs clients would drop it by themselves.
    bob_process.kill()
    for peer in (alice, carol):
        peer.wait_until(lambda p: bob.client_id not in p.awareness_states(), timeout=10)

    # A dropped TCP connection, no close frame.
    carol.drop()
    alice.wait_until(lambda p: set(p.awareness_states()) == {alice.client_id}, timeout=10)

    # Someone joining now sees alice only: the server forgot the states of closed peers.
    dave = node().peer(server.ws_url, "aware", awareness={"user": "dave"})
    dave.wait_until(lambda p: set(p.awareness_states()) == {alice.client_id, dave.client_id})


def test_fifty_documents_stay_isolated(server: ServerProcess, node) -> None:
    names = [f"iso-{i}" for i in range(40)] + [f"team/文档 {i} 😀" for i in range(10)]
    writers = node()
    peers = {name: writers.peer(server.ws_url, name, wait_synced=False) for name in names}
    for name, peer in peers.items():
        peer.wait_synced()
        peer.insert(0, f"only {name} 👍🏽\r\n")

    readers = node()
    for name in names:
        readers.peer(server.ws_url, name).wait_text(f"only {name} 👍🏽\r\n")
    for name in names:
        assert server_text(server, name) == f"only {name} 👍🏽\r\n"
        assert peers[name].text() == f"only {name} 👍🏽\r\n"
    assert set(names) <= document_names(server)


def test_twenty_peers_join_a_new_document_at_once(server: ServerProcess, node) -> None:
    peers = node().peers_at_once(server.ws_url, "crowd", 20)
    for peer in peers:
        peer.wait_synced()
    tags = [f"<{i}😀>" for i in range(len(peers))]
    for peer, tag in zip(peers, tags, strict=True):
        peer.insert(0, tag)

    text = converged(peers, server, "crowd")
    assert sorted(text.replace("><", ">\n<").split("\n")) == sorted(tags)


def test_query_string_is_not_part_of_the_name(server: ServerProcess, node) -> None:
    with_token = node().peer(server.ws_url, "queried", params={"token": "abc"})
    plain = node().peer(server.ws_url, "queried")
    with_token.insert(0, "same document 😀")
    plain.wait_text("same document 😀")
    plain.insert(0, "中文 ")
    with_token.wait_text("中文 same document 😀")

    assert converged([with_token, plain], server, "queried") == "中文 same document 😀"
    assert not any("token" in name for name in document_names(server))


def test_insert_between_the_halves_of_a_surrogate_pair(server: ServerProcess, node) -> None:
    """A JS peer that splits an emoji is refused: everyone else keeps one text.

    Yjs (JS) would split the emoji's string item and show each half as U+FFFD, while the
    server (pycrdt/Yrs) keeps the character whole and puts the insert after it: three
    texts for one document (notes/pycrdt-facts.md). The server refuses such an update
    before applying it (close 1002, nothing stored or relayed), so every other replica,
    the log and a late joiner agree.
    """
    a = node().peer(server.ws_url, "split")
    b = node().peer(server.ws_url, "split")
    bystander = node().peer(server.ws_url, "unrelated")
    bystander.insert(0, "untouched 😀")
    a.insert(0, "a😀b")
    b.wait_text("a😀b")

    a.insert(2, "X")  # between \ud83d and \ude00
    assert a.text() == "a\ufffdX\ufffdb"
    wait_until(lambda: any(e["code"] == 1002 for e in a.events("close")), 10, "the refusal (1002)")
    close = next(e for e in a.events("close") if e["code"] == 1002)
    assert "surrogate" in close["reason"]

    # The document still takes edits; the refused insert reached nobody.
    b.insert(4, "!")
    wait_until(lambda: server_text(server, "split") == "a😀b!", 10, "the server's text")
    b.wait_text("a😀b!")
    late = node().peer(server.ws_url, "split")
    late.wait_text("a😀b!")
    late.insert(0, "中")
    b.wait_text("中a😀b!")
    assert server_text(server, "split") == "中a😀b!"
    assert server_text(server, "unrelated") == "untouched 😀"
    assert http_get(server, "/healthz")[0] == 200


def test_restart_keeps_data_and_providers_resync_without_duplicates(start_server, node) -> None:
    server = start_server("--fsync", "always")
    stays = node().peer(server.ws_url, "durable")  # connected through the crash
    leaves = node().peer(server.ws_url, "durable")  # offline during the crash
    stays.insert(0, UNICODE)
    leaves.wait_text(UNICODE)
    leaves.insert(0, "first line 😀\r\n")
    expected = "first line 😀\r\n" + UNICODE
    stays.wait_text(expected)
    leaves.wait_text(expected)  # seen by another peer, so durable
    leaves.disconnect()
    server.kill()
    wait_until(lambda: not stays.connected(), 10, "the provider noticed the crash")

    # No peer is connected to tell it: the text comes from the disk.
    stays.disconnect()
    server.start()
    assert server_text(server, "durable") == expected

    stays.reconnect()
    leaves.reconnect()
    stays.wait_synced()
    leaves.wait_synced()
    assert converged([stays, leaves], server, "durable") == expected

    # The provider that stayed connected reconnects by itself after a second crash.
    server.kill()
    wait_until(lambda: not stays.synced(), 10, "the provider noticed the second crash")
    server.start()
    stays.wait_synced(timeout=15)
    stays.insert(0, "after 🇫🇷 ")
    newcomer = node().peer(server.ws_url, "durable")
    newcomer.wait_text("after 🇫🇷 " + expected)
    assert converged([stays, leaves, newcomer], server, "durable") == "after 🇫🇷 " + expected
