"""The editor people expect, in Chromium with two tabs: collaborative undo and redo, the
others' carets drawn in the text, pastes bigger than a message, history that says who and
what (the fixtures and helpers are test_browser.py's)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import test_browser
from conftest import ServerProcess
from test_browser import (
    SAVED,
    caret_to_end,
    model,
    server_rev,
    server_text,
    set_caret,
    units,
    url_name,
    value,
    wait_converged,
    wait_value,
)

# The fixtures of test_browser.py (a module-scoped Chromium, one context per page).
browser = test_browser.browser
open_page = test_browser.open_page

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
    caret_to_end(b)
    b.keyboard.type(" Bob👍🏽")  # after
    wait_value(a, "中文 AdaX 😀 wrote Bob👍🏽")
    rev = server_rev(server, "undo")

    undo(a)
    wait_value(a, "中文 X Bob👍🏽")
    assert wait_converged(server.http_url, "undo", [a, b]) == "中文 X Bob👍🏽"
    assert server_rev(server, "undo") == rev + 1  # one op, through the normal path
    assert a.evaluate("window.collabEditor.selection") == [3, 3, "forward"]

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
    caret_to_end(a)
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


# ------------------------------------------------------------------------------ big pastes

STATUS_LOG = """() => {
    const status = document.querySelector('#status');
    window.statusLog = [];
    new MutationObserver(() => window.statusLog.push(status.textContent))
        .observe(status, {childList: true, characterData: true, subtree: true});
}"""


def paste(page, base_url: str, text: str) -> None:
    """A real paste (one input event) of `text` at the caret."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.keyboard.press("ControlOrMeta+V")


def test_a_paste_bigger_than_a_message_lands_whole(start_server, open_page) -> None:
    server = start_server("--fsync", "never", "--max-message-bytes", "65536")
    a = open_page(server.http_url, "big-paste", "Ada")
    b = open_page(server.http_url, "big-paste", "Bob")
    assert a.evaluate("window.collab.client.maxMessageBytes") == 65536
    a.keyboard.type("head 😀 ")
    wait_value(b, "head 😀 ")
    rev = server_rev(server, "big-paste")
    line = 'héllo 😀 中文 👍🏽 e\u0301 🇫🇷 "q" \\ \t\r\n'
    big = (line * (300_000 // len(line) + 1))[:300_000]
    a.evaluate("() => { window.firstSocket = window.collab.client.socket.socket; }")
    a.evaluate(STATUS_LOG)
    paste(a, server.http_url, big)
    expected = "head 😀 " + big.replace("\r\n", "\n").replace("\r", "\n")
    assert wait_converged(server.http_url, "big-paste", [a, b]) == expected
    pieces = server_rev(server, "big-paste") - rev
    assert 5 <= pieces <= 20  # each piece under 64 KiB, one revision each
    assert a.evaluate("window.collab.client.socket.socket === window.firstSocket")  # no 1009
    assert any(text.startswith("Sending… ") for text in a.evaluate("window.statusLog"))
    assert a.text_content("#status") == "Saved"
    undo(a)  # the whole paste is one step, however many pieces it went in
    assert wait_converged(server.http_url, "big-paste", [a, b]) == "head 😀 "


def test_the_document_size_limit_is_shown(start_server, open_page) -> None:
    server = start_server("--fsync", "never", "--max-document-bytes", "20000")
    a = open_page(server.http_url, "too-big", "Ada")
    b = open_page(server.http_url, "too-big", "Bob")
    a.keyboard.type("head 中 ")
    wait_value(b, "head 中 ")
    paste(a, server.http_url, "😀 too much 中文\n" * 3000)
    a.wait_for_function("document.querySelector('#status').textContent.startsWith('Not saved')")
    assert "larger than the server allows" in a.text_content("#status")
    wait_value(a, "head 中 ")  # the refused paste is taken back
    assert server_text(server.http_url, "too-big") == "head 中 "
    a.keyboard.type("ok")  # and editing goes on
    wait_value(b, "head 中 ok")
    a.wait_for_function(SAVED)
    assert a.text_content("#status") == "Saved"
    assert model(a) == server_text(server.http_url, "too-big") == "head 中 ok"


# ------------------------------------------------------------------------------ carets

GEOMETRY = """client => {
    const ta = document.querySelector('#text');
    const style = getComputedStyle(ta);
    const box = ta.getBoundingClientRect();
    const caret = document.querySelector(`.carets-caret[data-client="${client}"]`);
    const at = caret && caret.getBoundingClientRect();
    const context = document.createElement('canvas').getContext('2d');
    context.font = `${style.fontSize} ${style.fontFamily}`;
    return {
        left: box.left + ta.clientLeft + parseFloat(style.paddingLeft),
        top: box.top + ta.clientTop + parseFloat(style.paddingTop),
        line: parseFloat(style.lineHeight),
        char: context.measureText('x').width,
        columns: Math.floor((ta.clientWidth - parseFloat(style.paddingLeft)
            - parseFloat(style.paddingRight)) / context.measureText('x').width),
        caret: at && {x: at.left + at.width / 2, y: at.top, height: at.height,
                      label: caret.textContent, color: caret.style.background},
    };
}"""


def caret_of(page, client: str) -> dict:
    page.wait_for_selector(f'.carets-caret[data-client="{client}"]')
    return page.evaluate(GEOMETRY, client)


def wait_caret_at(page, client: str, x: float, y: float) -> dict:
    """The caret drawn for `client` reaches (x, y) in the text's own coordinates."""
    page.wait_for_function(
        """([client, x, y]) => {
            const ta = document.querySelector('#text');
            const style = getComputedStyle(ta);
            const box = ta.getBoundingClientRect();
            const caret = document.querySelector(`.carets-caret[data-client="${client}"]`);
            if (!caret) return false;
            const at = caret.getBoundingClientRect();
            const left = box.left + ta.clientLeft + parseFloat(style.paddingLeft);
            const top = box.top + ta.clientTop + parseFloat(style.paddingTop);
            const dx = at.left + at.width / 2 - left - x;
            return Math.abs(dx) < 1.5 && Math.abs(at.top - top - y) < 2;
        }""",
        arg=[client, x, y],
    )
    return caret_of(page, client)


def test_the_others_carets_are_drawn_where_their_text_is(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "carets", "Ada")
    b = open_page(server.http_url, "carets", "Bob")
    bob = b.evaluate("window.collab.client.client")
    words = "word " * 60  # wraps: monospace ASCII, so the wrap point is arithmetic
    b.keyboard.insert_text(f"ab😀中\tx\n{words}\nend 👍🏽")
    wait_value(a, f"ab😀中\tx\n{words}\nend 👍🏽")
    g = a.evaluate(GEOMETRY, bob)
    line, char = g["line"], g["char"]
    width = a.evaluate(
        """() => { const s = getComputedStyle(document.querySelector('#text'));
        const c = document.createElement('canvas').getContext('2d');
        c.font = `${s.fontSize} ${s.fontFamily}`;
        return [c.measureText('ab😀中').width, c.measureText(' ').width]; }"""
    )

    set_caret(b, units("ab😀中"))  # after emoji and CJK: their real widths
    g = wait_caret_at(a, bob, width[0], 0)
    assert g["caret"]["label"] == "Bob"
    assert abs(g["caret"]["height"] - line) < 6
    tab_stop = 4 * width[1]
    set_caret(b, units("ab😀中\t"))  # a tab goes to the next tab stop
    wait_caret_at(a, bob, (width[0] // tab_stop + 1) * tab_stop, 0)

    per_row = (g["columns"] + 1) // 5  # words on a visual row (a trailing space hangs)
    start = units("ab😀中\tx\n")
    set_caret(b, start + 5 * per_row + 5)  # the second word of the wrapped row
    wait_caret_at(a, bob, 5 * char, 2 * line)

    caret_to_end(b)  # the very end, after an emoji
    end_x = a.evaluate(
        """() => { const s = getComputedStyle(document.querySelector('#text'));
        const c = document.createElement('canvas').getContext('2d');
        c.font = `${s.fontSize} ${s.fontFamily}`; return c.measureText('end 👍🏽').width; }"""
    )
    wrapped = -(-60 // per_row)  # visual rows of the long line
    end_y = (1 + wrapped) * line
    wait_caret_at(a, bob, end_x, end_y)

    # Moves with a's own edits before it, and with scrolling.
    set_caret(a, units(value(a)) - units("end 👍🏽"))
    a.keyboard.type("中中")
    cjk = a.evaluate(
        """() => { const s = getComputedStyle(document.querySelector('#text'));
        const c = document.createElement('canvas').getContext('2d');
        c.font = `${s.fontSize} ${s.fontFamily}`; return c.measureText('中中').width; }"""
    )
    wait_caret_at(a, bob, end_x + cjk, end_y)
    set_caret(a, 0)
    a.keyboard.insert_text("\n" * 60)
    wait_caret_at(a, bob, end_x + cjk, end_y + 60 * line)
    a.evaluate("document.querySelector('.editor').scrollTop = 200")
    wait_caret_at(a, bob, end_x + cjk, end_y + 60 * line)  # the text's coordinates scroll
    g = caret_of(a, bob)
    top = a.evaluate("document.querySelector('.editor').getBoundingClientRect().top")
    assert g["caret"]["y"] < top + end_y + 60 * line - 150

    # A selection is drawn in the user's colour; a Yjs peer's too, whatever its kind.
    b.evaluate("window.collabEditor.select(60, 66)")
    a.wait_for_selector(f'.carets-selection[data-client="{bob}"]')
    a.evaluate(
        """() => window.collab.client.receive({type: 'presence', client: 'yjs:77', kind: 'yjs',
            user: {name: 'Yan', color: '#00897b'}, selection: [[60, 64]]})"""
    )
    a.wait_for_selector('.carets-caret[data-client="yjs:77"]:has-text("Yan")')
    a.wait_for_selector('.carets-selection[data-client="yjs:77"]')
    b.close()  # gone: its caret goes
    a.wait_for_selector(f'.carets-caret[data-client="{bob}"]', state="detached")


# ------------------------------------------------------------------------------ history


def revision(base_url: str, name: str, rev: int) -> dict:
    url = f"{base_url}/api/docs/{url_name(name)}/history/{rev}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def test_history_shows_who_and_what_and_restores(server: ServerProcess, open_page) -> None:
    name = "hist/😀"
    a = open_page(server.http_url, name, "Ada")
    b = open_page(server.http_url, name, "Bob")
    a.keyboard.type("héllo 😀")
    wait_value(b, "héllo 😀")
    caret_to_end(b)
    b.keyboard.type(" 中文")
    wait_converged(server.http_url, name, [a, b])
    bob_rev = server_rev(server, name)
    a.evaluate("window.collabEditor.select(2, 5)")
    a.keyboard.press("Backspace")
    assert wait_converged(server.http_url, name, [a, b]) == "hé 😀 中文"
    last = server_rev(server, name)
    assert revision(server.http_url, name, last)["user"] == "~Ada"

    page = a.context.new_page()
    page.goto(f"{server.http_url}/static/history.html#{url_name(name)}")
    page.wait_for_selector("#text del")
    assert page.text_content("#text del") == "llo"  # what the last revision deleted
    assert page.text_content("#text") == "héllo 😀 中文"  # the deleted text, struck out
    assert "Ada" in page.text_content("#who")
    assert page.locator("#revisions li", has_text="Bob").count() >= 1
    page.fill("#slider", str(bob_rev))
    page.wait_for_function(
        f"document.getElementById('rev').textContent === 'rev {bob_rev} / {last}'"
    )
    # Bob's last revision inserted the end of " 中文" (how much of it depends on how his
    # typing was batched: one op in flight, the rest buffered).
    page.wait_for_function(
        "(t => t && t.endsWith('文') && ' 中文'.endsWith(t))"
        "(document.querySelector('#text ins')?.textContent)"
    )
    assert "Bob" in page.text_content("#who")

    page.click("#restore")  # asks first
    page.click("#restore-confirm")  # opens the editor, which makes the text rev bob_rev's
    page.wait_for_url("**/d/**")
    wait_value(page, "héllo 😀 中文")
    assert wait_converged(server.http_url, name, [a, b, page]) == "héllo 😀 中文"
    assert server_rev(server, name) == last + 1  # one new revision, by the restoring user
    assert revision(server.http_url, name, last + 1)["user"] == "~Ada"
    assert page.evaluate("document.activeElement.id") == "text"
    undo(page)  # and the restore is undoable at once, no click needed
    assert wait_converged(server.http_url, name, [a, b, page]) == "hé 😀 中文"
