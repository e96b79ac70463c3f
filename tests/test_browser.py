"""The built-in editor page in a real browser (Debian's chromium driven by Playwright).

Each test opens `/d/{name}` in one or more pages, types with the real keyboard and checks
what the users see (the textarea), what the server has (GET /api/docs/{name}/text) and
where the caret is. The page exposes its client as `window.collab.client`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, ServerProcess, free_port, node_available, require, wait_until
from pycrdt import Doc, Text

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000  # the machine is shared: generous, never a fixed sleep

# What the page's client state is, and whether everything typed reached the server.
SAVED = "window.collab && window.collab.client.state === 'saved'"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(CHROMIUM.exists(), "chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., object]]:
    """Open the editor for a document in a fresh browser context (its own user)."""
    contexts = []

    def open_(base_url: str, name: str, user: str = "", viewport: tuple[int, int] = (1000, 700)):
        # bypass_csp: wait_for_function polls with string predicates, which the page's CSP
        # (no eval) refuses; tests/test_security.py checks the page under its real CSP.
        size = {"width": viewport[0], "height": viewport[1]}
        context = browser.new_context(viewport=size, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        if user:
            page.add_init_script(f"localStorage.setItem('collab.name', {json.dumps(user)})")
        page.goto(f"{base_url}/d/{url_name(name)}")
        page.wait_for_function(SAVED)
        page.focus("#text")
        return page

    yield open_
    for context in contexts:
        context.close()


def url_name(name: str) -> str:
    return urllib.parse.quote(name, safe="/")


def server_text(base_url: str, name: str) -> str:
    with urllib.request.urlopen(f"{base_url}/api/docs/{url_name(name)}/text") as response:
        return response.read().decode("utf-8")


def server_rev(server: ServerProcess, name: str) -> int:
    with urllib.request.urlopen(f"{server.http_url}/api/docs") as response:
        documents = json.load(response)["documents"]
    return next(doc["rev"] for doc in documents if doc["name"] == name)


def value(page) -> str:
    """The text the page shows (its blocks joined, line breaks as "\n")."""
    return page.evaluate("window.collabEditor.text")


def model(page) -> str:
    """The document text the page's client holds (line breaks as the server has them)."""
    return page.evaluate("window.collab.client.text")


def units(s: str) -> int:
    """The length of `s` in UTF-16 units, as the page counts."""
    return len(s.encode("utf-16-le")) // 2


def caret(page) -> int:
    """The selection's start in the shown text, in UTF-16 units as the page counts."""
    return page.evaluate("window.collabEditor.selection[0]")


def set_caret(page, units: int) -> None:
    page.focus("#text")
    page.evaluate("at => window.collabEditor.select(at)", units)


def caret_to_end(page) -> None:
    """Put the caret at the end of the text the page has now.

    The length is read and the caret put there in one task of the page. Read in one round
    trip and set in another (`set_caret(page, units(value(page)))`), an edit of another
    page that lands between the two leaves the caret short of the end, and what is typed
    next goes before that edit's text: the page does right, the test asked for the wrong
    spot.
    """
    page.focus("#text")
    page.evaluate("() => window.collabEditor.select(window.collabEditor.text.length)")


def wait_value(page, expected: str) -> None:
    page.wait_for_function("expected => window.collabEditor.text === expected", arg=expected)


def wait_converged(base_url: str, name: str, pages: list) -> str:
    """Every page saved, and every page's text equal to the server's; returns that text."""

    def agree() -> str | None:
        if not all(page.evaluate(SAVED) for page in pages):
            return None
        text = server_text(base_url, name)
        shown = text.replace("\r\n", "\n").replace("\r", "\n")
        if all(model(page) == text and value(page) == shown for page in pages):
            return text
        return None

    text = wait_until(agree, 30, f"pages and server agree on {name!r}")
    # ... and got there without an error from the server or a fallback resync
    assert [page.evaluate("window.collab.client.resyncs") for page in pages] == [0] * len(pages)
    return text  # type: ignore[return-value]


# ------------------------------------------------------------------------------ editing


def test_two_pages_typing_at_once_converge(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "race", "Ada")
    b = open_page(server.http_url, "race", "Bob")
    a.keyboard.type("start 😀 ")
    wait_value(b, "start 😀 ")
    # Both type at the same moment, at the start, the end and one shared spot: ops cross.
    for round_ in range(3):
        set_caret(a, 0)
        caret_to_end(b)
        a.keyboard.type(f"a{round_}é👍🏽")
        b.keyboard.insert_text(f"中文{round_}👨‍👩‍👧")
        a.keyboard.insert_text("🇫🇷")
        b.keyboard.type("e\u0301x")
        set_caret(a, 2)
        set_caret(b, 2)
        a.keyboard.type("A")
        b.keyboard.type("B")
        b.keyboard.press("Backspace")
    text = wait_converged(server.http_url, "race", [a, b])
    heads = "".join(f"a{round_}é👍🏽🇫🇷" for round_ in (2, 1, 0))
    tails = "".join(f"中文{round_}👨‍👩‍👧e\u0301x" for round_ in (0, 1, 2))
    assert text.replace("A", "") == heads + "start 😀 " + tails
    assert text.count("A") == 3
    assert "B" not in text


def test_remote_insert_before_the_caret_moves_it(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "caret")
    b = open_page(server.http_url, "caret")
    a.keyboard.type("ab😀cd")
    wait_value(b, "ab😀cd")
    set_caret(a, 4)  # after the emoji: 4 UTF-16 units, 3 code points
    a.wait_for_function(SAVED)

    set_caret(b, 0)
    b.keyboard.type("中👍🏽")  # 1 + 4 units before a's caret
    wait_value(a, "中👍🏽ab😀cd")
    assert caret(a) == 9

    caret_to_end(b)
    b.keyboard.type("zz")  # after the caret: it stays
    wait_value(a, "中👍🏽ab😀cdzz")
    assert caret(a) == 9

    set_caret(b, 9)
    b.keyboard.type("X")  # exactly at the caret: a's caret stays before it
    wait_value(a, "中👍🏽ab😀Xcdzz")
    assert caret(a) == 9
    a.keyboard.type("Y")  # and a's own typing lands where a's caret is
    wait_converged(server.http_url, "caret", [a, b])
    assert value(b) == "中👍🏽ab😀YXcdzz"


def test_selection_survives_remote_edits(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "select")
    b = open_page(server.http_url, "select")
    a.keyboard.type("one two three")
    wait_value(b, "one two three")
    a.evaluate("window.collabEditor.select(4, 7, 'backward')")  # "two"
    set_caret(b, 0)
    b.keyboard.type("😀 ")
    wait_value(a, "😀 one two three")
    assert a.evaluate("window.collabEditor.selection") == [7, 10, "backward"]
    assert a.evaluate("getSelection().toString()") == "two"


def test_remote_lines_above_keep_the_caret_line_in_place(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "scroll")
    b = open_page(server.http_url, "scroll")
    a.keyboard.insert_text("".join(f"line {n} 😀\n" for n in range(200)))
    wait_converged(server.http_url, "scroll", [a, b])
    set_caret(a, units(value(a)[: value(a).index("line 150")]))
    a.evaluate("document.querySelector('.editor').scrollTop = 150 * 24 - 100")  # 16px * 1.5
    top = caret_top(a)
    assert 50 < top < 200  # the caret's line is on screen
    at = caret(a)

    set_caret(b, 0)
    b.keyboard.insert_text("中文 👍🏽\n" * 10)  # ten lines above a's caret
    a.wait_for_function("window.collabEditor.text.startsWith('中文')")
    assert caret(a) == at + 10 * units("中文 👍🏽\n")
    assert caret_top(a) == pytest.approx(top, abs=2)

    caret_to_end(b)
    b.keyboard.insert_text("below\n")  # under the caret: nothing moves
    a.wait_for_function("window.collabEditor.text.endsWith('below\\n')")
    assert caret_top(a) == pytest.approx(top, abs=2)


def caret_top(page) -> float:
    """Where the page's caret is on screen, from the top of the area that scrolls the text."""
    return page.evaluate(
        """() => {
            const range = getSelection().getRangeAt(0);
            const scroller = document.querySelector('.editor');
            return range.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
        }"""
    )


def test_yjs_peer_and_page_converge(server: ServerProcess, open_page) -> None:
    require(node_available(), "node + npm packages (npm ci --prefix tests/node)")
    from yjs_node import NodeYjs

    page = open_page(server.http_url, "mixed", "Ada")
    with NodeYjs() as node:
        peer = node.peer(server.ws_url, "mixed", awareness={"user": {"name": "Yan"}})
        page.wait_for_function(
            "() => [...window.collab.client.presence.values()].some(p => p.user?.name === 'Yan')"
        )
        page.wait_for_selector("#peers li:has-text('Yan')")
        peer.insert(0, "line 1\r\nline 2 🇫🇷\r\n")  # CRLF from a Yjs peer stays CRLF
        page.keyboard.type("page 😀 ")
        peer.insert(0, "👨‍👩‍👧 ")
        page.keyboard.insert_text("中文 e\u0301")
        text = wait_converged(server.http_url, "mixed", [page])
        peer.wait_text(text)
        assert "line 1\r\nline 2 🇫🇷\r\n" in text
        for piece in ["👨‍👩‍👧 ", "page 😀 ", "中文 e\u0301"]:
            assert text.count(piece) == 1

        # The page edits right after a CRLF: the CRLF is not rewritten.
        shown = value(page)
        set_caret(page, units(shown[: shown.index("line 2")]))
        page.keyboard.type(">")
        text = wait_converged(server.http_url, "mixed", [page])
        peer.wait_text(text)
        assert "line 1\r\n>line 2" in text


def test_paste_one_megabyte(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "big")
    a.keyboard.type("head ")
    a.wait_for_function(SAVED)
    rev = server_rev(server, "big")
    line = "héllo 😀 中文 👍🏽 e\u0301 🇫🇷\r\n"
    big = line * (1024 * 1024 // len(line.encode()) + 1)
    # A real paste (one input event); keyboard.insert_text would type it line by line.
    a.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    a.evaluate("text => navigator.clipboard.writeText(text)", big)
    a.keyboard.press("ControlOrMeta+V")
    expected = "head " + big.replace("\r\n", "\n")
    a.wait_for_function(SAVED, timeout=30_000)
    assert server_text(server.http_url, "big") == expected
    assert server_rev(server, "big") == rev + 1  # one op for the paste
    assert value(a) == expected

    b = open_page(server.http_url, "big")  # a second page loads the whole text
    assert value(b) == expected
    b.keyboard.type("!")  # and typing at the end of a 1 MB text still works
    wait_converged(server.http_url, "big", [a, b])


def test_line_breaks_are_normalised(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "crlf")
    a.keyboard.insert_text("one\r\ntwo\rthree\n")
    text = wait_converged(server.http_url, "crlf", [a])
    assert text == "one\ntwo\nthree\n"


# ------------------------------------------------------------------------------ IME


def test_remote_ops_wait_for_the_end_of_a_composition(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "ime")
    b = open_page(server.http_url, "ime")
    a.keyboard.type("hello")
    wait_value(b, "hello")
    a.wait_for_function(SAVED)

    a.eval_on_selector(
        "#text",
        """el => {
            window.collabEditor.select(5);
            el.dispatchEvent(new CompositionEvent('compositionstart', {data: ''}));
            // The IME's text, written by the browser into the block while composing.
            const node = getSelection().focusNode;
            node.data += '中';
            getSelection().collapse(node, node.data.length);
            el.dispatchEvent(new InputEvent('input', {
                data: '中', inputType: 'insertCompositionText', isComposing: true}));
        }""",
    )
    set_caret(b, 0)
    b.keyboard.type("😀X")
    b.wait_for_function(SAVED)
    a.wait_for_function("window.collab.client.held.length > 0")
    assert value(a) == "hello中"  # nothing was written into the text meanwhile

    a.eval_on_selector(
        "#text",
        "ta => ta.dispatchEvent(new CompositionEvent('compositionend', {data: '中'}))",
    )
    wait_value(a, "😀Xhello中")
    assert caret(a) == units("😀Xhello中")
    assert wait_converged(server.http_url, "ime", [a, b]) == "😀Xhello中"


def test_real_ime_composition_through_the_devtools_protocol(
    server: ServerProcess, open_page
) -> None:
    """The same with the browser's own composition events (Input.imeSetComposition)."""
    a = open_page(server.http_url, "ime-cdp")
    b = open_page(server.http_url, "ime-cdp")
    a.keyboard.type("hello")
    wait_value(b, "hello")
    devtools = a.context.new_cdp_session(a)
    devtools.send("Input.imeSetComposition", {"text": "ni", "selectionStart": 2, "selectionEnd": 2})
    set_caret(b, 0)
    b.keyboard.type("👍🏽")
    a.wait_for_function("window.collab.client.held.length > 0")
    assert value(a) == "helloni"
    devtools.send("Input.imeSetComposition", {"text": "你", "selectionStart": 1, "selectionEnd": 1})
    devtools.send("Input.insertText", {"text": "你"})
    wait_value(a, "👍🏽hello你")
    assert caret(a) == units("👍🏽hello你")
    assert wait_converged(server.http_url, "ime-cdp", [a, b]) == "👍🏽hello你"


# ------------------------------------------------------------------------------ outages


def test_typing_through_a_server_restart(start_server, open_page) -> None:
    server = start_server("--fsync", "always")
    a = open_page(server.http_url, "restart")
    a.keyboard.type("before 😀 ")
    a.wait_for_function(SAVED)
    a.keyboard.type("racing 中文 ")  # in flight when the server dies: its ack may be lost
    server.kill()
    a.wait_for_function("window.collab.client.state === 'offline'")
    a.keyboard.type("while down 👍🏽 ")
    a.keyboard.insert_text("e\u0301\n")
    assert a.text_content("#status").startswith("Offline")
    server.start()
    text = wait_converged(server.http_url, "restart", [a])
    assert text == "before 😀 racing 中文 while down 👍🏽 e\u0301\n"


@pytest.mark.parametrize("catch_up", ["ops", "text", "text-without-acked"])
def test_an_op_whose_ack_was_lost_lands_once(start_server, open_page, catch_up: str) -> None:
    """The server wrote an op, the page never saw the ack, then it reconnects: catch-up by
    ops (after a server restart), by the whole text, and by the whole text from a server
    that does not say `acked` (the page finds out from the re-sent op's old ack)."""
    server = start_server("--fsync", "always")
    a = open_page(server.http_url, "lost-ack")
    b = open_page(server.http_url, "lost-ack")
    a.keyboard.type("one ")
    wait_value(b, "one ")
    a.wait_for_function(SAVED)
    a.evaluate(
        """() => { const c = window.collab.client;
        window.realReceive = c.receive; c.receive = () => {}; }"""
    )  # the page hears nothing more: acks are lost
    a.keyboard.type("two 😀")  # "t" goes out, the rest waits in the buffer
    wait_until(lambda: server_text(server.http_url, "lost-ack") == "one t", 10, "the op written")
    if catch_up == "ops":
        server.kill()
        a.wait_for_function("window.collab.client.state === 'offline'")
        a.evaluate("() => { window.collab.client.receive = window.realReceive; }")
        server.start()
    else:
        set_caret(b, 0)
        b.keyboard.type("中")  # so the page's old base text is not the server's minus its op
        b.wait_for_function(SAVED)
        strip = "delete message.acked;" if catch_up == "text-without-acked" else ""
        a.evaluate(
            """strip => { const c = window.collab.client;
            c.receive = (message) => {
                if (message.type === 'welcome') eval(strip);
                window.realReceive.call(c, message);
            };
            c.rev = null;  // too far behind: the server sends its whole text
            c.reconnect(); }""",
            strip,
        )
    expected = "one two 😀" if catch_up == "ops" else "中one two 😀"
    assert wait_converged(server.http_url, "lost-ack", [a, b]) == expected


def test_page_reconnects_after_a_kill_with_another_writer(start_server, open_page) -> None:
    server = start_server("--fsync", "always")
    a = open_page(server.http_url, "two-down")
    b = open_page(server.http_url, "two-down")
    a.keyboard.type("shared ")
    wait_value(b, "shared ")
    server.kill()
    a.wait_for_function("window.collab.client.state === 'offline'")
    b.wait_for_function("window.collab.client.state === 'offline'")
    set_caret(a, 0)
    a.keyboard.type("A😀 ")
    caret_to_end(b)
    b.keyboard.type("B中")
    server.start()
    text = wait_converged(server.http_url, "two-down", [a, b])
    assert text == "A😀 shared B中"


def test_a_newer_connection_with_the_same_secret_takes_over(
    server: ServerProcess, open_page
) -> None:
    """Another connection says hello with this tab's secret: the page is closed with 4409,
    says so, does not reconnect, and keeps its text readable."""
    a = open_page(server.http_url, "taken")
    a.keyboard.type("mine 😀")
    a.wait_for_function(SAVED)
    own_id = a.evaluate("window.collab.client.client")
    assert own_id.startswith("c-") and len(own_id) == 18
    welcome = a.evaluate(
        """() => new Promise((resolve) => {
            const socket = new WebSocket(`ws://${location.host}/ot/taken`);
            socket.onopen = () => socket.send(JSON.stringify(
                {type: 'hello', secret: window.collab.client.secret, rev: null}));
            socket.onmessage = (event) => resolve(JSON.parse(event.data));
        })"""
    )
    assert welcome["client"] == own_id
    a.wait_for_function("window.collab.client.state === 'error'")
    assert a.text_content("#status") == "Disconnected: opened in another tab or window"
    assert a.evaluate("window.collab.client.socket.timer") is None  # no reconnect
    assert a.eval_on_selector("#text", "el => !el.isContentEditable")
    assert value(a) == "mine 😀"


# ------------------------------------------------------------------------------ pages


def test_who_is_here_and_name_change(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "people", "Ada")
    b = open_page(server.http_url, "people", "Bob")
    a.wait_for_selector("#peers li:has-text('Bob')")
    b.wait_for_selector("#peers li:has-text('Ada')")
    color = b.eval_on_selector("#peers li:has-text('Ada') .dot", "dot => dot.style.background")
    assert color.startswith("rgb")
    b.fill("#user-name", "Bea 👩🏽‍💻")
    b.press("#user-name", "Enter")
    b.eval_on_selector("#user-name", "input => input.blur()")
    a.wait_for_selector("#peers li:has-text('Bea 👩🏽‍💻')")
    assert b.evaluate("localStorage.getItem('collab.name')") == "Bea 👩🏽‍💻"
    b.close()
    a.wait_for_function("() => !document.querySelector('#peers').textContent.includes('Bea')")


def test_index_lists_and_opens_documents(server: ServerProcess, open_page, browser) -> None:
    a = open_page(server.http_url, "notes/ünï 😀")
    a.keyboard.type("hi")
    a.wait_for_function(SAVED)
    context = browser.new_context(bypass_csp=True)  # (see open_page)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.http_url + "/")
        link = page.get_by_role("link", name="notes/ünï 😀")
        link.click()
        page.wait_for_url("**/d/notes/**")
        page.wait_for_function(SAVED)
        assert page.text_content("#doc-name") == "notes/ünï 😀"
        assert value(page) == "hi"
        page.goto(server.http_url + "/")
        page.fill("#open-name", "new/中文 doc?#")
        page.press("#open-name", "Enter")
        page.wait_for_url("**/d/new/**")
        page.wait_for_function(SAVED)
        assert page.text_content("#doc-name") == "new/中文 doc?#"
        page.focus("#text")
        page.keyboard.type("x")
        page.wait_for_function(SAVED)
        assert server_text(server.http_url, "new/中文 doc?#") == "x"
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_editor_fills_phone_and_desktop_windows(
    server: ServerProcess, open_page, width: int, height: int
) -> None:
    page = open_page(server.http_url, "layout", "Ada", viewport=(width, height))
    page.keyboard.type("Some text 😀\n" * 3)
    box = page.locator("#text").bounding_box()
    assert box is not None
    assert box["width"] >= width * 0.95
    assert box["height"] >= height * 0.7
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("getComputedStyle(document.querySelector('#text')).fontSize") == "16px"


@pytest.fixture
def mounted_server(tmp_path: Path) -> Iterator[str]:
    """The engine mounted under /collab in another Starlette app; yields its base URL."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import uvicorn
        from pathlib import Path
        from starlette.applications import Starlette
        from starlette.routing import Mount
        from collab.config import Settings
        from collab.web.engine import Collab

        engine = Collab(settings=Settings(data_dir=Path({str(tmp_path / "data")!r}), fsync="never"))
        app = Starlette(routes=[Mount("/collab", routes=engine.routes())],
                        lifespan=lambda app: engine.lifespan())
        uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    base = f"http://127.0.0.1:{port}/collab"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return True
        except OSError:
            assert process.poll() is None, "the mounted app exited"
            return False

    try:
        wait_until(up, 20, "the mounted app")
        yield base
    finally:
        process.kill()
        process.wait(10)


def test_pages_work_under_a_mount_prefix(mounted_server: str, open_page, browser) -> None:
    a = open_page(mounted_server, "sub/dir 😀")
    a.keyboard.type("prefixed 中文")
    assert wait_converged(mounted_server, "sub/dir 😀", [a]) == "prefixed 中文"
    context = browser.new_context(bypass_csp=True)  # (see open_page)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(mounted_server + "/")
        page.get_by_role("link", name="sub/dir 😀").click()
        page.wait_for_url("**/collab/d/sub/**")
        page.wait_for_function(SAVED)
        assert value(page) == "prefixed 中文"
    finally:
        context.close()


# ------------------------------------------------------------------------------ the OT core


def test_ot_core_laws_in_the_page(server: ServerProcess, open_page) -> None:
    """The page's own transform/compose/diff on random Unicode edits (the modules it loads)."""
    page = open_page(server.http_url, "laws")
    failures = page.evaluate(
        """async () => {
        const base = document.querySelector('script[type=module]').src;
        const C = {...await import(new URL('textops.js', base)),
                   ...await import(new URL('positions.js', base))};
        const alphabet = ['a', 'b', '😀', '中', '\\n', 'e\\u0301', '👍🏽', '🇫🇷', '\\r\\n'];
        let seed = 7;
        const random = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
        const word = () => Array.from({length: random(4)}, () => alphabet[random(9)]).join('');
        const edit = (text) => {
            const n = C.cpLength(text), from = random(n + 1), to = from + random(n - from + 1);
            return C.replaceOp(n, from, to, word());
        };
        const failures = [];
        for (let i = 0; i < 3000; i++) {
            const text = word() + word() + word();
            let a = edit(text);
            a = C.compose(a, edit(C.applyOp(a, text)));
            const b = edit(text);
            const [a2, b2] = C.transform(a, b);
            const ab = C.applyOp(b2, C.applyOp(a, text));
            const ba = C.applyOp(a2, C.applyOp(b, text));
            if (ab !== ba) failures.push(['transform', text, a, b]);
            const undone = C.applyOp(C.invert(a, text), C.applyOp(a, text));
            if (undone !== text) failures.push(['invert', text, a]);
            const after = C.applyOp(b, text);
            const diffed = C.applyOp(C.diffOp(text, after), text);
            if (diffed !== after) failures.push(['diff', text, after]);
        }
        return failures.slice(0, 3);
    }"""
    )
    assert failures == []


def test_a_document_grown_too_big_for_the_page_says_so(server: ServerProcess, open_page) -> None:
    """A Yjs client pastes past twice `--text-door-max-bytes` (2 MiB: a page there goes on
    up to 4): the page is closed with 1009, says why and what to use instead, does not
    reconnect, and keeps its text."""
    page = open_page(server.http_url, "grown 中文")
    page.keyboard.type("mine 😀")
    page.wait_for_function(SAVED)
    paste = Doc()
    paste.get("text", type=Text).insert(0, "👨‍👩‍👧 中文 e\u0301\r\n" * 150_000)  # 4.4 MiB
    response = httpx.post(
        f"{server.http_url}/api/docs/{url_name('grown 中文')}/update",
        content=paste.get_update(),
        headers={"content-type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    page.wait_for_function("window.collab.client.state === 'error'")
    assert page.text_content("#status") == "This document is too big for this page"
    assert page.evaluate("window.collab.client.socket.timer") is None  # no reconnect
    assert "mine 😀" in value(page)
