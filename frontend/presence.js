// Presence: where the others' carets are (kept in step with the text), and this tab's own
// selection, sent at most every 150 ms.

import { transformPosition } from "./textops.js";

const MIN_INTERVAL_MS = 150;

/** `selection` ([[anchor, head], ...] in code points, or null) after `op`. */
export function moveSelection(selection, op) {
  if (!Array.isArray(selection)) return selection;
  return selection.map((range) =>
    Array.isArray(range) ? range.map((pos) => transformPosition(pos, op)) : range,
  );
}

/** Every peer's selection in `peers` (client -> {user, selection, kind}) after `op`. */
export function moveSelections(peers, op) {
  for (const peer of peers.values()) peer.selection = moveSelection(peer.selection, op);
}

/** Record a `presence` message from the server in `peers`; a missing field keeps its value. */
export function updatePeers(peers, message) {
  if (message.left) {
    peers.delete(message.client);
    return;
  }
  const known = peers.get(message.client) || {};
  peers.set(message.client, {
    user: message.user || known.user || null,
    selection: message.selection === undefined ? known.selection : message.selection,
    kind: message.kind || known.kind || "text",
  });
}

/**
 * This tab's user and selection, sent through `send()` at most every 150 ms. `send`
 * returns false when it cannot send now; the presence stays due until `sendDue()` is
 * called again (after the next ack or welcome).
 */
export class OwnPresence {
  constructor(user, send) {
    this.user = user;
    this.selection = null; // [anchor, head] in code points, or null (no caret)
    this.send = send;
    this.due = false;
    this.timer = null;
    this.lastSent = 0;
  }

  setSelection(selection) {
    this.selection = selection;
    this.changed();
  }

  setUser(user) {
    this.user = user;
    this.changed();
  }

  changed() {
    this.due = true;
    this.schedule();
  }

  schedule() {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.lastSent + MIN_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sendNow();
    }, wait);
  }

  /** Send if something changed since the last send (throttled). */
  sendDue() {
    if (this.due) this.schedule();
  }

  sendNow() {
    if (this.send()) {
      this.due = false;
      this.lastSent = Date.now();
    }
  }
}
