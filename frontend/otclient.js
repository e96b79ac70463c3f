// The text-operation protocol client (docs/text-protocol.md): one op in flight, the rest
// buffered (otstates.js), ack/op/welcome from the server, catch-up after a reconnect,
// presence.

import { startOver, takeGeneration } from "./generation.js";
import { closeMessage } from "./notices.js";
import { Synchronized } from "./otstates.js";
import { becomeReadOnly, countRejection, refuseTooLarge, takeAccess } from "./access.js";
import { randomSecret } from "./secret.js";
import { moveSelections, OwnPresence, updatePeers } from "./presence.js";
import { DEFAULT_MAX_MESSAGE_BYTES, fitInFlight, pendingLength, restOfChange } from "./split.js";
import { applyOp, diffOp, invert, isNoop } from "./textops.js";
import { UndoManager } from "./undo.js";
import { ErrorCode } from "./wire.js";

/**
 * The document as this tab sees it: `text` = `serverText` (at revision `rev`) + what is
 * pending in `sync`. `socket` is a ReconnectingSocket (or anything with its interface).
 * The view hears of every change to `text` (`onChange(op, oldText)`), of presence
 * (`onPresence()`), of the connection state (`onState(state)`) and of `onReadOnly()`.
 * `state` is "connecting", "saved", "unsaved", "offline" or "error".
 */
export class OTClient {
  constructor(socket, user, view) {
    this.socket = socket;
    this.view = view;
    this.secret = randomSecret(); // kept for the tab's life, across reconnects
    this.client = null; // the public id the server derived from the secret (welcome)
    this.rev = null; // the last server revision this tab has
    this.generation = null; // the document's generation this tab's copy is of (welcome)
    this.serverText = ""; // the text at `rev`
    this.text = ""; // what the user sees
    this.seq = 0; // the last seq given to an op
    this.sync = new Synchronized();
    this.presence = new Map(); // the others: client -> {user, selection, kind}
    this.own = new OwnPresence(user, () => this.sendPresence());
    this.held = []; // messages kept while the view cannot take changes (IME)
    this.holding = false;
    this.state = "connecting";
    this.error = "";
    this.joined = false;
    this.loaded = false;
    this.rejections = new Map(); // seq -> errors for it
    this.resyncs = 0; // times this tab fell out of step with the server (errors, bugs)
    this.history = new UndoManager(); // this tab's own steps, to undo and redo
    this.maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES; // the server says its own (welcome)
    this.sendingTotal = 0; // UTF-16 units of a change going out in pieces (0: none)
    this.piecesLanded = 0; // pieces of that change the server has acked
    this.declareWhole = true; // tell the server the pieces belong together (op `more`)
    this.notice = ""; // why the last change was refused, for the status line
    this.readOnly = false; // the server said this connection may not edit (welcome, error)
    socket.handlers = {
      onOpen: () => this.sayHello(),
      onMessage: (text) => this.onMessage(text),
      onClose: (code, reason, fatal) => this.onClosed(code, reason, fatal),
    };
  }

  get user() {
    return this.own.user;
  }

  /** Is something typed here not on the server yet? */
  get unsaved() {
    return this.sync.inflight !== null || this.sync.buffer !== null;
  }

  // --- connection -----------------------------------------------------------------------

  connect() {
    this.joined = false;
    this.setState(this.loaded ? "offline" : "connecting");
    this.socket.connect();
  }

  sayHello() {
    const hello = { type: "hello", secret: this.secret, rev: this.rev, user: this.user };
    if (this.generation !== null) hello.generation = this.generation;
    this.socket.send(JSON.stringify(hello));
  }

  onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (this.holding) this.held.push(message);
    else this.receive(message);
  }

  onClosed(code, reason, fatal) {
    this.joined = false;
    this.presence.clear();
    this.view.onPresence();
    if (fatal) {
      this.error = closeMessage(code, reason);
      this.closed = { code, reason }; // the page's words for it: problems.js
      this.setState("error");
    } else {
      this.setState(this.loaded ? "offline" : "connecting");
    }
  }

  /** Drop the socket and connect again (after an error, to resynchronise). */
  reconnect() {
    this.socket.reconnect();
  }

  send(message) {
    if (!this.joined || !this.socket.open) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  setState(state) {
    if (state === "saved" || state === "unsaved") state = this.unsaved ? "unsaved" : "saved";
    this.state = state;
    this.view.onState(state);
  }

  refreshState() {
    if (this.state === "saved" || this.state === "unsaved") this.setState("saved");
    else this.view.onState(this.state); // "offline" may now have unsaved changes
  }

  // --- IME: keep server messages until the composition ends ------------------------------

  hold() {
    this.holding = true;
  }

  release() {
    this.holding = false;
    while (this.held.length && !this.holding) this.receive(this.held.shift());
  }

  receive(message) {
    try {
      this.handle(message);
    } catch (error) {
      // Out of step with the server (a bug somewhere): fetch its whole text and rebase.
      console.error("collab: cannot apply a message, resynchronising", error, message);
      this.resyncs += 1;
      this.rev = null;
      this.reconnect();
    }
  }

  // --- messages from the server ---------------------------------------------------------

  handle(message) {
    switch (message.type) {
      case "welcome":
        return this.onWelcome(message);
      case "ack":
        return this.onAck(message.seq, message.rev);
      case "op":
        return this.onRemoteOp(message);
      case "presence":
        return this.onPresence(message);
      case "error":
        return this.onError(message);
    }
  }

  onWelcome(message) {
    this.socket.succeeded();
    this.client = message.client;
    if (Number.isSafeInteger(message.max_message_bytes) && message.max_message_bytes > 0) {
      this.maxMessageBytes = message.max_message_bytes;
    }
    if (takeGeneration(this, message)) startOver(this, message);
    else if (Array.isArray(message.ops)) this.catchUp(message.ops);
    else this.rebase(message.text, message.rev, message.acked);
    this.loaded = true;
    takeAccess(this, message);
    this.presence.clear();
    for (const entry of message.presence || []) this.onPresence(entry, false);
    this.view.onPresence();
    this.joined = true;
    if (this.sync.inflight) this.sendInflight();
    this.setState("saved");
    this.own.sendNow();
  }

  /** The revisions this tab missed, in order; its own in-flight op among them is its ack. */
  catchUp(entries) {
    for (const entry of entries) {
      const inflight = this.sync.inflight;
      if (entry.client === this.client && inflight && entry.seq === inflight.seq) {
        this.onAck(entry.seq, entry.rev);
      } else {
        this.onRemoteOp(entry);
      }
    }
  }

  /**
   * The server sent its whole text at `rev`: replay what this tab typed on top of it. The
   * change between the old base and the new text counts as one server op.
   */
  rebase(text, rev, acked) {
    const inflight = this.sync.inflight;
    if (inflight) {
      // The in-flight op may be in that text already (written, then the ack was lost).
      // The server says so with `acked`; without it (older servers), guess from the text.
      // `acked: null`: the server cannot tell (error acked-unknown), so the op is not sent
      // again (it could be applied twice): the server's text decides, and the page says so.
      const after = applyOp(inflight.op, this.serverText);
      const unknown = acked === null;
      const applied = typeof acked === "number" ? acked >= inflight.seq : unknown || after === text;
      if (unknown) this.notice = "Your last change may not have been saved: please check the text";
      if (applied) {
        this.serverText = after;
        this.setSync(this.sync.confirmed(this.seq + 1));
      }
    }
    const base = this.serverText;
    this.serverText = text;
    this.rev = rev;
    try {
      this.applyServerOp(diffOp(base, text));
    } catch (error) {
      // What is pending no longer fits its base: the server's text wins.
      console.error("collab: cannot rebase local changes", error);
      this.resyncs += 1;
      this.sync = new Synchronized();
      this.showChange(diffOp(this.text, text));
    }
  }

  onAck(seq, rev) {
    const inflight = this.sync.inflight;
    if (!inflight || seq !== inflight.seq) return;
    const next = this.sync.confirmed(this.seq + 1);
    if (this.sendingTotal) this.piecesLanded += 1;
    if (rev <= this.rev && !isNoop(inflight.op)) {
      // Acked at a revision this tab already has: the server had applied the op before
      // (its ack was lost, then we rebased it onto a fresh text). Take the copy out here.
      const [undo, afterUndo] = next.remote(invert(inflight.op, this.serverText));
      this.setSync(afterUndo);
      this.showChange(undo);
    } else {
      this.serverText = applyOp(inflight.op, this.serverText);
      this.rev = rev;
      this.setSync(next);
    }
    this.rejections.delete(seq);
    this.refreshState();
    this.own.sendDue();
  }

  onRemoteOp(message) {
    this.serverText = applyOp(message.op, this.serverText);
    this.rev = message.rev;
    this.applyServerOp(message.op);
  }

  /** Transform a server op over what is pending here and apply it to `text`. */
  applyServerOp(op) {
    const [change, next] = this.sync.remote(op);
    this.setSync(next);
    this.showChange(change);
  }

  /** `text` changes by `change`, not made here: move the others' carets, tell the view. */
  showChange(change) {
    if (isNoop(change)) return;
    const old = this.text;
    this.text = applyOp(change, old);
    moveSelections(this.presence, change);
    this.history.remote(change);
    this.view.onChange(change, old);
  }

  onPresence(message, render = true) {
    if (!message.client || message.client === this.client) return;
    updatePeers(this.presence, message);
    if (render) this.view.onPresence();
  }

  onError(message) {
    if (message.code === ErrorCode.ACKED_UNKNOWN) return; // the welcome after it says acked: null
    if (message.code === ErrorCode.TOO_OLD && message.seq == null) {
      // Our presence was made on a revision too old to place: send a fresh one (throttled).
      this.own.changed();
      return;
    }
    console.warn("collab: server error", message);
    const inflight = this.sync.inflight;
    if (message.code === ErrorCode.TOO_LARGE && inflight && message.seq === inflight.seq) {
      refuseTooLarge(this);
      return;
    }
    this.resyncs += 1;
    if (message.code === ErrorCode.READONLY) {
      // Nothing was applied: the server's text, which this tab has, is the text.
      becomeReadOnly(this, "Not saved: this document is read-only for you");
      return;
    }
    if (message.code === ErrorCode.TOO_OLD) {
      // Nothing wrong with the op: its base is older than the server keeps. Hello again.
    } else if (inflight && (message.seq === inflight.seq || message.seq == null)) {
      countRejection(this, inflight);
    }
    this.reconnect();
  }

  // --- changes made here ----------------------------------------------------------------

  /** The user changed `text` by `op`, with an input of `inputType` (for undo grouping). */
  submit(op, inputType = null) {
    if (isNoop(op) || this.readOnly) return;
    const old = this.text;
    this.text = applyOp(op, old);
    if (inputType !== "historyUndo" && inputType !== "historyRedo") {
      this.history.record(op, old, inputType, Date.now());
    }
    this.notice = "";
    moveSelections(this.presence, op);
    this.setSync(this.sync.local(op, this.seq + 1));
    this.refreshState();
  }

  /** Undo this tab's latest step (others' edits stay); returns the op made, or null. */
  undo() {
    const op = this.history.undo(this.text);
    if (op) this.submit(op, "historyUndo");
    return op;
  }

  redo() {
    const op = this.history.redo(this.text);
    if (op) this.submit(op, "historyRedo");
    return op;
  }

  /** Forget what is pending here and show the server's text; `notice` says why. */
  dropPending(notice) {
    this.notice = notice;
    this.sync = new Synchronized();
    this.sendingTotal = 0;
    this.showChange(diffOp(this.text, this.serverText));
    this.refreshState();
  }

  /** How much of a change sent in pieces the server has (0 to 1), or null. */
  get progress() {
    if (!this.sendingTotal || !this.unsaved) return null;
    return Math.max(0, Math.min(1, 1 - pendingLength(this.sync) / this.sendingTotal));
  }

  /** Enter state `next`; an op that just became in flight goes out. */
  setSync(next) {
    if (!next.inflight) this.sendingTotal = this.piecesLanded = 0;
    else if (next.inflight.seq > this.seq) {
      // Too large for one message: the piece that fits goes out, the rest waits (split.js).
      const fitted = fitInFlight(next, this.maxMessageBytes);
      if (fitted !== next && !this.sendingTotal) this.sendingTotal = pendingLength(next);
      next = fitted;
    }
    this.sync = next;
    if (next.inflight && next.inflight.seq > this.seq) {
      this.seq = next.inflight.seq;
      this.sendInflight();
    }
  }

  sendInflight() {
    const { seq, op } = this.sync.inflight;
    const message = { type: "op", seq, rev: this.rev, op };
    // A piece of a bigger change: the server checks the whole change fits before the first.
    if (this.sendingTotal && this.sync.buffer && this.declareWhole) {
      message.more = restOfChange(this.sync.buffer, this.maxMessageBytes);
    }
    this.send(message);
  }

  // --- presence -------------------------------------------------------------------------

  /** The local selection as [anchor, head] in code points, or null. */
  setSelection(selection) {
    this.own.setSelection(selection);
  }

  setUser(user) {
    this.own.setUser(user);
  }

  /** Send this tab's presence; positions must be at `rev`, so only when nothing is pending. */
  sendPresence() {
    if (this.unsaved) return false;
    const selection = this.own.selection ? [this.own.selection] : null;
    return this.send({ type: "presence", rev: this.rev, selection, user: this.user });
  }
}
