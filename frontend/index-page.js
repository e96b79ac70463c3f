// The document list page (index.html, `/`): every document with its size, revision and
// who is in it, and a form to open or create one by name.

import { encodeName, mountPrefix } from "./paths.js";

const $ = (id) => document.getElementById(id);

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const textItem = (text) => Object.assign(document.createElement("li"), { textContent: text });

function documentItem(prefix, doc) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = `${prefix}/d/${encodeName(doc.name)}`;
  link.textContent = doc.name;
  const info = document.createElement("small");
  const peers = doc.peers ? ` · ${doc.peers} here` : "";
  info.textContent = `${formatSize(doc.size_bytes)} · rev ${doc.rev}${peers}`;
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
    const { documents } = await response.json();
    documents.sort((a, b) => a.name.localeCompare(b.name));
    const rows = documents.map((doc) => documentItem(prefix, doc));
    list.replaceChildren(...(rows.length ? rows : [textItem("No documents yet.")]));
  } catch (error) {
    list.replaceChildren(textItem(`The server cannot be reached (${error.message}): reload the page to try again.`));
  }
}

async function start() {
  const prefix = mountPrefix();
  $("open").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("open-name").value.trim();
    if (name) location.href = `${prefix}/d/${encodeName(name)}`;
  });
  await listDocuments(prefix, $("documents"));
  window.collab = { ready: true };
}

start();
