"""collab.yjs.items: the text's items in Yjs's order, checked against Yjs itself."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from conftest import run_node_script
from pycrdt import Doc, Text

from collab.text import positions
from collab.yjs.items import TextItems

UNICODE = "a😀b👨‍👩‍👧🇫🇷👍🏽中文e\u0301\r\nz"


def concurrent_run(seed: int, steps: int) -> dict[str, Any]:
    """tests/node/relpos.mjs: three Yjs clients editing concurrently, and Yjs's answers."""
    return run_node_script("relpos.mjs", {"seed": seed, "steps": steps})  # type: ignore[return-value]


@pytest.mark.node
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_ids_and_indices_match_yjs_after_concurrent_unicode_edits(seed: int) -> None:
    run = concurrent_run(seed, 400)
    doc = Doc()
    text = doc.get("text", type=Text)
    items = TextItems("text")
    for encoded in run["updates"]:
        update = base64.b64decode(encoded)
        doc.apply_update(update)
        items.apply(update)
    s = str(text)
    assert s == run["text"]
    assert items.length() == len(s)
    loaded = TextItems.from_state("text", doc.get_update())
    for p in range(len(s) + 1):
        expected = run["ids"][positions.cp_to_utf16(s, p)]
        assert items.id_at(p) == loaded.id_at(p) == (tuple(expected) if expected else None), p
    for client, clock, index16 in run["resolved"]:
        got = items.index_of(client, clock)
        assert got is not None and got == loaded.index_of(client, clock)
        got16 = positions.cp_to_utf16(s, got)
        # Yjs may land between the halves of a pair (an id on a low surrogate): the
        # server says the character's start instead.
        assert got16 == index16 or (got16 == index16 - 1 and ord(s[got]) > 0xFFFF)


def test_positions_inside_one_item_count_utf16_clocks() -> None:
    doc = Doc(client_id=7)
    text = doc.get("text", type=Text)
    text.insert(0, UNICODE)
    items = TextItems.from_state("text", doc.get_update())
    for p in range(len(UNICODE)):
        assert items.id_at(p) == (7, positions.cp_to_utf16(UNICODE, p))
        assert items.index_of(7, positions.cp_to_utf16(UNICODE, p)) == p
    assert items.id_at(len(UNICODE)) is None
    assert items.index_of(7, 1 + 1) == 1  # the low half of 😀: the emoji's start
    assert items.index_of(7, 999) is None and items.index_of(8, 0) is None


def test_a_deleted_character_resolves_to_where_it_was() -> None:
    doc = Doc(client_id=7)
    text = doc.get("text", type=Text)
    text.insert(0, "ab😀中cd")
    items = TextItems.from_state("text", doc.get_update())
    caret = items.id_at(3)  # before 中 (7, 4)
    assert caret == (7, 4)
    before = doc.get_state()
    del text[1 : 1 + len("b😀中".encode())]  # delete "b😀中" (UTF-8 bytes)
    items.apply(doc.get_update(before))
    assert str(text) == "acd"
    assert items.index_of(*caret) == 1
    assert items.index_of(*caret, assoc=-1) == 1
    assert items.id_at(1) == (7, 5)  # "c"


def test_other_root_types_and_map_entries_are_not_the_text() -> None:
    doc = Doc(client_id=3)
    text = doc.get("text", type=Text)
    other = doc.get("notes", type=Text)
    other.insert(0, "other 😀")
    text.insert(0, "x中y")
    other.insert(0, "more")
    items = TextItems.from_state("text", doc.get_update())
    assert items.length() == 3
    assert [items.id_at(p) for p in range(4)] == [(3, 8), (3, 9), (3, 10), None]
