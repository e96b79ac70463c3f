"""A throwaway PostgreSQL 15 cluster per test run, and a fresh database per test.

Debian's `postgresql` package puts the server in /usr/lib/postgresql/15/bin. The server
refuses to run as root, so as root the cluster runs as the `postgres` system user, in a
temporary directory it owns, on a free loopback port (docs/storage.md, notes in
shared/notes/environment.md). Without PostgreSQL the tests that need it skip, except in CI
(`CI=true`), where they fail: .ci/run installs it.

Registered in tests/conftest.py with one import line; `PgCluster` is also what
bench/store_commit.py starts (with fsync on).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]
USER = "collab"


def pg_bin_dir() -> Path | None:
    for directory in BIN_DIRS:
        if (directory / "pg_ctl").exists() and (directory / "initdb").exists():
            return directory
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One PostgreSQL cluster in a temporary directory on 127.0.0.1:`port`.

    `fsync=False` turns fsync, synchronous commit and full-page writes off: fast tests that
    do not test durability. Stop it with `stop()` (an immediate shutdown, like a crash).
    """

    def __init__(self, *, fsync: bool = False) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries (apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="collab-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str) -> None:
        argv = [str(self.bin_dir / command[0]), *command[1:]]
        if self._as_postgres:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(argv)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}\n{log}")

    def init(self) -> PgCluster:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", USER,
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        return self

    def start(self) -> PgCluster:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=200 -c shared_buffers=32MB"
        if not self.fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def stop(self) -> None:
        """An immediate shutdown: what a crash or a kill of the server looks like."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql (no Python driver needed); its output."""
        psql = self.bin_dir / "psql"
        argv = [
            str(psql),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.url(database),
        ]
        result = subprocess.run(
            [*argv, "-c", statement], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {result.stderr}")
        return result.stdout.strip()

    def create_database(self) -> str:
        """A new empty UTF-8 database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_cluster(*, fsync: bool = False) -> PgCluster:
    cluster = PgCluster(fsync=fsync)
    try:
        return cluster.init().start()
    except BaseException:
        cluster.destroy()
        raise


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    """The test run's PostgreSQL (fsync off); skipped without PostgreSQL, failed in CI."""
    from conftest import require

    require(pg_bin_dir() is not None, "PostgreSQL (apt-get install postgresql)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        require(False, "asyncpg (pip install -e '.[test]')")
    cluster = start_cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster: PgCluster) -> Iterator[str]:
    """A fresh database of its own for one test: its URL."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)
