"""The store and the bus that settings ask for: the file store by default, or PostgreSQL
and Redis for several processes serving the same documents."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from collab.access.live import RevocationSource
from collab.bus.contract import Bus
from collab.config import Settings
from collab.storage.contract import HistoryStore, RevisionHistory, SharedStore, Store
from collab.storage.files import FileStore

DATABASE_SCHEMES = ("postgresql://", "postgres://")


class BackendError(ValueError):
    """Settings that cannot work together (a bus without a shared store, ...)."""


def is_database_url(target: str | None) -> bool:
    return bool(target) and target.startswith(DATABASE_SCHEMES)  # type: ignore[union-attr]


def store_for(settings: Settings) -> Store:
    """`--store`: a postgresql:// URL, or a directory (default `--data-dir`)."""
    if is_database_url(settings.store):
        from collab.storage.postgres import PostgresStore

        return PostgresStore.from_url(settings.store, keep_history=settings.keep_history)
    return FileStore.from_settings(settings)


def revocations_for(store: Store) -> RevocationSource | None:
    """Where `collab token revoke` stores revocations for this store (None: nowhere, as
    for the memory store: `hub.live.revoke` only)."""
    from collab.storage import revocations

    if isinstance(store, FileStore):
        return revocations.FileRevocations(store.data_dir)
    dsn = getattr(store, "dsn", None)
    if isinstance(dsn, str) and is_database_url(dsn):
        return revocations.PostgresRevocations(dsn)
    return None


def reader_for(store: Store) -> Callable[[], RevisionHistory] | None:
    """How a worker process opens the same store to read it (picklable; never writes):
    None for a store another process cannot read (the memory store). Asked by what the
    store has, so a wrapper that passes its attributes on (`metrics.MeteredStore`) works."""
    data_dir = getattr(store, "data_dir", None)
    if isinstance(store, HistoryStore) and isinstance(data_dir, Path):
        return functools.partial(FileStore, data_dir, fsync=False, exclusive=False)
    dsn = getattr(store, "dsn", None)
    if isinstance(dsn, str) and is_database_url(dsn):
        from collab.storage.postgres import PostgresStore

        return functools.partial(PostgresStore, dsn, min_size=1, max_size=1)
    return None


def bus_for(settings: Settings) -> Bus | None:
    """`--bus`: a redis:// URL, or None (one process)."""
    if not settings.bus:
        return None
    if not settings.bus.startswith(("redis://", "rediss://", "unix://")):
        raise BackendError(f"--bus must be a redis:// URL, not {settings.bus!r}")
    from collab.bus.redis import RedisBus

    return RedisBus.from_url(settings.bus)


def check_together(store: Store, with_bus: bool, workers: int = 1) -> None:
    """Several processes need a store they can share and a bus between them."""
    shared = isinstance(store, SharedStore) and not isinstance(store, FileStore)
    if with_bus and not shared:
        raise BackendError(
            "--bus needs a store that several processes share: --store postgresql://..."
        )
    if workers > 1 and not (with_bus and shared):
        raise BackendError(
            f"--workers {workers} needs --store postgresql://... and --bus redis://...: "
            "the file store belongs to one process"
        )
