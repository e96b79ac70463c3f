"""Text every encoder and store can carry: the one rule for strings a peer chose.

Python strings may hold what UTF-8 cannot encode (a lone surrogate: JSON ``"\\ud800"``
decodes to one) and what PostgreSQL's ``text`` cannot hold (NUL). A string with either,
once it reaches a WebSocket frame, a record or a SQL parameter, fails far from where it came
in: the frame encoder raises inside a document's send loop, the store refuses the commit.
So every peer-chosen string is checked where it comes in, by these two functions, the same
way whatever the door and the store: names that identify something (documents, secrets)
are refused (`first_unstorable`), names only shown (a user's display name, a colour) are
kept with U+FFFD in place of each such character (`storable`), as a UTF-8 decoder does.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def first_unstorable(text: str) -> int | None:
    """Where the first NUL or lone surrogate in `text` is; None when there is none."""
    if text.isascii() and "\x00" not in text:  # the common case, without the regex
        return None
    found = _UNSTORABLE.search(text)
    return None if found is None else found.start()


def storable(text: str) -> str:
    """`text` with each NUL and lone surrogate replaced by U+FFFD (the same string, when
    it has none)."""
    if first_unstorable(text) is None:
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)
