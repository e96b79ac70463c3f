// The position conversions in long texts (where positions.js starts its walks from
// checkpoints) against a plain model of the three units, made here from the code points:
// every position of texts with emoji, CJK, "\r\n", lone "\r" and lone surrogates, pairs
// and "\r\n" across the checkpoints' boundaries, and texts changing one key at a time.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  advance,
  carry,
  cpLength,
  cpToDisplay,
  cpToUtf16,
  display,
  displayToCp,
  utf16ToCp,
} from "../../frontend/positions.js";
import { random as seeded } from "./seeded.mjs";

const PIECES = ["a", "é", "中", "😀", "👩‍👩‍👧", "\r\n", "\r", "\n", "e\u0301", "\ud800"];

function randomText(random, units) {
  let text = "";
  while (text.length < units) text += PIECES[Math.floor(random() * PIECES.length)];
  return text;
}

/**
 * The model: for each code point position, its UTF-16 and display positions, from the
 * text split into code points (a "\r\n" shows as one unit, at its "\r").
 */
function model(text) {
  const points = Array.from(text);
  const utf16 = [0];
  const shown = [0];
  for (let i = 0; i < points.length; i++) {
    const crlfTail = points[i] === "\n" && points[i - 1] === "\r";
    utf16.push(utf16.at(-1) + points[i].length);
    shown.push(shown.at(-1) + (crlfTail ? 0 : points[i].length));
  }
  return { utf16, shown };
}

function checkEverywhere(text) {
  const { utf16, shown } = model(text);
  const length = utf16.length - 1;
  assert.equal(cpLength(text), length);
  assert.equal(display(text).length, shown[length]);
  for (let cp = 0; cp <= length; cp++) {
    assert.equal(cpToUtf16(text, cp), utf16[cp], `cpToUtf16 ${cp}`);
    assert.equal(utf16ToCp(text, utf16[cp]), cp, `utf16ToCp ${utf16[cp]}`);
    const crlfMiddle = text[utf16[cp] - 1] === "\r" && text[utf16[cp]] === "\n";
    const expected = crlfMiddle ? shown[cp - 1] : shown[cp];
    assert.equal(cpToDisplay(text, cp), expected, `cpToDisplay ${cp}`);
    if (!crlfMiddle) assert.equal(displayToCp(text, shown[cp]), cp, `displayToCp ${cp}`);
  }
  assert.throws(() => cpToUtf16(text, length + 1), RangeError);
}

test("every position of long mixed texts", () => {
  const random = seeded(23);
  for (let k = 0; k < 4; k++) checkEverywhere(randomText(random, 20_000 + k * 1_111));
});

test("pairs and line breaks across the checkpoints' boundaries", () => {
  for (const at of [1023, 1024, 1025]) {
    const head = "a".repeat(at - 1);
    for (const piece of ["😀", "\r\n", "\r", "中"]) {
      checkEverywhere(head + piece + "b".repeat(9000));
    }
  }
});

test("a text changing one key at a time keeps its answers right", () => {
  const random = seeded(7);
  let text = randomText(random, 12_000);
  for (let k = 0; k < 60; k++) {
    const cp = Math.floor(random() * cpLength(text));
    const unit = cpToUtf16(text, cp);
    const piece = PIECES[Math.floor(random() * PIECES.length)];
    text = text.slice(0, unit) + piece + text.slice(unit);
    const { utf16 } = model(text);
    assert.equal(cpLength(text), utf16.length - 1);
    const probe = Math.floor(random() * utf16.length);
    assert.equal(cpToUtf16(text, probe), utf16[probe]);
    assert.equal(advance(text, utf16[probe], utf16.length - 1 - probe), text.length);
  }
});

test("checkpoints carried through changes answer as if made anew", () => {
  const random = seeded(11);
  for (const size of [9_000, 20_000]) {
    let text = randomText(random, size);
    cpLength(text); // its checkpoints, made once
    for (let k = 0; k < 60; k++) {
      const length = cpLength(text);
      const cp = Math.floor(random() * (length + 1));
      const from = cpToUtf16(text, cp);
      const to = cpToUtf16(text, Math.min(length, cp + Math.floor(random() * 4)));
      let piece = "";
      for (let n = Math.floor(random() * 3); n > 0; n--) {
        piece += PIECES[Math.floor(random() * PIECES.length)];
      }
      const after = text.slice(0, from) + piece + text.slice(to);
      carry(text, after, from, to, from + piece.length);
      text = after;
      if (k % 20 === 19) checkEverywhere(text);
    }
  }
});

test("a line break made or split at a change's edge, through carried checkpoints", () => {
  const head = "😀".repeat(2000) + "\r";
  const before = head + "\n" + "中".repeat(9000);
  cpLength(before);
  const split = head + "x\n" + "中".repeat(9000); // "\r" | "x" | "\n"
  carry(before, split, head.length, head.length, head.length + 1);
  checkEverywhere(split);
  const joined = head + "\n" + "中".repeat(9000); // and made again
  carry(split, joined, head.length, head.length + 1, head.length);
  checkEverywhere(joined);
});
