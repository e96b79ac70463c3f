// Positions in the page's three units, and the only place that converts between them:
//
// - code points: ops and presence on the wire (docs/text-protocol.md);
// - UTF-16 units: JavaScript string indices;
// - display units: UTF-16 indices in the textarea's value, where every "\r\n" and lone "\r"
//   of the document shows as one "\n".

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;
const isLow = (unit) => unit >= 0xdc00 && unit <= 0xdfff;

/** Does the code point at UTF-16 index `i` of `s` take two units (a surrogate pair)? */
function isPairAt(s, i) {
  return isHigh(s.charCodeAt(i)) && isLow(s.charCodeAt(i + 1));
}

/** The number of code points in `s`. */
export function cpLength(s) {
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
  let shown = 0;
  let unit = 0;
  let cp = 0;
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
  let shown = 0;
  let unit = 0;
  for (let k = 0; k < cp && unit < text.length; k++) {
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

/** The 1-based line of code point position `cp` in `text` (0 when `cp` is not a number). */
export function lineOf(text, cp) {
  if (typeof cp !== "number") return 0;
  const upTo = advance(text, 0, Math.min(cp, cpLength(text)));
  let line = 1;
  for (let i = 0; i < upTo; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
