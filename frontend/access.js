// What the server lets a tab do (its welcome says read-only, and the verified user), and
// what the page does when the server refuses a change (an OTClient's `error` for its op):
// whatever happens, the text shown ends up exactly the server's, never a private variant,
// and the status line says what was not saved.

const TOO_LARGE = "Not saved: the document would be larger than the server allows";
const READ_ONLY = "Not saved: this document is read-only for you";

/**
 * The document would pass its size limit: the change lands whole or not at all. What is
 * pending is dropped (the rest of a big paste too) and the server's text shown; pieces
 * of it the server took before (it was not told they belong together, or others' writes
 * filled the document meanwhile) are taken back by undoing the change.
 */
export function refuseTooLarge(client) {
  const landed = client.sendingTotal > 0 && client.piecesLanded > 0;
  client.dropPending("");
  if (landed) takeBackLatest(client);
  client.notice = landed ? `${TOO_LARGE} (the part already sent was taken back)` : TOO_LARGE;
  client.refreshState();
}

/** Undo the client's latest step, not to be redone (what is left of a refused change). */
function takeBackLatest(client) {
  const old = client.text;
  const op = client.history.undo(old);
  if (!op) return;
  client.history.redoStack.pop();
  client.submit(op, "historyUndo");
  client.view.onChange(op, old);
}

/** After three refusals of one op, drop what is pending and take the server's text. */
export function countRejection(client, inflight) {
  const count = (client.rejections.get(inflight.seq) || 0) + 1;
  client.rejections.set(inflight.seq, count);
  if (count < 3) return;
  console.error("collab: dropping a change the server refuses", inflight.op);
  client.dropPending("Not saved: the server refused this change");
  client.rev = null;
}

/**
 * The server says this connection may not edit (welcome, or the `readonly` error): drop
 * what is pending (it was not applied), show the server's text, take no more changes.
 * `notice` says why, if anything was refused.
 */
export function becomeReadOnly(client, notice) {
  client.readOnly = true;
  client.history.clear();
  if (client.unsaved) client.dropPending(notice || READ_ONLY);
  else if (notice) client.notice = notice;
  client.view.onReadOnly();
}

/** The welcome's `user` (a token's: presence and history show it, so the page does too)
 * and `readonly`. */
export function takeAccess(client, welcome) {
  if (typeof welcome.user === "string" && welcome.user) {
    client.own.user = { ...client.own.user, name: welcome.user.slice(0, 64), verified: true };
    if (client.view.onUser) client.view.onUser(client.own.user);
  }
  if (welcome.readonly === true) becomeReadOnly(client, "");
}
