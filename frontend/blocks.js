// The editor's text as the block view (blockview.js) holds it, without the DOM: the display
// text (every "\r\n" and lone "\r" shown as "\n") cut into blocks of whole lines. The line
// break between two blocks belongs to neither: it is the boundary between their elements,
// so block k covers display positions [start(k), start(k) + body.length] and the next one
// starts one further. Only the blocks a change touches are replaced, so a keystroke in a
// million characters rewrites one block, and the browser lays out only that one.

import { carry, cpLength, cpToDisplay, cpToUtf16, display } from "./positions.js";

/** Lines per block when a text is cut. */
export const BLOCK_LINES = 50;

/** `text` cut into blocks of `lines` lines: bodies that give `text` back joined by "\n". */
export function splitBlocks(text, lines = BLOCK_LINES) {
  const bodies = [];
  let start = 0;
  for (;;) {
    let at = start - 1;
    for (let n = 0; n < lines && (n === 0 || at >= 0); n++) at = text.indexOf("\n", at + 1);
    if (at < 0) {
      bodies.push(text.slice(start));
      return bodies;
    }
    bodies.push(text.slice(start, at));
    start = at + 1;
  }
}

function countLines(text) {
  let lines = 1;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) lines++;
  return lines;
}

/**
 * The blocks' bodies and where each starts in the display text. A change replaces the
 * blocks it touches with the text they then hold, as one block while it has at most twice
 * `lines` lines (an Enter rewrites one block), cut again otherwise.
 */
export class Blocks {
  constructor(text = "", lines = BLOCK_LINES) {
    this.lines = lines;
    this.bodies = splitBlocks(text, lines);
    this.starts = [];
    this.restart(0);
  }

  /** The display text's length. */
  get length() {
    const last = this.bodies.length - 1;
    return this.starts[last] + this.bodies[last].length;
  }

  /** The whole display text (a test's view of it; the page never needs it). */
  get text() {
    return this.bodies.join("\n");
  }

  restart(from) {
    this.starts.length = this.bodies.length;
    for (let k = from; k < this.bodies.length; k++) {
      this.starts[k] = k === 0 ? 0 : this.starts[k - 1] + this.bodies[k - 1].length + 1;
    }
  }

  /** [block, offset in its body] of display position `at` (clamped to the text). */
  locate(at) {
    const starts = this.starts;
    let [low, high] = [0, starts.length - 1];
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (starts[mid] <= at) low = mid;
      else high = mid - 1;
    }
    return [low, Math.max(0, Math.min(at - starts[low], this.bodies[low].length))];
  }

  /** The display text's units [from, to). */
  slice(from, to) {
    const [first, a] = this.locate(from);
    const [last, b] = this.locate(to);
    if (first === last) return this.bodies[first].slice(a, b);
    const middle = this.bodies.slice(first + 1, last);
    return [this.bodies[first].slice(a), ...middle, this.bodies[last].slice(0, b)].join("\n");
  }

  /**
   * Replace display units [from, to) with `insert` (display text). Returns the splice of
   * blocks made: `removed` blocks from `first` gave way to `bodies`.
   */
  replace(from, to, insert) {
    const [first, a] = this.locate(from);
    const [last, b] = this.locate(to);
    const merged = this.bodies[first].slice(0, a) + insert + this.bodies[last].slice(b);
    const bodies =
      countLines(merged) <= 2 * this.lines ? [merged] : splitBlocks(merged, this.lines);
    this.bodies.splice(first, last - first + 1, ...bodies);
    this.restart(first);
    return { first, removed: last - first + 1, bodies };
  }
}

/**
 * What `op` (code points, turning `before` into `after`) changes in the display text: the
 * units [from, to) of display(before) become `insert`. The region grows by a "\r" before
 * it or a "\n" after it, so that a "\r\n" made or split at its edge is inside it.
 * Null when `op` changes nothing. `after` gets position checkpoints carried from
 * `before`'s (positions.js), not made again from the whole text.
 */
export function displayChange(before, after, op) {
  let [at, first, endBefore, endAfter, shift] = [0, -1, 0, 0, 0];
  for (const c of op) {
    if (typeof c === "number" && c > 0) {
      at += c;
      continue;
    }
    if (first < 0) first = at;
    if (typeof c === "string") shift += cpLength(c);
    else {
      at -= c;
      shift += c;
    }
    endBefore = at;
    endAfter = at + shift;
  }
  if (first < 0) return null;
  let unit = cpToUtf16(before, first);
  if (first > 0 && before.charCodeAt(unit - 1) === 13) {
    first -= 1;
    unit -= 1;
  }
  const unitEnd = cpToUtf16(before, endBefore);
  carry(before, after, unit, unitEnd, unitEnd + after.length - before.length);
  if (before.charCodeAt(unitEnd) === 10) {
    endBefore += 1;
    endAfter += 1;
  }
  return {
    from: cpToDisplay(before, first),
    to: cpToDisplay(before, endBefore),
    insert: display(after.slice(unit, cpToUtf16(after, endAfter))),
  };
}
