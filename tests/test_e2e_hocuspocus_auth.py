"""Tokens on the Hocuspocus door: the provider's `token` is a `collab token` JWT, answered
per document on a shared socket (Authenticated with a scope, or PermissionDenied), and a
read-only document stays read-only. Without a secret, the authenticate hook decides."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from conftest import ServerProcess, node_available, require, wait_until
from hocuspocus_node import NodeHocuspocus
from starlette.requests import HTTPConnection
from test_e2e_hocuspocus import UNICODE, served_here
from test_e2e_hocuspocus_refusals import raw  # noqa: F401 (fixture)

from collab import Access, AccessDenied, Settings
from collab.access import tokens
from collab.yjs import hocuspocus as hp

pytestmark = pytest.mark.node

SECRET = "a secret only the server and the token minter share"


def token(doc: str, **options: object) -> str:
    return tokens.mint(SECRET, doc, **options)  # type: ignore[arg-type]


@pytest.fixture
def secured(start_server) -> ServerProcess:
    return start_server("--fsync", "never", "--auth-secret", SECRET)


@pytest.fixture
def node() -> Iterator[NodeHocuspocus]:
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    process = NodeHocuspocus()
    yield process
    process.kill()


def text_of(server: ServerProcess, name: str) -> str:
    url = f"{server.http_url}/api/docs/{name}/text?token={token(name)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def documents(server: ServerProcess) -> set[str]:
    url = f"{server.http_url}/api/docs?token={token('*')}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return {d["name"] for d in json.loads(answer.read())["documents"]}


def failures(peer) -> list[str]:
    return [event["reason"] for event in peer.events("authenticationFailed")]


def test_a_read_write_token_edits(secured, node) -> None:
    peer = node.provider(secured.ws_url, "team/notes", token=token("team/*", user="zoë"))
    assert peer.status()["scope"] == "read-write"
    peer.insert(0, UNICODE)
    peer.wait_saved()
    assert text_of(secured, "team/notes") == UNICODE


def test_a_readonly_token_reads_and_cannot_edit(secured, node) -> None:
    writer = node.provider(secured.ws_url, "ro", token=token("ro"), awareness={"name": "w"})
    writer.insert(0, "before")
    writer.wait_saved()
    reader = node.provider(
        secured.ws_url, "ro", token=token("ro", readonly=True), awareness={"name": "reader 👀"}
    )
    assert reader.status()["scope"] == "readonly"
    reader.wait_text("before")
    reader.insert(0, "refused ")
    wait_until(lambda: reader.status()["unsynced"] >= 1, what="the refusal leaves it pending")
    writer.insert(6, " after")  # the writer's later change arrives; the refused one never does
    reader.wait_text("refused before after")
    writer.wait_saved()
    assert text_of(secured, "ro") == "before after"
    assert writer.text() == "before after"
    assert reader.status()["unsynced"] >= 1, "SyncStatus false: hasUnsyncedChanges stays"
    wait_until(  # awareness is allowed
        lambda: any(
            s.get("user") == {"name": "reader 👀"} for s in writer.awareness_states().values()
        ),
        what="the writer sees the reader",
    )


def test_tokens_are_answered_per_document_on_a_shared_socket(secured, node) -> None:
    socket = node.socket(secured.ws_url)
    good = node.provider(None, "mine", socket=socket, token=token("mine"))
    wrong = node.provider(None, "theirs", socket=socket, token=token("mine"), wait_synced=False)
    expired = node.provider(
        None, "late", socket=socket, token=token("late", ttl=-60), wait_synced=False
    )
    missing = node.provider(None, "none", socket=socket, wait_synced=False)
    wait_until(lambda: failures(wrong) and failures(expired) and failures(missing))
    assert "not for this document" in failures(wrong)[0]
    assert failures(expired) == ["the token has expired"]
    assert "a token is needed" in failures(missing)[0]
    good.insert(0, UNICODE)
    good.wait_saved()
    assert text_of(secured, "mine") == UNICODE
    assert documents(secured) == {"mine"}, "documents a token does not cover are not loaded"
    assert node.events_of(None, "socket-disconnect") == []  # type: ignore[arg-type]


def test_without_a_secret_the_hook_decides_with_the_providers_token(tmp_path, raw) -> None:  # noqa: F811
    """The hook sees the token the provider sent in `connection.scope["collab.token"]`."""
    seen: list[tuple[str, str]] = []

    def authenticate(connection: HTTPConnection, name: str) -> Access:
        sent = connection.scope["collab.token"]
        seen.append((name, sent))
        if sent == "reader":
            return Access(user="rita", readonly=True)
        if sent != "writer":
            raise AccessDenied("who are you?", 401)
        return Access(user="will")

    settings = Settings(data_dir=tmp_path / "data", fsync="never", log_level="warning")
    with served_here(settings, authenticate=authenticate) as (url, _):
        client = raw(SimpleNamespace(ws_url=url))
        assert client.auth("w", "writer") == hp.Authenticated("w", hp.Scope.READ_WRITE)
        assert client.auth("r", "reader") == hp.Authenticated("r", hp.Scope.READONLY)
        assert client.auth("x", "stranger") == hp.PermissionDenied("x", "who are you?")
        client.edit("r", "refused")
        assert client.status_of("r") == hp.SyncStatus("r", False)
        client.edit("w", UNICODE)
        assert client.status_of("w") == hp.SyncStatus("w", True)
    assert seen == [("w", "writer"), ("r", "reader"), ("x", "stranger")]


def test_a_token_that_expires_closes_its_document_on_the_shared_socket(secured, node) -> None:
    """Expiry holds on this door too: at its token's end a document is closed with 4401 and
    the reason; the socket and its other documents go on."""
    socket = node.socket(secured.ws_url)
    brief = node.provider(None, "brief", socket=socket, token=token("brief", ttl=3))
    lasting = node.provider(None, "lasting", socket=socket, token=token("lasting"))
    brief.insert(0, "中文 😀")
    brief.wait_saved()
    wait_until(lambda: brief.events("close"), what="the expired document's close", timeout=15)
    assert "4401" in brief.events("close")[0]["reason"]
    assert "expired" in brief.events("close")[0]["reason"]
    lasting.insert(0, "still here 👍🏽")
    lasting.wait_saved()
    assert text_of(secured, "lasting") == "still here 👍🏽"
    assert text_of(secured, "brief") == "中文 😀"
