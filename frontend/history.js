// The history view: a slider over a document's revisions showing the text at each and who
// made it. The server answers each step from a checkpoint (GET .../text?at=REV), so the
// page never replays the log itself; only the latest position asked for is fetched.

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

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function describe(rev) {
  if (rev === first) return first === 0 ? "rev 0: the empty document" : `rev ${rev}: oldest kept`;
  const info = infos.get(rev);
  if (!info) return `rev ${rev}`;
  const who = info.user ? `${info.user} (${info.origin})` : info.origin;
  return `rev ${rev} · ${new Date(info.time).toLocaleString()} · ${who} · ${info.size} B`;
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
    button.textContent = describe(rev);
    button.setAttribute("aria-current", String(rev === current));
    button.addEventListener("click", () => show(rev));
    item.append(button);
    list.append(item);
  }
}

async function ensureInfo(rev) {
  if (rev > first && !infos.has(rev)) await loadPage(Math.min(last + 1, rev + PAGE / 2));
}

async function fetchText(rev) {
  const response = await fetch(`${api}/text?at=${rev}`);
  const text = await response.text();
  if (!response.ok) throw new Error(JSON.parse(text).error || response.statusText);
  return text;
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
      const [text] = await Promise.all([fetchText(target), ensureInfo(target)]);
      if (wanted !== null) continue; // already moved on: skip drawing this one
      $("text").textContent = text;
      $("who").textContent = describe(target);
      $("who").classList.remove("error");
      renderList(target);
    }
  } catch (error) {
    $("who").textContent = `Cannot load: ${error.message}`;
    $("who").classList.add("error");
  } finally {
    loading = false;
  }
}

async function start() {
  $("doc-name").textContent = name;
  document.title = `History of ${name} — collab`;
  $("back").href = `${prefix}/d/${encodeURIComponent(name).replace(/%2F/g, "/")}`;
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
  $("who").textContent = `Cannot load the history: ${error.message}`;
  $("who").classList.add("error");
});
