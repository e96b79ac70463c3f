// The page's text operations and position conversions against the shared vectors, whose
// answers come from collab/text/ops.py (tests/data/make_textops_vectors.py).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  cpToDisplay,
  cpToUtf16,
  display,
  displayToCp,
  utf16ToCp,
} from "../../frontend/positions.js";
import {
  applyOp,
  compose,
  diffOp,
  invert,
  normalize,
  transform,
  transformPosition,
} from "../../frontend/textops.js";

const vectors = JSON.parse(
  readFileSync(new URL("../data/textops-vectors.json", import.meta.url), "utf8"),
);

/** One test per case, named by its index and its input (the answer is in the message). */
function eachCase(section, check) {
  describe(section, () => {
    vectors[section].forEach((item, index) => {
      test(`${index}: ${JSON.stringify(item).slice(0, 80)}`, () => check(item));
    });
  });
}

eachCase("apply", ({ text, op, result }) => {
  assert.equal(applyOp(op, text), result);
});

eachCase("compose", ({ a, b, result }) => {
  assert.deepEqual(compose(a, b), result);
});

// The page's transform puts the first argument's inserts first: the other priority is the
// same call with the arguments and the results swapped.
eachCase("transform", ({ a, b, a_first: aFirst, result }) => {
  const got = aFirst ? transform(a, b) : transform(b, a).reverse();
  assert.deepEqual(got, result);
});

eachCase("transform_position", ({ pos, op, result }) => {
  assert.equal(transformPosition(pos, op), result);
});

eachCase("normalize", ({ op, result }) => {
  assert.deepEqual(normalize(op), result);
});

eachCase("invert", ({ text, op, result }) => {
  assert.deepEqual(invert(op, text), result);
});

eachCase("diff", ({ old, new: after, caret, result }) => {
  assert.deepEqual(diffOp(old, after, caret ?? undefined), result);
});

eachCase("positions", ({ text, cp, utf16, display: shown, display_to_cp: back }) => {
  assert.equal(cpToUtf16(text, cp), utf16);
  assert.equal(utf16ToCp(text, utf16), cp);
  assert.equal(cpToDisplay(text, cp), shown);
  assert.equal(displayToCp(text, shown), back);
  assert.ok(shown <= display(text).length);
});
