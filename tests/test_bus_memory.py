"""`MemoryBus` keeps the contract's notice semantics, as `RedisBus` does."""

from __future__ import annotations

from collab.bus import MemoryNetwork
from collab.storage.contract import Record


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def records(self, records: object) -> None:
        self.events.append(("records", [r.rev for r in records]))  # type: ignore[attr-defined]

    def committed(self, rev: int) -> None:
        self.events.append(("committed", rev))

    def awareness(self, process: str, message: bytes) -> None:
        self.events.append(("awareness", process, message))

    def process_gone(self, process: str) -> None:
        self.events.append(("gone", process))

    def resubscribed(self) -> None:
        self.events.append(("resubscribed",))


def record(rev: int, size: int) -> Record:
    return Record(rev=rev, time=0.0, origin="server:test", user=None, update=b"x" * size)


async def test_a_batch_over_the_limit_is_a_committed_notice() -> None:
    network = MemoryNetwork()
    network.max_message_bytes = 1000
    a, b = network.bus(), network.bus()
    mine, theirs = Listener(), Listener()
    a.subscribe("doc", mine)
    b.subscribe("doc", theirs)
    await a.publish_records("doc", [record(1, 10)])
    await a.publish_records("doc", [record(2, 600), record(3, 600)])
    await a.publish_records("doc", [])
    assert theirs.events == [("records", [1]), ("committed", 3)]
    assert mine.events == []
