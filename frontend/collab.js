// collab — the built-in pages: the document list (index.html) and the textarea editor
// (editor.html). One ES module, no build step, no dependencies.
//
// The editor speaks the text-operation protocol (docs/text-protocol.md) on
// `<prefix>/ot/<name>`. Operations count Unicode code points; the textarea counts UTF-16
// units and shows every line break as "\n". The "Positions" section below is the only
// place that converts between the two; everything else works in one unit or the other.

// ---------------------------------------------------------------------------------------
// Positions: code points of the document text <-> UTF-16 units of the textarea value
// ---------------------------------------------------------------------------------------

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit) => unit >= 0xdc00 && unit <= 0xdfff;

/** The number of code points in `s`. */
export function cpLength(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if (isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1))) {
      n--;
      i++;
    }
  }
  return n;
}

/** The UTF-16 index reached by stepping `count` code points forward from unit index `from`. */
export function advance(s, from, count) {
  let i = from;
  for (let k = 0; k < count; k++) {
    if (i >= s.length) throw new RangeError("position past the end of the text");
    i += isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1)) ? 2 : 1;
  }
  return i;
}

/** `s` as a textarea shows it: every "\r\n" and lone "\r" becomes "\n". */
export function display(s) {
  return s.includes("\r") ? s.replace(/\r\n?/g, "\n") : s;
}

/** The code point position in `text` of UTF-16 position `index` in `display(text)`. */
export function displayToCp(text, index) {
  let shown = 0;
  let unit = 0;
  let cp = 0;
  while (shown < index && unit < text.length) {
    const c = text.charCodeAt(unit);
    if (c === 13 && text.charCodeAt(unit + 1) === 10) {
      unit += 2; // "\r\n" is one "\n" on screen but two code points
      cp += 2;
      shown += 1;
    } else if (isHigh(c) && isLow(text.charCodeAt(unit + 1))) {
      unit += 2;
      cp += 1;
      shown += 2;
    } else {
      unit += 1;
      cp += 1;
      shown += 1;
    }
  }
  return cp;
}

/** The UTF-16 position in `display(text)` of code point position `cp` in `text`. */
export function cpToDisplay(text, cp) {
  let shown = 0;
  let unit = 0;
  for (let k = 0; k < cp && unit < text.length; k++) {
    const c = text.charCodeAt(unit);
    if (c === 13 && text.charCodeAt(unit + 1) === 10) {
      if (k + 1 === cp) return shown; // between "\r" and "\n": before the line break
      unit += 2;
      k += 1;
      shown += 1;
    } else if (isHigh(c) && isLow(text.charCodeAt(unit + 1))) {
      unit += 2;
      shown += 2;
    } else {
      unit += 1;
      shown += 1;
    }
  }
  return shown;
}

/** Does unit index `i` fall between the two halves of a surrogate pair of `s`? */
function splitsPair(s, i) {
  return i > 0 && i < s.length && isHigh(s.charCodeAt(i - 1)) && isLow(s.charCodeAt(i));
}

function cutsPair(before, after, start, suffix) {
  return (
    splitsPair(before, start) ||
    splitsPair(after, start) ||
    splitsPair(before, before.length - suffix) ||
    splitsPair(after, after.length - suffix)
  );
}

/**
 * Where `before` and `after` differ, in UTF-16 units: `after` is `before` with the units
 * [start, before.length - suffix) replaced by [start, after.length - suffix).
 * `caret` (the caret in `after`) places an edit inside a run of equal characters, where
 * the text alone cannot tell. Never cuts a surrogate pair. Linear time.
 */
export function diffText(before, after, caret) {
  const minLength = Math.min(before.length, after.length);
  let prefix = 0;
  while (prefix < minLength && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++;
  let suffix = 0;
  while (
    suffix < minLength &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)
  ) {
    suffix++;
  }
  let start = prefix;
  if (prefix + suffix >= minLength) {
    // A pure insertion or deletion inside a run: any start in [minLength - suffix, prefix]
    // gives the same text. The caret says which one the user made.
    const low = minLength - suffix;
    const grown = after.length - before.length;
    const wanted = Math.max(low, Math.min(prefix, grown > 0 ? caret - grown : caret));
    const whole = (at) =>
      at >= low && at <= prefix && !cutsPair(before, after, at, minLength - at);
    start = [wanted, wanted - 1, wanted + 1].find(whole) ?? wanted;
    suffix = minLength - start;
  }
  // Widen the region until no end of it falls inside a surrogate pair.
  while (start > 0 && (splitsPair(before, start) || splitsPair(after, start))) start--;
  while (
    suffix > 0 &&
    (splitsPair(before, before.length - suffix) || splitsPair(after, after.length - suffix))
  ) {
    suffix--;
  }
  return { start, endBefore: before.length - suffix, endAfter: after.length - suffix };
}

// ---------------------------------------------------------------------------------------
// Operations: retain n (> 0), insert "s", delete -n; counted in code points
// ---------------------------------------------------------------------------------------

const isRetain = (c) => typeof c === "number" && c > 0;
const isInsert = (c) => typeof c === "string";
const isDelete = (c) => typeof c === "number" && c < 0;

function pushRetain(op, n) {
  if (n <= 0) return;
  const last = op.length - 1;
  if (isRetain(op[last])) op[last] += n;
  else op.push(n);
}

function pushInsert(op, s) {
  if (s === "") return;
  const last = op.length - 1;
  if (isInsert(op[last])) op[last] += s;
  else if (isDelete(op[last])) {
    // canonical form: the insert before the delete at one spot
    if (isInsert(op[last - 1])) op[last - 1] += s;
    else op.splice(last, 0, s);
  } else op.push(s);
}

function pushDelete(op, n) {
  if (n <= 0) return;
  const last = op.length - 1;
  if (isDelete(op[last])) op[last] -= n;
  else op.push(-n);
}

/** An op on a text of `length` code points replacing [start, end) by `insert`. */
export function replaceOp(length, start, end, insert) {
  const op = [];
  pushRetain(op, start);
  pushInsert(op, insert);
  pushDelete(op, end - start);
  pushRetain(op, length - end);
  return op;
}

export function isNoop(op) {
  return op.every(isRetain);
}

/** Walks an op component by component, splitting components by code points. */
class Cursor {
  constructor(op) {
    this.op = op;
    this.index = 0;
    this.offset = 0; // code points of op[index] already taken
    this.unit = 0; // UTF-16 units of an insert already taken
    this.insertLength = -1; // code points of op[index], when it is an insert
  }

  done() {
    return this.index >= this.op.length;
  }

  peek() {
    return this.op[this.index];
  }

  /** Code points left in the current component. */
  remaining() {
    const c = this.op[this.index];
    if (isInsert(c)) {
      if (this.insertLength < 0) this.insertLength = cpLength(c);
      return this.insertLength - this.offset;
    }
    return Math.abs(c) - this.offset;
  }

  /** Takes up to `n` code points (all that is left by default) of the current component. */
  take(n = Infinity) {
    const c = this.op[this.index];
    const count = Math.min(n, this.remaining());
    let part;
    if (isInsert(c)) {
      const end = count === this.remaining() ? c.length : advance(c, this.unit, count);
      part = c.slice(this.unit, end);
      this.unit = end;
    } else {
      part = c > 0 ? count : -count;
    }
    this.offset += count;
    if (this.remaining() === 0) {
      this.index += 1;
      this.offset = 0;
      this.unit = 0;
      this.insertLength = -1;
    }
    return part;
  }
}

function partLength(part) {
  return isInsert(part) ? cpLength(part) : Math.abs(part);
}

/** The text `op` makes of `text`. Throws when the op does not span the text. */
export function applyOp(op, text) {
  const parts = [];
  let unit = 0;
  for (const c of op) {
    if (isRetain(c)) {
      const end = advance(text, unit, c);
      parts.push(text.slice(unit, end));
      unit = end;
    } else if (isInsert(c)) {
      parts.push(c);
    } else {
      unit = advance(text, unit, -c);
    }
  }
  if (unit !== text.length) throw new RangeError("op is shorter than the text");
  return parts.join("");
}

/** The op undoing `op`, which applies to `text` (deleted text comes from there). */
export function invert(op, text) {
  const out = [];
  let unit = 0;
  for (const c of op) {
    if (isRetain(c)) {
      pushRetain(out, c);
      unit = advance(text, unit, c);
    } else if (isInsert(c)) {
      pushDelete(out, cpLength(c));
    } else {
      const end = advance(text, unit, -c);
      pushInsert(out, text.slice(unit, end));
      unit = end;
    }
  }
  return out;
}

/** One op doing `a` then `b`. */
export function compose(a, b) {
  const out = [];
  const ia = new Cursor(a);
  const ib = new Cursor(b);
  while (!ia.done() || !ib.done()) {
    if (!ib.done() && isInsert(ib.peek())) {
      pushInsert(out, ib.take());
    } else if (!ia.done() && isDelete(ia.peek())) {
      pushDelete(out, -ia.take());
    } else {
      if (ia.done() || ib.done()) throw new RangeError("compose: lengths do not match");
      const n = Math.min(ia.remaining(), ib.remaining());
      const pa = ia.take(n);
      const pb = ib.take(n);
      if (isRetain(pb)) {
        if (isRetain(pa)) pushRetain(out, n);
        else pushInsert(out, pa);
      } else if (isRetain(pa)) {
        pushDelete(out, n);
      } // insert then delete: nothing
    }
  }
  return out;
}

/**
 * Two concurrent ops on one text -> [a', b'] with b'(a(t)) == a'(b(t)). At one spot, the
 * insert of `a` ends up to the left: pass the op the server already applied as `a`.
 */
export function transform(a, b) {
  const a2 = [];
  const b2 = [];
  const ia = new Cursor(a);
  const ib = new Cursor(b);
  while (!ia.done() || !ib.done()) {
    if (!ia.done() && isInsert(ia.peek())) {
      const s = ia.take();
      pushInsert(a2, s);
      pushRetain(b2, cpLength(s));
    } else if (!ib.done() && isInsert(ib.peek())) {
      const s = ib.take();
      pushRetain(a2, cpLength(s));
      pushInsert(b2, s);
    } else {
      if (ia.done() || ib.done()) throw new RangeError("transform: lengths do not match");
      const n = Math.min(ia.remaining(), ib.remaining());
      const pa = ia.take(n);
      const pb = ib.take(n);
      if (isRetain(pa) && isRetain(pb)) {
        pushRetain(a2, n);
        pushRetain(b2, n);
      } else if (isDelete(pa) && isRetain(pb)) {
        pushDelete(a2, n);
      } else if (isRetain(pa) && isDelete(pb)) {
        pushDelete(b2, n);
      } // both delete the same code points: nothing left to do
    }
  }
  return [a2, b2];
}

/**
 * Where position `pos` goes when `op` is applied. An insert before it moves it right; an
 * insert exactly at it leaves it before the insert.
 */
export function transformPosition(pos, op) {
  let at = 0;
  let moved = pos;
  for (const c of op) {
    if (at >= pos) break;
    if (isRetain(c)) at += c;
    else if (isInsert(c)) moved += cpLength(c);
    else {
      moved -= Math.min(-c, pos - at);
      at += -c;
    }
  }
  return moved;
}

/** The position of the first change `op` makes (its length when it changes nothing). */
function firstChange(op) {
  let at = 0;
  for (const c of op) {
    if (!isRetain(c)) return at;
    at += c;
  }
  return at;
}

/** An op turning `before` into `after` (one replaced region). */
export function diffOp(before, after) {
  const { start, endBefore, endAfter } = diffText(before, after, 0);
  const head = cpLength(before.slice(0, start));
  const removed = cpLength(before.slice(start, endBefore));
  const tail = cpLength(before.slice(endBefore));
  return replaceOp(head + removed + tail, head, head + removed, after.slice(start, endAfter));
}

// ---------------------------------------------------------------------------------------
// The OT client: one op in flight, a buffer, reconnects
// ---------------------------------------------------------------------------------------

const FATAL_CLOSE_CODES = new Set([1003, 1008, 1009, 4400]);

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "c-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The document as this tab sees it. `text` = `serverText` + in-flight op + buffer.
 * The view is told about every change to `text` (`onChange(op, oldText)`), about presence
 * (`onPresence()`) and about the connection state (`onState(state)`).
 */
export class OTClient {
  constructor(url, user, view) {
    this.url = url;
    this.user = user;
    this.view = view;
    this.client = randomId();
    this.rev = null; // the last server revision this tab has
    this.serverText = ""; // the text at `rev`
    this.text = ""; // what the user sees
    this.seq = 0;
    this.inflight = null; // {seq, op}
    this.buffer = null; // op on top of the in-flight op
    this.presence = new Map(); // client -> {user, selection, kind}
    this.held = []; // messages kept while the view cannot take changes (IME)
    this.holding = false;
    this.state = "connecting";
    this.error = "";
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.loaded = false;
    this.rejections = new Map(); // seq -> errors for it
    this.presenceTimer = null;
    this.presenceDirty = false;
    this.lastPresence = 0;
    this.selection = null;
    this.resyncs = 0; // times this tab fell out of step with the server (errors, bugs)
  }

  // --- connection -----------------------------------------------------------------------

  connect() {
    this.timer = null;
    this.joined = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.setState(this.loaded ? "offline" : "connecting");
    socket.onopen = () => {
      socket.send(
        JSON.stringify({ type: "hello", client: this.client, rev: this.rev, user: this.user }),
      );
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket || typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (this.holding) this.held.push(message);
      else this.receive(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.joined = false;
      this.onClosed(event.code, event.reason);
    };
  }

  onClosed(code, reason) {
    this.presence.clear();
    this.view.onPresence();
    if (FATAL_CLOSE_CODES.has(code)) {
      this.error = reason || `closed (${code})`;
      this.setState("error");
      return;
    }
    this.setState(this.loaded ? "offline" : "connecting");
    const delay = Math.min(5000, 250 * 2 ** this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay * (0.5 + Math.random() / 2));
  }

  /** Drop the socket and connect again (after an error, to resynchronise). */
  reconnect() {
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      this.joined = false;
      socket.close();
      this.onClosed(1000, "");
    }
  }

  /** Connect now if waiting for the next attempt (the browser came back online). */
  hurry() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.attempt = 0;
      this.connect();
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN && this.joined) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  setState(state) {
    if (state === "saved" || state === "unsaved") {
      state = this.inflight || this.buffer ? "unsaved" : "saved";
    }
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
        return this.onPresenceMessage(message);
      case "error":
        return this.onError(message);
    }
  }

  onWelcome(message) {
    this.attempt = 0;
    if (Array.isArray(message.ops)) {
      for (const entry of message.ops) {
        const own = entry.client === this.client;
        if (own && this.inflight && entry.seq === this.inflight.seq) {
          this.onAck(entry.seq, entry.rev);
        } else {
          this.onRemoteOp(entry);
        }
      }
    } else {
      this.rebase(message.text, message.rev, message.acked);
    }
    this.loaded = true;
    this.presence.clear();
    for (const entry of message.presence || []) this.onPresenceMessage(entry, false);
    this.view.onPresence();
    this.joined = true;
    if (this.inflight) this.sendInflight();
    else this.promoteBuffer();
    this.setState("saved");
    this.sendPresence();
  }

  /**
   * The server sent its whole text at `rev`: replay what this tab typed on top of it. The
   * change between the old base and the new text counts as one server op.
   */
  rebase(text, rev, acked) {
    if (this.inflight) {
      // The in-flight op may be in that text already (written, then the ack was lost).
      // The server says so with `acked`; without it, guess from the text.
      const after = applyOp(this.inflight.op, this.serverText);
      const applied = typeof acked === "number" ? acked >= this.inflight.seq : after === text;
      if (applied) {
        this.serverText = after;
        this.inflight = null;
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
      this.inflight = null;
      this.buffer = null;
      this.showChange(diffOp(this.text, text));
    }
  }

  onAck(seq, rev) {
    if (!this.inflight || seq !== this.inflight.seq) return;
    if (rev <= this.rev && !isNoop(this.inflight.op)) {
      // Acked at a revision this tab already has: the server had applied the op before
      // (its ack was lost, then we rebased it onto a fresh text). Take the copy out here.
      this.undoInflight();
    } else {
      this.serverText = applyOp(this.inflight.op, this.serverText);
      this.rev = rev;
    }
    this.inflight = null;
    this.rejections.delete(seq);
    this.promoteBuffer();
    this.refreshState();
    if (this.presenceDirty) this.schedulePresence();
  }

  undoInflight() {
    let change = invert(this.inflight.op, this.serverText);
    this.inflight = null;
    if (this.buffer) [change, this.buffer] = transform(change, this.buffer);
    this.showChange(change);
  }

  onRemoteOp(message) {
    this.serverText = applyOp(message.op, this.serverText);
    this.rev = message.rev;
    this.applyServerOp(message.op);
  }

  /** Transform a server op over what is pending here and apply it to `text`. */
  applyServerOp(op) {
    let change = op;
    if (this.inflight) [change, this.inflight.op] = transform(change, this.inflight.op);
    if (this.buffer) [change, this.buffer] = transform(change, this.buffer);
    this.showChange(change);
  }

  /** `text` changes by `change`, not made here: move the others' carets, tell the view. */
  showChange(change) {
    if (isNoop(change)) return;
    const old = this.text;
    this.text = applyOp(change, old);
    for (const peer of this.presence.values()) peer.selection = moveSelection(peer.selection, change);
    this.view.onChange(change, old);
  }

  onPresenceMessage(message, render = true) {
    if (!message.client || message.client === this.client) return;
    if (message.left) this.presence.delete(message.client);
    else {
      const known = this.presence.get(message.client) || {};
      this.presence.set(message.client, {
        user: message.user || known.user || null,
        selection: message.selection === undefined ? known.selection : message.selection,
        kind: message.kind || known.kind || "text",
      });
    }
    if (render) this.view.onPresence();
  }

  onError(message) {
    console.warn("collab: server error", message);
    this.resyncs += 1;
    if (message.code === "readonly") {
      this.inflight = null;
      this.buffer = null;
      this.view.onReadOnly();
      this.rev = null;
    } else if (this.inflight && (message.seq === this.inflight.seq || message.seq == null)) {
      const seq = this.inflight.seq;
      const count = (this.rejections.get(seq) || 0) + 1;
      this.rejections.set(seq, count);
      if (count >= 3) {
        // The server keeps refusing this change: start over from the server's text.
        console.error("collab: dropping a change the server refuses", this.inflight.op);
        this.inflight = null;
        this.buffer = null;
        this.rev = null;
      }
    }
    this.reconnect();
  }

  // --- changes made here ----------------------------------------------------------------

  /** The user changed `text` by `op`. */
  submit(op) {
    if (isNoop(op)) return;
    this.text = applyOp(op, this.text);
    for (const peer of this.presence.values()) peer.selection = moveSelection(peer.selection, op);
    if (this.buffer) this.buffer = compose(this.buffer, op);
    else if (this.inflight) this.buffer = op;
    else {
      this.inflight = { seq: ++this.seq, op };
      this.sendInflight();
    }
    this.refreshState();
  }

  /** Nothing in flight: send the buffer. */
  promoteBuffer() {
    if (this.inflight || !this.buffer) return;
    this.inflight = { seq: ++this.seq, op: this.buffer };
    this.buffer = null;
    this.sendInflight();
  }

  sendInflight() {
    const { seq, op } = this.inflight;
    this.send({ type: "op", seq, rev: this.rev, op });
  }

  // --- presence -------------------------------------------------------------------------

  /** The local selection as [anchor, head] in code points, or null. Sent throttled. */
  setSelection(selection) {
    this.selection = selection;
    this.presenceDirty = true;
    this.schedulePresence();
  }

  setUser(user) {
    this.user = user;
    this.presenceDirty = true;
    this.schedulePresence();
  }

  schedulePresence() {
    if (this.presenceTimer !== null) return;
    const wait = Math.max(0, this.lastPresence + 150 - Date.now());
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.sendPresence();
    }, wait);
  }

  sendPresence() {
    // Positions must be at `rev`: wait until nothing is pending (the next ack sends it).
    if (this.inflight || this.buffer || !this.joined) return;
    const selection = this.selection ? [this.selection] : null;
    if (this.send({ type: "presence", rev: this.rev, selection, user: this.user })) {
      this.presenceDirty = false;
      this.lastPresence = Date.now();
    }
  }
}

function moveSelection(selection, op) {
  if (!Array.isArray(selection)) return selection;
  return selection.map((range) =>
    Array.isArray(range) ? range.map((pos) => transformPosition(pos, op)) : range,
  );
}

// ---------------------------------------------------------------------------------------
// The editor page
// ---------------------------------------------------------------------------------------

const COLORS = ["#d81b60", "#8e24aa", "#3949ab", "#1e88e5", "#00897b", "#43a047", "#f4511e"];
const STATE_LABELS = {
  connecting: "Connecting…",
  saved: "Saved",
  unsaved: "Unsaved changes",
  offline: "Offline",
  error: "Disconnected",
};

/** Everything before "/d/" in the page's path (or the path itself on the list page). */
function mountPrefix() {
  const path = location.pathname;
  const at = path.indexOf("/d/");
  return at >= 0 ? path.slice(0, at) : path.replace(/\/+$/, "");
}

/** "/"-separated name -> URL path, each segment escaped. */
function encodeName(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function safeColor(color) {
  return typeof color === "string" && /^#[0-9a-fA-F]{3,8}$/.test(color) ? color : "#757575";
}

function loadUser() {
  let name = localStorage.getItem("collab.name");
  let color = localStorage.getItem("collab.color");
  if (!name) name = "Guest " + Math.floor(1000 + Math.random() * 9000);
  if (!color || safeColor(color) !== color) {
    color = COLORS[Math.floor(Math.random() * COLORS.length)];
    localStorage.setItem("collab.color", color);
  }
  return { name, color };
}

/** Binds a textarea to an OTClient. */
class TextareaView {
  constructor(textarea, elements) {
    this.textarea = textarea;
    this.el = elements;
    this.shown = ""; // what the textarea held after the last change we know of
    this.composing = false;
    this.client = null;
    this.readOnly = false;
    this.renderPending = false;
  }

  attach(client) {
    this.client = client;
    const ta = this.textarea;
    ta.addEventListener("input", () => {
      if (!this.composing) this.flush();
      this.sendSelection();
    });
    ta.addEventListener("compositionstart", () => {
      this.composing = true;
      client.hold();
    });
    ta.addEventListener("compositionend", () => this.endComposition());
    ta.addEventListener("blur", () => {
      if (this.composing) this.endComposition();
      client.setSelection(null);
    });
    for (const type of ["select", "keyup", "mouseup", "focus"]) {
      ta.addEventListener(type, () => this.sendSelection());
    }
    document.addEventListener("selectionchange", () => {
      if (document.activeElement === ta) this.sendSelection();
    });
  }

  endComposition() {
    if (!this.composing) return;
    this.composing = false;
    this.flush();
    this.client.release();
  }

  /** Turn whatever the user did to the textarea since the last look into one op. */
  flush() {
    const ta = this.textarea;
    let value = ta.value;
    if (value.includes("\r")) {
      const caret = ta.selectionEnd;
      const before = value.slice(0, caret).replace(/\r\n?/g, "\n").length;
      value = value.replace(/\r\n?/g, "\n");
      ta.value = value;
      ta.setSelectionRange(before, before);
    }
    if (value === this.shown) return;
    const text = this.client.text;
    const { start, endBefore, endAfter } = diffText(this.shown, value, ta.selectionEnd);
    const from = displayToCp(text, start);
    const to = displayToCp(text, endBefore);
    const op = replaceOp(cpLength(text), from, to, value.slice(start, endAfter));
    this.shown = value;
    this.client.submit(op);
    if (display(this.client.text) !== value) this.redraw(); // a lone "\r" met a "\n"
  }

  sendSelection() {
    if (this.composing || !this.client) return;
    const ta = this.textarea;
    if (document.activeElement !== ta) return;
    const text = this.client.text;
    const start = displayToCp(text, ta.selectionStart);
    const end = displayToCp(text, ta.selectionEnd);
    const backward = ta.selectionDirection === "backward";
    this.client.setSelection(backward ? [end, start] : [start, end]);
  }

  /** The client's text changed by `op` (a server change, transformed): show it. */
  onChange(op, oldText) {
    const ta = this.textarea;
    const newText = this.client.text;
    const cpStart = displayToCp(oldText, ta.selectionStart);
    const cpEnd = displayToCp(oldText, ta.selectionEnd);
    const direction = ta.selectionDirection;
    const above = firstChange(op) < cpStart;
    const top = ta.scrollTop;
    const height = ta.scrollHeight;
    this.shown = display(newText);
    ta.value = this.shown;
    ta.setSelectionRange(
      cpToDisplay(newText, transformPosition(cpStart, op)),
      cpToDisplay(newText, transformPosition(cpEnd, op)),
      direction,
    );
    // Keep the caret's line where it was on screen when text changed above it.
    ta.scrollTop = above ? top + ta.scrollHeight - height : top;
    this.renderPeers();
  }

  redraw() {
    this.onChange([cpLength(this.client.text)], this.client.text);
  }

  onReadOnly() {
    this.readOnly = true;
    this.textarea.readOnly = true;
    this.el.status.title = "This document is read-only for you";
  }

  onState(state) {
    const { status } = this.el;
    status.dataset.state = state;
    let label = STATE_LABELS[state] || state;
    if (state === "offline" && this.client && (this.client.inflight || this.client.buffer)) {
      label = "Offline — unsaved changes";
    }
    if (state === "error") label = `Disconnected: ${this.client.error}`;
    status.textContent = label;
    if (state === "error") {
      this.textarea.readOnly = true; // nothing typed now could be saved; copying still works
    } else if (this.client && this.client.loaded && !this.readOnly) {
      this.textarea.readOnly = false;
      this.textarea.placeholder = "Start typing…";
    }
  }

  onPresence() {
    this.renderPeers();
  }

  /** Redraw the who-is-here list, at most once a frame. */
  renderPeers() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.drawPeers();
    });
  }

  drawPeers() {
    const list = this.el.peers;
    const items = [this.peerItem(this.client.user, "you", null)];
    for (const peer of this.client.presence.values()) {
      if (!peer.user || !peer.user.name) continue;
      items.push(this.peerItem(peer.user, peer.kind === "yjs" ? "Yjs" : "", peer.selection));
    }
    list.replaceChildren(...items);
  }

  peerItem(user, note, selection) {
    const item = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = safeColor(user && user.color);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = String((user && user.name) || "Anonymous").slice(0, 64);
    item.append(dot, name);
    const line = selection && selection[0] && lineOf(this.client.text, selection[0][1]);
    const extra = [note, line ? `line ${line}` : ""].filter(Boolean).join(", ");
    if (extra) {
      const small = document.createElement("small");
      small.textContent = extra;
      item.append(small);
    }
    return item;
  }
}

function lineOf(text, cp) {
  if (typeof cp !== "number") return 0;
  const upTo = advance(text, 0, Math.min(cp, cpLength(text)));
  let line = 1;
  for (let i = 0; i < upTo; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function startEditor() {
  const prefix = mountPrefix();
  const path = location.pathname;
  const name = decodeURIComponent(path.slice(path.indexOf("/d/") + 3));
  document.title = `${name} — collab`;
  const $ = (id) => document.getElementById(id);
  $("doc-name").textContent = name;
  $("home").href = prefix + "/";
  const history = $("history-link");
  if (history) history.href = `${prefix}/static/history.html#${encodeName(name)}`;
  const user = loadUser();
  $("user-name").value = user.name;

  const view = new TextareaView($("text"), { status: $("status"), peers: $("peers") });
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}${prefix}/ot/${encodeName(name)}`;
  const client = new OTClient(url, user, view);
  view.attach(client);
  view.renderPeers();

  $("user-name").addEventListener("change", (event) => {
    const newName = event.target.value.trim().slice(0, 64) || user.name;
    event.target.value = newName;
    localStorage.setItem("collab.name", newName);
    client.setUser({ name: newName, color: user.color });
    view.renderPeers();
  });
  window.addEventListener("online", () => client.hurry());
  window.addEventListener("beforeunload", (event) => {
    if (client.inflight || client.buffer) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  window.collab = { client, view };
  client.connect();
}

// ---------------------------------------------------------------------------------------
// The document list page
// ---------------------------------------------------------------------------------------

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function startIndex() {
  const prefix = mountPrefix();
  const $ = (id) => document.getElementById(id);
  $("open").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("open-name").value.trim();
    if (name) location.href = `${prefix}/d/${encodeName(name)}`;
  });
  const list = $("documents");
  try {
    const response = await fetch(`${prefix}/api/docs`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const { documents } = await response.json();
    documents.sort((a, b) => a.name.localeCompare(b.name));
    const rows = documents.map((doc) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `${prefix}/d/${encodeName(doc.name)}`;
      link.textContent = doc.name;
      const info = document.createElement("small");
      const peers = doc.peers ? ` · ${doc.peers} here` : "";
      info.textContent = `${formatSize(doc.size_bytes)} · rev ${doc.rev}${peers}`;
      item.append(link, info);
      return item;
    });
    if (rows.length) list.replaceChildren(...rows);
    else list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "No documents yet." }));
  } catch (error) {
    list.replaceChildren(
      Object.assign(document.createElement("li"), { textContent: `Could not load: ${error}` }),
    );
  }
  window.collab = { ready: true };
}

if (typeof document !== "undefined") {
  const page = document.body.dataset.page;
  if (page === "editor") startEditor();
  else if (page === "index") startIndex();
}
