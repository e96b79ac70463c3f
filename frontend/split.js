// Big changes in pieces that each fit the server's message limit: an op whose message
// would be too large is cut into a head that fits and the rest, with compose(head, rest)
// equal to the op. The OT client sends the head as its one op in flight and keeps the rest
// as its buffer, so the pieces go out in order, one at a time, each acked once. Inserted
// text is never cut inside a surrogate pair or between the "\r" and "\n" of a "\r\n".

import { AwaitingWithBuffer } from "./otstates.js";
import { cpLength } from "./positions.js";
import { compose, normalize } from "./textops.js";

/** What the page assumes when the server does not say its limit (welcome). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
/** Room kept for the message around the op: {"type":"op","seq":…,"rev":…,"op":[…]}. */
const ENVELOPE_BYTES = 256;
/** Fewer components per piece than the server's default limit (1,000). */
export const MAX_PIECE_COMPONENTS = 500;

/** UTF-8 bytes that UTF-16 unit `unit` (code point `cp`) takes inside a JSON string. */
function jsonCost(unit, cp) {
  if (unit === 0x22 || unit === 0x5c) return 2; // \" and \\
  if (unit < 0x20) return unit === 8 || unit === 9 || unit === 10 || unit === 12 || unit === 13 ? 2 : 6;
  if (cp > 0xffff) return 4;
  if (unit >= 0xd800 && unit <= 0xdfff) return 6; // a lone surrogate: \udXXX
  if (unit < 0x80) return 1;
  return unit < 0x800 ? 2 : 3;
}

/** The UTF-8 bytes of `s` as a JSON string, quotes included. */
export function jsonStringBytes(s) {
  let bytes = 2;
  for (let i = 0; i < s.length; i++) {
    const cp = s.codePointAt(i);
    bytes += jsonCost(s.charCodeAt(i), cp);
    if (cp > 0xffff) i++;
  }
  return bytes;
}

/**
 * The longest prefix of `s` (UTF-16 units) costing at most `budget` JSON bytes, ending
 * neither inside a surrogate pair nor between "\r" and "\n": [units, code points].
 */
function fittingPrefix(s, budget) {
  let bytes = 2;
  let units = 0;
  let cps = 0;
  while (units < s.length) {
    const cp = s.codePointAt(units);
    const cost = jsonCost(s.charCodeAt(units), cp);
    if (bytes + cost > budget) break;
    bytes += cost;
    units += cp > 0xffff ? 2 : 1;
    cps += 1;
  }
  if (units > 1 && units < s.length && s[units - 1] === "\r" && s[units] === "\n") {
    units -= 1;
    cps -= 1;
  }
  return [units, cps];
}

const componentBytes = (c) => (typeof c === "string" ? jsonStringBytes(c) : String(c).length) + 1;

/**
 * `op` as [head, rest] with compose(head, rest) = op and the head's message at most
 * `maxBytes` bytes (and at most MAX_PIECE_COMPONENTS components); null when `op` fits.
 */
export function splitOp(op, maxBytes, maxComponents = MAX_PIECE_COMPONENTS) {
  const budget = Math.max(64, maxBytes - ENVELOPE_BYTES);
  let total = 2;
  for (const c of op) total += componentBytes(c);
  if (total <= budget && op.length <= maxComponents) return null;

  const head = [];
  let used = 2 + 16; // the brackets and the head's closing retain
  let consumed = 0; // base code points the head covers
  let produced = 0; // code points the head's part makes
  let index = 0;
  for (; index < op.length && head.length < maxComponents - 1; index++) {
    const c = op[index];
    const cost = componentBytes(c);
    if (used + cost <= budget) {
      head.push(c);
      used += cost;
      if (typeof c === "string") produced += cpLength(c);
      else if (c > 0) {
        consumed += c;
        produced += c;
      } else consumed -= c;
      continue;
    }
    if (typeof c === "string") {
      const [units, cps] = fittingPrefix(c, budget - used - 1);
      const take = units > 0 ? [units, cps] : head.length === 0 ? firstCodePoint(c) : [0, 0];
      if (take[0] > 0) {
        head.push(c.slice(0, take[0]));
        produced += take[1];
        const restOfOp = [c.slice(take[0]), ...op.slice(index + 1)];
        return pieces(op, head, consumed, produced, restOfOp);
      }
    }
    break;
  }
  if (index === 0) {
    // A number alone over the budget cannot happen; take it anyway rather than loop.
    const c = op[0];
    head.push(c);
    if (c > 0) produced += c;
    consumed += Math.abs(c);
    index = 1;
  }
  return pieces(op, head, consumed, produced, op.slice(index));
}

function firstCodePoint(s) {
  const units = s.codePointAt(0) > 0xffff ? 2 : 1;
  return [units, 1];
}

function pieces(op, head, consumed, produced, restOfOp) {
  let base = 0;
  for (const c of op) if (typeof c === "number") base += Math.abs(c);
  return [normalize([...head, base - consumed]), normalize([produced, ...restOfOp])];
}

function insertedLength(op) {
  let n = 0;
  for (const c of op || []) if (typeof c === "string") n += c.length;
  return n;
}

/** UTF-16 units inserted by what `state` has pending (how much of a paste is to send). */
export function pendingLength(state) {
  return insertedLength(state.inflight && state.inflight.op) + insertedLength(state.buffer);
}

/**
 * `state` (otstates.js) with an in-flight op that fits `maxBytes`: if it does not, the
 * head goes in flight and the rest goes before the buffer. The same state if it fits.
 */
export function fitInFlight(state, maxBytes) {
  const parts = splitOp(state.inflight.op, maxBytes);
  if (parts === null) return state;
  const [head, rest] = parts;
  const buffer = state.buffer ? compose(rest, state.buffer) : rest;
  return new AwaitingWithBuffer({ seq: state.inflight.seq, op: head }, buffer);
}

/** The UTF-8 bytes of `s`. */
function utf8Bytes(s) {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    bytes += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 2 : 3;
  }
  return bytes; // a surrogate pair: 2 + 2 = 4, as UTF-8 encodes it
}

/**
 * What the pieces still to send of a change (`rest`, an op) carry, for the op message's
 * `more` (docs/text-protocol.md): the UTF-8 bytes they insert and their insert and delete
 * components, counting one more for each cut `maxBytes` messages will make.
 */
export function restOfChange(rest, maxBytes) {
  let bytes = 0;
  let json = 0;
  let parts = 0;
  for (const c of rest) {
    if (typeof c === "string") {
      bytes += utf8Bytes(c);
      json += jsonStringBytes(c);
      parts += 1;
    } else {
      json += String(c).length + 1;
      if (c < 0) parts += 1;
    }
  }
  const budget = Math.max(64, maxBytes - ENVELOPE_BYTES);
  parts += Math.ceil(json / budget) + Math.ceil(rest.length / MAX_PIECE_COMPONENTS);
  return { bytes, parts };
}
