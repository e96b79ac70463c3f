import assert from "node:assert/strict";
import { test } from "node:test";

import { onceAFrame } from "../../frontend/frame.js";

test("a redraw asked for many times in a frame runs once, and again next frame", () => {
  const frames = [];
  globalThis.requestAnimationFrame = (callback) => frames.push(callback);
  let draws = 0;
  const render = onceAFrame(() => draws++);
  render();
  render();
  render();
  assert.equal(frames.length, 1);
  frames.shift()();
  assert.equal(draws, 1);
  render();
  assert.equal(frames.length, 1);
  frames.shift()();
  assert.equal(draws, 2);
});
