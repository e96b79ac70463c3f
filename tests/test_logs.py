"""What the server writes to its log, through real sockets: no token on any line (the access
log, the WebSocket lines, our own warnings), and a failing store is not a flood."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse

import httpx
import pytest
from conftest import ServerProcess, wait_until
from ot_ids import secret_for
from pyclient import YClient
from test_limits import FakeClock
from test_security import FailingStore, serve_app
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab import Collab, MemoryStore
from collab.access import tokens
from collab.access.http import TOKEN_COOKIE, document_cookie
from collab.access.limits import ThrottledLog
from collab.access.redact import redact
from collab.hub import runner
from collab.hub.runner import STORE_FAILURE_LOG_INTERVAL as COMMIT_FAILURE_INTERVAL

SECRET = "test-secret-for-the-log-tests-0123456789abcdef"


def mint(doc: str, **options: object) -> str:
    return tokens.mint(SECRET, doc, **options)  # type: ignore[arg-type]


async def open_and_close(url: str, **options: object) -> None:
    """Open a WebSocket and read until the server closes it or sends something."""
    try:
        async with connect(url, proxy=None, **options) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "hello", "secret": secret_for("log"), "rev": None}))
            await asyncio.wait_for(ws.recv(), 10)
    except (ConnectionClosed, InvalidStatus):
        pass


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_no_token_reaches_the_log(start_server, level: str) -> None:
    server: ServerProcess = start_server(
        "--fsync",
        "never",
        "--auth-secret",
        SECRET,
        "--connection-log",
        "true",
        "--log-level",
        level,
    )
    secrets = {
        "page": mint("notes 😀"),
        "list": mint("*"),
        "api": mint("notes 😀", user="Zoë"),
        "metrics": mint("*", ttl=60),
        "ws": mint("notes 😀"),
        "ws-other": mint("other"),
        "expired": mint("notes 😀", ttl=-10),
        "bearer": mint("notes 😀"),
        "cookie": mint("notes 😀"),
        "list-cookie": mint("*"),
        "garbage": "not-a-jwt-but-still-a-secret-6d1f0c",
    }
    name = urllib.parse.quote("notes 😀")
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as http:
        assert (await http.get(f"/d/{name}?token={secrets['page']}")).status_code == 303
        assert (await http.get(f"/?x=1&token={secrets['list']}")).status_code == 303
        api = await http.get(f"/api/docs/{name}/text?token={secrets['api']}")
        assert api.status_code == 404  # no such document yet: the token was good
        assert (await http.get(f"/metrics?token={secrets['metrics']}")).status_code == 200
        assert (await http.get(f"/api/docs?%74oken={secrets['list']}")).status_code == 200
        assert (await http.get(f"/api/docs?token={secrets['garbage']}")).status_code == 401
    ws = f"{server.ws_url}/ot/{name}"
    await open_and_close(f"{ws}?token={secrets['ws']}")  # accepted
    await open_and_close(f"{ws}?token={secrets['ws-other']}")  # 4403
    await open_and_close(f"{ws}?token={secrets['expired']}")  # 4401
    await open_and_close(f"{ws}?token={secrets['garbage']}")  # 4401
    evil = {"origin": "http://evil.example"}
    await open_and_close(f"{ws}?token={secrets['ws']}", additional_headers=evil)  # 403
    await open_and_close(ws, additional_headers={"authorization": "Bearer " + secrets["bearer"]})
    cookies = f"{document_cookie('notes 😀')}={secrets['cookie']}; "
    cookies += f"{TOKEN_COOKIE}={secrets['list-cookie']}"
    await open_and_close(ws, additional_headers={"cookie": cookies})
    async with await YClient.connect(f"{server.ws_url}/yjs/{name}?token={secrets['ws']}") as c:
        await c.synced()
    # Every request was written to the log (with the token's place kept, redacted) ...
    wait_until(lambda: server.log().count("WebSocket /") >= 7, what="the WebSocket lines")
    assert server.stop() == 0
    log = server.log()
    for line in (
        f'"GET /d/{name}?token=[redacted] HTTP/1.1" 303',
        '"GET /?x=1&token=[redacted] HTTP/1.1" 303',
        f'"GET /api/docs/{name}/text?token=[redacted] HTTP/1.1" 404',
        '"GET /metrics?token=[redacted] HTTP/1.1" 200',
        '"GET /api/docs?%74oken=[redacted] HTTP/1.1" 200',
        '"GET /api/docs?token=[redacted] HTTP/1.1" 401',
        f'"WebSocket /ot/{name}?token=[redacted]" [accepted]',
        f'"WebSocket /ot/{name}?token=[redacted]" 403',
        f'"WebSocket /yjs/{name}?token=[redacted]" [accepted]',
    ):
        assert line in log, line
    # ... and no token is anywhere in it: not whole, not its signature.
    for what, secret in secrets.items():
        assert secret not in log, what
        assert secret.rsplit(".", 1)[-1] not in log, what
    assert secret_for("log") not in log  # a text client's secret, in its hello (debug)


async def test_an_exception_that_formats_a_url_is_redacted(caplog) -> None:
    """An authenticate hook that fails with its auth service's URL in the message."""
    token = mint("doc")

    def hook(connection, name):  # type: ignore[no-untyped-def]
        url = f"https://auth.example/check?doc={name}&token={connection.query_params['token']}"
        raise RuntimeError(f"auth service refused {url} (Authorization: Bearer {token})")

    engine = Collab(store=MemoryStore(), authenticate=hook)
    async for base in serve_app(engine.app()):
        client = await YClient.connect(f"ws://{base}/yjs/doc?token={token}")
        code, _ = await client.wait_closed()
        await client.close()
        await engine.close()
    assert code == 4403
    failures = [r for r in caplog.records if "authenticate hook failed" in r.getMessage()]
    assert len(failures) == 1
    assert "token=[redacted]" in caplog.text and "Bearer [redacted]" in caplog.text
    assert token not in caplog.text


def test_redact_keeps_what_is_not_a_secret() -> None:
    assert redact('"GET /d/a?x=1&page=2 HTTP/1.1"') == '"GET /d/a?x=1&page=2 HTTP/1.1"'
    assert redact("/d/a?token=abc&x=1") == "/d/a?token=[redacted]&x=1"
    assert redact("/d/a?x=1&To%6Ben=abc") == "/d/a?x=1&To%6Ben=[redacted]"
    assert redact("/d/a?access_token=abc#top") == "/d/a?access_token=[redacted]#top"
    assert redact("Authorization: bearer abc.def") == "Authorization: bearer [redacted]"
    assert redact("1 + 1 = 2, 中文 😀") == "1 + 1 = 2, 中文 😀"


# --- a failing store ----------------------------------------------------------------------


async def test_a_store_that_keeps_failing_logs_one_traceback_per_interval(
    caplog, monkeypatch
) -> None:
    """A full disk fails every commit; peers reconnect and write again at once (~480 lines
    in 4 s before): each failure is counted, and logged with its traceback at most once
    per interval, the next line saying how many were held back."""
    fresh = ThrottledLog(runner.log, COMMIT_FAILURE_INTERVAL)  # none logged by other tests
    monkeypatch.setattr(runner, "store_failures", fresh)
    store = FailingStore()
    store.fail = True
    engine = Collab(store=store)
    started = time.monotonic()
    async for base in serve_app(engine.app()):
        for attempt in range(20):
            client = await YClient.connect(f"ws://{base}/yjs/full%20disk")
            await client.synced()
            client.append(f"lost? {attempt} 😀")
            assert (await client.wait_closed())[0] == 1011
            await client.close()
        async with httpx.AsyncClient(base_url=f"http://{base}", trust_env=False) as http:
            metrics = (await http.get("/metrics")).text
        await engine.close()
    elapsed = time.monotonic() - started
    assert "collab_store_errors_total 20.0" in metrics  # every failure is counted
    failures = [r for r in caplog.records if "could not commit" in r.getMessage()]
    assert 1 <= len(failures) <= 1 + elapsed // COMMIT_FAILURE_INTERVAL, len(failures)
    assert failures[0].exc_info is not None  # the first one says why, in full


def test_throttled_log_says_how_many_it_held_back(caplog) -> None:
    clock = FakeClock()
    quiet = ThrottledLog(logging.getLogger("collab.test"), 10.0, clock)
    for second in range(25):
        clock.now = 1000.0 + second
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            quiet.exception("%s: could not commit", "doc 😀")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "doc 😀: could not commit",
        "doc 😀: could not commit (9 more since the last one logged)",
        "doc 😀: could not commit (9 more since the last one logged)",
    ]
    assert all(r.exc_info for r in caplog.records)
