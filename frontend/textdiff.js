// Where two strings differ: one replaced region, in UTF-16 units, that never cuts a
// surrogate pair. The textarea diffs what it showed against what the user made of it; the
// OT algebra diffs two texts into an op. Linear, but runs of equal text are compared
// natively 4,096 units at a time (a keystroke in a million characters compares them all).

import { splitsPair } from "./positions.js";

/** Units compared at once (a native string comparison) before comparing one by one. */
const STRIDE = 4096;

function commonPrefix(a, b, limit) {
  let n = 0;
  while (n + STRIDE <= limit && a.slice(n, n + STRIDE) === b.slice(n, n + STRIDE)) n += STRIDE;
  while (n < limit && a.charCodeAt(n) === b.charCodeAt(n)) n++;
  return n;
}

function commonSuffix(a, b, limit) {
  let n = 0;
  const tail = (s, from) => s.slice(s.length - from - STRIDE, s.length - from);
  while (n + STRIDE <= limit && tail(a, n) === tail(b, n)) n += STRIDE;
  while (n < limit && a.charCodeAt(a.length - 1 - n) === b.charCodeAt(b.length - 1 - n)) n++;
  return n;
}

/** Does a region starting at `start` and leaving `suffix` units untouched cut a pair? */
function cutsPair(before, after, start, suffix) {
  return (
    splitsPair(before, start) ||
    splitsPair(after, start) ||
    splitsPair(before, before.length - suffix) ||
    splitsPair(after, after.length - suffix)
  );
}

/**
 * The start of a pure insertion or deletion inside a run of equal characters, where any
 * start in [low, high] gives the same text: the one ending at `caret` (the caret in `after`
 * right after the edit), or `high` (the longest common prefix) without a caret.
 */
function startInRun(before, after, low, high, caret) {
  if (caret === undefined) return high;
  const grown = after.length - before.length;
  const wanted = Math.max(low, Math.min(high, grown > 0 ? caret - grown : caret));
  const minLength = Math.min(before.length, after.length);
  const whole = (at) => at >= low && at <= high && !cutsPair(before, after, at, minLength - at);
  return [wanted, wanted - 1, wanted + 1].find(whole) ?? wanted;
}

/**
 * Where `before` and `after` differ, in UTF-16 units: `after` is `before` with the units
 * [start, endBefore) replaced by after's [start, endAfter). `caret` (optional, the caret
 * in `after`) places an edit inside a run of equal characters, where the text alone cannot
 * tell. Never cuts a surrogate pair. Linear time.
 */
export function diffText(before, after, caret) {
  const minLength = Math.min(before.length, after.length);
  const prefix = commonPrefix(before, after, minLength);
  let suffix = commonSuffix(before, after, minLength);
  let start = prefix;
  if (prefix + suffix >= minLength) {
    start = startInRun(before, after, minLength - suffix, prefix, caret);
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
