"""`MemoryBus`: several hubs in one process, as if they were processes (tests, demos)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from collab.bus.contract import BusListener
from collab.storage.contract import Record
from collab.storage.format import encode_records


class MemoryNetwork:
    """What the buses of one test share: who is subscribed to which document."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[tuple[str, BusListener]]] = {}
        self.buses: list[MemoryBus] = []
        self.drop_publishes = False  # a lossy network: publishes vanish
        #: Batches whose encoded records are larger go out as `committed(last rev)` (None:
        #: no limit), as `RedisBus` does with its `max_message_bytes`.
        self.max_message_bytes: int | None = None
        self._ids = itertools.count(1)

    def bus(self) -> MemoryBus:
        bus = MemoryBus(self, f"process-{next(self._ids)}")
        self.buses.append(bus)
        return bus

    def others(self, name: str, process: str) -> list[BusListener]:
        if self.drop_publishes:
            return []
        return [listener for owner, listener in self.listeners.get(name, []) if owner != process]


class MemoryBus:
    """One process's bus on a `MemoryNetwork`; delivery is synchronous and in order."""

    def __init__(self, network: MemoryNetwork, process: str) -> None:
        self.network = network
        self._process = process

    @property
    def process(self) -> str:
        return self._process

    async def start(self) -> None:
        pass

    def subscribe(self, name: str, listener: BusListener) -> None:
        self.network.listeners.setdefault(name, []).append((self._process, listener))

    def unsubscribe(self, name: str, listener: BusListener) -> None:
        listeners = self.network.listeners.get(name, [])
        if (self._process, listener) in listeners:
            listeners.remove((self._process, listener))

    async def publish_records(self, name: str, records: Sequence[Record]) -> None:
        if not records:
            return
        limit = self.network.max_message_bytes
        too_large = limit is not None and len(encode_records(records)) > limit
        for listener in self.network.others(name, self._process):
            if too_large:
                listener.committed(records[-1].rev)
            else:
                listener.records(list(records))

    async def publish_awareness(self, name: str, message: bytes) -> None:
        for listener in self.network.others(name, self._process):
            listener.awareness(self._process, message)

    async def publish_deleted(self, name: str, reason: str) -> None:
        for listener in self.network.others(name, self._process):
            listener.deleted(reason)

    async def close(self) -> None:
        for name, listeners in self.network.listeners.items():
            self.network.listeners[name] = [(p, lst) for p, lst in listeners if p != self._process]
        for listeners in self.network.listeners.values():
            for _, listener in listeners:
                listener.process_gone(self._process)

    def resubscribe_all(self) -> None:
        """Simulate a lost and restored subscription."""
        for listeners in self.network.listeners.values():
            for owner, listener in listeners:
                if owner == self._process:
                    listener.resubscribed()
