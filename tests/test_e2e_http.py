"""The HTTP API and pages of a real `collab serve` process, fed by pycrdt peers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from conftest import REPO, ServerProcess
from pyclient import YClient, eventually, state_vector, url_name
from pycrdt import Doc, Text

TEXT = "emoji 😀, family 👨‍👩‍👧, thumb 👍🏽, flag 🇫🇷, 中文, café e\u0301\r\nsecond line\r\n"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that do not restart it."""
    server = ServerProcess(tmp_path_factory.mktemp("http") / "data", ["--fsync", "never"])
    yield server.start()
    server.kill()


def client_for(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10)


@pytest.fixture
async def http(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(shared) as client:
        yield client


async def write(server: ServerProcess, name: str, text: str) -> YClient:
    """Connect a peer to `name`, type `text` into it; return once a second peer has it."""
    url = f"{server.ws_url}/yjs/{url_name(name)}"
    writer = await YClient.connect(url)
    await writer.synced()
    writer.insert(0, text)
    async with await YClient.connect(url) as reader:
        await reader.wait_text(text)
    return writer


async def documents(http: httpx.AsyncClient) -> dict[str, dict]:
    response = await http.get("/api/docs")
    assert response.status_code == 200
    return {d["name"]: d for d in response.json()["documents"]}


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_text_is_the_documents_utf8_text(shared: ServerProcess, http) -> None:
    server = shared
    name = "notes/中文 é 😀"
    async with await write(server, name, TEXT) as writer:
        # Edits in the middle, at code point positions, around the multi-byte characters.
        writer.insert(TEXT.index("👍🏽"), "[👩🏾‍💻]")
        writer.delete(TEXT.index("🇫🇷") + len("[👩🏾‍💻]"), len("🇫🇷"))
        expected = TEXT.replace("👍🏽", "[👩🏾‍💻]👍🏽").replace("🇫🇷", "")
        async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(name)}") as reader:
            await reader.wait_text(expected)
        response = await http.get(f"/api/docs/{url_name(name)}/text")
        assert response.status_code == 200
        assert response.headers["content-type"].lower() == "text/plain; charset=utf-8"
        assert response.content == expected.encode("utf-8")  # \r\n and all, byte for byte
        assert writer.text == expected


async def test_update_rebuilds_the_document(shared: ServerProcess, http) -> None:
    server = shared
    name = "rebuild 👨‍👩‍👧"
    async with await write(server, name, TEXT) as writer:
        writer.insert(3, "中文")
        writer.insert(len(writer.text), "\r\nend 🇫🇷")
        async with await YClient.connect(f"{server.ws_url}/yjs/{url_name(name)}") as reader:
            await reader.wait_text(writer.text)
        response = await http.get(f"/api/docs/{url_name(name)}/update")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        fresh = Doc()
        fresh.apply_update(response.content)
        assert str(fresh.get("text", type=Text)) == writer.text
        assert state_vector(response.content) == state_vector(writer.doc.get_update())


async def test_document_list_reports_size_revisions_peers_and_loading(
    server: ServerProcess,
) -> None:
    async with client_for(server) as http:
        await check_document_list(server, http)


async def check_document_list(server: ServerProcess, http: httpx.AsyncClient) -> None:
    one, two = "list one", "list two é 😀"
    first = await write(server, one, "a")
    first.append("b")
    second = await write(server, two, TEXT)
    third = await YClient.connect(f"{server.ws_url}/yjs/{url_name(two)}")
    await third.synced()
    await third.wait_text(TEXT)
    await eventually(lambda: peer_counts(http, one, two), (1, 2))
    listed = await documents(http)
    for name, edits in ((one, 2), (two, 1)):
        entry = listed[name]
        assert set(entry) >= {"name", "size_bytes", "rev", "peers", "loaded"}
        assert entry["loaded"] is True
        assert entry["size_bytes"] > 0
        assert entry["rev"] >= edits
    for client in (first, second, third):
        await client.close()
    await eventually(lambda: peer_counts(http, one, two), (0, 0))

    server.restart()  # a crash: what was visible was stored, nothing is loaded any more
    listed = await documents(http)
    assert {one, two} <= set(listed)
    assert [listed[n]["loaded"] for n in (one, two)] == [False, False]
    assert (await http.get(f"/api/docs/{url_name(two)}/text")).text == TEXT


async def peer_counts(http: httpx.AsyncClient, *names: str) -> tuple[int, ...]:
    listed = await documents(http)
    return tuple(listed[name]["peers"] if name in listed else 0 for name in names)


@pytest.mark.parametrize("what", ["text", "update"])
async def test_unknown_document_is_a_json_404(http: httpx.AsyncClient, what: str) -> None:
    response = await http.get(f"/api/docs/{url_name('never written 😀')}/{what}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]
    assert "never written 😀" not in await documents(http)


@pytest.mark.parametrize("name", ["nul\x00byte", "x" * 257])
async def test_invalid_name_is_a_json_400(http: httpx.AsyncClient, name: str) -> None:
    response = await http.get(f"/api/docs/{url_name(name)}/text")
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("path", "page"), [("/", "index.html"), (f"/d/{url_name('notes/é 😀')}", "editor.html")]
)
async def test_pages_are_html(http: httpx.AsyncClient, path: str, page: str) -> None:
    if not (REPO / "frontend" / page).exists():
        pytest.skip(f"frontend/{page} is not written yet")
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
