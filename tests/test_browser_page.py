"""The editor page as a person meets it (issue 23), in Chromium: read-only that holds,
big changes that land whole or not at all, errors in words, one name per person, export
and share, accessibility, history by sessions, the document list (the fixtures and
helpers are test_browser.py's)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest
import test_browser
from conftest import ServerProcess
from test_browser import (
    SAVED,
    TIMEOUT_MS,
    model,
    server_rev,
    url_name,
    wait_converged,
    wait_value,
)
from test_browser_editor import paste

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
    assert reader.eval_on_selector("#text", "el => el.isContentEditable") is False
    assert reader.get_attribute("#text", "aria-readonly") == "true"
    assert "read-only" in reader.inner_text("#status").lower()
    assert "read-only" in reader.inner_text("#announce")  # said once to a screen reader
    reader.click("#text")
    reader.keyboard.type("XYZ")
    writer.keyboard.type(" line 0.")
    wait_value(reader, "Ada 😀 中文 line 0.")
    reader.keyboard.press("ControlOrMeta+a")  # selects the text, not the whole page
    assert reader.evaluate("getSelection().toString()") == "Ada 😀 中文 line 0."
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
        c.view.readOnly = false; c.view.setEditable(true); }"""
    )
    reader.focus("#text")
    reader.evaluate("window.collabEditor.select(0)")
    reader.keyboard.type("X😀Z")
    reader.wait_for_function("window.collab.client.readOnly === true")
    writer.evaluate("window.collabEditor.select(3)")
    writer.keyboard.type(" line 0. 中")
    wait_value(reader, "Ada line 0. 中")
    reader.wait_for_function(SAVED)
    assert model(reader) == api_text(secured, name) == "Ada line 0. 中"
    assert reader.eval_on_selector("#text", "el => el.isContentEditable") is False
    for page in (writer, reader):
        page.context.close()


# ------------------------------------------------------------------------------ big changes

BIG_LINE = 'héllo 😀 中文 👍🏽 e\u0301 "q" \\ \t\n'


def status_says(page, start: str) -> None:
    page.wait_for_function(
        "start => document.querySelector('#status').textContent.startsWith(start)", arg=start
    )


@pytest.mark.parametrize("declare", [True, False], ids=["checked-up-front", "taken-back"])
def test_a_change_over_the_document_limit_lands_whole_or_not_at_all(
    start_server, open_page, declare: bool
) -> None:
    """A paste sent in pieces (64 KiB messages) that the document (200 kB) cannot hold:
    nothing of it stays, for anyone. The server refuses it whole before its first piece
    when told the pieces belong together; a page that did not say so (an older page) takes
    back the pieces that landed before the refusal."""
    server = start_server(
        "--fsync", "never", "--max-message-bytes", "65536", "--max-document-bytes", "200000"
    )
    name = f"whole-{declare}"
    a = open_page(server.http_url, name, "Ada")
    b = open_page(server.http_url, name, "Bob")
    a.keyboard.type("head 中 😀 ")
    wait_value(b, "head 中 😀 ")
    rev = server_rev(server, name)
    if not declare:
        a.evaluate("window.collab.client.declareWhole = false")
    b.evaluate(
        """() => { window.seen = [];
        const c = window.collab.client; const on = c.view.onChange.bind(c.view);
        c.view.onChange = (op, old) => { window.seen.push(c.text.length); on(op, old); }; }"""
    )
    big = (BIG_LINE * (150_000 // len(BIG_LINE) + 1))[:150_000]  # ~330 kB of UTF-8
    paste(a, server.http_url, big)
    status_says(a, "Not saved")
    assert "larger than" in a.text_content("#status")
    assert wait_converged(server.http_url, name, [a, b]) == "head 中 😀 "
    if declare:
        assert server_rev(server, name) == rev  # not one piece landed
        assert b.evaluate("window.seen") == []
    else:
        assert "taken back" in a.text_content("#status")
    a.keyboard.type("ok 👍🏽")
    assert wait_converged(server.http_url, name, [a, b]) == "head 中 😀 ok 👍🏽"


def test_a_change_in_pieces_that_fits_lands_whole(start_server, open_page) -> None:
    server = start_server(
        "--fsync", "never", "--max-message-bytes", "65536", "--max-document-bytes", "400000"
    )
    a = open_page(server.http_url, "fits", "Ada")
    b = open_page(server.http_url, "fits", "Bob")
    big = (BIG_LINE * (150_000 // len(BIG_LINE) + 1))[:150_000]
    paste(a, server.http_url, big)
    assert wait_converged(server.http_url, "fits", [a, b]) == big
    assert a.text_content("#status") == "Saved"


# ------------------------------------------------------------------------------ errors


def new_page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.mark.parametrize(
    ("grant", "heading"),
    [
        (
            lambda: token("memo 中文", now=time.time() - 7200, ttl=60),
            "Your access link has expired",
        ),
        (lambda: token("another"), "Your access link is for another document"),
        (lambda: token("memo 中文")[:-6], "This access link does not work"),
    ],
    ids=["expired", "another-document", "damaged"],
)
def test_a_bad_token_in_a_link_gets_a_page_for_a_person(
    secured: ServerProcess, browser, grant, heading: str
) -> None:
    page = new_page(browser)
    response = page.goto(f"{secured.http_url}/d/{url_name('memo 中文')}?token={grant()}")
    assert response is not None and response.status in (401, 403)
    assert response.headers["content-type"].startswith("text/html")
    assert page.inner_text("h1") == heading
    assert page.get_attribute("a.next", "href") == "/"  # a next step: the document list
    assert "{" not in page.inner_text("main")  # no raw JSON
    page.context.close()


def test_the_editor_without_a_token_says_what_to_do(secured: ServerProcess, browser) -> None:
    page = new_page(browser)
    page.goto(f"{secured.http_url}/d/{url_name('memo 😀')}")
    page.wait_for_selector("#status[data-state=error]")
    status = page.inner_text("#status")
    assert "needs an access link" in status
    assert "?token=" not in status and "Bearer" not in status
    notice = page.inner_text("#notice")
    assert "Ask" in notice  # a next step
    assert page.get_attribute("#text", "aria-placeholder") != "Loading…"
    page.context.close()


def test_api_routes_answer_a_browser_in_html_and_scripts_in_json(secured: ServerProcess) -> None:
    import httpx

    with httpx.Client(base_url=secured.http_url, trust_env=False) as client:
        as_browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        reply = client.get("/api/docs/notes/text", headers=as_browser)
        assert reply.status_code == 401 and reply.headers["content-type"].startswith("text/html")
        assert "needs an access link" in reply.text and "<h1>" in reply.text
        assert "Content-Security-Policy" in reply.headers
        reply = client.get("/api/docs/notes/text")
        assert reply.status_code == 401 and reply.json()["error"].startswith("a token is needed")
        reply = client.get("/api/docs", headers=as_browser)
        assert reply.status_code == 401 and "text/html" in reply.headers["content-type"]


def test_the_list_with_a_document_token_says_what_it_can(secured: ServerProcess, browser) -> None:
    page = new_page(browser)
    page.goto(f"{secured.http_url}/d/memo?token={token('memo', user='ada')}")
    page.wait_for_function(SAVED)
    page.goto(f"{secured.http_url}/")
    page.wait_for_function("window.collab && window.collab.ready")
    text = page.inner_text("#documents")
    assert "HTTP" not in text
    assert "open a document from its own link" in text
    page.context.close()


def test_a_name_that_cannot_be_a_document_gets_a_clear_answer(
    server: ServerProcess, browser
) -> None:
    page = new_page(browser)
    response = page.goto(f"{server.http_url}/d/{'x' * 300}")
    assert response is not None and response.status == 400
    assert "cannot be a document name" in page.inner_text("h1")
    assert "longer than" in page.inner_text("main")
    page.context.close()


def test_the_server_unreachable_after_load_is_said_with_a_next_step(
    start_server, open_page
) -> None:
    server = start_server("--fsync", "never")
    page = open_page(server.http_url, "offline 中文", "Ada")
    page.keyboard.type("kept 😀")
    page.wait_for_function(SAVED)
    server.kill()
    page.wait_for_selector("#status[data-state=offline]")
    page.keyboard.type(" more")
    status = page.inner_text("#status")
    assert "Offline" in status and "kept" in status


# ------------------------------------------------------------------------------ identity


def history_users(server: ServerProcess, name: str, grant: str | None = None) -> set[str]:
    import json
    import urllib.request

    request = urllib.request.Request(f"{server.http_url}/api/docs/{url_name(name)}/history")
    if grant:
        request.add_header("Authorization", "Bearer " + grant)
    with urllib.request.urlopen(request) as response:
        return {revision["user"] for revision in json.load(response)["revisions"]}


def test_a_guest_name_is_one_per_browser(server: ServerProcess, browser) -> None:
    context = browser.new_context(bypass_csp=True)
    first = context.new_page()
    first.set_default_timeout(TIMEOUT_MS)
    first.goto(f"{server.http_url}/d/guests")
    first.wait_for_function(SAVED)
    guest = first.input_value("#user-name")
    assert guest.startswith("Guest ")
    first.focus("#text")
    first.keyboard.type("one 😀 ")
    first.wait_for_function(SAVED)
    first.reload()
    first.wait_for_function(SAVED)
    assert first.input_value("#user-name") == guest
    second = context.new_page()  # another tab of the same browser
    second.set_default_timeout(TIMEOUT_MS)
    second.goto(f"{server.http_url}/d/guests")
    second.wait_for_function(SAVED)
    assert second.input_value("#user-name") == guest
    second.focus("#text")
    second.keyboard.press("End")
    second.keyboard.type("two 中文")
    second.wait_for_function(SAVED)
    assert history_users(server, "guests") == {"~" + guest}
    context.close()


def test_a_rename_applies_as_typed_everywhere(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "renames", "Ada")
    b = open_page(server.http_url, "renames", "Bob")
    a.wait_for_selector("#peers li:has-text('Bob')")
    b.focus("#user-name")
    b.keyboard.press("ControlOrMeta+a")
    b.keyboard.type("Bea 中文 👩🏽‍💻")  # no Enter, no blur
    a.wait_for_selector("#peers li:has-text('Bea 中文 👩🏽‍💻')")
    assert b.evaluate("localStorage.getItem('collab.name')") == "Bea 中文 👩🏽‍💻"
    other_tab = b.context.new_page()  # the same browser's other tab follows
    other_tab.goto(b.url)
    other_tab.wait_for_function(SAVED)
    assert other_tab.input_value("#user-name") == "Bea 中文 👩🏽‍💻"
    b.focus("#user-name")
    b.keyboard.type("!")
    other_tab.wait_for_function("document.querySelector('#user-name').value === 'Bea 中文 👩🏽‍💻!'")


def test_a_tokens_user_is_the_name_everywhere(secured: ServerProcess, browser) -> None:
    name = "who 中文"
    ada = open_with_token(browser, secured.http_url, name, token(name, user="ada"))
    bob = open_with_token(browser, secured.http_url, name, token(name, user="bob"))
    assert ada.input_value("#user-name") == "ada"
    assert ada.eval_on_selector("#user-name", "input => input.readOnly") is True
    ada.wait_for_selector("#peers li:first-child:has-text('ada')")
    bob.wait_for_selector("#peers li:has-text('ada')")
    ada.focus("#text")
    ada.keyboard.type("hi 😀")
    ada.wait_for_function(SAVED)
    assert history_users(secured, name, token(name)) == {"ada"}
    for page in (ada, bob):
        page.context.close()


# ------------------------------------------------------------------------------ export, share


def test_download_copy_link_and_count(server: ServerProcess, open_page, tmp_path) -> None:
    name = "notes/today 中文"
    a = open_page(server.http_url, name, "Ada")
    b = open_page(server.http_url, name, "Bob")
    a.keyboard.type("Ada 😀 中文 👩🏽‍💻")
    a.wait_for_selector("#counts:has-text('5 words · 10 characters')")
    b.wait_for_selector("#counts:has-text('5 words · 10 characters')")  # remote changes too
    a.keyboard.press("Enter")
    a.keyboard.type("e\u0301 🇫🇷")  # a combining accent and a flag: one character each
    a.wait_for_selector("#counts:has-text('7 words · 14 characters')")
    with a.expect_download() as info:
        a.click("#download")
    download = info.value
    assert download.suggested_filename == "notes-today 中文.txt"
    saved = tmp_path / "saved.txt"
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8") == "Ada 😀 中文 👩🏽‍💻\ne\u0301 🇫🇷"
    a.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    a.click("#copy-link")
    a.wait_for_selector("#share-note:has-text('Link copied')")
    assert "can read and edit" in a.inner_text("#share-note")
    assert a.evaluate("navigator.clipboard.readText()") == f"{server.http_url}/d/{url_name(name)}"


def test_a_copied_link_says_it_carries_no_access(secured: ServerProcess, browser) -> None:
    name = "shared 中文"
    page = open_with_token(browser, secured.http_url, name, token(name, user="ada"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=secured.http_url)
    page.click("#copy-link")
    page.wait_for_selector("#share-note:has-text('Link copied')")
    assert "carries no access" in page.inner_text("#share-note")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{secured.http_url}/d/{url_name(name)}" and "token" not in copied
    page.context.close()


# ------------------------------------------------------------------------------ accessibility

AXE = test_browser.REPO / "tests/node/node_modules/axe-core/axe.min.js"


def axe_problems(page) -> list[str]:
    """The serious and critical violations axe-core finds on `page`, one line each."""
    from conftest import require

    require(AXE.exists(), "axe-core (npm ci --prefix tests/node)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_problem_on_any_page(
    server: ServerProcess, browser, scheme: str
) -> None:
    context = browser.new_context(bypass_csp=True, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script("localStorage.setItem('collab.name', 'Ada')")
    page.goto(f"{server.http_url}/d/{url_name('axe 中文')}")
    page.wait_for_function(SAVED)
    page.focus("#text")
    page.keyboard.type("Ada 😀 中文\nline two")
    page.wait_for_function(SAVED)
    other = context.new_page()  # someone else's caret and label drawn in the text
    other.add_init_script("localStorage.setItem('collab.name', 'Bob')")
    other.goto(page.url)
    other.wait_for_function(SAVED)
    other.focus("#text")
    page.wait_for_selector(".carets-caret")
    problems = {"editor": axe_problems(page)}
    page.goto(f"{server.http_url}/")
    page.wait_for_function("window.collab && window.collab.ready")
    problems["list"] = axe_problems(page)
    page.goto(f"{server.http_url}/static/history.html#{url_name('axe 中文')}")
    page.wait_for_selector("#who:not(:empty)")
    problems["history"] = axe_problems(page)
    context.close()
    assert problems == {"editor": [], "list": [], "history": []}


ANNOUNCED = """() => {
    const region = document.querySelector('#announce');
    window.announced = [];
    new MutationObserver(() => window.announced.push(region.textContent.trim()))
        .observe(region, {childList: true, characterData: true, subtree: true});
}"""


def test_status_is_announced_once_and_people_coming_and_going(
    server: ServerProcess, open_page
) -> None:
    a = open_page(server.http_url, "heard 中文", "Ada")
    assert a.get_attribute("#announce", "role") == "status"
    assert a.get_attribute("#status", "aria-live") is None  # the bar is not read out
    a.evaluate(ANNOUNCED)
    a.keyboard.type("twenty-two characters 😀 中文")
    a.wait_for_function(SAVED)
    assert a.evaluate("window.announced") == []  # typing is not announced
    b = open_page(server.http_url, "heard 中文", "Bob 中文")
    a.wait_for_function("window.announced.includes('Bob 中文 joined')")
    b.context.close()
    a.wait_for_function("window.announced.includes('Bob 中文 left')")
    assert len(a.evaluate("window.announced")) == 2


def test_focus_is_visible_everywhere(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "focus", "Ada")
    a.keyboard.type("focus 中文 😀")
    a.wait_for_function(SAVED)
    ring = """el => { const s = getComputedStyle(el);
        return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2)
            || s.boxShadow !== 'none'; }"""
    a.focus("#text")
    assert a.evaluate("document.activeElement.id") == "text"
    assert a.eval_on_selector(".editor", ring)  # the ring goes round the text's whole area
    seen = set()
    a.focus("#home")
    assert a.eval_on_selector("#home", ring)
    for _ in range(12):  # Tab through the bar's controls
        a.keyboard.press("Tab")
        focused = a.evaluate("document.activeElement.id || document.activeElement.tagName")
        if focused == "BODY":  # past the last control
            break
        seen.add(focused)
        # The text's ring is drawn round the area that scrolls it.
        ringed = "document.activeElement.closest('.editor') || document.activeElement"
        assert a.evaluate(f"({ring})({ringed})"), focused
    assert {"download", "copy-link", "user-name"} <= seen
    a.goto(f"{server.http_url}/static/history.html#focus")
    a.wait_for_selector("#revisions button")
    a.focus("#revisions button")
    assert a.eval_on_selector("#revisions button", ring)


def test_names_on_colours_are_readable(server: ServerProcess, open_page) -> None:
    a = open_page(server.http_url, "contrast")
    ratio = """([fg, bg]) => {
        const lum = (c) => { const m = c.match(/\\d+/g).slice(0, 3).map(Number).map((v) => {
            v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
            return 0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2]; };
        const [x, y] = [lum(fg), lum(bg)].sort((p, q) => q - p);
        return (x + 0.05) / (y + 0.05); }"""
    colours = [
        "#d81b60",
        "#8e24aa",
        "#3949ab",
        "#1e88e5",
        "#00897b",
        "#43a047",
        "#f4511e",
        "#ffeb3b",
        "#777777",
    ]
    for colour in colours:
        fg = a.evaluate("c => import('/static/peers-list.js').then(m => m.textColorOn(c))", colour)
        as_rgb = a.evaluate(
            "([f, b]) => { const d = document.createElement('i'); d.style.color = f;"
            " d.style.background = b; document.body.append(d); const s = getComputedStyle(d);"
            " const r = [s.color, s.backgroundColor]; d.remove(); return r; }",
            [fg, colour],
        )
        assert a.evaluate(ratio, as_rgb) >= 4.5, colour


# ------------------------------------------------------------------------------ history


def revision_op(server: ServerProcess, name: str, rev: int) -> list:
    import json
    import urllib.request

    url = f"{server.http_url}/api/docs/{url_name(name)}/history/{rev}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)["op"]


def test_history_reads_like_a_story(server: ServerProcess, open_page) -> None:
    name = "story 中文"
    a = open_page(server.http_url, name, "Ada 中文")
    b = open_page(server.http_url, name, "Bob")
    a.keyboard.type("Ada writes 😀")  # a session of many keystrokes
    a.keyboard.press("Enter")
    a.keyboard.type("line two")
    a.wait_for_function(SAVED)
    wait_value(b, "Ada writes 😀\nline two")
    b.evaluate("window.collabEditor.select(window.collabEditor.text.length)")
    b.keyboard.type(" 中文 by Bob")
    wait_converged(server.http_url, name, [a, b])
    revisions = server_rev(server, name)

    page = a.context.new_page()
    page.goto(f"{server.http_url}/static/history.html#{url_name(name)}")
    page.wait_for_selector("#revisions li:has-text('Bob')")
    sessions = page.locator("#revisions li")
    assert sessions.count() == 2 < revisions  # two sessions, not one line per keystroke
    assert "Bob" in sessions.nth(0).inner_text() and "Ada 中文" in sessions.nth(1).inner_text()
    colours = [
        sessions.nth(i).locator("button").evaluate("b => b.style.borderLeftColor") for i in range(2)
    ]
    assert colours[0] != colours[1] and all(colours)
    who = page.inner_text("#who")
    assert "Bob" in who and "ot:" not in who and "bytes" not in who  # no detail unasked
    assert not page.is_visible("#detail")
    page.click(".detail summary")
    assert "ot:" in page.inner_text("#detail")  # on demand

    # The list follows the slider; a line break inserted is shown.
    enter = next(
        rev
        for rev in range(1, revisions + 1)
        if any("\n" in part for part in revision_op(server, name, rev) if isinstance(part, str))
    )
    page.fill("#slider", str(enter))  # in Ada's session: the Enter
    page.wait_for_function(f"document.getElementById('rev').textContent.startsWith('rev {enter} ')")
    page.wait_for_function(
        "document.querySelector('#revisions [aria-current=true]')?.textContent.includes('Ada')"
    )
    page.wait_for_selector("#text ins .newline", state="attached")
    assert page.text_content("#text").startswith("Ada writes 😀\n")
    assert (
        page.locator("#text .newline").evaluate("n => getComputedStyle(n, '::before').content")
        == '"↵"'
    )

    page.click("#restore")  # restore asks first
    assert page.is_visible("#restore-dialog")
    page.click("#restore-cancel")
    assert not page.is_visible("#restore-dialog") and "/static/history" in page.url


# ------------------------------------------------------------------------------ big texts


def test_carets_are_right_far_into_a_long_text(server: ServerProcess, open_page) -> None:
    """The text is kept in blocks of lines (only a changed block is laid out again, only
    the blocks on screen at all): a caret hundreds of lines down, after emoji and CJK, is
    drawn on its line, and follows an edit in an earlier block."""
    from test_browser_editor import GEOMETRY, wait_caret_at

    text = "".join(f"行 {i} 😀 中文\n" for i in range(900))
    a = open_page(server.http_url, "long 中文", "Ada")
    b = open_page(server.http_url, "long 中文", "Bob")
    b.evaluate("t => window.collab.view.replaceText(t, 'insertFromPaste')", text)
    wait_value(a, text)
    bob = b.evaluate("window.collab.client.client")
    line_height = a.evaluate(GEOMETRY, bob)["line"]
    b.focus("#text")
    at = units("".join(f"行 {i} 😀 中文\n" for i in range(650)))
    b.evaluate("at => window.collabEditor.select(at)", at)
    b.keyboard.press("ArrowRight")
    b.keyboard.press("ArrowLeft")
    a.evaluate("y => { document.querySelector('.editor').scrollTop = y; }", 640 * line_height)
    wait_caret_at(a, bob, 0, 650 * line_height)
    a.focus("#text")
    a.evaluate("window.collabEditor.select(0)")
    a.keyboard.press("Enter")  # a line more in the first block: Bob's caret moves down
    a.keyboard.press("Enter")
    wait_caret_at(a, bob, 0, 652 * line_height)


def units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def put_text(server: ServerProcess, name: str, text: str) -> None:
    """Make the document `name` hold `text` (PUT /api/docs/{name})."""
    request = urllib.request.Request(
        f"{server.http_url}/api/docs/{url_name(name)}",
        data=text.encode(),
        method="PUT",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status in (200, 201)


def test_typing_in_a_million_characters_with_two_remote_carets(
    server: ServerProcess, open_page
) -> None:
    """Typing in a 1,000,000-character document (emoji, ZWJ, CJK, combining marks) at the
    top, the middle and the end while two others' carets are drawn and one of them types
    too: every page and the server end with the same text, each insert where it was
    typed. (How fast is measured by bench/typing.py, not here.)"""
    lines = [f"{k} 行 😀 👩‍👩‍👧 e\u0301 the quick brown fox\n" for k in range(30_000)]
    text = "".join(lines)
    while len(text) < 1_000_000:
        lines.append(f"{len(lines)} 中文 end\n")
        text += lines[-1]
    assert len(text) >= 1_000_000
    name = "big 中文 😀"
    put_text(server, name, text)
    ada = open_page(server.http_url, name, "Ada")
    bob = open_page(server.http_url, name, "Bob")
    cy = open_page(server.http_url, name, "Cy")
    middle, later = len(lines) // 2, len(lines) * 3 // 4

    def line_start(k: int) -> int:
        return units("".join(lines[:k]))

    for page, at in ((bob, line_start(later)), (cy, line_start(middle) + 4)):
        page.focus("#text")
        page.evaluate("at => window.collabEditor.select(at)", at)
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowLeft")
    ada.wait_for_function("document.querySelectorAll('.carets-caret').length === 2")

    typed = {0: "Ada 😀 中文 ", middle: "mid 👍🏽 漢字 ", len(lines): "end 🇫🇷 e\u0301"}
    for k in (len(lines), middle, 0):  # from the end, so each place is still line k
        ada.focus("#text")
        ada.evaluate("at => window.collabEditor.select(at)", line_start(k))
        ada.keyboard.type(typed[k][:4])
        ada.keyboard.insert_text(typed[k][4:])
    bob.keyboard.type("Bob 👍 ")
    typed[later] = "Bob 👍 "

    expected = "".join(typed.get(k, "") + line for k, line in enumerate(lines))
    expected += typed[len(lines)]
    wait_converged(server.http_url, name, [ada, bob, cy])
    assert model(ada) == expected
    assert ada.evaluate("document.querySelectorAll('.carets-caret').length") == 2


# ------------------------------------------------------------------------------ the list


def test_the_list_shows_documents_with_text_their_size_and_last_edit(
    server: ServerProcess, open_page, browser
) -> None:
    open_page(server.http_url, "only visited", "Ada")  # opened, never written
    a = open_page(server.http_url, "notes/中文", "Ada")
    a.keyboard.type("😀 中文 abc")  # 8 characters
    a.wait_for_function(SAVED)
    b = open_page(server.http_url, "pasted", "Bob")
    paste(b, server.http_url, "x" * 50_000)
    b.wait_for_function(SAVED)
    b.keyboard.press("ControlOrMeta+a")
    b.keyboard.press("Backspace")
    b.keyboard.type("kept 👍🏽")
    b.wait_for_function(SAVED)
    page = new_page(browser)
    page.goto(f"{server.http_url}/")
    page.wait_for_function("window.collab && window.collab.ready")
    items = page.inner_text("#documents")
    assert "only visited" not in items  # opening a name creates no document
    entry = page.inner_text("#documents li:has-text('notes/中文')")
    assert "8 characters" in entry and "edited just now" in entry
    pasted = page.inner_text("#documents li:has-text('pasted')")
    assert "7 characters" in pasted and "KB" not in pasted  # the text (code points), not the log
    page.context.close()


@pytest.mark.parametrize(
    ("name", "says"), [("notes/", "ends with “/”"), ("..", "cannot be parts"), ("a/./b", "cannot")]
)
def test_names_an_address_cannot_carry_get_a_clear_answer(
    server: ServerProcess, browser, name: str, says: str
) -> None:
    page = new_page(browser)
    page.goto(f"{server.http_url}/")
    page.wait_for_function("window.collab && window.collab.ready")
    page.fill("#open-name", name)
    page.click("#open button")
    page.wait_for_selector("#open-problem:not(:empty)")
    assert says in page.inner_text("#open-problem")
    assert page.url == f"{server.http_url}/"
    if name == "notes/":
        response = page.goto(f"{server.http_url}/d/notes/")
        assert response is not None and response.status == 400
        assert "did you mean 'notes'" in page.inner_text("main")
    page.context.close()
