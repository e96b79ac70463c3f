"""`collab list|export|import|delete|backup|restore` on the file store and PostgreSQL, with
and without a server running."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from conftest import REPO, ServerProcess
from pyclient import YClient, connect_options
from redis_server import RedisServer
from websockets.asyncio.client import connect

from collab.access import tokens
from collab.yjs import protocol

TEXT = "héllo 😀 👨‍👩‍👧 中文 e\u0301\r\nline 2\r\n"


def collab(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "collab", *map(str, args)]
    return subprocess.run(command, input=stdin, capture_output=True, cwd=REPO, timeout=60)


def ok(*args: str | Path, stdin: bytes | None = None) -> bytes:
    done = collab(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def listed(*where: str | Path) -> dict[str, int]:
    lines = ok("list", *where).decode().splitlines()
    return {entry["name"]: entry["rev"] for entry in map(json.loads, lines)}


def test_the_commands_on_a_file_store(tmp_path: Path) -> None:
    where = ("--data-dir", tmp_path / "data")
    source = tmp_path / "a.txt"
    source.write_bytes(TEXT.encode())
    name = "notes/a é 😀"
    ok("import", name, source, *where)
    assert ok("export", name, *where) == TEXT.encode()
    again = collab("import", name, source, *where)
    assert again.returncode == 1 and b"--replace" in again.stderr
    update = tmp_path / "a.yupdate"
    ok("export", name, "--format", "yjs", "-o", update, *where)
    ok("import", "copy", update, "--format", "yjs", *where)
    assert ok("export", "copy", *where) == TEXT.encode()
    ok("import", "copy", "-", "--replace", *where, stdin="new 👍🏽".encode())
    assert ok("export", "copy", *where) == "new 👍🏽".encode()
    assert set(listed(*where)) == {name, "copy"}
    ok("delete", "copy", *where)
    assert set(listed(*where)) == {name}
    gone = collab("delete", "copy", *where)
    assert gone.returncode == 1 and b"no document" in gone.stderr
    missing = collab("export", "copy", *where)
    assert missing.returncode == 1
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x02garbage")
    refused = collab("import", "broken", bad, "--format", "yjs", *where)
    assert refused.returncode == 1 and b"refused" in refused.stderr
    assert set(listed(*where)) == {name}


def test_backup_while_the_server_runs_has_every_acknowledged_edit(
    start_server, tmp_path: Path
) -> None:
    server: ServerProcess = start_server("--fsync", "never", "--compact-log-bytes", "4096")
    http = httpx.Client(base_url=server.http_url, trust_env=False, timeout=10)
    plain = {"content-type": "text/plain"}
    assert http.put("/api/docs/busy", content=b"start ", headers=plain).status_code == 201
    stop = threading.Event()

    def type_away() -> None:  # a second document written all along (compactions too)
        seq = 0
        while not stop.is_set():
            seq += 1
            http.put(
                "/api/docs/other",
                content=f"{seq} 😀".encode() * 50,
                headers=plain,
                params={"replace": "1"},
            )

    typist = threading.Thread(target=type_away)
    typist.start()
    try:
        acked = "start "
        for round_ in range(3):
            for n in range(10):
                text = f"{round_}.{n} 中文 "
                op = {"secret": "b" * 32, "seq": round_ * 10 + n + 1, "rev": 0, "op": []}
                rev = int(http.get("/api/docs/busy/text").headers["x-collab-rev"])
                op["rev"], op["op"] = rev, [len(acked), text]
                answer = http.post("/api/docs/busy/ops", json=op)
                assert answer.status_code == 200, answer.text
                acked += text
            dest = tmp_path / f"backup-{round_}"
            ok("backup", dest, "--data-dir", server.data_dir)
            restored = tmp_path / f"restored-{round_}"
            ok("restore", dest, "--data-dir", restored)
            assert ok("export", "busy", "--data-dir", restored).decode() == acked
            assert "other" in listed("--data-dir", restored)
    finally:
        stop.set()
        typist.join()
        http.close()


async def test_restore_makes_a_new_generation_and_refuses_damage(start_server, tmp_path) -> None:
    server: ServerProcess = start_server("--fsync", "never")
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        plain = {"content-type": "text/plain"}
        assert (await http.put("/api/docs/doc", content=TEXT.encode(), headers=plain)).is_success
        backup = tmp_path / "backup"
        ok("backup", backup, "--data-dir", server.data_dir)
        busy = collab("restore", backup, "--data-dir", server.data_dir)
        assert busy.returncode == 1 and b"--server" in busy.stderr
        peer = await YClient.connect(f"{server.ws_url}/yjs/doc")
        await peer.wait_text(TEXT)
        peer.insert(0, "after the backup ")
        async with await YClient.connect(f"{server.ws_url}/yjs/doc") as reader:
            await reader.wait_text("after the backup " + TEXT)
        held = peer.doc.get_update()
        await peer.close()
    server.stop()

    damaged = tmp_path / "damaged"
    ok("backup", damaged, "--data-dir", server.data_dir)
    file = next((damaged / "docs").iterdir())
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    refused = collab("restore", damaged, "--data-dir", server.data_dir)
    assert refused.returncode == 1 and b"damaged" in refused.stderr
    no_backup = collab("restore", tmp_path, "--data-dir", server.data_dir)
    assert no_backup.returncode == 1 and b"not a collab backup" in no_backup.stderr
    assert (
        ok("export", "doc", "--data-dir", server.data_dir) == ("after the backup " + TEXT).encode()
    )

    ok("restore", backup, "--data-dir", server.data_dir)
    server.start()
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        assert (await http.get("/api/docs/doc/text")).text == TEXT
        stale = YClient(await connect(f"{server.ws_url}/yjs/doc", **connect_options()))
        stale.doc.apply_update(held)
        stale.send_raw(protocol.encode_sync_step1(stale.doc.get_state()))
        assert (await stale.wait_closed())[0] == 4410
        assert (await http.get("/api/docs/doc/text")).text == TEXT


async def test_the_commands_on_postgresql_reach_the_running_servers(
    start_server, postgres_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    where = ("--store", postgres_url, "--bus", redis_server.url)
    server: ServerProcess = start_server(*where)
    source = tmp_path / "a.txt"
    source.write_bytes(TEXT.encode())
    ok("import", "pg doc", source, *where)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        assert (await http.get("/api/docs/pg%20doc/text")).text == TEXT
        async with await YClient.connect(f"{server.ws_url}/yjs/pg%20doc") as peer:
            await peer.wait_text(TEXT)
            peer.insert(0, "live ")
            await peer.wait_text("live " + TEXT)
            async with await YClient.connect(f"{server.ws_url}/yjs/pg%20doc") as reader:
                await reader.wait_text("live " + TEXT)
            backup = tmp_path / "backup"
            ok("backup", backup, *where)
            assert listed(*where) == {"pg doc": 2}
            assert ok("export", "pg doc", *where) == ("live " + TEXT).encode()
            ok("delete", "pg doc", *where)
            code, reason = await peer.wait_closed()
            assert code == 4404 and "deleted" in reason
        assert (await http.get("/api/docs/pg%20doc/text")).status_code == 404
        ok("restore", backup, *where)
        assert (await http.get("/api/docs/pg%20doc/text")).text == "live " + TEXT


async def test_the_commands_through_a_running_servers_http_api(start_server, tmp_path) -> None:
    secret = "k" * 32
    server: ServerProcess = start_server("--fsync", "never", "--auth-secret", secret)
    writer, admin = tokens.mint(secret, "*"), tokens.mint(secret, "*", admin=True)
    source = tmp_path / "a.txt"
    source.write_bytes(TEXT.encode())
    via = ("--server", server.http_url, "--token", writer)
    ok("import", "web doc", source, *via)
    assert ok("export", "web doc", "--data-dir", server.data_dir) == TEXT.encode()
    backup = tmp_path / "backup"
    ok("backup", backup, "--data-dir", server.data_dir)
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        auth = {"authorization": f"Bearer {writer}"}
        op = {"secret": "w" * 32, "seq": 1, "rev": 1, "op": [len(TEXT), "after"]}
        assert (await http.post("/api/docs/web%20doc/ops", json=op, headers=auth)).is_success
        url = f"{server.ws_url}/yjs/web%20doc?token={writer}"
        async with await YClient.connect(url) as peer:
            await peer.wait_text(TEXT + "after")
            refused = collab("restore", backup, *via)  # a writer's token cannot restore
            assert refused.returncode == 1 and b"HTTP 403" in refused.stderr
            ok("restore", backup, "--server", server.http_url, "--token", admin)
            assert (await peer.wait_closed())[0] == 4411
        assert (await http.get("/api/docs/web%20doc/text", headers=auth)).text == TEXT
        async with await YClient.connect(url) as stale:  # a new Y.Doc: fine
            await stale.wait_text(TEXT)
        garbage = await http.post(
            "/api/docs/web%20doc/restore",
            content=b"\x05garbage",
            headers={
                "authorization": f"Bearer {admin}",
                "content-type": "application/octet-stream",
            },
        )
        assert garbage.status_code == 400
        assert (await http.get("/api/docs/web%20doc/text", headers=auth)).text == TEXT
    denied = collab("delete", "web doc", *via)
    assert denied.returncode == 1 and b"admin" in denied.stderr
    ok("delete", "web doc", "--server", server.http_url, "--token", admin)
    assert b"web doc" not in ok("list", "--data-dir", server.data_dir)
