"""`collab serve` refuses what cannot work, with one clear line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import REPO, ServerProcess, free_port


def serve(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "collab", "serve", "--port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_a_second_server_on_one_data_directory_is_refused(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    first = start_server("--fsync", "never")
    assert first.process is not None
    second = serve("--data-dir", str(first.data_dir))
    assert second.returncode == 2
    assert str(first.data_dir) in second.stderr
    assert f"pid {first.process.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    first.stop()
    again = start_server("--fsync", "never", data_dir=first.data_dir)  # free once it stops
    assert again.process is not None and again.process.poll() is None


def test_a_data_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = serve("--data-dir", str(blocker / "data"))
    assert result.returncode == 2
    assert "cannot use data directory" in result.stderr and str(blocker) in result.stderr


def test_a_bus_needs_a_shared_store(tmp_path: Path) -> None:
    result = serve("--data-dir", str(tmp_path / "d"), "--bus", "redis://127.0.0.1:1/0")
    assert result.returncode == 2 and "postgresql://" in result.stderr


def test_workers_need_a_shared_store_and_a_bus(tmp_path: Path) -> None:
    result = serve("--data-dir", str(tmp_path / "d"), "--workers", "2")
    assert result.returncode == 2
    assert "--workers 2 needs --store postgresql://" in result.stderr


def sync_once(server: ServerProcess, compression: str | None = None) -> str | None:
    """Open a Yjs connection, do the sync handshake, close; the extensions the server
    agreed to (None: none)."""
    from websockets.sync.client import connect

    with connect(f"{server.ws_url}/yjs/caf%C3%A9-%F0%9F%98%80", compression=compression) as ws:
        ws.send(b"\x00\x00\x01\x00")  # sync step 1 with an empty state vector
        while ws.recv(timeout=10)[:2] != b"\x00\x01":  # until the server's sync step 2
            pass
        return ws.response.headers.get("Sec-WebSocket-Extensions")


def test_connections_are_logged_only_when_asked_for(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Three INFO lines per WebSocket are noise at ten thousand peers: off by default,
    on with --connection-log. The line is written before the handshake's answer arrives."""
    quiet = start_server("--fsync", "never")
    sync_once(quiet)
    assert "collab listening on" in quiet.log()
    assert "[accepted]" not in quiet.log() and "connection open" not in quiet.log()
    talkative = start_server(
        "--fsync", "never", "--connection-log", "true", data_dir=tmp_path / "talkative"
    )
    sync_once(talkative)
    assert "[accepted]" in talkative.log()


def test_compression_is_negotiated_only_when_enabled(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Browsers offer permessage-deflate; the server declines unless --ws-compression,
    and the document syncs either way."""
    plain = start_server("--fsync", "never")
    assert sync_once(plain, compression="deflate") is None
    deflating = start_server(
        "--fsync", "never", "--ws-compression", "true", data_dir=tmp_path / "deflating"
    )
    assert "permessage-deflate" in (sync_once(deflating, compression="deflate") or "")


def test_the_start_up_heap_is_left_out_of_full_collections(
    start_server: Callable[..., ServerProcess],
) -> None:
    """What start-up built lives as long as the process: the collector's full passes (one
    each time the tracked objects grow by a quarter, e.g. while peers connect) stop
    walking it once the server listens (`gc.freeze`), and young collections run every
    7,000 allocations, not 700. Peers still sync afterwards."""
    server = start_server("--fsync", "never")
    sync_once(server)
    line = next(line for line in server.log().splitlines() if "start-up heap" in line)
    frozen = int(line.split("start-up heap: ")[1].split()[0].replace(",", ""))
    assert frozen > 10_000, line
    assert "young collections every 7000 allocations" in line, line
