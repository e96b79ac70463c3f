"""PeerChannel's bound on what one peer may hold: `limit` bytes, or one message over it and
`limit` more (a big document's snapshot, then the rest of its answer and live updates)."""

from __future__ import annotations

import asyncio

from collab.hub.channel import PeerChannel

LIMIT = 1000


class StalledPeer:
    """A connection whose peer takes nothing: every message stays in the socket's buffer
    (`send_now` writes there until the buffer is over `high_water`)."""

    def __init__(self, high_water: int = 0) -> None:
        self.high_water = high_water
        self.written: list[bytes | str] = []
        self.stalled = asyncio.Event()  # never set: `send` waits on the peer

    def send_now(self, data: bytes | str) -> bool:
        if self.buffered() > self.high_water:
            return False
        self.written.append(data)
        return True

    async def send(self, data: bytes | str) -> None:
        self.written.append(data)
        await self.stalled.wait()

    async def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass

    def buffered(self) -> int:
        return sum(len(data) for data in self.written)


def channel_to(peer: StalledPeer) -> tuple[PeerChannel, list[str]]:
    overflows: list[str] = []
    channel = PeerChannel("p", peer, LIMIT, lambda c: overflows.append(c.peer_id))
    return channel, overflows


async def test_what_follows_a_message_over_the_limit_queues_within_the_limit() -> None:
    for peer in (StalledPeer(), StalledPeer(high_water=10**9)):  # queued, or written at once
        channel, overflows = channel_to(peer)
        channel.send(b"S" * 5000)  # the snapshot: nothing was pending, so it goes
        peer.high_water = 0  # the socket's buffer is full from now on
        for _ in range(3):
            channel.send("updates after it, 中文 😀".encode() * 10)  # 290 bytes each
        assert overflows == []  # 870 bytes on top of the big one: within the limit
        channel.send(b"u" * 200)  # 1,070 on top of it: over
        assert overflows == ["p"]
        channel.abandon()


async def test_without_a_big_message_the_limit_is_the_limit() -> None:
    peer = StalledPeer()
    channel, overflows = channel_to(peer)
    channel.send(b"a" * 600)
    channel.send(b"b" * 300)
    assert overflows == []
    channel.send(b"c" * 200)  # 1,100 pending
    assert overflows == ["p"]
    channel.abandon()
