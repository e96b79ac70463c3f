"""No secret in a log line: tokens and client secrets are replaced before a record is written.

A client may carry its token in the URL (``?token=``, the documented way to open a page or
a WebSocket), an ``Authorization: Bearer`` header or a cookie. uvicorn writes every request
target to its access log, and the WebSocket lines and the handshake's headers (at debug)
too; an exception (an authenticate hook that called an auth service) may format a URL. A
`logging.Filter` on the loggers that write such lines rewrites each record's message,
arguments and traceback, so the formatted line says ``token=[redacted]`` instead.
`install` puts it on them; the web edge calls it, so embedders get it as well.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

# The loggers that write request targets, headers or frames: uvicorn's access and error
# logs, collab's WebSocket connection lines (`collab.server.websocket.CONNECTION_LOG`), our own.
LOGGERS = ("uvicorn.access", "uvicorn.error", "collab", "collab.server.connections", "collab.web")

_QUERY_PARAMETER = re.compile(r"(?<=[?&;])([^=&;\s\"'#?]+)=([^&;\s\"'#]*)")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+")
_COOKIE = re.compile(r"(\bcollab-t[\w-]*=)[^\s\"',;]+")  # collab.access.http's token cookies
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
_CLIENT_SECRET = re.compile(r"(\"secret\"\s*:\s*\")[^\"]*")  # a text client's hello


def redact(text: str) -> str:
    """`text` with every token and client secret in it replaced by ``[redacted]``."""
    if not any(mark in text for mark in ("=", "eyJ", "earer", "ecret")):
        return text  # the common case: nothing to look for
    text = _QUERY_PARAMETER.sub(_query_value, text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _COOKIE.sub(rf"\g<1>{REDACTED}", text)
    text = _CLIENT_SECRET.sub(rf"\g<1>{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def _query_value(match: re.Match[str]) -> str:
    """A query parameter, its value redacted when its (URL-decoded) name says token."""
    name = match.group(1)
    if "token" in unquote_plus(name).lower():
        return f"{name}={REDACTED}"
    return match.group(0)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, arguments and exception text with `redact`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_argument(argument) for argument in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_argument(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:  # formatted once, here, then reused
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
        return True


def _redact_argument(argument: object) -> object:
    """A string redacted; another object kept unless its text holds a secret (uvicorn's
    access formatter unpacks the arguments: their number and numbers stay as they are)."""
    if isinstance(argument, str):
        return redact(argument)
    if isinstance(argument, int | float) or argument is None:
        return argument
    text = str(argument)
    cleaned = redact(text)
    return argument if cleaned == text else cleaned


_FILTER = RedactSecrets()


def install() -> None:
    """Put the filter on `LOGGERS` (once; `logging.config.dictConfig`, as uvicorn runs it,
    replaces handlers but keeps a logger's filters)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
