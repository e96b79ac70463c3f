// The history view: a slider over a document's revisions showing the text at each, who
// made it and what it inserted and deleted. The server answers each step from a checkpoint
// (GET .../history/REV: the op and the text before it), so the page never replays the log
// itself; only the latest position asked for is fetched. "Restore this version" opens the
// editor, which makes the text that revision's as one new change of its user (undoable).

import { explainHttp } from "./problems.js";
import { cpLength } from "./positions.js";
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

/**
 * Who made a revision: the authenticate hook's user, or the name the client gave ("~" in
 * the record: nobody verified it), or else what kind of peer it was.
 */
export function author(info) {
  if (typeof info.user === "string" && info.user.startsWith("~")) return info.user.slice(1);
  if (info.user) return info.user;
  const origin = String(info.origin || "");
  if (origin.startsWith("yjs:")) return "a Yjs peer";
  if (origin.startsWith("ot:")) return `text client ${origin.split(":")[1]}`;
  if (origin.startsWith("server")) return "the server";
  return origin || "unknown";
}

function describe(rev, short = false) {
  if (rev === first) return first === 0 ? "rev 0: the empty document" : `rev ${rev}: oldest kept`;
  const info = infos.get(rev);
  if (!info) return `rev ${rev}`;
  const when = new Date(info.time).toLocaleString();
  if (short) return `${rev} · ${author(info)} · ${when}`;
  const unverified = typeof info.user === "string" && info.user.startsWith("~");
  const who = unverified ? `${author(info)} (name not verified)` : author(info);
  return `rev ${rev} · ${when} · ${who} · ${info.origin} · ${info.size} B`;
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

function mark(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
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

function renderList(current) {
  const list = $("revisions");
  list.replaceChildren();
  const top = Math.min(last, current + PAGE / 2);
  for (let rev = top; rev > Math.max(first, top - PAGE); rev--) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = describe(rev, true);
    button.setAttribute("aria-current", String(rev === current));
    button.addEventListener("click", () => show(rev));
    item.append(button);
    list.append(item);
  }
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
      $("who").textContent = describe(target) + counts;
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

async function start() {
  $("doc-name").textContent = name;
  document.title = `History of ${name} — collab`;
  const editor = `${prefix}/d/${encodeURIComponent(name).replace(/%2F/g, "/")}`;
  $("back").href = editor;
  $("restore").addEventListener("click", (event) => {
    location.href = `${editor}#restore=${event.target.dataset.rev}`;
  });
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
