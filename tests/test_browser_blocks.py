"""The editor's block view in Chromium (frontend/blockview.js): the text is held in blocks of
lines that the browser lays out only on screen, a keystroke rewrites one block, and line
breaks, block joins, select-all, copy, cut and paste give exactly the text the server
has (the fixtures and helpers are test_browser.py's)."""

from __future__ import annotations

import pytest
import test_browser
from conftest import ServerProcess
from test_browser import (
    SAVED,
    caret,
    caret_to_end,
    model,
    server_text,
    set_caret,
    units,
    wait_converged,
    wait_value,
)

browser = test_browser.browser
open_page = test_browser.open_page

pytestmark = pytest.mark.browser

LINES = [f"行 {k} 😀 👩‍👩‍👧 e\u0301 中文\n" for k in range(160)]

MUTATIONS = """() => {
    window.mutations = [];
    new MutationObserver((records) => window.mutations.push(...records.map(
        (r) => r.type + ':' + (r.target.nodeName)))).observe(document.querySelector('#text'),
        {childList: true, characterData: true, subtree: true});
}"""


def load(page, text: str) -> None:
    page.evaluate("t => window.collabEditor.replaceText(t, 'insertFromPaste')", text)
    page.wait_for_function(SAVED)


def line_start(k: int) -> int:
    return units("".join(LINES[:k]))


def test_a_keystroke_rewrites_one_block_of_lines(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "blocks 中文")
    load(a, "".join(LINES))
    blocks = a.evaluate(
        """() => Array.from(document.querySelectorAll('#text > div'),
            (div) => getComputedStyle(div).contentVisibility)"""
    )
    # Laid out only when on screen, but for the blocks holding the selection's ends (the
    # paste selected what it inserted: the first and the last block).
    assert len(blocks) >= 4 and blocks.count("visible") <= 2
    assert blocks.count("auto") == len(blocks) - blocks.count("visible")
    set_caret(a, line_start(80) + units("行 80"))
    a.evaluate(MUTATIONS)
    a.keyboard.type("x")
    a.wait_for_function("window.mutations.length > 0")
    a.wait_for_function(SAVED)
    assert a.evaluate("window.mutations") == ["characterData:#text"]  # one text node
    assert a.evaluate("getSelection().focusNode.data").startswith("行 50 ")  # its block
    expected = "".join(LINES[:80]) + "行 80x" + "".join(LINES[80:])[len("行 80") :]
    assert wait_converged(server.http_url, "blocks 中文", [a]) == expected


def test_line_breaks_at_the_joins_of_blocks(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "joins")
    b = open_page(server.http_url, "joins")
    load(a, "".join(LINES))
    wait_value(b, "".join(LINES))
    set_caret(a, line_start(100) - 1)  # the end of the second block
    a.keyboard.press("Delete")  # joins the third block's first line to it
    # The first block far off screen: Chromium skips its layout, and its own editing takes
    # such a block as one piece (a Backspace's target range is then the whole block).
    a.evaluate("document.querySelector('.editor').scrollTop = 140 * 24")
    set_caret(a, line_start(50))  # the first line of the second block
    a.keyboard.press("Backspace")  # joins it to the last line of the first
    a.keyboard.press("Enter")  # and splits them again
    a.keyboard.press("Enter")
    caret_to_end(a)  # the empty last line, after the text's final "\n"
    a.keyboard.type("end 👍🏽")
    lines = LINES[:]
    lines[49] += "\n"
    lines[99] = lines[99][:-1]
    expected = "".join(lines) + "end 👍🏽"
    assert wait_converged(server.http_url, "joins", [a, b]) == expected
    # The empty line and the typed last line are drawn on lines of their own.
    tops = a.evaluate(
        """() => { const range = document.createRange();
            const dom = window.collabEditor.dom;
            const top = (at) => { range.setStart(...dom.position(at));
                range.setEnd(...dom.position(at + 1));
                return range.getBoundingClientRect().top; };
            const text = window.collabEditor.text;
            return ['行 49 ', '行 50 ', '行 159 ', 'end'].map((s) => top(text.indexOf(s))); }"""
    )
    line = a.evaluate("parseFloat(getComputedStyle(document.querySelector('#text')).lineHeight)")
    assert tops[1] - tops[0] == pytest.approx(2 * line, abs=1)
    assert tops[3] - tops[2] == pytest.approx(line, abs=1)


def test_select_all_copy_cut_paste_and_delete(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "clip 😀")
    b = open_page(server.http_url, "clip 😀")
    a.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    text = "one 中文\r\ntwo 👩‍👩‍👧 e\u0301\r\n" + "".join(LINES[:120])
    load(a, text)
    wait_converged(server.http_url, "clip 😀", [a, b])
    shown = text.replace("\r\n", "\n")

    a.keyboard.press("ControlOrMeta+a")
    a.keyboard.press("ControlOrMeta+c")
    assert a.evaluate("navigator.clipboard.readText()") == shown  # across every block

    a.evaluate("at => window.collabEditor.select(4, at)", 4 + units("中文\ntwo 👩‍👩‍👧"))
    a.keyboard.press("ControlOrMeta+x")
    assert a.evaluate("navigator.clipboard.readText()") == "中文\ntwo 👩‍👩‍👧"
    a.evaluate(
        """() => navigator.clipboard.write([new ClipboardItem({
            'text/plain': new Blob(['<b>😀</b>\\r\\nbold'], {type: 'text/plain'}),
            'text/html': new Blob(['<b>BOLD</b>'], {type: 'text/html'})})])"""
    )
    a.keyboard.press("ControlOrMeta+v")  # plain text only, its "\r\n" a "\n"
    pasted = "one <b>😀</b>\nbold e\u0301\r\n" + "".join(LINES[:120])
    assert wait_converged(server.http_url, "clip 😀", [a, b]) == pasted
    assert a.evaluate("document.querySelectorAll('#text b, #text span').length") == 0

    a.keyboard.press("ControlOrMeta+a")
    a.keyboard.press("Delete")
    wait_value(a, "")
    wait_value(b, "")  # (wait_converged waits for a text that is not empty)
    a.wait_for_function(SAVED)
    assert model(a) == model(b) == server_text(server.http_url, "clip 😀") == ""
    assert a.evaluate("document.querySelector('#text').hasAttribute('data-empty')")
    a.keyboard.type("again 中")
    assert wait_converged(server.http_url, "clip 😀", [a, b]) == "again 中"
    assert model(b) == server_text(server.http_url, "clip 😀")


def test_word_deletes_and_arrow_keys_across_blocks(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "words")
    load(a, "".join(LINES[:60]))
    a.evaluate("document.querySelector('.editor').scrollTop = 10_000")  # the first block away
    set_caret(a, line_start(50))
    a.keyboard.press("ArrowLeft")  # into the first block, natively, though it was skipped
    a.wait_for_function("at => window.collabEditor.selection[0] === at", arg=line_start(50) - 1)
    a.keyboard.press("ArrowRight")
    a.keyboard.press("ArrowUp")
    a.keyboard.press("End")
    a.keyboard.type(" word")
    a.keyboard.press("Control+Backspace")  # the word, as the browser finds it
    expected = "".join(LINES[:49]) + LINES[49][:-1] + " \n" + "".join(LINES[50:60])
    wait_value(a, expected)
    assert wait_converged(server.http_url, "words", [a]) == expected


def test_the_caret_stays_on_screen_while_typing(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "reveal")
    load(a, "".join(LINES))
    caret_in_view = """() => { const caret = getSelection().getRangeAt(0).getBoundingClientRect();
        const view = document.querySelector('.editor').getBoundingClientRect();
        return caret.height > 0 && caret.top >= view.top && caret.bottom <= view.bottom; }"""
    set_caret(a, line_start(20) - 1)
    for _ in range(40):  # Enter past the bottom of the window
        a.keyboard.press("Enter")
    a.keyboard.type("中 😀")
    a.wait_for_function(caret_in_view)  # drawn in the frame after the key
    caret_to_end(a)  # the end, far below: typing brings it into view
    a.keyboard.type("end")
    a.wait_for_function(caret_in_view)  # drawn in the frame after the key
    set_caret(a, 0)  # and the top, far above
    a.keyboard.type("top")
    a.wait_for_function(caret_in_view)  # drawn in the frame after the key
    expected = "top" + "".join(LINES[:19]) + LINES[19][:-1] + "\n" * 40 + "中 😀\n"
    assert wait_converged(server.http_url, "reveal", [a]) == expected + "".join(LINES[20:]) + "end"


def test_dragging_text_moves_it(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "drag 中文")
    b = open_page(server.http_url, "drag 中文")
    load(a, "alpha 😀 beta gamma\n中文 second line\n")
    a.evaluate("window.collabEditor.select(9, 13)")  # "beta"
    word = a.evaluate(
        """() => { const r = getSelection().getRangeAt(0).getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }"""
    )
    line = a.evaluate(  # the left edge of "中", starting the second line
        """() => { const range = document.createRange();
            const [node, at] = window.collabEditor.dom.position(20);
            range.setStart(node, at); range.setEnd(node, at + 1);
            const r = range.getBoundingClientRect(); return [r.left + 1, r.top + r.height / 2]; }"""
    )
    assert a.evaluate("window.collabEditor.text[20]") == "中"
    a.mouse.move(*word)
    a.mouse.down()
    a.mouse.move(*line, steps=5)
    a.mouse.up()
    expected = "alpha 😀  gamma\nbeta中文 second line\n"
    assert wait_converged(server.http_url, "drag 中文", [a, b]) == expected


def test_ime_composition_in_an_empty_text_and_at_a_block_start(
    server: ServerProcess, open_page
) -> None:
    """The browser composes in a block that is empty (a text node and a <br>) or in a
    block's first line; the composed text is read back from that block alone."""
    a = open_page(server.http_url, "ime blocks")
    devtools = a.context.new_cdp_session(a)

    def compose(text: str) -> None:
        devtools.send(
            "Input.imeSetComposition", {"text": "ni", "selectionStart": 2, "selectionEnd": 2}
        )
        devtools.send(
            "Input.imeSetComposition", {"text": text, "selectionStart": 1, "selectionEnd": 1}
        )
        devtools.send("Input.insertText", {"text": text})

    compose("你")
    wait_value(a, "你")
    load(a, "你" + "".join(LINES))
    set_caret(a, line_start(50) + 1)  # the start of the second block (after "你")
    compose("好")
    expected = "你" + "".join(LINES[:50]) + "好" + "".join(LINES[50:])
    assert wait_converged(server.http_url, "ime blocks", [a]) == expected
    assert caret(a) == line_start(50) + 2
    assert a.evaluate("document.querySelectorAll('#text > div').length") >= 3
    blocks = "Array.from(document.querySelectorAll('#text > div'))"
    assert a.evaluate(f"{blocks}.every((div) => div.firstChild.nodeType === Node.TEXT_NODE)")


def test_lines_added_above_the_caret_in_its_own_block_keep_it_in_place(
    server: ServerProcess, open_page
) -> None:
    """Scroll anchoring keeps the view still when a block above changes; a change in the
    caret's own block above it moves the caret's line unless the view follows it."""
    from test_browser import caret_top

    a = open_page(server.http_url, "same block")
    b = open_page(server.http_url, "same block")
    load(a, "".join(LINES[:45]))  # one block
    wait_value(b, "".join(LINES[:45]))
    a.evaluate("document.querySelector('.editor').scrollTop = 20 * 24")
    set_caret(a, line_start(35))
    top = caret_top(a)
    assert 100 < top < 500
    set_caret(b, line_start(30))
    b.keyboard.insert_text("中文 👍🏽\n" * 3)  # on screen, above a's caret
    a.wait_for_function("window.collabEditor.text.includes('👍🏽')")
    assert caret(a) == line_start(35) + 3 * units("中文 👍🏽\n")
    assert caret_top(a) == pytest.approx(top, abs=2)
    set_caret(b, line_start(43))
    b.keyboard.insert_text("below\n")  # under the caret: nothing moves
    a.wait_for_function("window.collabEditor.text.includes('below')")
    assert caret_top(a) == pytest.approx(top, abs=2)


def test_arrow_keys_at_once_after_the_page_moves_the_caret_far(
    server: ServerProcess, open_page
) -> None:
    """The page puts the caret in a block that was off screen (skipped): the next key moves
    it by one character, not over the whole block."""
    a = open_page(server.http_url, "far caret")
    lines = LINES * 3
    load(a, "".join(lines))
    for k in (130, 300, 470):
        at = units("".join(lines[:k]))
        a.evaluate(
            """at => { document.querySelector('.editor').scrollTop = 0;
                window.collabEditor.select(at); }""",
            at,
        )
        a.keyboard.press("ArrowRight")
        a.wait_for_function("at => window.collabEditor.selection[0] === at + 1", arg=at)
        a.keyboard.press("Shift+ArrowRight")
        assert a.evaluate("window.collabEditor.selection") == [at + 1, at + 2, "forward"]


def test_a_selection_of_a_long_text_is_drawn_near_the_screen_only(
    server: ServerProcess, open_page
) -> None:
    """Another user selects all of a long text: the page draws its selection on the lines
    near the screen (not one mark per line of the whole text), and where it scrolls to."""
    a = open_page(server.http_url, "select all 中文")
    b = open_page(server.http_url, "select all 中文")
    lines = LINES * 10  # 1,600 lines
    load(b, "".join(lines))
    wait_value(a, "".join(lines))
    b.keyboard.press("ControlOrMeta+a")
    bob = b.evaluate("window.collab.client.client")
    marks = f'.carets-selection[data-client="{bob}"]'
    a.wait_for_selector(marks)
    count = a.evaluate(f"document.querySelectorAll('{marks}').length")
    assert 20 < count < 200  # the screen's lines and a screen's height either side
    on_screen = f"""() => {{
        const view = document.querySelector('.editor').getBoundingClientRect();
        return Array.from(document.querySelectorAll('{marks}')).some((m) => {{
            const r = m.getBoundingClientRect();
            return r.top >= view.top && r.bottom <= view.bottom; }}); }}"""
    a.evaluate("document.querySelector('.editor').scrollTop = 1000 * 24")
    a.wait_for_function(on_screen)
    assert a.evaluate(f"document.querySelectorAll('{marks}').length") < 200
