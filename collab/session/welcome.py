"""A text peer's welcome, encoded part by part when the text is long.

The welcome carries the whole text when a text client joins (or comes back from too far
behind). `json.dumps` of 64 MiB of text holds the event loop for ~0.6 s, and the UTF-8
copy and the frame ~0.2 s more: every other document of the process would wait. Past
`PART_CHARS` characters the welcome is a `LongMessage` instead: the same JSON, cut into
parts that are encoded one at a time as the peer takes them, each sent as a fragment of
one WebSocket text message (RFC 6455 section 5.4), so the client receives the very message
it always did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

PART_CHARS = 1 << 16
"""Characters of text per part: ~0.5 ms to encode on this project's machines. Small, so
that a loop turn with several peers' parts in it stays short."""


class LongMessage:
    """One JSON text message whose last field is a long string, encoded as it is sent.

    Iterating gives ``(part, last)``, each part encoded as it is asked for: joined, they are
    ``json.dumps(fields | {key: text}, ensure_ascii=False)`` in content (the long string
    comes last). The text is a str, immutable: what was asked for is what is sent, whatever
    happens to the document meanwhile.
    """

    __slots__ = ("_fields", "_key", "_part_chars", "size", "text")

    def __init__(
        self, fields: dict[str, Any], key: str, text: str, part_chars: int = PART_CHARS
    ) -> None:
        self._fields = fields
        self._key = key
        self._part_chars = part_chars
        self.text = text
        self.size = len(text)  # about (characters): for the peer's accounting and logs

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        head = json.dumps(self._fields, ensure_ascii=False)
        opening = head[:-1] + (", " if self._fields else "") + json.dumps(self._key) + ": "
        text, step = self.text, self._part_chars
        starts = range(0, len(text), step) or range(1)
        for start in starts:
            encoded = json.dumps(text[start : start + step], ensure_ascii=False)
            first, last = start == 0, start == starts[-1]
            part = encoded[0 if first else 1 : None if last else -1]
            yield (opening + part if first else part) + ("}" if last else ""), last

    def whole(self) -> str:
        """The message in one piece (for a connection that cannot send fragments)."""
        return "".join(part for part, _ in self)


def welcome_message(fields: dict[str, Any], text: str | None) -> str | LongMessage:
    """The welcome as one JSON string, or as a `LongMessage` when its text is long."""
    if text is not None and len(text) > PART_CHARS:
        return LongMessage(fields, "text", text)
    if text is not None:
        fields["text"] = text
    return json.dumps(fields, ensure_ascii=False)
