"""Carets across the doors in Chromium: CodeMirror 6 + y-codemirror.next on the y-websocket
door and the textarea page on the text door, side by side, each drawing the other's caret.

The CodeMirror editor (tests/node/cm-editor.mjs) is bundled for the test with esbuild from
tests/node's npm packages and served from loopback by a small static HTTP server (a page
Playwright fulfils itself is not on loopback, and Chromium's local network access checks
then refuse its WebSocket to the server).
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_browser
from conftest import REPO, ServerProcess, node_available, require
from test_browser import units, value, wait_value
from test_browser_editor import wait_caret_at

browser = test_browser.browser
open_page = test_browser.open_page

pytestmark = pytest.mark.browser

TEXT = "ab😀中 👨‍👩‍👧 🇫🇷 👍🏽 e\u0301 end"
ESBUILD = REPO / "tests/node/node_modules/.bin/esbuild"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The CodeMirror page, bundled and served on loopback: its base URL."""
    require(node_available() and ESBUILD.exists(), "node + npm ci --prefix tests/node")
    site = tmp_path_factory.mktemp("codemirror")
    subprocess.run(
        [str(ESBUILD), "tests/node/cm-editor.mjs", "--bundle", "--format=iife",
         f"--outfile={site / 'cm.js'}", "--log-level=warning"],
        cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    (site / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><style>.cm-editor{font:16px monospace}</style>"
        "<div id=editor></div><script src=cm.js></script>"
    )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture
def cm_server(start_server, bundle: str) -> ServerProcess:
    """A server that lets the CodeMirror page's origin (another port) open WebSockets."""
    return start_server("--fsync", "never", "--allowed-origins", bundle.rstrip("/"))


def open_codemirror(browser, server: ServerProcess, bundle: str, room: str, name: str):
    context = browser.new_context(viewport={"width": 900, "height": 500})
    page = context.new_page()
    page.set_default_timeout(test_browser.TIMEOUT_MS)
    page.goto(f"{bundle}index.html#{server.ws_url}/yjs|{room}|{name}|#e53935")
    page.wait_for_function("window.cm && window.cm.provider.synced")
    return context, page


def cm_text(page) -> str:
    return page.evaluate("window.cm.view.state.doc.toString()")


def remote_caret_at(page) -> list[int]:
    """Where CodeMirror draws the others' carets (`.cm-ySelectionCaret`), as doc positions."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.cm-ySelectionCaret')]
            .map(el => window.cm.view.posAtDOM(el))"""
    )


def test_codemirror_and_the_textarea_page_show_each_others_caret(
    cm_server: ServerProcess, open_page, browser, bundle: str
) -> None:
    server = cm_server
    page = open_page(server.http_url, "side-by-side", "Ada")
    context, cm = open_codemirror(browser, server, bundle, "side-by-side", "Cai")
    try:
        page.keyboard.insert_text(TEXT)
        cm.wait_for_function("t => window.cm.view.state.doc.toString() === t", arg=TEXT)

        # The textarea user's caret, drawn by y-codemirror where it is (UTF-16 positions).
        at = units("ab😀中 👨‍👩‍👧 ")
        test_browser.set_caret(page, at)
        cm.wait_for_function(
            "at => [...document.querySelectorAll('.cm-ySelectionCaret')]"
            ".some(el => window.cm.view.posAtDOM(el) === at)",
            arg=at,
        )
        assert "Ada" in cm.inner_text(".cm-ySelectionInfo")

        # The CodeMirror user's caret, drawn by the page where it is.
        cm.bring_to_front()
        cm.evaluate("window.cm.view.focus()")
        cm_at = units("ab😀中 👨‍👩‍👧 🇫🇷 👍🏽 ")
        cm.evaluate("at => window.cm.view.dispatch({selection: {anchor: at}})", cm_at)
        client = f"yjs:{cm.evaluate('window.cm.doc.clientID')}"
        page.bring_to_front()
        width = page.evaluate(
            """t => { const s = getComputedStyle(document.querySelector('#text'));
            const c = document.createElement('canvas').getContext('2d');
            c.font = `${s.fontSize} ${s.fontFamily}`; return c.measureText(t).width; }""",
            "ab😀中 👨‍👩‍👧 🇫🇷 👍🏽 ",
        )
        drawn = wait_caret_at(page, client, width, 0)
        assert drawn["caret"]["label"] == "Cai"

        # Typing before both carets: each stays before the same character.
        test_browser.set_caret(page, 0)
        page.keyboard.insert_text("中😀")
        wait_value(page, "中😀" + TEXT)
        cm.wait_for_function("t => window.cm.view.state.doc.toString() === t", arg="中😀" + TEXT)
        cm.wait_for_function(
            "at => [...document.querySelectorAll('.cm-ySelectionCaret')]"
            ".some(el => window.cm.view.posAtDOM(el) === at)",
            arg=units("中😀"),  # the textarea user's caret went with its own typing
        )
        width = page.evaluate(
            """t => { const s = getComputedStyle(document.querySelector('#text'));
            const c = document.createElement('canvas').getContext('2d');
            c.font = `${s.fontSize} ${s.fontFamily}`; return c.measureText(t).width; }""",
            "中😀ab😀中 👨‍👩‍👧 🇫🇷 👍🏽 ",
        )
        wait_caret_at(page, client, width, 0)
        assert value(page) == cm_text(cm)
    finally:
        context.close()
