"""The document lifecycle over HTTP against a real `collab serve`: create, import, edit
from a service, delete, and generations (an old copy is never merged back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from conftest import ServerProcess, node_available, require, wait_until
from pyclient import YClient, connect_options, eventually, url_name
from pycrdt import Doc, Text
from websockets.asyncio.client import connect
from yjs_node import NodeYjs

from collab.access import tokens
from collab.yjs import protocol

TEXT = "emoji 😀, family 👨‍👩‍👧, thumb 👍🏽, 中文, café e\u0301\r\nsecond line\r\n"
SECRET = "s" * 32  # a service's text-protocol secret


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("lifecycle") / "data"
    server = ServerProcess(data, ["--fsync", "never", "--max-document-bytes", "20000"])
    yield server.start()
    server.kill()


@pytest.fixture
async def http(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.http_url, trust_env=False, timeout=10) as client:
        yield client


def yjs_update(text: str) -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


async def put_text(http: httpx.AsyncClient, name: str, text: str, **params: str):
    headers = {"content-type": "text/plain; charset=utf-8"}
    return await http.put(
        f"/api/docs/{url_name(name)}", content=text.encode(), headers=headers, params=params
    )


async def text_of(http: httpx.AsyncClient, name: str) -> str:
    response = await http.get(f"/api/docs/{url_name(name)}/text")
    assert response.status_code == 200, response.text
    return response.content.decode()


async def wait_rev(http: httpx.AsyncClient, name: str, rev: int) -> None:
    async def current() -> int:
        documents = (await http.get("/api/docs")).json()["documents"]
        return next(d["rev"] for d in documents if d["name"] == name)

    await eventually(current, rev)


class TextPeer:
    """A minimal text-protocol client on a raw WebSocket."""

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def join(cls, server: ServerProcess, name: str, **hello) -> tuple[TextPeer, dict]:
        ws = await connect(f"{server.ws_url}/ot/{url_name(name)}", **connect_options())
        peer = cls(ws)
        await ws.send(json.dumps({"type": "hello", "secret": "t" * 32, **hello}))
        return peer, await peer.next("welcome")

    async def next(self, kind: str) -> dict:
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == kind:
                return message


async def test_put_creates_with_text_and_refuses_to_overwrite(shared, http) -> None:
    name = "made 😀/中文"
    response = await put_text(http, name, TEXT)
    assert response.status_code == 201, response.text
    assert response.json()["rev"] == 1
    assert await text_of(http, name) == TEXT
    again = await put_text(http, name, "other")
    assert again.status_code == 409 and "replace" in again.json()["error"]
    assert await text_of(http, name) == TEXT


async def test_replace_is_one_new_revision_seen_by_peers(shared, http) -> None:
    name = "replaced"
    assert (await put_text(http, name, TEXT)).status_code == 201
    async with await YClient.connect(f"{shared.ws_url}/yjs/{name}") as peer:
        await peer.wait_text(TEXT)
        replaced = TEXT.replace("中文", "日本語 🇯🇵")
        response = await put_text(http, name, replaced, replace="1")
        assert response.status_code == 200, response.text
        assert response.json()["rev"] == 2
        await peer.wait_text(replaced)
    history = (await http.get(f"/api/docs/{name}/history")).json()
    assert [entry["rev"] for entry in history["revisions"]] == [2, 1]


async def test_import_a_yjs_update(shared, http) -> None:
    name = "imported"
    headers = {"content-type": "application/octet-stream"}
    response = await http.put(f"/api/docs/{name}", content=yjs_update(TEXT), headers=headers)
    assert response.status_code == 201, response.text
    assert await text_of(http, name) == TEXT
    # Replacing from an update makes the text equal to the update's, in one revision.
    again = await http.put(
        f"/api/docs/{name}",
        content=yjs_update("new 👍🏽"),
        headers=headers,
        params={"replace": "1"},
    )
    assert again.status_code == 200 and again.json()["rev"] == 2
    assert await text_of(http, name) == "new 👍🏽"


async def test_bad_bodies_are_refused_and_store_nothing(shared, http) -> None:
    headers = {"content-type": "application/octet-stream"}
    broken = await http.put("/api/docs/broken", content=b"\x01\x02garbage", headers=headers)
    assert broken.status_code == 400, broken.text
    # An update that depends on items the document does not have does not apply.
    base = Doc()
    text = base.get("text", type=Text)
    text.insert(0, "base")
    before = base.get_state()
    text.insert(4, " more")
    dangling = base.get_update(before)
    pending = await http.put("/api/docs/dangling", content=dangling, headers=headers)
    assert pending.status_code == 400, pending.text
    big = await put_text(http, "big", "x" * 30000)
    assert big.status_code == 413, big.text
    not_utf8 = await http.put(
        "/api/docs/latin1", content="café".encode("latin-1"), headers={"content-type": "text/plain"}
    )
    assert not_utf8.status_code == 400
    odd = await http.put(
        "/api/docs/odd", content=b"{}", headers={"content-type": "application/json"}
    )
    assert odd.status_code == 415
    for name in ("broken", "dangling", "big", "latin1", "odd"):
        assert (await http.get(f"/api/docs/{name}/text")).status_code == 404


async def test_a_services_op_is_transformed_and_acked_exactly_once(shared, http) -> None:
    name = "service ops"
    url = f"/api/docs/{url_name(name)}/ops"
    assert (await put_text(http, name, "héllo 😀")).status_code == 201
    response = await http.get(f"/api/docs/{url_name(name)}/text")
    rev = int(response.headers["x-collab-rev"])
    first = {"secret": SECRET, "seq": 1, "rev": rev, "op": [5, "!", 2]}
    assert (await http.post(url, json=first)).json() == {"seq": 1, "rev": rev + 1}
    async with await YClient.connect(f"{shared.ws_url}/yjs/{url_name(name)}") as peer:
        await peer.wait_text("héllo! 😀")
        peer.insert(0, "中文 ")
        await wait_rev(http, name, rev + 2)
        # Made on the text before the peer's insert: transformed past it.
        op = {"secret": SECRET, "seq": 2, "rev": rev + 1, "op": [8, " 👍🏽"]}
        response = await http.post(url, json=op)
        assert response.status_code == 200, response.text
        acked = response.json()["rev"]
        assert acked == rev + 3
        await peer.wait_text("中文 héllo! 😀 👍🏽")
        again = await http.post(url, json=op)
        assert again.json() == {"seq": 2, "rev": acked}  # acked again, not applied twice
        assert await text_of(http, name) == "中文 héllo! 😀 👍🏽"
    future = {"secret": SECRET, "seq": 3, "rev": 99, "op": ["x"]}
    response = await http.post(url, json=future)
    assert response.status_code == 409 and "future-rev" in response.json()["error"]
    bad = {"secret": SECRET, "seq": 3, "rev": acked, "op": [100, "x"]}
    assert (await http.post(url, json=bad)).status_code == 400
    assert (await http.post(url, content=b"[1,")).status_code == 400
    assert (await http.post("/api/docs/nobody/ops", json=op)).status_code == 404
    assert await text_of(http, name) == "中文 héllo! 😀 👍🏽"


async def test_a_services_yjs_update(shared, http) -> None:
    name = "service update"
    assert (await put_text(http, name, "abc")).status_code == 201
    doc = Doc()
    doc.apply_update((await http.get(f"/api/docs/{name}/update")).content)
    before = doc.get_state()
    doc.get("text", type=Text).insert(3, " 😀")
    headers = {"content-type": "application/octet-stream"}
    response = await http.post(
        f"/api/docs/{name}/update", content=doc.get_update(before), headers=headers
    )
    assert response.status_code == 200 and response.json()["rev"] == 2
    assert await text_of(http, name) == "abc 😀"


async def test_delete_closes_every_peer_and_frees_the_name(shared, http) -> None:
    name = "doomed é"
    assert (await put_text(http, name, TEXT)).status_code == 201
    ypeer = await YClient.connect(f"{shared.ws_url}/yjs/{url_name(name)}")
    await ypeer.wait_text(TEXT)
    tpeer, welcome = await TextPeer.join(shared, name)
    generation = welcome["generation"]
    response = await http.delete(f"/api/docs/{url_name(name)}")
    assert response.status_code == 200, response.text
    assert response.json()["generation"] != generation
    code, reason = await ypeer.wait_closed()
    assert code == 4404 and "deleted" in reason
    await tpeer.ws.wait_closed()
    assert tpeer.ws.close_code == 4404
    for path in ("text", "update", "history"):
        assert (await http.get(f"/api/docs/{url_name(name)}/{path}")).status_code == 404
    assert name not in [d["name"] for d in (await http.get("/api/docs")).json()["documents"]]
    assert (await http.delete(f"/api/docs/{url_name(name)}")).status_code == 404
    made = await put_text(http, name, "again 🇫🇷")
    assert made.status_code == 201 and made.json()["rev"] == 1
    assert made.json()["generation"] == response.json()["generation"]
    assert await text_of(http, name) == "again 🇫🇷"


async def test_a_text_client_of_an_old_generation_is_told_and_reset(shared, http) -> None:
    name = "old text copy"
    assert (await put_text(http, name, TEXT)).status_code == 201
    peer, welcome = await TextPeer.join(shared, name)
    old = welcome["generation"]
    await peer.ws.close()
    assert (await http.delete(f"/api/docs/{name}")).status_code == 200
    assert (await put_text(http, name, "new")).status_code == 201
    again, welcome = await TextPeer.join(shared, name, rev=1, generation=old)
    assert welcome["reset"] and welcome["text"] == "new" and "ops" not in welcome
    assert welcome["generation"] != old
    await again.ws.close()
    same, welcome = await TextPeer.join(shared, name, rev=1, generation=welcome["generation"])
    assert "reset" not in welcome and welcome["ops"] == []
    await same.ws.close()


async def test_a_yjs_peer_with_an_old_copy_is_refused_and_never_merged(shared, http) -> None:
    name = "old-yjs-copy"
    assert (await put_text(http, name, TEXT)).status_code == 201
    old = await YClient.connect(f"{shared.ws_url}/yjs/{name}")
    await old.wait_text(TEXT)
    old_state = old.doc.get_update()
    await old.close()
    assert (await http.delete(f"/api/docs/{name}")).status_code == 200
    assert (await put_text(http, name, "fresh 😀")).status_code == 201
    # A peer holding the old copy: its sync step 1 shows old items: refused.
    stale = YClient(await connect(f"{shared.ws_url}/yjs/{name}", **connect_options()))
    stale.doc.apply_update(old_state)
    stale.send_raw(protocol.encode_sync_step1(stale.doc.get_state()))
    stale.send_raw(protocol.encode_sync_step2(stale.doc.get_update()))
    code, reason = await stale.wait_closed()
    assert code == 4410 and "deleted or restored" in reason
    # One that sends its old items as an update without a step 1 is refused too.
    sneaky = YClient(await connect(f"{shared.ws_url}/yjs/{name}", **connect_options()))
    sneaky.send_raw(protocol.encode_sync_update(old_state))
    assert (await sneaky.wait_closed())[0] == 4410
    assert await text_of(http, name) == "fresh 😀"
    # A new peer of this generation, with edits the server has not seen yet, is merged.
    async with await YClient.connect(f"{shared.ws_url}/yjs/{name}") as fresh:
        await fresh.wait_text("fresh 😀")
        fresh.insert(0, "👍🏽 ")
        async with await YClient.connect(f"{shared.ws_url}/yjs/{name}") as other:
            await other.wait_text("👍🏽 fresh 😀")


async def test_tokens_and_the_admin_flag(start_server) -> None:
    secret = "x" * 32
    server = start_server("--fsync", "never", "--auth-secret", secret)
    name = "team/plan"
    writer = tokens.mint(secret, name)
    reader = tokens.mint(secret, name, readonly=True)
    admin = tokens.mint(secret, "team/*", admin=True)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        url = f"/api/docs/{url_name(name)}"
        headers = {"content-type": "text/plain"}
        assert (await http.put(url, content=b"x", headers=headers)).status_code == 401
        auth = {**headers, "authorization": f"Bearer {reader}"}
        assert (await http.put(url, content=b"x", headers=auth)).status_code == 403
        auth = {**headers, "authorization": f"Bearer {writer}"}
        assert (await http.put(url, content=b"x", headers=auth)).status_code == 201
        op = {"secret": SECRET, "seq": 1, "rev": 1, "op": [1, "y"]}
        edited = await http.post(
            f"{url}/ops", json=op, headers={"authorization": f"Bearer {writer}"}
        )
        assert edited.status_code == 200
        refused = await http.delete(url, headers={"authorization": f"Bearer {writer}"})
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        other = tokens.mint(secret, "other", admin=True)
        assert (
            await http.delete(url, headers={"authorization": f"Bearer {other}"})
        ).status_code == 403
        deleted = await http.delete(url, headers={"authorization": f"Bearer {admin}"})
        assert deleted.status_code == 200


def test_the_y_websocket_provider_never_merges_an_offline_copy_back(shared) -> None:
    """Real providers: one holds an offline copy (with offline edits) across a delete and
    a re-create: it is refused, the old text never comes back, and an offline editor of
    the new generation is merged."""
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    room = "offline-copy"
    http = httpx.Client(base_url=shared.http_url, trust_env=False, timeout=10)
    headers = {"content-type": "text/plain"}
    assert http.put(f"/api/docs/{room}", content=TEXT.encode(), headers=headers).status_code == 201
    with NodeYjs() as node:
        old = node.peer(shared.ws_url, room)
        old.wait_text(TEXT)
        old.disconnect()
        old.insert(0, "offline 😀 ")  # typed while offline, never sent
        assert http.delete(f"/api/docs/{room}").status_code == 200
        fresh_text = "new generation 👍🏽\r\n"
        made = http.put(f"/api/docs/{room}", content=fresh_text.encode(), headers=headers)
        assert made.status_code == 201
        current = node.peer(shared.ws_url, room)
        current.wait_text(fresh_text)
        current.disconnect()
        end = len(fresh_text.encode("utf-16-le")) // 2  # the provider counts UTF-16 units
        current.insert(end, "kept 中文")  # an offline edit of this generation
        old.node.request("reconnect", peer=old.name)

        def refused() -> list:
            return [e for e in node.events_of(old.name, "close") if e["code"] is not None]

        wait_until(refused, 10, "the old copy refused")
        assert refused()[0]["code"] == 4410 and "deleted or restored" in refused()[0]["reason"]
        current.node.request("reconnect", peer=current.name)
        current.wait_synced()
        watcher = node.peer(shared.ws_url, room)
        watcher.wait_text(fresh_text + "kept 中文")
        old.node.request("destroy", peer=old.name)  # stop its reconnect attempts
    assert http.get(f"/api/docs/{room}/text").text == fresh_text + "kept 中文"
    http.close()


async def test_a_delete_during_heavy_editing_damages_nothing(start_server) -> None:
    """Peers type as fast as they can while the document is deleted: they are closed,
    nothing of the old text survives, another document being edited meanwhile is intact,
    and the name works again at once."""
    shared = start_server("--fsync", "never")  # the default size limits: typing never hits them
    http = httpx.AsyncClient(base_url=shared.http_url, trust_env=False, timeout=10)
    name, bystander = "heavy", "bystander"
    assert (await put_text(http, name, "start ")).status_code == 201
    assert (await put_text(http, bystander, "calm ")).status_code == 201
    typists = [await YClient.connect(f"{shared.ws_url}/yjs/{name}") for _ in range(3)]
    calm = await YClient.connect(f"{shared.ws_url}/yjs/{bystander}")
    for typist in typists:
        await typist.synced()
    await calm.synced()
    stop = asyncio.Event()

    async def type_away(typist: YClient) -> None:
        while not stop.is_set() and not typist.closed:
            typist.insert(0, "😀中")
            await asyncio.sleep(0)  # let the frames out: as fast as the socket goes

    tasks = [asyncio.create_task(type_away(typist)) for typist in typists]
    await typists[0].until(lambda: len(typists[0].text) > 200, what="heavy typing")
    calm.append("still here 👍🏽")
    deleted = await http.delete(f"/api/docs/{name}")
    assert deleted.status_code == 200, deleted.text
    for typist in typists:
        assert (await typist.wait_closed())[0] == 4404
    stop.set()
    await asyncio.gather(*tasks)
    assert (await http.get(f"/api/docs/{name}/text")).status_code == 404
    await calm.wait_text("calm still here 👍🏽")
    assert await text_of(http, bystander) == "calm still here 👍🏽"
    assert (await put_text(http, name, "again")).status_code == 201
    async with await YClient.connect(f"{shared.ws_url}/yjs/{name}") as fresh:
        await fresh.wait_text("again")
    assert await text_of(http, name) == "again"
    await calm.close()
    await http.aclose()


async def test_a_document_damaged_on_disk_can_be_deleted(start_server) -> None:
    server = start_server("--fsync", "always", "--compact-log-records", "1000000")
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        for piece in ("one 😀", " two 中文", " three\r\n"):
            text = (await http.get("/api/docs/broken/text")).text if piece != "one 😀" else ""
            assert (await put_text(http, "broken", text + piece, replace="1")).is_success
    server.kill()
    (log,) = sorted((server.data_dir / "docs" / "n-broken").glob("log-*.ylog"))
    damaged = bytearray(log.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    log.write_bytes(bytes(damaged))
    server.start()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        assert (await http.get("/api/docs/broken/text")).status_code == 500
        assert (await http.delete("/api/docs/broken")).status_code == 200
        assert (await http.get("/api/docs/broken/text")).status_code == 404
        assert (await put_text(http, "broken", "made again")).status_code == 201
        assert await text_of(http, "broken") == "made again"


async def test_an_op_on_a_revision_too_old_is_refused_and_changes_nothing(shared, http) -> None:
    name = "too old"
    url = f"/api/docs/{url_name(name)}/ops"
    assert (await put_text(http, name, "abc")).status_code == 201  # rev 1
    async with await YClient.connect(f"{shared.ws_url}/yjs/{url_name(name)}") as peer:
        await peer.wait_text("abc")
        peer.append(" 😀")
        await wait_rev(http, name, 2)
    # Nobody followed the text as ops before this first service op: rev 1 cannot be caught up.
    op = {"secret": SECRET, "seq": 1, "rev": 1, "op": [3, "!"]}
    response = await http.post(url, json=op)
    assert response.status_code == 409 and "too-old" in response.json()["error"]
    assert await text_of(http, name) == "abc 😀"
    op = {"secret": SECRET, "seq": 1, "rev": 2, "op": [5, "!"]}  # redone on the current text
    assert (await http.post(url, json=op)).json() == {"seq": 1, "rev": 3}
    assert await text_of(http, name) == "abc 😀!"
