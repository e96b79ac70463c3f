"""A damaged document refuses to load, loudly, and harms nothing else."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import ServerProcess
from pyclient import YClient


async def write_document(server: ServerProcess, name: str, pieces: list[str]) -> None:
    """Several edits, each acknowledged by another peer, so the log has several records."""
    writer = await YClient.connect(f"{server.ws_url}/yjs/{name}")
    reader = await YClient.connect(f"{server.ws_url}/yjs/{name}")
    await writer.synced()
    for piece in pieces:
        writer.append(piece)
        await reader.wait_text(writer.text)
    await writer.close()
    await reader.close()


def log_file(data_dir: Path, key: str) -> Path:
    (log,) = sorted((data_dir / "docs" / key).glob("log-*.ylog"))
    return log


async def test_corrupt_middle_record_refuses_that_document_only(start_server) -> None:
    server = start_server("--fsync", "always", "--compact-log-records", "1000000")
    await write_document(server, "broken", ["one 😀", " two 中文", " three e\u0301", " four\r\n"])
    await write_document(server, "fine", ["still here 👍🏽"])
    server.kill()
    log = log_file(server.data_dir, "n-broken")
    damaged = bytearray(log.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # a record in the middle, not the torn tail
    log.write_bytes(bytes(damaged))
    before = {p: p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file()}
    server.start()

    peer = await YClient.connect(f"{server.ws_url}/yjs/broken")
    code, reason = await peer.wait_closed()
    assert code == 1011 and "damaged" in reason
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get("/api/docs/broken/text")
        assert response.status_code == 500 and "damaged" in response.json()["error"]
        assert (await http.get("/api/docs/fine/text")).text == "still here 👍🏽"
    good = await YClient.connect(f"{server.ws_url}/yjs/fine")
    await good.wait_text("still here 👍🏽")
    await peer.close()
    await good.close()

    server.stop()
    after = {p: p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file()}
    assert after[log] == before[log], "the damaged log was rewritten"
    assert "broken" in server.log() and "offset" in server.log()


async def test_torn_tail_is_cut_and_the_rest_served(start_server) -> None:
    server = start_server("--fsync", "always", "--compact-log-records", "1000000")
    await write_document(server, "torn", ["kept 😀", " lost"])
    server.kill()
    log = log_file(server.data_dir, "n-torn")
    log.write_bytes(log.read_bytes()[:-3])  # a crash in the middle of the last append
    server.start()
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/api/docs/torn/text")).text == "kept 😀"
    assert "torn" in server.log().lower()
