"""Errors a person can reach in a browser, in words for a person with a next step.

The routes a browser opens (`/`, `/d/{name}`, `/api/docs/...` followed from a link) answer
an error as an HTML page when the request Accepts `text/html`, and as the JSON
`{"error": ...}` scripts read otherwise. The technical reason stays, under "Details".
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from collab.access import http as security
from collab.access.revocations import REVOKED
from collab.web.history import error_response

# (the start of a technical reason, a heading, what to do next)
EXPLAINED = [
    (
        "a token is needed",
        "This document needs an access link",
        "Open it from the link you were given (it carries a token), or ask the person who "
        "shared it for one.",
    ),
    (
        "the token has expired",
        "Your access link has expired",
        "Ask the person who shared this document for a new link.",
    ),
    (
        REVOKED,
        "Your access was withdrawn",
        "Ask the person who shared this document for a new link.",
    ),
    (
        "the token is not valid yet",
        "Your access link is not valid yet",
        "Check that this computer's clock is right, or try again in a minute.",
    ),
    (
        "the token is not for this document",
        "Your access link is for another document",
        "Open the document the link was made for, or ask for a link to this one.",
    ),
    (
        "invalid token",
        "This access link does not work",
        "It may have been cut short or changed: open it again exactly as you were given "
        "it, or ask for a new one.",
    ),
    (
        "no such document",
        "There is no such document",
        "It may have been deleted, or the name may be misspelled: open the list of documents.",
    ),
]
FALLBACK = ("Something went wrong", "Try again, or go back to the list of documents.")


def explain(reason: str) -> tuple[str, str]:
    """A heading and a next step for a technical `reason`."""
    if reason.startswith("invalid document name"):
        why = reason.rsplit(": ", 1)[-1]
        return (
            "This name cannot be a document name",
            f"It is not usable ({why}): go back to the list of documents and choose another.",
        )
    for start, heading, step in EXPLAINED:
        if reason.startswith(start):
            return heading, step
    return FALLBACK


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_page(
    request: Request, status: int, reason: str, headers: dict[str, str] | None = None
) -> Response:
    """`reason` as HTML for a browser (a heading, what to do, a link to the list), as JSON
    for anything else."""
    if not wants_html(request):
        return error_response(status, reason)
    heading, step = explain(reason)
    prefix = html.escape(request.scope.get("root_path", ""), quote=True)
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(heading)} — collab</title>
<link rel="stylesheet" href="{prefix}/static/style.css">
</head>
<body>
<header class="bar"><a class="home" href="{prefix}/">collab</a></header>
<main class="problem">
<h1>{html.escape(heading)}</h1>
<p>{html.escape(step)}</p>
<p><a class="next" href="{prefix}/">Go to the list of documents</a></p>
<details><summary>Details</summary><p>{html.escape(reason)} (HTTP {status})</p></details>
</main>
</body>
</html>
"""
    return HTMLResponse(body, status_code=status, headers=headers or security.page_headers())
