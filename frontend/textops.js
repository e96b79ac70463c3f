// Text operations, the page's half of collab/text/ops.py (same vectors:
// tests/data/textops-vectors.json). An op is an array of components counted in code
// points: retain n (n > 0), insert "s", delete -n; it spans the whole text it applies to.

import { advance, cpLength, cpToUtf16 } from "./positions.js";
import { diffText } from "./textdiff.js";

const isRetain = (c) => typeof c === "number" && c > 0;
const isInsert = (c) => typeof c === "string";
const isDelete = (c) => typeof c === "number" && c < 0;

/** Appends components to an op in canonical form (see `normalize`). */
class OpBuilder {
  constructor() {
    this.op = [];
  }

  retain(n) {
    if (n <= 0) return;
    const last = this.op.length - 1;
    if (isRetain(this.op[last])) this.op[last] += n;
    else this.op.push(n);
  }

  insert(s) {
    if (s === "") return;
    const op = this.op;
    const last = op.length - 1;
    if (isInsert(op[last])) op[last] += s;
    else if (!isDelete(op[last])) op.push(s);
    else if (isInsert(op[last - 1])) op[last - 1] += s;
    else op.splice(last, 0, s);
  }

  delete(n) {
    if (n <= 0) return;
    const last = this.op.length - 1;
    if (isDelete(this.op[last])) this.op[last] -= n;
    else this.op.push(-n);
  }
}

/**
 * The canonical form of `op`: neighbours of one kind merged, no empty parts (0, ""), an
 * insert before a delete at one spot. Two ops with one effect then compare equal.
 */
export function normalize(op) {
  const out = new OpBuilder();
  for (const c of op) {
    if (isInsert(c)) out.insert(c);
    else if (c > 0) out.retain(c);
    else out.delete(-c);
  }
  return out.op;
}

/** An op on a text of `length` code points replacing [start, end) by `insert`. */
export function replaceOp(length, start, end, insert) {
  const out = new OpBuilder();
  out.retain(start);
  out.insert(insert);
  out.delete(end - start);
  out.retain(length - end);
  return out.op;
}

/** Does `op` leave the text as it is? */
export function isNoop(op) {
  return op.every(isRetain);
}

/**
 * Walks an op component by component, splitting components by code points. Empty
 * components (0, "") are skipped, as collab.text.ops does.
 */
class Cursor {
  constructor(op) {
    this.op = op.filter((c) => c !== 0 && c !== "");
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
  const out = new OpBuilder();
  let unit = 0;
  for (const c of op) {
    if (isRetain(c)) {
      out.retain(c);
      unit = advance(text, unit, c);
    } else if (isInsert(c)) {
      out.delete(cpLength(c));
    } else {
      const end = advance(text, unit, -c);
      out.insert(text.slice(unit, end));
      unit = end;
    }
  }
  return out.op;
}

/** One op doing `a` then `b`. */
export function compose(a, b) {
  const out = new OpBuilder();
  const ia = new Cursor(a);
  const ib = new Cursor(b);
  while (!ia.done() || !ib.done()) {
    if (!ia.done() && isDelete(ia.peek())) {
      out.delete(-ia.take()); // deleted by a: b never sees it
    } else if (!ib.done() && isInsert(ib.peek())) {
      out.insert(ib.take()); // inserted by b: a never had it
    } else {
      if (ia.done() || ib.done()) throw new RangeError("compose: lengths do not match");
      const n = Math.min(ia.remaining(), ib.remaining());
      const pa = ia.take(n);
      const pb = ib.take(n);
      if (isRetain(pb)) {
        if (isRetain(pa)) out.retain(n);
        else out.insert(pa);
      } else if (isRetain(pa)) {
        out.delete(n);
      } // b deletes what a inserted: nothing remains of either
    }
  }
  return out.op;
}

/**
 * Two concurrent ops on one text -> [a', b'] with b'(a(t)) == a'(b(t)). At one spot, the
 * insert of `a` ends up to the left: pass the op the server already applied as `a` (for
 * the other priority, swap the arguments and the results). Both ops are normalized first,
 * so the tie rule does not depend on how an op was written.
 */
export function transform(a, b) {
  const a2 = new OpBuilder();
  const b2 = new OpBuilder();
  const ia = new Cursor(normalize(a));
  const ib = new Cursor(normalize(b));
  while (!ia.done() || !ib.done()) {
    if (!ia.done() && isInsert(ia.peek())) {
      const s = ia.take();
      a2.insert(s);
      b2.retain(cpLength(s));
    } else if (!ib.done() && isInsert(ib.peek())) {
      const s = ib.take();
      a2.retain(cpLength(s));
      b2.insert(s);
    } else {
      if (ia.done() || ib.done()) throw new RangeError("transform: lengths do not match");
      const n = Math.min(ia.remaining(), ib.remaining());
      const pa = ia.take(n);
      const pb = ib.take(n);
      if (isRetain(pa) && isRetain(pb)) {
        a2.retain(n);
        b2.retain(n);
      } else if (isDelete(pa) && isRetain(pb)) {
        a2.delete(n);
      } else if (isRetain(pa) && isDelete(pb)) {
        b2.delete(n);
      } // both delete the same code points: nothing left to do
    }
  }
  return [a2.op, b2.op];
}

/**
 * Where position `pos` goes when someone else's `op` is applied. An insert before it moves
 * it right; an insert exactly at it leaves it before the insert; inside a deleted range it
 * goes to where the range was, after any text inserted in its place.
 */
export function transformPosition(pos, op) {
  let at = 0;
  let moved = pos;
  for (const c of normalize(op)) {
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
export function firstChange(op) {
  let at = 0;
  for (const c of op) {
    if (!isRetain(c)) return at;
    at += c;
  }
  return at;
}

/**
 * An op turning `before` into `after`: one replace, never cutting a surrogate pair.
 * `caret` (code points in `after`, optional) places an edit inside a run of equal
 * characters to end there; without it the edit goes after the longest common prefix.
 */
export function diffOp(before, after, caret) {
  const caretUnits = caret === undefined ? undefined : cpToUtf16(after, caret);
  const { start, endBefore, endAfter } = diffText(before, after, caretUnits);
  const head = cpLength(before.slice(0, start));
  const removed = cpLength(before.slice(start, endBefore));
  const tail = cpLength(before.slice(endBefore));
  return replaceOp(head + removed + tail, head, head + removed, after.slice(start, endAfter));
}
