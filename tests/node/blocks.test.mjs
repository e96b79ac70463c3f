// The block view's model (frontend/blocks.js): cutting a display text into blocks of whole
// lines, finding a position's block, replacing a region (the blocks always join back to
// the text), and the display change an op makes, "\r\n" included, checked against
// display() of the texts before and after.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Blocks, displayChange, splitBlocks } from "../../frontend/blocks.js";
import { cpLength, display } from "../../frontend/positions.js";
import { applyOp, replaceOp } from "../../frontend/textops.js";
import { below } from "./seeded.mjs";

const PIECES = [
  ..."a é 中文 😀 👩‍👩‍👧 👋🏽 e\u0301".split(" "),
  ...["\n", "\n", "\r\n", "\r", " "],
];

function randomText(next, pieces) {
  let text = "";
  for (let k = 0; k < pieces; k++) text += PIECES[next(PIECES.length)];
  return text;
}

/** The blocks are consistent: they join to `text`, and every start is where it says. */
function check(blocks, text) {
  assert.equal(blocks.text, text);
  assert.equal(blocks.length, text.length);
  let at = 0;
  blocks.bodies.forEach((body, k) => {
    assert.equal(blocks.starts[k], at);
    assert.equal(text.slice(at, at + body.length), body);
    at += body.length + 1;
  });
}

test("a text is cut after every `lines` lines; a trailing newline leaves an empty block", () => {
  assert.deepEqual(splitBlocks("", 2), [""]);
  assert.deepEqual(splitBlocks("a\nb\nc", 2), ["a\nb", "c"]);
  assert.deepEqual(splitBlocks("a\nb\n", 2), ["a\nb", ""]);
  assert.deepEqual(splitBlocks("a\n", 2), ["a\n"]);
  assert.deepEqual(splitBlocks("\n\n\n\n", 2), ["\n", "\n", ""]);
  assert.deepEqual(splitBlocks("😀\n中\n👩‍👩‍👧", 1), ["😀", "中", "👩‍👩‍👧"]);
  const text = Array.from({ length: 120 }, (_, k) => `line ${k} 中文 😀`).join("\n");
  const bodies = splitBlocks(text);
  assert.deepEqual(bodies.map((b) => b.split("\n").length), [50, 50, 20]);
  assert.equal(bodies.join("\n"), text);
});

test("a position is found in its block, the boundary's line break starting the next", () => {
  const blocks = new Blocks("ab\ncd\nef\n", 2); // ["ab\ncd", "ef\n"]
  assert.deepEqual(blocks.bodies, ["ab\ncd", "ef\n"]);
  assert.deepEqual(blocks.locate(0), [0, 0]);
  assert.deepEqual(blocks.locate(5), [0, 5]); // after "cd"
  assert.deepEqual(blocks.locate(6), [1, 0]); // before "ef"
  assert.deepEqual(blocks.locate(9), [1, 3]); // the end
  assert.deepEqual(blocks.locate(99), [1, 3]);
  assert.equal(blocks.slice(4, 8), "d\nef");
  assert.equal(blocks.slice(1, 9), "b\ncd\nef\n");
});

test("a change inside one block rewrites only it; joins and splits keep the text", () => {
  const text = Array.from({ length: 10 }, (_, k) => `${k}😀`).join("\n");
  const blocks = new Blocks(text, 2);
  assert.equal(blocks.bodies.length, 5);
  let now = text;
  const edit = (from, to, insert) => {
    now = now.slice(0, from) + insert + now.slice(to);
    const splice = blocks.replace(from, to, insert);
    check(blocks, now);
    return splice;
  };
  assert.deepEqual(edit(4, 4, "中"), { first: 0, removed: 1, bodies: ["0😀\n中1😀"] });
  const joined = edit(5, 18, ""); // from inside block 0 into block 2
  assert.equal(joined.first, 0);
  assert.equal(joined.removed, 3);
  assert.equal(joined.bodies.length, 1);
  const split = edit(0, 0, "x\n".repeat(9)); // more than twice `lines`: cut again
  assert.ok(split.bodies.length > 1);
});

test("random replaces keep the blocks equal to the text (emoji, ZWJ, CJK, marks, newlines)", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const next = below(seed);
    let text = display(randomText(next, next(60)));
    const blocks = new Blocks(text, 1 + next(4));
    check(blocks, text);
    for (let step = 0; step < 20; step++) {
      const from = next(text.length + 1);
      const to = from + next(text.length - from + 1);
      const insert = display(randomText(next, next(8)));
      blocks.replace(from, to, insert);
      text = text.slice(0, from) + insert + text.slice(to);
      check(blocks, text);
    }
  }
});

test("an op's display change turns display(before) into display(after)", () => {
  for (let seed = 1; seed <= 400; seed++) {
    const next = below(seed);
    const before = randomText(next, next(40));
    const length = cpLength(before);
    const from = next(length + 1);
    const to = from + next(length - from + 1);
    const op = replaceOp(length, from, to, randomText(next, next(4)));
    const after = applyOp(op, before);
    const change = displayChange(before, after, op);
    if (change === null) {
      assert.equal(after, before);
      continue;
    }
    const shown = display(before);
    const made = shown.slice(0, change.from) + change.insert + shown.slice(change.to);
    assert.equal(made, display(after), `seed ${seed}`);
  }
});

test("a '\\n' typed after a lone '\\r' makes one line break of two: the change covers both", () => {
  const before = "a\rb";
  const after = "a\r\nb";
  const change = displayChange(before, after, [2, "\n", 1]);
  assert.deepEqual(change, { from: 1, to: 2, insert: "\n" });
  const split = displayChange("a\r\nb", "a\rx\nb", [2, "x", 2]);
  assert.deepEqual(split, { from: 1, to: 2, insert: "\nx\n" });
});
