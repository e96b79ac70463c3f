"""The Hocuspocus door refuses bad input clearly, per document when it can: the socket's
other documents carry on. Raw frames over a real socket to `collab serve`."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ServerProcess
from pycrdt import Doc, Text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from collab.yjs import hocuspocus as hp
from collab.yjs import protocol

TEXT = "zoë 😀 👨‍👩‍👧 中文 e\u0301\r\n"


class RawHocuspocus:
    """A Hocuspocus client by hand: frames in, decoded messages out (Pings skipped)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.docs: dict[str, Doc] = {}

    def send(self, message: hp.Message) -> None:
        self.ws.send(hp.encode(message))

    def next(self, match: Callable[[hp.Message], bool], timeout: float = 10) -> hp.Message:
        """The next message `match` accepts; the ones before are applied to the docs."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            message = hp.decode(frame)
            self._apply(message)
            if match(message):
                return message

    def _apply(self, message: hp.Message) -> None:
        if not isinstance(message, hp.Forward) or message.name not in self.docs:
            return
        body = protocol.decode(message.body)
        if isinstance(body, protocol.SyncStep2 | protocol.SyncUpdate):
            self.docs[message.name].apply_update(body.update)

    def auth(self, name: str, token: str = "") -> hp.Message:
        """Send a token for `name`; its answer (Authenticated or PermissionDenied)."""
        self.docs[name] = Doc()
        self.send(hp.Token(name, token, "4.8.0"))
        return self.next(lambda m: isinstance(m, hp.Authenticated | hp.PermissionDenied))

    def edit(self, name: str, text: str) -> None:
        doc = self.docs[name]
        before = doc.get_state()
        doc.get("text", type=Text).insert(0, text)
        update = doc.get_update(before)
        self.send(hp.Forward(name, protocol.encode_sync_update(update)))

    def status_of(self, name: str) -> hp.Message:
        return self.next(lambda m: isinstance(m, hp.SyncStatus | hp.Close) and m.name == name)

    def closed(self, timeout: float = 10) -> tuple[int, str]:
        """Wait for the server to close the socket: (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("the socket stayed open")


@pytest.fixture
def raw() -> Iterator[Callable[..., RawHocuspocus]]:
    """Open raw clients (`raw(server)`), closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_client(server: ServerProcess, **options: Any) -> RawHocuspocus:
            url = f"{server.ws_url}/hocuspocus"
            return RawHocuspocus(stack.enter_context(connect(url, **options)))

        yield open_client


def doc_text(server: ServerProcess, name: str) -> str:
    with urllib.request.urlopen(f"{server.http_url}/api/docs/{name}/text", timeout=10) as answer:
        return answer.read().decode()


def peers_of(server: ServerProcess, name: str) -> int:
    with urllib.request.urlopen(f"{server.http_url}/api/docs", timeout=10) as answer:
        documents = json.loads(answer.read())["documents"]
    return next((d["peers"] for d in documents if d["name"] == name), 0)


def assert_still_works(client: RawHocuspocus, server: ServerProcess, name: str) -> None:
    client.edit(name, TEXT)
    assert client.status_of(name) == hp.SyncStatus(name, True)
    assert doc_text(server, name).startswith(TEXT)


def test_sync_before_auth_is_refused_and_the_other_documents_carry_on(server, raw) -> None:
    client = raw(server)
    assert client.auth("open") == hp.Authenticated("open", hp.Scope.READ_WRITE)
    client.send(hp.Forward("stranger", protocol.encode_sync_step1(b"\x00")))
    refusal = client.next(lambda m: isinstance(m, hp.PermissionDenied))
    assert refusal.name == "stranger" and "authenticate first" in refusal.reason  # type: ignore[union-attr]
    assert_still_works(client, server, "open")


def test_an_unknown_message_type_closes_that_document_only(server, raw) -> None:
    client = raw(server)
    client.auth("a")
    client.auth("b")
    client.ws.send(hp.name_prefix("b") + b"\x0b")
    close = client.next(lambda m: isinstance(m, hp.Close))
    assert close == hp.Close("b", "1003: unknown message type 11")
    assert_still_works(client, server, "a")
    client.edit("b", "ignored")  # a closed document's messages are dropped, not answered
    assert_still_works(client, server, "a")
    assert doc_text(server, "b") == ""


def test_a_malformed_update_closes_that_document_only(server, raw) -> None:
    client = raw(server)
    client.auth("a")
    client.auth("b")
    client.send(hp.Forward("b", protocol.encode_sync_update(b"\x07not an update")))
    close = client.status_of("b")
    assert isinstance(close, hp.Close) and close.reason.startswith("1002: ")  # type: ignore[union-attr]
    assert_still_works(client, server, "a")


def test_a_name_over_the_limit_is_refused(server, raw) -> None:
    client = raw(server)
    client.auth("a")
    long_name = "ü" * 257
    refusal = client.auth(long_name)
    assert isinstance(refusal, hp.PermissionDenied) and refusal.name == long_name
    assert "invalid document name" in refusal.reason
    assert_still_works(client, server, "a")
    client.send(hp.Token("n" * 5000, "", None))  # not worth an answer: the socket closes
    assert client.closed() == (4400, "document name over 256 characters")


@pytest.mark.parametrize("name", ["notes/", "a/../b", "./中文"])
def test_a_name_no_address_can_hold_is_refused(server, raw, name: str) -> None:
    client = raw(server)
    client.auth("a")
    refusal = client.auth(name)  # the page could never open it, nor tell "notes/" from "notes"
    assert isinstance(refusal, hp.PermissionDenied) and refusal.name == name
    assert "invalid document name" in refusal.reason
    assert_still_works(client, server, "a")


def test_a_frame_that_names_no_document_closes_the_socket(server, raw) -> None:
    client = raw(server)
    client.auth("a")
    client.ws.send(b"\x05ab")
    code, reason = client.closed()
    assert code == 1002 and reason.startswith("document name:")


def test_what_a_provider_sends_before_the_auth_answer_is_held_then_applied(server, raw) -> None:
    """The provider sends its token, step 1, awareness (and here an edit) at once."""
    client = raw(server)
    client.docs["held"] = doc = Doc()
    doc.get("text", type=Text).insert(0, TEXT)
    client.send(hp.Token("held", "", "4.8.0"))  # no answer read before the next two
    client.send(hp.Forward("held", protocol.encode_sync_step1(b"\x00")))
    client.send(hp.Forward("held", protocol.encode_sync_update(doc.get_update())))
    assert client.next(lambda m: isinstance(m, hp.Authenticated)).name == "held"  # type: ignore[union-attr]
    assert client.status_of("held") == hp.SyncStatus("held", True)
    assert doc_text(server, "held") == TEXT


def test_a_client_leaving_a_document_frees_its_peer(server, raw) -> None:
    client = raw(server)
    client.auth("a")
    client.auth("b")
    assert peers_of(server, "b") == 1
    client.send(hp.Close("b"))
    deadline = time.monotonic() + 10
    while peers_of(server, "b"):
        assert time.monotonic() < deadline, "the peer stayed"
        time.sleep(0.02)
    assert_still_works(client, server, "a")


def test_broadcast_stateless_reaches_the_documents_other_clients(server, raw) -> None:
    sender, other, elsewhere = (raw(server) for _ in range(3))
    sender.auth("room")
    other.auth("room")
    elsewhere.auth("another")
    payload = json.dumps({"say": "héllo 😀"}, ensure_ascii=False)
    sender.send(hp.BroadcastStateless("room", payload))
    assert other.next(lambda m: isinstance(m, hp.Stateless)) == hp.Stateless("room", payload)
    sender.send(hp.Stateless("room", "for the server only"))
    assert_still_works(sender, server, "room")  # it got no Stateless of its own
    assert_still_works(elsewhere, server, "another")


@pytest.mark.parametrize(
    ("flags", "flood", "code"),
    [
        (["--max-messages-per-second", "1", "--message-burst", "5"], 20, 1008),
        (["--preauth-max-messages", "5"], 20, 1008),
    ],
)
def test_socket_caps_close_the_socket(start_server, raw, flags, flood, code) -> None:
    server = start_server("--fsync", "never", *flags)
    client = raw(server)
    with contextlib.suppress(ConnectionClosed):  # the close may come before the flood ends
        for _ in range(flood):
            client.ws.send(hp.encode(hp.Forward("nope", protocol.encode_query_awareness())))
    assert client.closed()[0] == code


def test_a_socket_that_authenticates_nothing_is_closed(start_server, raw) -> None:
    server = start_server("--fsync", "never", "--first-message-timeout", "0.5")
    assert raw(server).closed() == (4408, "no document authenticated in 0.5 s")


def test_documents_per_socket_are_capped(start_server, raw) -> None:
    server = start_server("--fsync", "never", "--max-documents-per-socket", "2")
    client = raw(server)
    assert isinstance(client.auth("one"), hp.Authenticated)
    assert isinstance(client.auth("two"), hp.Authenticated)
    refusal = client.auth("three")
    assert refusal == hp.PermissionDenied("three", "more than 2 documents on one connection")
    client.send(hp.Close("two"))
    assert isinstance(client.auth("three"), hp.Authenticated)


def test_a_foreign_origin_is_refused_at_the_upgrade(server, raw) -> None:
    with pytest.raises(Exception, match="403"):
        raw(server, origin="https://evil.example")


def test_query_awareness_is_answered_with_the_documents_states(server, raw) -> None:
    watcher, talker = raw(server), raw(server)
    watcher.auth("here")
    talker.auth("here")
    state = protocol.AwarenessEntry(4242, 1, {"user": {"name": "zoë 😀"}})
    talker.send(hp.Forward("here", protocol.encode_awareness([state])))
    watcher.next(lambda m: isinstance(m, hp.Forward) and m.body[0] == 1)  # the broadcast
    watcher.send(hp.Forward("here", protocol.encode_query_awareness()))
    answer = watcher.next(lambda m: isinstance(m, hp.Forward) and m.body[0] == 1)
    entries = protocol.decode(answer.body).entries  # type: ignore[union-attr]
    assert [(e.client_id, e.state) for e in entries] == [(4242, {"user": {"name": "zoë 😀"}})]


def test_a_stateless_message_over_the_size_limit_closes_that_document(start_server, raw) -> None:
    server = start_server("--fsync", "never", "--max-message-bytes", "1024")
    client = raw(server)
    client.auth("a")
    client.auth("b")
    client.send(hp.BroadcastStateless("b", "x" * 2000))
    close = client.status_of("b")
    assert isinstance(close, hp.Close) and close.reason.startswith("1009: message of ")  # type: ignore[union-attr]
    assert_still_works(client, server, "a")


def test_the_door_is_counted_in_the_metrics(server, raw) -> None:
    client = raw(server)
    client.auth("counted")
    assert_still_works(client, server, "counted")
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'collab_connections{door="hocuspocus"} 1.0' in metrics
    received = next(
        line
        for line in metrics.splitlines()
        if line.startswith('collab_messages_received_total{door="hocuspocus"}')
    )
    assert float(received.split()[-1]) >= 2


def test_refused_tokens_spend_the_pre_auth_budget(start_server, raw) -> None:
    """A stranger cannot make the server check tokens for ever on one socket."""
    server = start_server(
        "--fsync", "never", "--auth-secret", "s3cret", "--preauth-max-messages", "5"
    )
    client = raw(server)
    for index in range(6):
        client.send(hp.Token(f"guess-{index}", "not a token", "4.8.0"))
    assert client.closed()[0] == 1008


def test_awareness_before_the_token_is_held_but_a_sync_is_refused(server, raw) -> None:
    """The provider sends awareness set right after it is made before its token (never a
    sync message): held for the token's answer, and shown once the document is open."""
    early, watcher = raw(server), raw(server)
    watcher.auth("early")
    state = protocol.AwarenessEntry(777, 1, {"user": {"name": "early 🐦"}})
    early.send(hp.Forward("early", protocol.encode_awareness([state])))
    early.send(hp.Forward("too-early", protocol.encode_sync_step1(b"\x00")))
    refusal = early.next(lambda m: isinstance(m, hp.PermissionDenied))
    assert refusal.name == "too-early"  # type: ignore[union-attr]
    assert early.auth("early") == hp.Authenticated("early", hp.Scope.READ_WRITE)
    shown = watcher.next(lambda m: isinstance(m, hp.Forward) and m.body[0] == 1)
    entries = protocol.decode(shown.body).entries  # type: ignore[union-attr]
    assert [e.state for e in entries] == [{"user": {"name": "early 🐦"}}]
