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

from collab.text.chunks import TextChunks

PART_CHARS = 1 << 16
"""Characters of text per part: ~0.5 ms to encode on this project's machines. Small, so
that a loop turn with several peers' parts in it stays short."""


class LongMessage:
    """One JSON text message whose last field is a long string, encoded as it is sent.

    Iterating gives ``(part, last)``, each part encoded as it is asked for: joined, they are
    ``json.dumps(fields | {key: str(text)}, ensure_ascii=False)`` in content (the long
    string comes last). The text is a str or a `TextChunks` no one changes (a copy): what
    was asked for is what is sent, whatever happens to the document meanwhile.
    """

    __slots__ = ("_fields", "_key", "_part_chars", "size", "text")

    def __init__(
        self,
        fields: dict[str, Any],
        key: str,
        text: str | TextChunks,
        part_chars: int = PART_CHARS,
    ) -> None:
        self._fields = fields
        self._key = key
        self._part_chars = part_chars
        self.text = text
        self.size = len(text)  # about (characters): for the peer's accounting and logs

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        head = json.dumps(self._fields, ensure_ascii=False)
        opening = head[:-1] + (", " if self._fields else "") + json.dumps(self._key) + ": "
        slices = self._slices()
        current, first = next(slices, ""), True
        for following in slices:
            yield _part(current, opening if first else None, False), False
            current, first = following, False
        yield _part(current, opening if first else None, True), True

    def _slices(self) -> Iterator[str]:
        """The text in slices of about `part_chars` characters (pieces gathered, or a str
        cut), never the whole text at once."""
        text, step = self.text, self._part_chars
        if isinstance(text, str):
            yield from (text[start : start + step] for start in range(0, len(text), step))
            return
        gathered: list[str] = []
        count = 0
        for piece in text.pieces():
            gathered.append(piece)
            count += len(piece)
            if count >= step:
                yield "".join(gathered)
                gathered, count = [], 0
        if gathered:
            yield "".join(gathered)

    def whole(self) -> str:
        """The message in one piece (for a connection that cannot send fragments)."""
        return "".join(part for part, _ in self)


def _part(text: str, opening: str | None, last: bool) -> str:
    """One slice of the long string as JSON: the opening (fields, key, quote) before the
    first, the closing quote and brace after the last."""
    encoded = json.dumps(text, ensure_ascii=False)
    part = encoded[0 if opening is not None else 1 : None if last else -1]
    return (part if opening is None else opening + part) + ("}" if last else "")


def welcome_message(fields: dict[str, Any], text: str | TextChunks | None) -> str | LongMessage:
    """The welcome as one JSON string, or as a `LongMessage` when its text is long."""
    if text is not None and len(text) > PART_CHARS:
        return LongMessage(fields, "text", text)
    if text is not None:
        fields["text"] = str(text)
    return json.dumps(fields, ensure_ascii=False)
