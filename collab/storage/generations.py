"""Generations: which copy of a document a client holds, so an old copy is never merged back.

A document's generation changes when it is deleted (and made again) or restored from a
backup. Text clients are told the current generation in the welcome and say theirs in
hello. Yjs peers carry no such tag, so the store keeps, per name, the *retired* state
vector: for every Yjs client id an earlier generation knew, the highest clock it reached.
A peer whose state (its sync step 1, or an update it sends) goes past the current
document's clock for a client id an earlier generation knew (or, after a restore, one the
backup knew) holds items of an earlier copy: it is refused, and its state is never applied.
Only an old Y.Doc can still make items under such an id: a peer that made offline edits in
the current generation has its own client id, which no earlier generation knew, so it is
merged as usual, and the server's own Yjs client id is new on every load.

Stored as JSON (`encode`/`decode`): by `FileStore` in ``data_dir/generations/<key>``, by
`PostgresStore` in ``collab_generations``, and kept when the document is deleted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from collab.access.names import storage_key
from collab.storage.durable import write_new_file
from collab.storage.errors import CorruptDocumentError
from collab.yjs.update import Update, UpdateFormatError, decode_state_vector, decode_update

INITIAL = "1"  # the generation of a document that was never deleted nor restored
OLD_GENERATION = (  # a text client's welcome: it drops what it had not sent
    "this copy is from before the document was deleted or restored: "
    "changes not sent are dropped, the current text is loaded"
)
OLD_YJS_COPY = (  # a Yjs peer's close reason (4410): its state is never applied
    "this copy is from before the document was deleted or restored: start from a new Y.Doc"
)
MAX_RETIRED_CLIENTS = 100_000  # client ids remembered per name (~20 bytes each as JSON)


@dataclass(frozen=True)
class Generation:
    """The current generation of a name, and what earlier generations reached."""

    id: str = INITIAL
    retired: Mapping[int, int] = field(default_factory=dict)  # Yjs client id -> clock

    def next(self, *state_vectors: Mapping[int, int]) -> Generation:
        """The generation after this one, which retires the client ids of `state_vectors`
        (the last state; for a restore, the backup's too)."""
        retired = dict(self.retired)
        for state_vector in state_vectors:
            for client, clock in state_vector.items():
                retired[client] = max(clock, retired.get(client, 0))
        if len(retired) > MAX_RETIRED_CLIENTS:  # keep the ids that reached furthest
            kept = sorted(retired.items(), key=lambda item: item[1])[-MAX_RETIRED_CLIENTS:]
            retired = dict(kept)
        return Generation(secrets.token_hex(6), retired)

    def old_state(self, peer: Mapping[int, int], current: Mapping[int, int]) -> bool:
        """Whether a peer's state vector holds items of an earlier generation: items the
        current document lacks, under a client id an earlier generation (or the backup a
        restore loaded) knew. Only an old copy can still make items under such an id:
        every replica of this generation has ids of its own."""
        return any(
            clock > current.get(client, 0) and client in self.retired
            for client, clock in peer.items()
        )

    def old_items(self, update: Update, current: Mapping[int, int]) -> bool:
        """Whether an update carries items of an earlier generation."""
        if not self.retired:
            return False
        ends = {client: end for client, (_, end) in update.ranges().items()}
        return self.old_state(ends, current)

    def old_copy(
        self, current: Mapping[int, int], state_vector: bytes | None, update: bytes | None
    ) -> bool:
        """Whether a peer's sync step 1 (`state_vector`) or `update` holds items of an
        earlier generation, against the document's `current` state vector (False when
        they cannot be decoded: the usual checks refuse them)."""
        try:
            if state_vector is not None:
                return self.old_state(decode_state_vector(state_vector), current)
            return self.old_items(decode_update(update or b""), current)
        except UpdateFormatError:
            return False


def encode(generation: Generation) -> bytes:
    retired = {str(client): clock for client, clock in generation.retired.items()}
    return json.dumps({"id": generation.id, "retired": retired}).encode()


def decode(data: bytes) -> Generation:
    """Raises ValueError for bytes `encode` did not write."""
    value = json.loads(data)
    retired = value["retired"]
    if not isinstance(value["id"], str) or not isinstance(retired, dict):
        raise ValueError("not a generation record")
    return Generation(value["id"], {int(client): int(clock) for client, clock in retired.items()})


def read_file(path: Path) -> Generation:
    """The generation stored at `path` (`Generation()` when there is none)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Generation()
    try:
        return decode(data)
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptDocumentError(path, 0, f"not a generation record: {error}") from None


def write_file(path: Path, generation: Generation, fsync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_file(path, encode(generation), fsync)


@runtime_checkable
class GenerationStore(Protocol):
    """A store that keeps generations itself (PostgresStore, MemoryStore)."""

    async def generation(self, name: str) -> Generation: ...

    async def set_generation(self, name: str, generation: Generation) -> None: ...


def _file(store: Any, name: str) -> Path | None:
    """Where a FileStore keeps the generation of `name` (None: not a FileStore)."""
    data_dir = getattr(store, "data_dir", None)
    if data_dir is None or not hasattr(store, "docs_dir"):
        return None
    return Path(data_dir) / "generations" / storage_key(name)


async def load(store: Any, name: str) -> Generation:
    """The stored generation of `name` (`Generation()` for a store that keeps none)."""
    if isinstance(store, GenerationStore):
        return await store.generation(name)
    path = _file(store, name)
    return Generation() if path is None else await asyncio.to_thread(read_file, path)


async def save(store: Any, name: str, generation: Generation) -> None:
    """Store the generation of `name`, durably (kept when the document is deleted)."""
    if isinstance(store, GenerationStore):
        await store.set_generation(name, generation)
        return
    path = _file(store, name)
    if path is not None:
        await asyncio.to_thread(write_file, path, generation, getattr(store, "fsync", True))
