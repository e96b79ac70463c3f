"""The editor page across a delete and re-create of its document, in Chromium: the old
text and what the tab had not sent never come back, and what is typed in the new
generation is kept (the fixtures and helpers are test_browser.py's)."""

from __future__ import annotations

import httpx
import pytest
import test_browser
from conftest import ServerProcess
from test_browser import SAVED, TIMEOUT_MS, server_text, value

browser = test_browser.browser

pytestmark = pytest.mark.browser


class Network:
    """The page's WebSockets through Playwright: passed to the server, or refused."""

    def __init__(self) -> None:
        self.online = True
        self.current = None

    def route(self, ws) -> None:
        if not self.online:
            ws.close(code=1013, reason="offline (test)")
            return
        ws.connect_to_server()
        self.current = ws

    def go_offline(self) -> None:
        self.online = False
        if self.current is not None:
            self.current.close(code=1013, reason="offline (test)")


def test_the_page_drops_its_old_copy_after_a_delete_and_keeps_new_typing(
    server: ServerProcess, browser
) -> None:
    name = "page-generations"
    old_text = "old text 😀 e\u0301\r\n"
    new_text = "new text 👍🏽 中文\r\n"
    http = httpx.Client(base_url=server.http_url, trust_env=False, timeout=10)
    plain = {"content-type": "text/plain"}
    assert (
        http.put(f"/api/docs/{name}", content=old_text.encode(), headers=plain).status_code == 201
    )
    network = Network()
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.route_web_socket("**/ot/**", network.route)
        page.goto(f"{server.http_url}/d/{name}")
        page.wait_for_function(SAVED)
        assert page.evaluate("window.collab.client.text") == old_text
        network.go_offline()
        page.wait_for_function("window.collab.client.state !== 'saved'")
        page.focus("#text")
        page.keyboard.press("ControlOrMeta+End")
        page.keyboard.type("unsent 中文")
        assert page.evaluate("window.collab.client.unsaved")

        assert http.delete(f"/api/docs/{name}").status_code == 200
        made = http.put(f"/api/docs/{name}", content=new_text.encode(), headers=plain)
        assert made.status_code == 201
        network.online = True
        page.wait_for_function(SAVED)
        shown = page.evaluate("window.collab.client.text")
        assert shown == new_text and value(page).replace("\n", "\r\n") == new_text
        assert "deleted or restored" in page.text_content("#status")
        page.keyboard.press("ControlOrMeta+End")
        page.keyboard.type("typed after 😀")
        page.wait_for_function(SAVED)
        expected = page.evaluate("window.collab.client.text")
        assert server_text(server.http_url, name) == expected
        assert expected.startswith("new text 👍🏽 中文") and expected.endswith("typed after 😀")
        assert "old text" not in expected and "unsent" not in expected
    finally:
        context.close()
        http.close()


def test_the_page_starts_over_after_a_restore(server: ServerProcess, browser) -> None:
    name = "page-restore"
    backed_up = "backed up 😀 中文\r\n"
    http = httpx.Client(base_url=server.http_url, trust_env=False, timeout=10)
    plain = {"content-type": "text/plain"}
    assert http.put(f"/api/docs/{name}", content=backed_up.encode(), headers=plain).is_success
    state = http.get(f"/api/docs/{name}/update").content
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.http_url}/d/{name}")
        page.wait_for_function(SAVED)
        page.focus("#text")
        page.keyboard.press("ControlOrMeta+End")
        page.keyboard.type("after the backup")
        page.wait_for_function(SAVED)
        assert server_text(server.http_url, name) == backed_up + "after the backup"

        octet = {"content-type": "application/octet-stream"}
        restored = http.post(f"/api/docs/{name}/restore", content=state, headers=octet)
        assert restored.status_code == 200, restored.text
        # 4411 is not final: the page reconnects, and its welcome resets it.
        page.wait_for_function(
            "window.collab.client.state === 'saved' && window.collab.client.notice !== ''"
        )
        assert page.evaluate("window.collab.client.text") == backed_up
        assert "deleted or restored" in page.text_content("#status")
        page.keyboard.press("ControlOrMeta+End")
        page.keyboard.type("kept 👍🏽")
        page.wait_for_function(SAVED)
        assert server_text(server.http_url, name) == backed_up + "kept 👍🏽"
    finally:
        context.close()
        http.close()
