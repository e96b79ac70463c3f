"""`collab.access.storable`: the one rule for strings a peer chose."""

from __future__ import annotations

import pytest

from collab.access.storable import first_unstorable, storable

FINE = ["", "Ada", "👨‍👩‍👧 中文 e\u0301\r\n👍🏽 🇫🇷", "\ufffd", "\U0010ffff", "\x01\x7f"]


@pytest.mark.parametrize("text", FINE)
def test_text_every_store_and_encoder_takes_is_kept_as_it_is(text: str) -> None:
    assert first_unstorable(text) is None
    assert storable(text) is text
    text.encode("utf-8")


@pytest.mark.parametrize(
    ("text", "at", "shown"),
    [
        ("\x00", 0, "\ufffd"),
        ("a\x00b", 1, "a\ufffdb"),
        ("😀\ud800中", 1, "😀\ufffd中"),
        ("\udfff\ud83d", 0, "\ufffd\ufffd"),  # two lone halves stay two characters
        ("e\u0301\x00\udc00", 2, "e\u0301\ufffd\ufffd"),
    ],
)
def test_nul_and_lone_surrogates_are_found_and_replaced(text: str, at: int, shown: str) -> None:
    assert first_unstorable(text) == at
    assert storable(text) == shown
    shown.encode("utf-8")
