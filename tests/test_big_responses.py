"""A big HTTP body goes out a chunk per loop turn: through a socket that takes everything
(loopback, a fast reader) `send` never waits, and a 64 MiB text held the loop ~70 ms."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from collab.web.big import BIG_BYTES, CHUNK_BYTES, BigResponses, FileBody


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


async def test_a_file_body_is_closed_even_when_the_threads_are_gone() -> None:
    """Its file is closed in a thread (freeing 64 MiB of blocks took 17 ms); when the
    server is stopping and its executor is shut down, it is closed where it is."""
    body = ("中文 e\u0301 😀\r\n" * (BIG_BYTES // 10)).encode()
    file = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it
    file.write(body)
    file.seek(0)
    response = BigResponses(limit=2, send_timeout=10).respond(
        FileBody(file, len(body)), "text/plain", print
    )
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.get_running_loop().shutdown_default_executor()
    await response({}, None, send)
    assert file.closed
    assert b"".join(message.get("body", b"") for message in sent[1:]) == body
