"""The editor people expect, in Chromium with two tabs: collaborative undo and redo, the
others' carets drawn in the text, pastes bigger than a message, history that says who and
what (the fixtures and helpers are test_browser.py's)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import ServerProcess
from test_browser import (  # noqa: F401 - fixtures
    SAVED,
    browser,
    model,
    open_page,
    server_rev,
    server_text,
    set_caret,
    units,
    url_name,
    value,
    wait_converged,
    wait_value,
)

pytestmark = pytest.mark.browser


def undo(page) -> None:
    page.keyboard.press("ControlOrMeta+z")


def redo(page, keys: str = "ControlOrMeta+Shift+z") -> None:
    page.keyboard.press(keys)


# ------------------------------------------------------------------------------ undo


def test_undo_takes_out_only_own_typing_around_remote_edits(
    server: ServerProcess, open_page
) -> None:
    a = open_page(server.http_url, "undo", "Ada")
    b = open_page(server.http_url, "undo", "Bob")
    a.keyboard.type("Ada 😀 wrote")
    wait_value(b, "Ada 😀 wrote")
    set_caret(b, 0)
    b.keyboard.type("中文 ")  # before
    set_caret(b, units("中文 Ada"))
    b.keyboard.type("X")  # inside the text a's undo takes out
    set_caret(b, units(value(b)))
    b.keyboard.type(" Bob👍🏽")  # after
    wait_value(a, "中文 AdaX 😀 wrote Bob👍🏽")
    rev = server_rev(server, "undo")

    undo(a)
    wait_value(a, "中文 X Bob👍🏽")
    assert wait_converged(server.http_url, "undo", [a, b]) == "中文 X Bob👍🏽"
    assert server_rev(server, "undo") == rev + 1  # one op, through the normal path
    assert a.eval_on_selector("#text", "ta => [ta.selectionStart, ta.selectionEnd]") == [3, 3]

    undo(a)  # nothing more of a's to undo: b's text stays
    a.wait_for_function(SAVED)
    assert value(a) == "中文 X Bob👍🏽"

    redo(a)
    assert wait_converged(server.http_url, "undo", [a, b]) == "中文 AdaX 😀 wrote Bob👍🏽"
    undo(a)
    wait_value(a, "中文 X Bob👍🏽")
    redo(a, "Control+y")
    assert wait_converged(server.http_url, "undo", [a, b]) == "中文 AdaX 😀 wrote Bob👍🏽"

    undo(b)  # b's last run of typing
    assert wait_converged(server.http_url, "undo", [a, b]) == "中文 AdaX 😀 wrote"


def test_undo_steps_group_like_a_textarea(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "groups", "Ada")
    b = open_page(server.http_url, "groups", "Bob")
    a.keyboard.type("one 😀")
    a.wait_for_timeout(1200)  # a pause ends a run of typing
    a.keyboard.type(" two")
    set_caret(a, 0)  # so does a caret jump
    a.keyboard.type("中")
    a.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    set_caret(a, units(value(a)))
    a.evaluate("text => navigator.clipboard.writeText(text)", " pasted 👍🏽")
    a.keyboard.press("ControlOrMeta+V")  # a paste is one step of its own
    a.keyboard.type("!")
    set_caret(b, 0)
    b.keyboard.type("B ")
    wait_value(a, "B 中one 😀 two pasted 👍🏽!")
    steps = ["B 中one 😀 two pasted 👍🏽", "B 中one 😀 two", "B one 😀 two", "B one 😀", "B "]
    for expected in steps:
        undo(a)
        wait_value(a, expected)
    # The context menu's Undo/Redo (beforeinput historyUndo/historyRedo) is ours too.
    for _ in range(2):
        a.eval_on_selector(
            "#text",
            """ta => ta.dispatchEvent(new InputEvent('beforeinput',
                {inputType: 'historyRedo', cancelable: true, bubbles: true}))""",
        )
    wait_value(a, "B one 😀 two")
    assert wait_converged(server.http_url, "groups", [a, b]) == "B one 😀 two"
