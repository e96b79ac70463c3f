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
