"""The editor page when its access ends (issue 22), in Chromium: a module of its own, since
the sync Playwright fixture keeps an event loop that async tests of the same module hit."""

from __future__ import annotations

import time
from typing import Any

import pytest
import test_browser
from conftest import ServerProcess
from test_live_access import NAME, SECRET, URL_NAME, expiry

from collab.access import tokens

pytestmark = pytest.mark.browser
browser = test_browser.browser  # a module-scoped Chromium (tests/test_browser.py)


@pytest.fixture
def secured(start_server: Any) -> ServerProcess:
    return start_server("--fsync", "never", "--auth-secret", SECRET)


def test_the_page_says_the_access_ended_and_how_to_get_back(
    secured: ServerProcess, browser: Any
) -> None:
    """Chromium opens the editor with a short token (the URL's token becomes a cookie);
    when it expires, the server closes the page's socket and the page says so."""
    token = tokens.mint(SECRET, NAME, user="ada", ttl=3)
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{secured.http_url}/d/{URL_NAME}?token={token}")
    page.wait_for_function("window.collab && window.collab.client.state === 'saved'")
    page.wait_for_function("window.collab.client.state === 'error'")
    status = page.text_content("#status") or ""
    assert "Your access link has expired" in status, status
    page.wait_for_selector("#notice:not([hidden])")
    notice = page.inner_text("#notice")
    assert "new link" in notice and "can still be copied" in notice, notice
    assert time.time() >= expiry(token) - 0.05
    context.close()
