// The history view: a slider over a document's revisions showing the text at each, who
// made it and what it inserted and deleted (line breaks shown), beside a list of sessions
// (sessions.js: one author's run of changes, in their colour) that follows the slider.
// Technical detail (revision, origin, bytes) only on demand. The server answers each step
// from a checkpoint (GET .../history/REV: the op and the text before it), so the page never
// replays the log itself; only the latest position asked for is fetched. "Restore this
// version", once confirmed, opens the editor, which makes the text that revision's as one
// new change of its user (Ctrl+Z undoes it at once).

import { explainHttp } from "./problems.js";
import { cpLength } from "./positions.js";
import { author, authorColor, groupSessions } from "./sessions.js";
import { applyOp } from "./textops.js";

const $ = (id) => document.getElementById(id);
const prefix = location.pathname.slice(0, location.pathname.lastIndexOf("/static/"));
const name = decodeURIComponent((location.hash || "#").slice(1));
const api = `${prefix}/api/docs/${encodeURIComponent(name).replace(/\./g, "%2E")}`;
const PAGE = 100;

let first = 0;
let last = 0;
let wanted = null; // the revision to show next (the slider may move faster than the server)
let loading = false;
const infos = new Map(); // rev -> {rev, time, origin, user, size}

/** An Error in words for a person, for an HTTP error answer. */
function httpProblem(status, reason) {
  const { title, next } = explainHttp(status, reason);
  return new Error(`${title}. ${next}`);
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw httpProblem(response.status, body.error);
  return body;
}

/** Who and when, for a person; the technical line (revision, origin, bytes) apart. */
function describe(rev) {
  if (rev === first) {
    const what = first === 0 ? "The empty document, before anyone wrote" : "The oldest version kept";
    return { who: what, detail: `revision ${rev}` };
  }
  const info = infos.get(rev);
  if (!info) return { who: `Revision ${rev}`, detail: "" };
  const when = new Date(info.time).toLocaleString();
  const unverified = typeof info.user === "string" && info.user.startsWith("~");
  const who = `${author(info)}${unverified ? " (name not verified)" : ""}, ${when}`;
  return { who, detail: `revision ${rev} · ${info.origin} · ${info.size} bytes` };
}

/** The text after `op` with what it inserted (<ins>) and deleted (<del>) marked. */
export function markChanges(before, op) {
  const parts = [];
  let unit = 0;
  const take = (count) => {
    const start = unit;
    for (let k = 0; k < count; k++) unit += before.codePointAt(unit) > 0xffff ? 2 : 1;
    return before.slice(start, unit);
  };
  for (const c of op) {
    if (typeof c === "string") {
      parts.push(mark("ins", c));
    } else if (c > 0) {
      parts.push(document.createTextNode(take(c)));
    } else {
      parts.push(mark("del", take(-c)));
    }
  }
  return parts;
}

/** An <ins> or <del> of `text`, each line break in it shown (a ↵ drawn by CSS, so the
 * text itself stays the document's). */
function mark(tag, text) {
  const element = document.createElement(tag);
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    if (index > 0) {
      const newline = document.createElement("span");
      newline.className = "newline";
      newline.title = "line break";
      element.append(newline, "\n");
    }
    if (line) element.append(line);
  });
  return element;
}

async function loadPage(before) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (before !== undefined) query.set("before", String(before));
  const page = await getJSON(`${api}/history?${query}`);
  first = page.first_rev;
  last = Math.max(last, page.last_rev);
  for (const info of page.revisions) infos.set(info.rev, info);
  return page;
}

/** The sessions around revision `current`, the one holding it marked and scrolled to. */
function renderList(current) {
  const list = $("revisions");
  const top = Math.min(last, current + PAGE / 2);
  const shown = [];
  for (let rev = top; rev > Math.max(first, top - PAGE); rev--) {
    if (infos.has(rev)) shown.push(infos.get(rev));
  }
  const items = groupSessions(shown).map((session) => sessionItem(session, current));
  list.replaceChildren(...items);
  const here = list.querySelector("[aria-current=true]");
  if (here) here.scrollIntoView({ block: "nearest" });
}

function sessionItem(session, current) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.style.borderLeftColor = authorColor(session.author);
  const dot = Object.assign(document.createElement("span"), { className: "dot" });
  dot.style.background = authorColor(session.author);
  const name = Object.assign(document.createElement("span"), { textContent: session.author });
  const start = new Date(session.start).toLocaleString();
  const changes = session.count === 1 ? "1 change" : `${session.count} changes`;
  const when = Object.assign(document.createElement("small"), { textContent: `${start} · ${changes}` });
  button.append(dot, name, when);
  button.title = `revisions ${session.first}–${session.last}`;
  const holds = current >= session.first && current <= session.last;
  button.setAttribute("aria-current", String(holds));
  button.addEventListener("click", () => show(session.last));
  item.append(button);
  return item;
}

async function ensureInfo(rev) {
  if (rev > first && !infos.has(rev)) await loadPage(Math.min(last + 1, rev + PAGE / 2));
}

/** The nodes showing revision `rev`: its text, with its own change marked. */
async function fetchRevision(rev) {
  if (rev > first) {
    const { op, text_before: before, ...info } = await getJSON(`${api}/history/${rev}`);
    infos.set(rev, info);
    applyOp(op, before); // checks that the op fits the text
    return markChanges(before, op);
  }
  const response = await fetch(`${api}/text?at=${rev}`);
  const text = await response.text();
  if (!response.ok) throw httpProblem(response.status, JSON.parse(text).error);
  return [document.createTextNode(text)];
}

function showChanges(nodes) {
  const pane = $("text");
  pane.replaceChildren(...nodes);
  const changed = pane.querySelector("ins, del");
  if (changed) changed.scrollIntoView({ block: "center" });
  const inserted = [...pane.querySelectorAll("ins")].reduce((n, e) => n + cpLength(e.textContent), 0);
  const deleted = [...pane.querySelectorAll("del")].reduce((n, e) => n + cpLength(e.textContent), 0);
  return inserted || deleted ? ` · +${inserted} −${deleted}` : "";
}

async function show(rev) {
  wanted = Math.max(first, Math.min(last, rev));
  $("slider").value = String(wanted);
  $("rev").textContent = `rev ${wanted} / ${last}`;
  if (loading) return; // the loop below picks up the newest wish
  loading = true;
  try {
    while (wanted !== null) {
      const target = wanted;
      wanted = null;
      const [nodes] = await Promise.all([fetchRevision(target), ensureInfo(target)]);
      if (wanted !== null) continue; // already moved on: skip drawing this one
      const counts = showChanges(nodes);
      const { who, detail } = describe(target);
      $("who").textContent = who + counts;
      $("detail").textContent = detail;
      $("restore").disabled = target === last;
      $("restore").dataset.rev = String(target);
      $("who").classList.remove("error");
      renderList(target);
    }
  } catch (error) {
    $("who").textContent = error.message;
    $("who").classList.add("error");
  } finally {
    loading = false;
  }
}

/** "Restore this version" asks first (a dialog: what happens, and that it can be undone). */
function confirmRestore(editor) {
  const dialog = $("restore-dialog");
  $("restore").addEventListener("click", () => {
    const rev = Number($("restore").dataset.rev);
    $("restore-what").textContent =
      `The text becomes what it was at revision ${rev} (${describe(rev).who}), as one new ` +
      "change of yours. Ctrl+Z (⌘Z) in the editor undoes it.";
    dialog.showModal();
  });
  $("restore-cancel").addEventListener("click", () => dialog.close());
  $("restore-confirm").addEventListener("click", () => {
    location.href = `${editor}#restore=${$("restore").dataset.rev}`;
  });
}

async function start() {
  $("doc-name").textContent = name;
  document.title = `History of ${name} — collab`;
  const editor = `${prefix}/d/${encodeURIComponent(name).replace(/%2F/g, "/")}`;
  $("back").href = editor;
  confirmRestore(editor);
  await loadPage();
  const slider = $("slider");
  slider.min = String(first);
  slider.max = String(last);
  slider.addEventListener("input", () => show(Number(slider.value)));
  $("prev").addEventListener("click", () => show(Number(slider.value) - 1));
  $("next").addEventListener("click", () => show(Number(slider.value) + 1));
  $("latest").addEventListener("click", async () => {
    await loadPage();
    slider.max = String(last);
    show(last);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target === slider) return; // the slider handles its own arrows
    if (event.key === "ArrowLeft") show(Number(slider.value) - 1);
    if (event.key === "ArrowRight") show(Number(slider.value) + 1);
  });
  show(last);
}

start().catch((error) => {
  $("who").textContent = error.message;
  $("who").classList.add("error");
});
