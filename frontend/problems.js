// Words for a person when the page cannot go on: what happened and what to do next,
// from a WebSocket close (code and the server's technical reason) or an HTTP answer.
// The server's own error pages (collab/web/error_pages.py) say the same things.

import { CloseCode } from "./wire.js";

// [the start of the server's reason, what happened, what to do next]
const TOKEN_PROBLEMS = [
  [
    "a token is needed",
    "This document needs an access link",
    "Ask the person who shared it for a link, and open the document from that link.",
  ],
  [
    "the token has expired",
    "Your access link has expired",
    "Ask the person who shared this document for a new link, and open the document from it. The text here can still be copied.",
  ],
  [
    "the token was revoked",
    "Your access was withdrawn",
    "Ask the person who shared this document for a new link. The text here can still be copied.",
  ],
  [
    "the token is not valid yet",
    "Your access link is not valid yet",
    "Check that this computer's clock is right, or try again in a minute.",
  ],
  [
    "the token is not for this document",
    "Your access link is for another document",
    "Open the document the link was made for, or ask for a link to this one.",
  ],
  [
    "invalid token",
    "This access link does not work",
    "Open it again exactly as you were given it, or ask for a new one.",
  ],
];

/** {title, next} for a close the page does not come back from. */
export function explainClose(code, reason) {
  reason = reason || "";
  if (code === CloseCode.UNAUTHORIZED || code === CloseCode.FORBIDDEN) {
    for (const [start, title, next] of TOKEN_PROBLEMS) {
      if (reason.startsWith(start)) return { title, next };
    }
    return { title: "You may not open this document", next: "Ask its owner for access." };
  }
  if (code === CloseCode.BAD_NAME) {
    const why = reason.split(": ").pop();
    return {
      title: "This name cannot be a document name",
      next: `It is not usable (${why}): go back to the list and choose another.`,
    };
  }
  if (code === CloseCode.TOO_BIG && reason.startsWith("document too big for text clients")) {
    return {
      title: "This document is too big for this page",
      next: "Open it with an editor that speaks Yjs (CodeMirror, TipTap…). The text here can still be copied.",
    };
  }
  if (code === CloseCode.SUPERSEDED) {
    return {
      title: "Disconnected: opened in another tab or window",
      next: "Go on there, or reload this page to edit here instead.",
    };
  }
  return {
    title: "Disconnected",
    next: `${reason || `The server closed the connection (${code}).`} Reload the page to try again.`,
  };
}

/** Words for an HTTP error answer (`status` and the JSON `error`, if any). */
export function explainHttp(status, reason) {
  if (status === 401 || status === 403) return explainClose(CloseCode.UNAUTHORIZED, reason);
  if (status === 404) return { title: "There is no such document", next: "Check the name." };
  return { title: "The server could not answer", next: "Try again in a moment." };
}
