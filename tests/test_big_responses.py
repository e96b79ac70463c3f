"""A big HTTP body goes out a chunk per loop turn: through a socket that takes everything
(loopback, a fast reader) `send` never waits, and a 64 MiB text held the loop ~70 ms."""

from __future__ import annotations

import asyncio
from typing import Any

from collab.web.big import BIG_BYTES, CHUNK_BYTES, BigResponses


async def test_a_big_body_lets_the_loop_run_between_chunks() -> None:
    body = ("😀👩‍👩‍👧中e\u0301\r\n" * (BIG_BYTES // 10)).encode()
    response = BigResponses(limit=2, send_timeout=10).respond(body, "text/plain", print)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:  # takes everything at once
        sent.append(message)

    seen: list[int] = []  # messages sent each time another task ran

    async def another_task() -> None:
        while not sent or sent[-1].get("more_body", False) or len(sent) == 1:
            seen.append(len(sent))
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(response({}, None, send), another_task()), 10)
    chunks = -(-len(body) // CHUNK_BYTES)
    assert len(set(seen)) >= chunks  # a turn for each chunk at least
    assert b"".join(message.get("body", b"") for message in sent[1:]) == body
