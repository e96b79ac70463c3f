// Positions in the page's three units, and the only place that converts between them:
//
// - code points: ops and presence on the wire (docs/text-protocol.md);
// - UTF-16 units: JavaScript string indices;
// - display units: UTF-16 indices in the text as the editor shows it, where every "\r\n"
//   and lone "\r" of the document shows as one "\n".
//
// A conversion walks the text from its start. In a long text (a keystroke in a million
// characters asks for a dozen conversions) the walk starts instead from the nearest of
// the checkpoints kept for the last few texts: the walk's state every 1,024 units, made
// in one pass the first time a text is asked about, or carried from the text it was
// changed from (`carry`).

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit) => unit >= 0xdc00 && unit <= 0xdfff;

/** Does the code point at UTF-16 index `i` of `s` take two units (a surrogate pair)? */
function isPairAt(s, i) {
  return isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1));
}

/** The number of code points in `s`. */
export function cpLength(s) {
  if (s.length >= INDEXED_FROM) return checkpoints(s).total;
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if (isPairAt(s, i)) {
      n--;
      i++;
    }
  }
  return n;
}

/** The UTF-16 index reached by stepping `count` code points forward from unit index `from`. */
export function advance(s, from, count) {
  if (s.length >= INDEXED_FROM && count > CHECKPOINT_UNITS && !splitsPair(s, from)) {
    const index = checkpoints(s);
    const cp = index.cpAt(s, from) + count;
    if (cp > index.total) throw new RangeError("position past the end of the text");
    return index.unitOf(s, cp);
  }
  let i = from;
  for (let k = 0; k < count; k++) {
    if (i >= s.length) throw new RangeError("position past the end of the text");
    i += isPairAt(s, i) ? 2 : 1;
  }
  return i;
}

/** The UTF-16 index of code point index `cp` in `text`. */
export function cpToUtf16(text, cp) {
  return advance(text, 0, cp);
}

/** The code point index of UTF-16 index `index`; a RangeError inside a surrogate pair. */
export function utf16ToCp(text, index) {
  if (index < 0 || index > text.length) throw new RangeError("position outside the text");
  if (splitsPair(text, index)) throw new RangeError("position inside a surrogate pair");
  if (text.length >= INDEXED_FROM) return checkpoints(text).cpAt(text, index);
  return cpLength(text.slice(0, index));
}

/** Does unit index `i` fall between the two halves of a surrogate pair of `s`? */
export function splitsPair(s, i) {
  return i > 0 && i < s.length && isPairAt(s, i - 1);
}

/** `s` as a textarea shows it: every "\r\n" and lone "\r" becomes "\n". */
export function display(s) {
  return s.includes("\r") ? s.replace(/\r\n?/g, "\n") : s;
}

const isCrlfAt = (text, unit) => text.charCodeAt(unit) === 13 && text.charCodeAt(unit + 1) === 10;

/** The code point position in `text` of UTF-16 position `index` in `display(text)`. */
export function displayToCp(text, index) {
  let [unit, cp, shown] = start(text, "shown", index);
  while (shown < index && unit < text.length) {
    if (isCrlfAt(text, unit)) {
      unit += 2; // "\r\n" is one "\n" on screen but two code points
      cp += 2;
      shown += 1;
    } else if (isPairAt(text, unit)) {
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

/**
 * The UTF-16 position in `display(text)` of code point position `cp` in `text`. A position
 * between the "\r" and the "\n" of a "\r\n" shows before the line break.
 */
export function cpToDisplay(text, cp) {
  let [unit, k, shown] = start(text, "cp", cp);
  for (; k < cp && unit < text.length; k++) {
    if (isCrlfAt(text, unit)) {
      if (k + 1 === cp) return shown;
      unit += 2;
      k += 1;
      shown += 1;
    } else if (isPairAt(text, unit)) {
      unit += 2;
      shown += 2;
    } else {
      unit += 1;
      shown += 1;
    }
  }
  return shown;
}

/** Units between two checkpoints; a text this many times longer gets them. */
const CHECKPOINT_UNITS = 1024;
const INDEXED_FROM = 8 * CHECKPOINT_UNITS;
/** How many texts keep their checkpoints (the text, the server's text, one more). */
const KEPT = 3;

/**
 * The state of the walk over a text (unit, code point and display position) at every
 * multiple of CHECKPOINT_UNITS (or just after, when a pair or a "\r\n" spans it). Each
 * of the three numbers grows at every step of the walk, so the checkpoint to start from
 * is found by a binary search on any of them.
 */
class Checkpoints {
  constructor(text) {
    const size = Math.ceil(text.length / CHECKPOINT_UNITS) + 1;
    this.unit = new Int32Array(size);
    this.cp = new Int32Array(size);
    this.shown = new Int32Array(size);
    let [unit, cp, shown, k] = [0, 0, 0, 0];
    while (unit < text.length) {
      for (; k < size && unit >= k * CHECKPOINT_UNITS; k++) this.set(k, unit, cp, shown);
      if (isCrlfAt(text, unit)) [unit, cp, shown] = [unit + 2, cp + 2, shown + 1];
      else if (isPairAt(text, unit)) [unit, cp, shown] = [unit + 2, cp + 1, shown + 2];
      else [unit, cp, shown] = [unit + 1, cp + 1, shown + 1];
    }
    for (; k < size; k++) this.set(k, unit, cp, shown);
    this.total = cp;
  }

  set(k, unit, cp, shown) {
    this.unit[k] = unit;
    this.cp[k] = cp;
    this.shown[k] = shown;
  }

  /** The last checkpoint whose `key` ("unit", "cp" or "shown") is at most `value`. */
  find(key, value) {
    const values = this[key];
    let [low, high] = [0, values.length - 1];
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (values[mid] <= value) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  /** The code point index of UTF-16 index `index` (not inside a pair). */
  cpAt(text, index) {
    const k = this.find("unit", index);
    let [unit, cp] = [this.unit[k], this.cp[k]];
    for (; unit < index; cp++) unit += isPairAt(text, unit) ? 2 : 1;
    return cp;
  }

  /** The UTF-16 index of code point index `cp` (at most the text's length). */
  unitOf(text, cp) {
    const k = this.find("cp", cp);
    let [unit, at] = [this.unit[k], this.cp[k]];
    for (; at < cp; at++) unit += isPairAt(text, unit) ? 2 : 1;
    return unit;
  }
}

/** A change this many units long or longer: the new text's checkpoints are made anew. */
const CARRY_LIMIT = 64 * CHECKPOINT_UNITS;
/** Carried this many times in a row: made anew (the gaps left by changes add up). */
const CARRY_TIMES = 256;

/**
 * The checkpoints of a text made from those of `index`'s text with its units [from, to)
 * changed: the checkpoints at or before `from` stay, those at or after `to` move by
 * (units, code points, display units) = `delta`, those in between are left out.
 */
function carried(index, from, to, delta) {
  const head = index.find("unit", from) + 1;
  let tail = head;
  while (tail < index.unit.length && index.unit[tail] < to) tail++;
  const out = Object.create(Checkpoints.prototype);
  for (const [key, shift] of [["unit", delta[0]], ["cp", delta[1]], ["shown", delta[2]]]) {
    const values = new Int32Array(head + index[key].length - tail);
    values.set(index[key].subarray(0, head));
    for (let k = tail; k < index[key].length; k++) values[head + k - tail] = index[key][k] + shift;
    out[key] = values;
  }
  out.total = index.total + delta[1];
  out.carried = (index.carried || 0) + 1;
  return out;
}

/**
 * `after` is `before` with units [from, toBefore) replaced by after's [from, toAfter): give
 * `after` checkpoints made from those kept for `before`, without a pass over the whole
 * text (a keystroke in a million characters would otherwise make them all again). The
 * region grows by a unit each side, where a pair or a "\r\n" may form or break; its
 * slices are cut at the same places in both texts, so their differences are exact.
 */
export function carry(before, after, from, toBefore, toAfter) {
  if (after.length < INDEXED_FROM || kept.some((entry) => entry.text === after)) return;
  const old = kept.find((entry) => entry.text === before);
  if (!old || Math.max(toBefore, toAfter) - from >= CARRY_LIMIT) return;
  if ((old.index.carried || 0) >= CARRY_TIMES) return;
  const low = Math.max(0, from - 1);
  const highBefore = Math.min(before.length, toBefore + 1);
  const highAfter = highBefore + toAfter - toBefore;
  const [cpBefore, shownBefore] = walk(before, low, highBefore);
  const [cpAfter, shownAfter] = walk(after, low, highAfter);
  const delta = [highAfter - highBefore, cpAfter - cpBefore, shownAfter - shownBefore];
  kept.unshift({ text: after, index: carried(old.index, low, highBefore, delta) });
  kept.length = Math.min(kept.length, KEPT);
}

/** Code points and display units of `text`'s units [from, to), walked from `from`. */
function walk(text, from, to) {
  let [unit, cp, shown] = [from, 0, 0];
  while (unit < to) {
    const two = unit + 1 < to; // both units of a pair or a "\r\n" inside the slice
    if (two && isCrlfAt(text, unit)) [unit, cp, shown] = [unit + 2, cp + 2, shown + 1];
    else if (two && isPairAt(text, unit)) [unit, cp, shown] = [unit + 2, cp + 1, shown + 2];
    else [unit, cp, shown] = [unit + 1, cp + 1, shown + 1];
  }
  return [cp, shown];
}

const kept = []; // [{text, index}], the latest first

/** The checkpoints of `text`, made once for each of the last KEPT texts asked about. */
function checkpoints(text) {
  let at = kept.findIndex((entry) => entry.text === text);
  if (at < 0) {
    kept.unshift({ text, index: new Checkpoints(text) });
    kept.length = Math.min(kept.length, KEPT);
    at = 0;
  }
  return kept[at].index;
}

/** Where a walk over `text` to `key` = `value` starts: [unit, cp, shown]. */
function start(text, key, value) {
  if (text.length < INDEXED_FROM) return [0, 0, 0];
  const index = checkpoints(text);
  const k = index.find(key, value);
  return [index.unit[k], index.cp[k], index.shown[k]];
}

/** The 1-based line of code point position `cp` in `text` (0 when `cp` is not a number). */
export function lineOf(text, cp) {
  if (typeof cp !== "number") return 0;
  const upTo = advance(text, 0, Math.min(cp, cpLength(text)));
  let line = 1;
  for (let i = 0; i < upTo; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
