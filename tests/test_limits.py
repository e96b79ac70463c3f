"""The caps' bookkeeping (collab.access.limits), the tokens and the Origin/Host rules, as unit
tests."""

from __future__ import annotations

import pytest

from collab.access import tokens
from collab.access.http import HostPolicy, OriginPolicy, find_token, is_public_bind, same_origin
from collab.access.limits import (
    ConnectionCounter,
    KeyedWindows,
    LogThrottle,
    SlidingWindow,
    TokenBucket,
    Unproven,
)
from collab.session.awareness import AwarenessTable, TooManyStates
from collab.yjs.protocol import AwarenessEntry

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.1  # one token back
    assert bucket.take() and not bucket.take()
    clock.now += 100  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(20)) == 5


def test_sliding_window_and_keyed_windows() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, 60, clock)
    assert window.allow() and window.allow() and not window.allow()
    clock.now += 60
    assert window.allow()
    keyed = KeyedWindows(per_key=2, total=3, window=60, clock=clock)
    assert keyed.allow("a") is None and keyed.allow("a") is None
    assert keyed.allow("a") == "per-address"
    assert keyed.allow("b") is None
    assert keyed.allow("c") == "total"  # 3 in the last minute from everyone
    clock.now += 61
    assert keyed.allow("c") is None


def test_connection_counter_per_address_and_total() -> None:
    counter = ConnectionCounter(per_address=2, total=3)
    assert counter.open("a") is None and counter.open("a") is None
    assert counter.open("a") == "per-address"
    assert counter.open("b") is None
    assert counter.open("c") == "total"
    counter.close("a")
    assert counter.open("c") is None
    for address in ("a", "b", "c", "c", "never-opened"):
        counter.close(address)
    assert counter.count == 0 and counter.by_address == {}


def test_unproven_budget() -> None:
    budget = Unproven(max_bytes=100, max_messages=3)
    assert budget.add(10) is None and budget.add(10) is None and budget.add(10) is None
    assert "messages" in (budget.add(1) or "")
    assert "bytes" in (Unproven(100, 10).add(101) or "")


def test_log_throttle_counts_what_it_held_back() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10, clock)
    assert throttle.should_log() == 0
    assert throttle.should_log() is None and throttle.should_log() is None
    clock.now += 10
    assert throttle.should_log() == 2


# --- tokens -------------------------------------------------------------------------------


def test_tokens_name_a_document_or_a_prefix() -> None:
    exact = tokens.mint(SECRET, "notes", user="ada")
    verified = tokens.verify(SECRET, exact)
    assert tokens.access(SECRET, exact, "notes") == tokens.Grant(
        "notes", "ada", False, verified.expires, verified.token_id, verified.issued
    )
    assert (
        verified.token_id
        and verified.token_id != tokens.verify(SECRET, tokens.mint(SECRET, "notes")).token_id
    )
    with pytest.raises(tokens.TokenError) as refused:
        tokens.access(SECRET, exact, "notes2")
    assert refused.value.status == 403
    team = tokens.mint(SECRET, "team/*", readonly=True)
    assert tokens.access(SECRET, team, "team/plan").readonly
    with pytest.raises(tokens.TokenError):
        tokens.access(SECRET, team, "teams")
    assert tokens.access(SECRET, tokens.mint(SECRET, "*"), "anything/at all").doc == "*"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        tokens.mint("another-secret-that-is-long-enough-too", "notes"),
        tokens.mint(SECRET, "notes", ttl=-1),
    ],
    ids=["none", "empty", "garbage", "other-secret", "expired"],
)
def test_bad_tokens_are_401(token: str | None) -> None:
    with pytest.raises(tokens.TokenError) as refused:
        tokens.access(SECRET, token, "notes")
    assert refused.value.status == 401 and refused.value.reason


def test_a_token_without_expiry_or_with_another_algorithm_is_refused() -> None:
    import jwt

    no_exp = jwt.encode({"doc": "notes"}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({"doc": "notes", "exp": 2**40}, None, algorithm="none")
    for token in (no_exp, unsigned):
        with pytest.raises(tokens.TokenError):
            tokens.verify(SECRET, token)


def test_expiry_against_an_explicit_clock() -> None:
    token = tokens.mint(SECRET, "notes", ttl=60, now=1_000_000)
    assert tokens.verify(SECRET, token, now=1_000_059).doc == "notes"
    with pytest.raises(tokens.TokenError):
        tokens.verify(SECRET, token, now=1_000_060)


def test_where_a_request_carries_its_token() -> None:
    from collab.access.http import TOKEN_COOKIE, document_cookie

    assert find_token({"token": "q"}, {"authorization": "Bearer h"}, {}, "n") == "q"
    assert find_token({}, {"authorization": "Bearer h"}, {}, "n") == "h"
    assert find_token({}, {"authorization": "Basic h"}, {}, "n") is None
    cookies = {document_cookie("n"): "c", TOKEN_COOKIE: "g"}
    assert find_token({}, {}, cookies, "n") == "c"
    assert find_token({}, {}, cookies, "other") == "g"
    assert document_cookie("a") != document_cookie("b")


# --- Origin and Host ----------------------------------------------------------------------


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    assert same_origin("https://example.com", "example.com", "wss")
    assert same_origin("https://example.com", "EXAMPLE.com:443", "https")
    assert same_origin("http://[::1]:8000", "[::1]:8000", "http")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000", "ws")
    assert not same_origin("http://evil.example", "127.0.0.1:8000", "ws")
    assert not same_origin("null", "127.0.0.1:8000", "ws")
    assert not same_origin("http://example.com.evil.example", "example.com", "ws")
    # The scheme: an https page is not the origin of a server reached over http, and back.
    assert not same_origin("https://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    assert not same_origin("http://example.com:443", "example.com", "wss")
    assert not same_origin("http://example.com", "example.com", "wss")
    assert not same_origin("ws://127.0.0.1:8000", "127.0.0.1:8000", "ws")  # not a page
    assert not same_origin("https://example.com", "example.com", "ftp")


def test_origin_policy() -> None:
    default = OriginPolicy.from_setting("")
    assert default.check(None, "127.0.0.1:8000", "ws") is None  # not a browser
    assert default.check("http://127.0.0.1:8000", "127.0.0.1:8000", "ws") is None
    assert default.check("http://evil.example", "127.0.0.1:8000", "ws")
    assert default.check("null", "127.0.0.1:8000", "ws")
    why = default.check("https://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    assert why and "the server is 'http://127.0.0.1:8000'" in why
    listed = OriginPolicy.from_setting("https://app.example/, http://b.example:81")
    assert listed.check("https://app.example", "collab.internal", "ws") is None
    assert listed.check("http://b.example:81", "collab.internal", "ws") is None
    assert listed.check("http://b.example", "collab.internal", "ws")
    assert listed.check("http://app.example", "collab.internal", "ws")
    assert OriginPolicy.from_setting("*").check("http://evil.example", "x", "ws") is None


def test_host_policy() -> None:
    default = HostPolicy.from_settings("", "127.0.0.1")
    assert default.check("127.0.0.1:8000") is None
    assert default.check("localhost") is None
    assert default.check("[::1]:8000") is None
    assert default.check("evil.example:8000")
    assert default.check(None)
    assert default.check("127.0.0.1@evil.example")
    listed = HostPolicy.from_settings("collab.example.com", "0.0.0.0")
    assert listed.check("collab.example.com:443") is None
    assert listed.check("127.0.0.1")
    assert HostPolicy.from_settings("*", "127.0.0.1").check("anything") is None
    assert is_public_bind("0.0.0.0") and not is_public_bind("127.0.0.1")
    assert not is_public_bind("localhost") and is_public_bind("example.com")


# --- awareness bytes ----------------------------------------------------------------------


def entry(client_id: int, size: int, clock: int = 1) -> AwarenessEntry:
    return AwarenessEntry(client_id, clock, {"x": "y" * size}, size)


def test_awareness_bytes_per_connection_and_per_document() -> None:
    table = AwarenessTable(max_peer_bytes=100, max_total_bytes=150)
    mine: set[int] = set()
    table.receive(mine, [entry(1, 60)])
    table.receive(mine, [entry(1, 90, clock=2)])  # replacing a state counts the new size
    with pytest.raises(TooManyStates, match="connection"):
        table.receive(mine, [entry(2, 20)])
    theirs: set[int] = set()
    with pytest.raises(TooManyStates, match="document"):
        table.receive(theirs, [entry(3, 70)])
    table.receive(mine, [AwarenessEntry(1, 3, None)])  # gone: its bytes are freed
    table.receive(theirs, [entry(3, 70)])
    assert table.total_bytes == 70
    table.remove(theirs)
    assert table.total_bytes == 0 and table.sizes == {}
