// Big changes in pieces (frontend/split.js): every piece's message fits the limit, the
// pieces composed are the op, and no piece ends inside a surrogate pair or a "\r\n".

import assert from "node:assert/strict";
import { test } from "node:test";

import { cpLength } from "../../frontend/positions.js";
import { jsonStringBytes, MAX_PIECE_COMPONENTS, restOfChange, splitOp } from "../../frontend/split.js";
import { applyOp, compose, normalize, replaceOp } from "../../frontend/textops.js";

const utf8 = (s) => Buffer.byteLength(s, "utf8");
const message = (op) => JSON.stringify({ type: "op", seq: 123456, rev: 987654321, op });

/** Every piece of `op` in order, each checked to fit `limit`. */
function allPieces(op, limit) {
  const pieces = [];
  let rest = op;
  for (;;) {
    const parts = splitOp(rest, limit);
    if (parts === null) break;
    pieces.push(parts[0]);
    rest = parts[1];
    assert.ok(pieces.length < 100_000, "the split makes progress");
  }
  pieces.push(rest);
  for (const piece of pieces) {
    assert.ok(utf8(message(piece)) <= limit, `a piece of ${utf8(message(piece))} bytes`);
    assert.ok(piece.length <= MAX_PIECE_COMPONENTS);
  }
  return pieces;
}

function checkInserts(pieces) {
  const inserts = pieces.map((piece) => piece.filter((c) => typeof c === "string"));
  for (let i = 0; i < inserts.length; i++) {
    for (const s of inserts[i]) {
      assert.ok(!/[\ud800-\udbff]$/.test(s), "ends with a high surrogate");
      assert.ok(!/^[\udc00-\udfff]/.test(s), "starts with a low surrogate");
    }
  }
  for (let i = 0; i + 1 < inserts.length; i++) {
    const end = inserts[i].at(-1);
    const start = inserts[i + 1][0];
    if (end && start) assert.ok(!(end.endsWith("\r") && start.startsWith("\n")), "cuts a \\r\\n");
  }
}

test("JSON string sizes are exact", () => {
  for (const s of ["", "abc", "é中😀", '"\\', "\n\t\r\b\f", "\u0001\u001f", "\ud800x", "👨‍👩‍👧"]) {
    assert.equal(jsonStringBytes(s), utf8(JSON.stringify(s)), JSON.stringify(s));
  }
});

test("an op that fits is not split", () => {
  assert.equal(splitOp([3, "hello", -2, 7], 65536), null);
});

test("a 300,000-character paste in a 64 KiB limit: pieces that fit, in order", () => {
  const line = "héllo 😀 中文 👍🏽 e\u0301 🇫🇷 \"quoted\" \\ tab\t\r\n";
  const paste = line.repeat(Math.ceil(300_000 / line.length)).slice(0, 300_000);
  const text = "head 😀 tail";
  const op = replaceOp(cpLength(text), 5, 7, paste); // replaces "😀 "
  const pieces = allPieces(op, 65536);
  assert.ok(pieces.length >= 5 && pieces.length <= 12, `${pieces.length} pieces`);
  checkInserts(pieces);
  let current = text;
  for (const piece of pieces) current = applyOp(piece, current);
  assert.equal(current, applyOp(op, text));
  assert.deepEqual(normalize(pieces.reduce(compose)), normalize(op));
});

test("random ops and limits: compose(head, rest) is the op, every piece fits", () => {
  const atoms = ["a", "😀", "中", "\r\n", "\n", '"', "\\", "\u0001", "👍🏽", "e\u0301"];
  let seed = 5;
  const random = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 400; round++) {
    const limit = 300 + random(700);
    let op = [];
    let base = "";
    for (let k = random(40); k >= 0; k--) {
      const kind = random(3);
      if (kind === 0) {
        const s = "xyz😀".repeat(1 + random(5));
        op.push(cpLength(s));
        base += s;
      } else if (kind === 1) {
        op.push(Array.from({ length: random(300) }, () => atoms[random(atoms.length)]).join(""));
      } else {
        const s = "del中".repeat(1 + random(3));
        op.push(-cpLength(s));
        base += s;
      }
    }
    op = normalize(op);
    const pieces = allPieces(op, limit);
    checkInserts(pieces);
    let current = base;
    for (const piece of pieces) current = applyOp(piece, current);
    assert.equal(current, applyOp(op, base), `round ${round}`);
  }
});

test("an op of many components is cut below the server's component limit", () => {
  const op = [];
  for (let i = 0; i < 3000; i++) op.push(1, "x");
  const pieces = allPieces(normalize(op), 8 * 1024 * 1024);
  assert.ok(pieces.length >= 6);
  let current = "a".repeat(3000);
  for (const piece of pieces) current = applyOp(piece, current);
  assert.equal(current, "ax".repeat(3000));
});

test("restOfChange counts the UTF-8 bytes and the parts of what is still to send", () => {
  const text = "héllo 😀 中文 👍🏽 e\u0301 \"q\" \\ \t\n".repeat(500);
  const rest = [3, text, -2, 4, "x"];
  const { bytes, parts } = restOfChange(rest, 4096);
  assert.equal(bytes, utf8(text) + 1);
  const pieces = allPieces(rest, 4096).length;
  assert.ok(parts >= 3 + pieces - 1, `${parts} parts for ${pieces} pieces`);
});
