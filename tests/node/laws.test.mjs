// The laws of the page's OT algebra on random Unicode edits, from a seeded PRNG (a failure
// names its seed and iteration, so it can be replayed).

import assert from "node:assert/strict";
import { test } from "node:test";

import { cpLength } from "../../frontend/positions.js";
import {
  applyOp,
  compose,
  diffOp,
  invert,
  normalize,
  replaceOp,
  transform,
} from "../../frontend/textops.js";
import { below } from "./seeded.mjs";

const SEED = 1234;
const ROUNDS = 3000;
const ATOMS = ["a", "b", "\n", "\r\n", "\r", "é", "e\u0301", "中", "😀", "👨‍👩‍👧", "👍🏽", "🇫🇷"];

function word(random, most) {
  return Array.from({ length: random.below(most + 1) }, () => ATOMS[random.below(ATOMS.length)]).join("");
}

/** An op of one to three random replaces on `text`, composed. */
function randomEdit(random, text) {
  let op = [cpLength(text)];
  let current = text;
  for (let k = 1 + random.below(3); k > 0; k--) {
    const length = cpLength(current);
    const from = random.below(length + 1);
    const to = from + random.below(length - from + 1);
    const step = replaceOp(length, from, to, word(random, 3));
    op = compose(op, step);
    current = applyOp(step, current);
  }
  return normalize(op);
}

/** Runs `check(random, text, round)` ROUNDS times on random texts. */
function forRandomTexts(check) {
  const random = { below: below(SEED) };
  for (let round = 0; round < ROUNDS; round++) {
    check(random, word(random, 8), `seed ${SEED}, round ${round}`);
  }
}

test("compose: applying a then b is applying compose(a, b)", () => {
  forRandomTexts((random, text, where) => {
    const a = randomEdit(random, text);
    const middle = applyOp(a, text);
    const b = randomEdit(random, middle);
    assert.equal(applyOp(compose(a, b), text), applyOp(b, middle), where);
  });
});

test("transform: both orders converge (TP1), whichever goes first", () => {
  forRandomTexts((random, text, where) => {
    const a = randomEdit(random, text);
    const b = randomEdit(random, text);
    const [a2, b2] = transform(a, b);
    assert.equal(applyOp(b2, applyOp(a, text)), applyOp(a2, applyOp(b, text)), where);
  });
});

test("transform then compose: a + b' equals b + a'", () => {
  forRandomTexts((random, text, where) => {
    const a = randomEdit(random, text);
    const b = randomEdit(random, text);
    const [a2, b2] = transform(a, b);
    assert.deepEqual(normalize(compose(a, b2)), normalize(compose(b, a2)), where);
  });
});

test("invert undoes, diff rebuilds", () => {
  forRandomTexts((random, text, where) => {
    const op = randomEdit(random, text);
    const after = applyOp(op, text);
    assert.equal(applyOp(invert(op, text), after), text, where);
    assert.equal(applyOp(diffOp(text, after), text), after, where);
    const caret = random.below(cpLength(after) + 1);
    assert.equal(applyOp(diffOp(text, after, caret), text), after, where);
  });
});
