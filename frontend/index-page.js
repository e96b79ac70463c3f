// The document list page (index.html, `/`): every document that holds text, with how
// much and when it was last edited and who is in it, and a form to open or create one by
// name (names a browser cannot carry in an address are refused with a reason).

import { encodeName, mountPrefix } from "./paths.js";

const $ = (id) => document.getElementById(id);

function formatChars(chars) {
  return chars === 1 ? "1 character" : `${chars.toLocaleString("en")} characters`;
}

/** "edited 5 minutes ago" (a date past a week). */
function formatEdited(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const ago = (n, unit) => `edited ${n} ${unit}${n === 1 ? "" : "s"} ago`;
  if (seconds < 60) return "edited just now";
  if (seconds < 3600) return ago(Math.floor(seconds / 60), "minute");
  if (seconds < 86400) return ago(Math.floor(seconds / 3600), "hour");
  if (seconds < 7 * 86400) return ago(Math.floor(seconds / 86400), "day");
  return `edited ${new Date(iso).toLocaleDateString()}`;
}

/** Why `name` cannot be opened from an address, or "" if it can. */
export function nameProblem(name) {
  if (name.endsWith("/")) {
    return `“${name}” ends with “/”, which an address cannot keep apart from “${name.replace(/\/+$/, "")}”: leave it out.`;
  }
  if (name.split("/").some((part) => part === "." || part === "..")) {
    return "“.” and “..” cannot be parts of a document name: browsers read them as “here” and “up” in an address.";
  }
  return "";
}

const textItem = (text) => Object.assign(document.createElement("li"), { textContent: text });

function documentItem(prefix, doc) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = `${prefix}/d/${encodeName(doc.name)}`;
  link.textContent = doc.name;
  const info = document.createElement("small");
  const peers = doc.peers ? ` · ${doc.peers} here` : "";
  const edited = formatEdited(doc.last_edit);
  info.textContent = [formatChars(doc.text_chars), edited].filter(Boolean).join(" · ") + peers;
  item.append(link, info);
  return item;
}

/** Why the list cannot be shown, in words for a person. */
function listProblem(response) {
  if (response.status === 401 || response.status === 403) {
    return (
      "The list of documents needs an access link for all documents. You can still " +
      "open a document from its own link, or by its name above."
    );
  }
  return `The list could not be loaded (the server answered ${response.status}): reload the page to try again.`;
}

async function listDocuments(prefix, list) {
  try {
    const response = await fetch(`${prefix}/api/docs`, { headers: { accept: "application/json" } });
    if (!response.ok) {
      list.replaceChildren(textItem(listProblem(response)));
      return;
    }
    // Only documents that hold text: a name opened but never written is no document yet.
    const documents = (await response.json()).documents.filter((doc) => doc.text_chars > 0);
    documents.sort((a, b) => a.name.localeCompare(b.name));
    const rows = documents.map((doc) => documentItem(prefix, doc));
    list.replaceChildren(...(rows.length ? rows : [textItem("No documents with text yet.")]));
  } catch (error) {
    list.replaceChildren(textItem(`The server cannot be reached (${error.message}): reload the page to try again.`));
  }
}

async function start() {
  const prefix = mountPrefix();
  $("open").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("open-name").value.trim();
    const problem = nameProblem(name);
    $("open-problem").textContent = problem;
    if (name && !problem) location.href = `${prefix}/d/${encodeName(name)}`;
  });
  await listDocuments(prefix, $("documents"));
  window.collab = { ready: true };
}

start();
