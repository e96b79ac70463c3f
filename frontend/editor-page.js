// The editor page (editor.html, `/d/{name}`): the text (blockview.js), the connection state,
// who is here and the user's name, wired to an OTClient on `<prefix>/ot/{name}`.

import { Announcer, PresenceNews } from "./announce.js";
import { CaretLayer } from "./carets.js";
import { OTClient } from "./otclient.js";
import { encodeName, mountPrefix } from "./paths.js";
import { PeersList, safeColor } from "./peers-list.js";
import { explainClose } from "./problems.js";
import { copyLink, download, liveCount } from "./share.js";
import { BlockView } from "./blockview.js";
import { ReconnectingSocket } from "./socket.js";

const COLORS = ["#d81b60", "#8e24aa", "#3949ab", "#1e88e5", "#00897b", "#43a047", "#f4511e"];
const STATE_LABELS = {
  connecting: "Connecting…",
  saved: "Saved",
  unsaved: "Unsaved changes",
  offline: "Offline: trying to reconnect… (anything you type is kept)",
  error: "Disconnected",
};

const $ = (id) => document.getElementById(id);

/**
 * The user's name and colour, remembered in localStorage: one identity per browser, in
 * every tab and after a reload (a guest name is made once, and kept until renamed).
 */
function loadUser() {
  let name = localStorage.getItem("collab.name");
  let color = localStorage.getItem("collab.color");
  if (!name) {
    name = "Guest " + Math.floor(1000 + Math.random() * 9000);
    localStorage.setItem("collab.name", name);
  }
  if (!color || safeColor(color) !== color) {
    color = COLORS[Math.floor(Math.random() * COLORS.length)];
    localStorage.setItem("collab.color", color);
  }
  return { name, color };
}

function statusLabel(client, state) {
  if (state === "error") {
    return client.closed ? explainClose(client.closed.code, client.closed.reason).title : "Disconnected";
  }
  if (client.notice && state !== "connecting") return client.notice;
  if (state === "offline" && client.unsaved) {
    return "Offline: unsaved changes, kept here and sent when the server is back";
  }
  if (client.readOnly && state === "saved") return "Read-only: you can read and copy, not edit";
  if (client.readOnly && state === "offline") return "Offline (read-only)";
  const progress = client.progress;
  if (progress !== null && state === "unsaved") return `Sending… ${Math.floor(progress * 100)}%`;
  return STATE_LABELS[state] || state;
}

/** What the client tells its view, handed to the text, the status and the peers. */
function pageView(editor, status, peers, drawn) {
  const announcer = new Announcer($("announce"));
  const news = new PresenceNews(announcer);
  return {
    onChange(op, oldText) {
      editor.onChange(op, oldText);
      peers.render();
      drawn.carets();
      drawn.count();
    },
    onPresence() {
      peers.render();
      drawn.carets();
      news.update(editor.client);
    },
    onUser(user) {
      // The server knows who this is (a token's user): that name, not one typed here.
      const input = $("user-name");
      input.value = user.name;
      input.readOnly = true;
      input.title = "Your name comes from your access link";
      peers.render();
    },
    onReadOnly() {
      editor.onReadOnly();
      status.title = "This document is read-only for you";
      status.dataset.readonly = "true";
      announcer.say("This document is read-only for you: you can read and copy, not edit");
      this.onState(editor.client.state);
    },
    onState(state) {
      status.dataset.state = editor.client.notice ? "error" : state;
      status.textContent = statusLabel(editor.client, state);
      announcer.statusChanged(state, status.textContent);
      announcer.notice(editor.client.notice);
      editor.onState(state);
      if (state === "error") showProblem(editor);
    },
  };
}

/** After a close the page does not come back from: what happened and what to do next. */
function showProblem(editor) {
  const closed = editor.client.closed;
  const { title, next } = explainClose(closed && closed.code, closed && closed.reason);
  const notice = $("notice");
  notice.querySelector(".notice-title").textContent = title;
  notice.querySelector(".notice-next").textContent = next;
  notice.hidden = false;
  if (!editor.client.loaded) editor.setPlaceholder(title);
}

/**
 * `#restore=REV` (the history page's "Restore this version"): once loaded, make the text
 * that revision's, as one change of this user's that Ctrl+Z takes back.
 */
async function restoreFromHash(editor, apiBase, status) {
  const match = /^#restore=(\d+)$/.exec(location.hash);
  if (!match) return;
  history.replaceState(null, "", location.pathname + location.search);
  const response = await fetch(`${apiBase}/text?at=${match[1]}`);
  const text = await response.text();
  if (!response.ok) {
    status.textContent = `Cannot restore revision ${match[1]}: ${response.statusText}`;
    return;
  }
  if (!editor.replaceText(text, "restore")) return;
  editor.element.focus(); // so that Ctrl+Z undoes it at once, without a click
  $("share-note").textContent = `Restored revision ${match[1]}: Ctrl+Z (⌘Z) undoes it`;
}

/**
 * The name box: a rename applies as it is typed (presence is throttled), here, in the
 * browser's other tabs (the storage event) and after a reload. A token's user cannot be
 * renamed here (onUser makes the box read-only).
 */
function watchUserName(client, peers, user) {
  const input = $("user-name");
  input.value = user.name;
  const rename = (name) => {
    if (client.user.verified || !name || name === client.user.name) return;
    client.setUser({ ...client.user, name });
    peers.render();
  };
  input.addEventListener("input", () => {
    const name = input.value.trim().slice(0, 64);
    if (!name || client.user.verified) return;
    localStorage.setItem("collab.name", name);
    rename(name);
  });
  input.addEventListener("change", () => {
    if (!input.value.trim()) input.value = client.user.name; // an empty name is not kept
  });
  window.addEventListener("storage", (event) => {
    if (event.key !== "collab.name" || !event.newValue) return;
    if (document.activeElement !== input && !client.user.verified) input.value = event.newValue;
    rename(event.newValue.slice(0, 64));
  });
}

function start() {
  const prefix = mountPrefix();
  const path = location.pathname;
  const name = decodeURIComponent(path.slice(path.indexOf("/d/") + 3));
  document.title = `${name} — collab`;
  $("doc-name").textContent = name;
  $("home").href = prefix + "/";
  $("notice-list").href = prefix + "/";
  $("history-link").href = `${prefix}/static/history.html#${encodeName(name)}`;

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new ReconnectingSocket(`${scheme}//${location.host}${prefix}/ot/${encodeName(name)}`);
  const editor = new BlockView($("text"));
  const peers = new PeersList($("peers"), null);
  const user = loadUser();
  const drawn = { carets() {}, count() {} }; // the carets and the count, once the client exists
  const view = pageView(editor, $("status"), peers, drawn);
  const apiBase = `${prefix}/api/docs/${encodeURIComponent(name).replace(/\./g, "%2E")}`;
  const onState = view.onState;
  view.onState = (state) => {
    onState(state);
    if (state !== "saved" || view.restoring) return;
    view.restoring = restoreFromHash(editor, apiBase, $("status"));
  };
  const client = new OTClient(socket, user, view);
  peers.client = client;
  editor.attach(client);
  const layer = new CaretLayer(editor, client);
  drawn.carets = () => layer.render();
  drawn.count = liveCount($("counts"), client);
  drawn.count();
  $("download").addEventListener("click", () => download(name, client.text));
  $("copy-link").addEventListener("click", async () => {
    $("share-note").textContent = await copyLink(apiBase);
  });
  editor.onLocalChange = () => {
    drawn.carets();
    drawn.count();
  };
  peers.render();
  watchUserName(client, peers, user);
  window.addEventListener("online", () => socket.hurry());
  window.addEventListener("beforeunload", (event) => {
    if (client.unsaved) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  window.collab = { client, view: editor, carets: layer };
  window.collabEditor = editor; // the text and the selection, for tests and tools
  client.connect();
}

start();
