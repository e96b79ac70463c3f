// The live word and character count (frontend/counts.js): characters as a person sees
// them, CJK characters as words, and fast on a million characters.

import assert from "node:assert/strict";
import { test } from "node:test";

import { countText } from "../../frontend/counts.js";

const cases = [
  ["", 0, 0],
  ["hello world", 2, 11],
  ["  hello \n\t world  ", 2, 18],
  ["héllo e\u0301te", 2, 9], // a combining accent is part of its letter
  ["👩🏽‍💻 codes", 2, 7], // a ZWJ sequence with a skin tone is one character
  ["👍🏽👍", 1, 2],
  ["🇫🇷🇩🇪 flags", 2, 8],
  ["中文 text", 3, 7], // each ideograph is a word
  ["日本語のテキスト", 8, 8],
  ["한국어 단어", 5, 6],
  ["a\r\nb", 2, 4],
  ["\ud800 lone", 2, 6], // a lone surrogate counts, and breaks nothing
];

for (const [text, words, characters] of cases) {
  test(`countText(${JSON.stringify(text)})`, () => {
    assert.deepEqual(countText(text), { words, characters });
  });
}

test("a million characters are counted in one pass", () => {
  const line = 'héllo 😀 中文 👍🏽 e\u0301 "q" word another\n';
  const text = line.repeat(Math.ceil(1e6 / line.length)).slice(0, 1e6);
  const one = countText(line);
  const start = performance.now();
  const { words, characters } = countText(text);
  const took = performance.now() - start;
  const lines = Math.floor(1e6 / line.length);
  assert.ok(words >= one.words * lines && characters >= one.characters * lines);
  assert.ok(took < 500, `${took} ms`); // a few ms on a quiet machine
});
