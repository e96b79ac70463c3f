// Taking the text out of the page: download it as a .txt file named after the document,
// copy a link to the document (saying what the link lets someone do), and the live word
// and character count under the text.

import { countText } from "./counts.js";

/** A file name for document `name`: "notes/today" -> "notes-today.txt". */
export function fileName(name) {
  const safe = name
    .replace(/[/\\:*?"<>|\u0000-\u001f\u007f]+/g, "-")
    .replace(/^[\s.-]+|[\s.]+$/g, "");
  return (safe || "document") + ".txt";
}

/** Save `text` (what the page shows, unsaved typing included) as `name`.txt. */
export function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: fileName(name) });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * Copy the document's link (never the token: the page keeps it in an HttpOnly cookie) and
 * say what whoever opens it may do: without tokens anyone may read and edit; with tokens
 * (the text answers 401 without this browser's credentials) they need a link of their own.
 */
export async function copyLink(apiBase) {
  const link = location.origin + location.pathname;
  let needsToken = false;
  try {
    const probe = await fetch(`${apiBase}/text`, { method: "HEAD", credentials: "omit" });
    needsToken = probe.status === 401 || probe.status === 403;
  } catch {
    needsToken = false; // offline: the link is copied all the same
  }
  try {
    await navigator.clipboard.writeText(link);
  } catch {
    return `Copy this link: ${link}`;
  }
  return needsToken
    ? "Link copied. It carries no access: whoever opens it needs an access link of their own."
    : "Link copied. Anyone who opens it can read and edit this document.";
}

/** Keep `element` showing the words and characters of `client.text`, counted at most
 * every `delay` ms (a count is a pass over the whole text: never one per keystroke). */
export function liveCount(element, client, delay = 300) {
  let timer = null;
  const draw = () => {
    timer = null;
    const { words, characters } = countText(client.text);
    const plural = (n, one) => `${n.toLocaleString("en")} ${one}${n === 1 ? "" : "s"}`;
    element.textContent = `${plural(words, "word")} · ${plural(characters, "character")}`;
  };
  return () => {
    if (timer === null) timer = setTimeout(draw, delay);
  };
}
