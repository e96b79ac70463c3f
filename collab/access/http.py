"""Who may talk to the server: Origin and Host checks, where a token is found, page headers.

Pure functions over header values, so every rule is a fast unit test; the web edge calls
them and turns a refusal into a status code, a log line and a metric (docs/security.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
# The origin scheme of a page served over each request scheme (a WebSocket's is ws/wss).
WEB_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
TOKEN_COOKIE = "collab-token"  # a token for every document the page may list


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _split_host(host: str) -> tuple[str, int | None] | None:
    """``example.com:8000`` -> ("example.com", 8000); IPv6 in brackets; None if malformed."""
    host = host.strip().lower()
    if not host:
        return None
    try:
        parts = urlsplit("//" + host)
        port = parts.port
        name = parts.hostname
    except ValueError:
        return None
    if name is None or parts.username is not None or parts.path or parts.query:
        return None
    return name, port


@dataclass(frozen=True)
class OriginPolicy:
    """Browser origins allowed to open WebSockets: the server's own, plus `allowed`."""

    allowed: tuple[str, ...] = ()

    @classmethod
    def from_setting(cls, text: str) -> OriginPolicy:
        return cls(tuple(origin.rstrip("/").lower() for origin in split_list(text)))

    def check(self, origin: str | None, host: str | None, scheme: str) -> str | None:
        """None when allowed; else why not. No Origin header: not a browser, allowed.

        `host` and `scheme` are the request's: its Host header, and http/https (ws/wss)
        as it reached the server, or as a trusted proxy said in X-Forwarded-Proto.
        """
        if origin is None:
            return None
        if "*" in self.allowed:
            return None
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.allowed:
            return None
        if host is not None and same_origin(normalized, host, scheme):
            return None
        own = f"{WEB_SCHEMES.get(scheme, scheme)}://{host}"
        return f"origin {origin!r} is not allowed (the server is {own!r})"


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether `origin` (scheme://host[:port]) is the server's own: the scheme of the
    request (`scheme`: http or https, ws or wss for a WebSocket), the host and the port
    it was sent to (`host`, the Host header)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or parts.scheme != WEB_SCHEMES.get(scheme.lower()):
        return False
    target = _split_host(host)
    if target is None or parts.hostname is None:
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return parts.hostname == target[0] and (origin_port or default) == (target[1] or default)


@dataclass(frozen=True)
class HostPolicy:
    """Host header values the server answers to (DNS rebinding): names, no ports."""

    names: frozenset[str]

    @classmethod
    def from_settings(cls, allowed: str, listen_host: str) -> HostPolicy:
        names = split_list(allowed)
        if not names:
            names = (*LOOPBACK_HOSTS, listen_host)
        return cls(frozenset(name.lower().strip("[]") for name in names))

    @property
    def any(self) -> bool:
        return "*" in self.names

    def check(self, host: str | None) -> str | None:
        """None when allowed; else why not."""
        if self.any:
            return None
        if host is None:
            return "no Host header"
        parsed = _split_host(host)
        if parsed is not None and parsed[0] in self.names:
            return None
        return f"host {host!r} is not one this server answers to (--allowed-hosts)"


def is_public_bind(host: str) -> bool:
    """Whether listening on `host` reaches beyond this machine."""
    if host in LOOPBACK_HOSTS:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: assume it resolves to a reachable address


# ---------------------------------------------------------------------- tokens in requests


def document_cookie(name: str) -> str:
    """The cookie holding the page's token for document `name` (one cookie per document,
    so tabs on different documents keep their own tokens)."""
    return "collab-t-" + hashlib.sha256(name.encode()).hexdigest()[:20]


def find_token(
    query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str], name: str
) -> str | None:
    """The token a request carries: ``?token=``, ``Authorization: Bearer``, or a cookie
    (the document's own, then the general one). `name` is "" for requests about no
    particular document (the list)."""
    token = query.get("token")
    if token:
        return token
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if name:
        token = cookies.get(document_cookie(name))
        if token:
            return token
    return cookies.get(TOKEN_COOKIE) or None


# ---------------------------------------------------------------------- page headers


def page_headers(frame_ancestors: str = "'self'") -> dict[str, str]:
    """Headers for the HTML pages: only the server's own scripts and styles run."""
    policy = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        **COMMON_HEADERS,
    }


COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def header_pairs(headers: Mapping[str, str]) -> Iterable[tuple[bytes, bytes]]:
    return [(key.lower().encode(), value.encode()) for key, value in headers.items()]
