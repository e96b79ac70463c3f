"""PeerChannel's bound on what one peer may hold: `limit` bytes, or one message over it and
`limit` more (a big document's snapshot, then the rest of its answer and live updates)."""

from __future__ import annotations

import asyncio
import json

from collab.hub.channel import TURN_BYTES, PeerChannel
from collab.session.kept import Run
from collab.session.sync_answers import SYNCED, KeptAnswer
from collab.session.welcome import LongMessage
from collab.yjs import protocol

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


class SlowPeer(StalledPeer):
    """A peer that takes one message each time `take` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.take = asyncio.Event()

    def send_now(self, data: bytes | str) -> bool:
        return False  # everything goes through the queue, paced by `send`

    async def send(self, data: bytes | str) -> None:
        await self.take.wait()
        self.take.clear()
        self.written.append(data)

    def buffered(self) -> int:
        return 0

    async def send_long(self, message: LongMessage) -> None:
        for part, _ in message:  # each part as the peer takes it, as fragments go
            await self.send(part)

    async def send_big(self, data: bytes) -> None:
        await self.send(data)


async def test_a_kept_answer_goes_part_by_part_and_only_what_queues_beside_it_counts() -> None:
    """A kept answer of any length (the snapshot, 40 logged updates: 8x the limit) does not
    overflow the queue; live updates queued behind it count, and go after it."""
    peer = SlowPeer()
    channel, overflows = channel_to(peer)
    updates = [f"<{i} 中文 😀>".encode() * 20 for i in range(40)]  # ~200 bytes each
    runs = [Run(rev, update) for rev, update in enumerate(updates, 2)]  # one update each
    channel.send(KeptAnswer(protocol.encode_sync_update(b"S" * 3000), runs))
    live = [b"live update 1" * 30, b"live update 2" * 30]  # 390 bytes each
    for message in live:
        channel.send(message)
    assert overflows == []
    for _ in range(len(updates) + 4):
        peer.take.set()
        await asyncio.wait_for(until_taken(peer), 5)
    decoded = [protocol.decode(m) for m in peer.written[: len(updates) + 2]]
    assert decoded[0].update == b"S" * 3000
    assert [m.update for m in decoded[1:-1]] == updates
    assert decoded[-1] == protocol.decode(SYNCED)
    assert peer.written[len(updates) + 2 :] == live  # after the answer, in order
    channel.send(b"x" * 600)
    channel.send(b"y" * 600)  # nothing is being sent: the limit is the limit again
    assert overflows == ["p"]
    channel.abandon()


async def test_an_overflow_beside_a_kept_answer_drops_the_rest_of_it() -> None:
    peer = SlowPeer()
    channel, overflows = channel_to(peer)
    runs = [Run(rev, b"u" * 100) for rev in range(2, 52)]
    channel.send(KeptAnswer(protocol.encode_sync_update(b"S" * 3000), runs))
    peer.take.set()
    await asyncio.wait_for(until_taken(peer), 5)  # the snapshot went
    channel.send(b"a" * 600)
    channel.send(b"b" * 600)  # live updates beside it over the limit: resync or close
    assert overflows == ["p"]
    for _ in range(3):
        peer.take.set()
        await asyncio.sleep(0)
    assert len(peer.written) <= 2  # the snapshot, at most the part being sent
    channel.abandon()


async def until_taken(peer: SlowPeer) -> None:
    while peer.take.is_set():
        await asyncio.sleep(0)


async def test_a_long_message_goes_part_by_part_and_what_follows_goes_after_it() -> None:
    """A text peer's welcome of 8x the limit does not overflow; live messages queued behind
    it count, and go after its last part."""
    peer = SlowPeer()
    channel, overflows = channel_to(peer)
    text = "Zoë 中文 😀 e\u0301\r\n" * 500
    channel.send(LongMessage({"type": "welcome"}, "text", text, part_chars=1000))
    live = ['{"type": "op", "op": ["前"]}' * 20, '{"type": "presence"}' * 20]
    for message in live:
        channel.send(message)
    assert overflows == []
    parts = len(text) // 1000 + 1
    for _ in range(parts + len(live)):
        peer.take.set()
        await asyncio.wait_for(until_taken(peer), 5)
    assert json.loads("".join(peer.written[:parts])) == {"type": "welcome", "text": text}
    assert peer.written[parts:] == live
    channel.abandon()


async def test_an_overflow_during_a_long_message_keeps_what_was_queued_after_it() -> None:
    """An overflow while the long message goes (a resync queues anew) lets it finish, and
    takes nothing queued after the overflow for it."""
    peer = SlowPeer()
    channel, overflows = channel_to(peer)
    channel.send(LongMessage({}, "text", "😀" * 3000, part_chars=1000))
    peer.take.set()
    await asyncio.wait_for(until_taken(peer), 5)  # its first part went
    channel.send("a" * 600)
    channel.send("b" * 600)  # over the limit beside it
    assert overflows == ["p"]
    channel.send("after the overflow")  # what a resync would queue
    for _ in range(3):
        peer.take.set()
        await asyncio.wait_for(until_taken(peer), 5)
    assert json.loads("".join(peer.written[:3])) == {"text": "😀" * 3000}
    assert peer.written[3:] == ["after the overflow"]
    channel.abandon()


class EagerPeer(StalledPeer):
    """A connection whose socket takes everything at once (loopback, a fast reader): `send`
    never waits, so only the channel can let the loop run in between."""

    def send_now(self, data: bytes | str) -> bool:
        return False  # queued: the channel's task sends it

    async def send(self, data: bytes | str) -> None:
        self.written.append(data)


async def test_a_peer_that_takes_everything_lets_the_loop_run_between_turns() -> None:
    """20 joiners each sent a big document's logged updates back to back held the loop
    40 ms a turn: a draining channel lets it run after `TURN_BYTES`."""
    peer = EagerPeer()
    channel = PeerChannel("p", peer, 1 << 30, lambda c: None)
    for i in range(8):
        channel.send(f"{i} 😀中e\u0301\r\n".encode() * (TURN_BYTES // 40))  # ~0.35 turn each
    seen: list[int] = []  # messages written each time another task ran

    async def another_task() -> None:
        while len(peer.written) < 8:
            seen.append(len(peer.written))
            await asyncio.sleep(0)

    await asyncio.wait_for(another_task(), 5)
    assert sorted(set(seen)) == [3, 6]  # a turn ends past TURN_BYTES: after 3 messages
    assert [bytes(m)[:1] for m in peer.written] == [str(i).encode() for i in range(8)]
