"""PostgresStore beyond the contract tests it shares with the other stores (test_store.py):
commits from several processes, exactly-once (client, seq), racing compactions, history and
`collab replay --store`, Unicode, schema migration, and a server stopped under a commit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
from conftest import REPO
from pg_server import PgCluster, start_cluster

from collab.config import Settings
from collab.replay.history import StoreHistoryCache
from collab.replay.verify import verify_store
from collab.session import Session
from collab.storage.contract import (
    CommitConflictError,
    Record,
    RevisionHistory,
    RevisionsGoneError,
    SharedStore,
    Snapshot,
    StoredDocument,
    StoreUnavailableError,
)
from collab.storage.errors import CompactionError
from collab.storage.logs import read_store_history
from collab.storage.postgres import PostgresStore
from collab.storage.postgres_schema import LATEST, SchemaError

PIECES = ["😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "\r\n", "ab", " "]
NAME = "notes/é 😀 👨‍👩‍👧 中文 e\u0301\r\n"


@pytest.fixture
async def make_store(postgres_url: str) -> AsyncIterator[Callable[..., PostgresStore]]:
    """Stores on the test's database, each with its own pool (one per "process")."""
    stores: list[PostgresStore] = []

    def make(**options: object) -> PostgresStore:
        store = PostgresStore.from_url(postgres_url, **options)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def record(rev: int, origin: str = "yjs:1", user: str | None = None) -> Record:
    return Record(rev, 1_700_000_000.5 + rev, origin, user, b"update %d" % rev)


class Writer:
    """Revisions made by a real Session, committed to a PostgresStore."""

    def __init__(self, store: PostgresStore, name: str = NAME) -> None:
        self.store, self.name = store, name
        self.now = 1_700_000_000.0
        self.session = Session(name, Settings(), clock=lambda: self.now)
        self.texts: dict[int, str] = {0: ""}

    async def write(self, new_text: str, user: str | None = "zoë 👩‍💻") -> int:
        self.now += 1
        self.session.replace_text(new_text, origin="server:test 😀", user=user)
        async with self.store.commit(self.name) as commit:
            await commit.append(self.session.take_output().records)
        self.texts[self.session.rev] = self.session.mirror
        return self.session.rev

    async def compact(self) -> None:
        state, rev = self.session.state, self.session.rev
        await self.store.compact(self.name, Snapshot(rev, state))
        self.session.compacted(rev, state)


async def test_it_is_a_shared_store_with_history(make_store: Callable[..., PostgresStore]) -> None:
    store = make_store()
    assert isinstance(store, SharedStore) and isinstance(store, RevisionHistory)
    with pytest.raises(ValueError, match="postgresql://"):
        PostgresStore.from_url("redis://localhost/0")


# ---------------------------------------------------------------------- commits


async def test_two_processes_commit_each_revision_exactly_once(
    make_store: Callable[..., PostgresStore],
) -> None:
    stores = [make_store(max_size=4), make_store(max_size=4)]
    per_writer = 25

    async def writer(store: PostgresStore, tag: str) -> None:
        known = 0
        for seq in range(1, per_writer + 1):
            async with store.commit("race") as commit:
                caught_up = await commit.records_after(known)
                known = caught_up[-1].rev if caught_up else known
                await commit.append([record(known + 1, f"ot:{tag}:{seq}")])
            known += 1

    await asyncio.gather(*(writer(s, f"w{i}-{j}") for i, s in enumerate(stores) for j in range(3)))

    stored = await stores[0].load("race")
    assert stored is not None
    assert [r.rev for r in stored.records] == list(range(1, 6 * per_writer + 1))
    origins = [r.origin for r in stored.records]
    assert len(set(origins)) == len(origins) == 6 * per_writer
    assert await stores[1].records_after("race", 6 * per_writer - 2) == stored.records[-2:]


async def test_a_duplicate_client_seq_is_refused_by_the_database(
    make_store: Callable[..., PostgresStore],
) -> None:
    first, second = make_store(), make_store()
    async with first.commit("d") as commit:
        await commit.append([record(1, "ot:client 中:7")])
    with pytest.raises(CommitConflictError, match=r"\(client, seq\)"):
        async with second.commit("d") as commit:
            await commit.append([record(2, "yjs:9"), record(3, "ot:client 中:7")])
    stored = await first.load("d")
    assert stored is not None and [r.rev for r in stored.records] == [1]  # nothing of it
    async with second.commit("d") as commit:  # another seq of the same client is fine
        await commit.append([record(2, "ot:client 中:8")])
    async with second.commit("other") as commit:  # and the same one in another document
        await commit.append([record(1, "ot:client 中:7")])


async def test_records_must_continue_the_log_inside_a_commit(
    make_store: Callable[..., PostgresStore],
) -> None:
    store = make_store()
    await store.append("d", [record(1), record(2)])
    with pytest.raises(ValueError, match="rev 2 does not follow rev 2"):
        async with store.commit("d") as commit:
            await commit.append([record(2)])
    caught: list[Exception] = []
    with pytest.raises(ValueError):  # an error caught inside the block still fails the commit
        async with store.commit("d") as commit:
            try:
                await commit.append([record(5)])
            except ValueError as error:
                caught.append(error)
    assert caught
    async with store.commit("d") as commit:
        assert await commit.records_after(0) == [record(1), record(2)]
        await commit.append([record(3)])
    stored = await store.load("d")
    assert stored is not None and stored.rev == 3


async def test_an_error_in_the_block_rolls_the_commit_back(
    make_store: Callable[..., PostgresStore],
) -> None:
    store = make_store()
    with pytest.raises(RuntimeError):
        async with store.commit("d") as commit:
            await commit.append([record(1)])
            raise RuntimeError("the runner failed")
    assert await store.load("d") is None
    async with store.commit("d") as commit:
        await commit.append([record(1)])
    assert await store.records_after("d", 0) == [record(1)]


async def test_records_after_says_when_revisions_were_compacted_away(
    make_store: Callable[..., PostgresStore],
) -> None:
    writer = Writer(make_store(keep_history=False))
    for piece in PIECES[:4]:
        await writer.write(writer.session.mirror + piece)
    await writer.compact()
    await writer.write(writer.session.mirror + "!")
    assert [r.rev for r in await writer.store.records_after(NAME, 4)] == [5]
    assert await writer.store.records_after(NAME, 5) == []
    with pytest.raises(RevisionsGoneError):
        await writer.store.records_after(NAME, 2)
    stored = await writer.store.load(NAME)
    assert (
        stored is not None and stored.snapshot_rev == 4 and [r.rev for r in stored.records] == [5]
    )


# ---------------------------------------------------------------------- compaction


async def test_racing_compactions_leave_one_snapshot_per_rev_and_lose_nothing(
    make_store: Callable[..., PostgresStore], postgres_url: str
) -> None:
    writer = Writer(make_store())
    other = make_store()
    states = {}
    for i, piece in enumerate(PIECES * 2, start=1):
        await writer.write(writer.session.mirror + piece)
        states[i] = writer.session.state
    last = writer.session.rev
    for _ in range(3):
        await asyncio.gather(
            writer.store.compact(NAME, Snapshot(10, states[10], b"a")),
            other.compact(NAME, Snapshot(10, states[10], b"b")),
            other.compact(NAME, Snapshot(6, states[6])),
            writer.store.compact(NAME, Snapshot(last, states[last])),
            return_exceptions=False,
        )
    connection = await asyncpg.connect(postgres_url)
    try:
        snapshots = await connection.fetch("SELECT rev FROM collab_snapshots ORDER BY rev")
        revisions = await connection.fetchval("SELECT count(*) FROM collab_revisions")
    finally:
        await connection.close()
    revs = [row["rev"] for row in snapshots]
    assert len(revs) == len(set(revs)) and last in revs  # one per rev at most
    assert revisions == last  # history kept: every revision is still there
    stored = await other.load(NAME)
    assert stored is not None and stored.snapshot_rev == last and stored.records == []
    history = await read_store_history(other, NAME)
    assert history is not None and history.base_rev == 0 and len(history.records) == last
    with pytest.raises(CompactionError):
        await other.compact(NAME, Snapshot(last + 1, states[last]))


async def test_a_worker_process_builds_the_snapshot_from_the_rows_and_races_safely(
    make_store: Callable[..., PostgresStore],
) -> None:
    """`compact_at`: the state is built by a child process from what the database holds
    (never from the caller's memory), checked, inserted; one snapshot per rev, nothing lost."""
    writer = Writer(make_store())
    other = make_store()
    for piece in PIECES * 2:
        await writer.write(writer.session.mirror + piece)
    last = writer.session.rev
    built = await asyncio.gather(
        writer.store.compact_at(NAME, 10, b"meta a"),
        other.compact_at(NAME, 10, b"meta b"),
        other.compact_at(NAME, last, b"meta \xf0\x9f\x98\x80"),
    )
    assert {s.rev for s in built if s is not None} <= {10, last}
    final = next(s for s in built if s is not None and s.rev == last)
    check = Session(NAME, Settings(), StoredDocument(final.state, last, [], 0))
    assert check.mirror == writer.session.mirror
    stored = await other.load(NAME)
    assert stored is not None and stored.snapshot_rev == last and stored.records == []
    assert stored.snapshot_meta == b"meta \xf0\x9f\x98\x80"
    assert await other.compact_at(NAME, last, b"") is None  # nothing to do
    with pytest.raises(CompactionError, match="rev"):
        await other.compact_at(NAME, last + 5, b"")
    history = await read_store_history(other, NAME)
    assert history is not None and len(history.records) == last


# ---------------------------------------------------------------------- history and replay


async def test_history_index_reads_every_revision_across_compactions(
    make_store: Callable[..., PostgresStore],
) -> None:
    writer = Writer(make_store())
    cache = StoreHistoryCache(writer.store, batch=7)
    for step in range(1, 41):
        text = writer.session.mirror
        pos = (step * 7) % (len(text) + 1)
        await writer.write(text[:pos] + PIECES[step % len(PIECES)] + text[pos + step % 2 :])
        if step % 15 == 0:
            await writer.compact()
        if step % 13 == 0:
            assert (await cache.get(NAME)).last_rev == step  # refreshes as it grows
    history = await cache.get(NAME)
    assert (history.base_rev, history.last_rev) == (0, 40)
    for rev, text in writer.texts.items():
        assert history.text_at(rev) == text, rev
    info = history.info(3)
    assert (info.origin, info.user) == ("server:test 😀", "zoë 👩‍💻")
    assert not (await cache.get("never written")).exists


async def test_history_starts_at_the_snapshot_when_history_is_not_kept(
    make_store: Callable[..., PostgresStore],
) -> None:
    writer = Writer(make_store(keep_history=False))
    cache = StoreHistoryCache(writer.store)
    for piece in PIECES[:5]:
        await writer.write(writer.session.mirror + piece)
    assert (await cache.get(NAME)).text_at(2) == writer.texts[2]
    await writer.compact()
    await writer.write(writer.session.mirror + "👋")
    await writer.compact()
    await writer.write(writer.session.mirror + "!")
    history = await cache.get(NAME)  # the index it had is compacted away: built again
    assert (history.base_rev, history.last_rev) == (6, 7)
    assert history.text_at(7) == writer.texts[7]
    report = await verify_store(writer.store, NAME)
    assert report is not None and report.ok and report.last_rev == 7


async def test_verify_finds_a_snapshot_that_is_not_the_replay(
    make_store: Callable[..., PostgresStore], postgres_url: str
) -> None:
    writer = Writer(make_store())
    for piece in PIECES[:4]:
        await writer.write(writer.session.mirror + piece)
    await writer.compact()
    await writer.write(writer.session.mirror + "!")
    report = await verify_store(writer.store, NAME)
    assert report is not None and report.ok, report.problems
    assert (report.records, report.snapshots, report.last_rev) == (5, 1, 5)
    other = Session("x", Settings())
    other.replace_text("something else", origin="server:test")
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("UPDATE collab_snapshots SET state = $1", other.state)
    finally:
        await connection.close()
    report = await verify_store(writer.store, NAME)
    assert report is not None and not report.ok
    assert "rev 4: error: the snapshot differs" in str(report.problems[0])


def replay_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "collab", "replay", *args]
    return subprocess.run(command, capture_output=True, cwd=REPO, timeout=60, check=False)


async def test_collab_replay_reads_the_store(
    make_store: Callable[..., PostgresStore], postgres_url: str
) -> None:
    writer = Writer(make_store())
    for piece in PIECES:
        await writer.write(writer.session.mirror + piece)
        if writer.session.rev == 4:
            await writer.compact()

    result = replay_cli("--store", postgres_url, NAME)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == writer.texts[9]
    assert replay_cli("--store", postgres_url, NAME, "--at", "3").stdout.decode() == writer.texts[3]
    steps = replay_cli("--store", postgres_url, NAME, "--steps").stdout.decode().splitlines()
    assert [json.loads(line)["text"] for line in steps] == [writer.texts[r] for r in range(1, 10)]
    assert json.loads(steps[0])["user"] == "zoë 👩‍💻"
    verified = replay_cli("--store", postgres_url, NAME, "--verify")
    assert verified.returncode == 0
    assert verified.stdout.decode().startswith("OK: 9 revisions (last 9), 1 snapshots checked")
    missing = replay_cli("--store", postgres_url, "nobody")
    assert missing.returncode == 2 and b"no document" in missing.stderr
    too_far = replay_cli("--store", postgres_url, NAME, "--at", "10")
    assert too_far.returncode == 1 and b"latest is 9" in too_far.stderr


# ---------------------------------------------------------------------- Unicode, schema


async def test_unicode_names_origins_and_users_round_trip(
    make_store: Callable[..., PostgresStore],
) -> None:
    store = make_store()
    texts = ["😀", "👨‍👩‍👧", "中文", "e\u0301", "é", "a\r\nb", "🇫🇷 👍🏽", "\u200d", "\U0010fffd"]
    for text in texts:
        records = [
            Record(1, 1.25, f"ot:{text}:1", text, b"\x00\xff"),
            Record(2, 2.5, f"yjs:{text}", None, b""),
        ]
        await store.append(f"doc {text}", records)
        stored = await store.load(f"doc {text}")
        assert stored is not None and stored.records == records
    names = sorted(info.name for info in await store.list())
    assert names == sorted(f"doc {text}" for text in texts)  # é (NFC) and e + ◌́ (NFD): two
    with pytest.raises(CommitConflictError):  # the client id is kept exactly, emoji included
        await store.append("doc 😀", [Record(3, 3.0, "ot:😀:1", None, b"")])
    with pytest.raises(ValueError):
        await store.append("d", [Record(1, 1.0, "yjs:1", "nul \x00 user", b"")])
    with pytest.raises(ValueError):
        await store.load("x" * 2001)


async def test_schema_is_versioned_and_migrated_once(
    make_store: Callable[..., PostgresStore], postgres_url: str
) -> None:
    stores = [make_store() for _ in range(4)]
    await asyncio.gather(*(store.start() for store in stores))  # racing migrations
    connection = await asyncpg.connect(postgres_url)
    try:
        versions = await connection.fetch("SELECT version FROM collab_schema_version")
        assert [row["version"] for row in versions] == list(range(1, LATEST + 1))
        await connection.execute(
            "INSERT INTO collab_schema_version (version, description) VALUES (999, 'future')"
        )
    finally:
        await connection.close()
    with pytest.raises(SchemaError, match="version 999"):
        await make_store().start()


# ---------------------------------------------------------------------- a server that stops


@pytest.fixture
def own_cluster(postgres_cluster: PgCluster) -> Iterator[PgCluster]:
    """A cluster of this test's own, fsync on (it is stopped and started again)."""
    cluster = start_cluster(fsync=True)
    yield cluster
    cluster.destroy()


async def test_a_server_stopped_under_a_commit(own_cluster: PgCluster) -> None:
    url = own_cluster.create_database()
    store = PostgresStore.from_url(url, command_timeout=10, connect_timeout=5)
    try:
        await store.append("d", [record(1)])
        with pytest.raises(StoreUnavailableError, match=r"unavailable|lost"):
            async with store.commit("d") as commit:
                await commit.append([record(2), record(3)])
                await asyncio.to_thread(own_cluster.stop)
        with pytest.raises(StoreUnavailableError):  # while it is down: a clear error, at once
            async with store.commit("d") as commit:
                await commit.append([record(2)])
        await asyncio.to_thread(own_cluster.start)

        stored = await store.load("d")  # nothing half-written
        assert stored is not None and stored.records == [record(1)]
        async with store.commit("d") as commit:  # and commits work again
            assert await commit.records_after(1) == []
            await commit.append([record(2), record(3)])
        stored = await store.load("d")
        assert stored is not None and [r.rev for r in stored.records] == [1, 2, 3]
    finally:
        await store.close()
