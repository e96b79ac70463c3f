"""The editor page as a person meets it (issue 23), in Chromium: read-only that holds,
big changes that land whole or not at all, errors in words, one name per person, export
and share, accessibility, history by sessions, the document list (the fixtures and
helpers are test_browser.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_browser
from conftest import ServerProcess
from test_browser import (
    SAVED,
    TIMEOUT_MS,
    model,
    server_text,
    url_name,
    value,
    wait_value,
)

from collab.access import tokens

browser = test_browser.browser
open_page = test_browser.open_page

pytestmark = pytest.mark.browser

SECRET = "test-secret-for-the-editor-page-tests-0123456789"


@pytest.fixture
def secured(start_server) -> Iterator[ServerProcess]:
    """A server that needs tokens."""
    yield start_server("--fsync", "never", "--auth-secret", SECRET)


def token(doc: str, **options: object) -> str:
    return tokens.mint(SECRET, doc, **options)  # type: ignore[arg-type]


def open_with_token(browser, base_url: str, name: str, grant: str, wait: str = SAVED):
    context = browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base_url}/d/{url_name(name)}?token={grant}")
    page.wait_for_function(wait)
    return page


def api_text(server: ServerProcess, name: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{server.http_url}/api/docs/{url_name(name)}/text",
        headers={"Authorization": "Bearer " + token(name)},
    )
    with urllib.request.urlopen(request) as response:
        return response.read().decode("utf-8")


# ------------------------------------------------------------------------------ read-only


def test_a_read_only_page_cannot_be_edited_and_says_so(secured: ServerProcess, browser) -> None:
    name = "ro 中文"
    writer = open_with_token(browser, secured.http_url, name, token(name, user="ada"))
    writer.focus("#text")
    writer.keyboard.type("Ada 😀 中文")
    writer.wait_for_function(SAVED)
    reader = open_with_token(browser, secured.http_url, name, token(name, readonly=True))
    wait_value(reader, "Ada 😀 中文")
    assert reader.evaluate("window.collab.client.readOnly") is True
    assert reader.eval_on_selector("#text", "ta => ta.readOnly") is True
    assert "read-only" in reader.inner_text("#status").lower()
    reader.click("#text")
    reader.keyboard.type("XYZ")
    writer.keyboard.type(" line 0.")
    wait_value(reader, "Ada 😀 中文 line 0.")
    assert model(reader) == api_text(secured, name) == "Ada 😀 中文 line 0."
    for page in (writer, reader):
        page.context.close()


def test_a_refused_op_leaves_exactly_the_servers_text(secured: ServerProcess, browser) -> None:
    """A page that did not know it was read-only (an older server) types anyway: the
    server refuses, and the page shows exactly the server's text, also after others type."""
    name = "ro-refused"
    writer = open_with_token(browser, secured.http_url, name, token(name, user="ada"))
    writer.focus("#text")
    writer.keyboard.type("Ada")
    writer.wait_for_function(SAVED)
    reader = open_with_token(browser, secured.http_url, name, token(name, readonly=True))
    wait_value(reader, "Ada")
    reader.evaluate(
        """() => { const c = window.collab; c.client.readOnly = false;
        c.view.readOnly = false; c.view.textarea.readOnly = false; }"""
    )
    reader.focus("#text")
    reader.eval_on_selector("#text", "ta => ta.setSelectionRange(0, 0)")
    reader.keyboard.type("X😀Z")
    reader.wait_for_function("window.collab.client.readOnly === true")
    writer.eval_on_selector("#text", "ta => ta.setSelectionRange(3, 3)")
    writer.keyboard.type(" line 0. 中")
    wait_value(reader, "Ada line 0. 中")
    reader.wait_for_function(SAVED)
    assert model(reader) == api_text(secured, name) == "Ada line 0. 中"
    assert reader.eval_on_selector("#text", "ta => ta.readOnly") is True
    for page in (writer, reader):
        page.context.close()
