import assert from "node:assert/strict";
import { test } from "node:test";

import { onceAFrame, onceAfterPaint } from "../../frontend/frame.js";

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

test("work asked for many times before a paint runs once, after the frame is drawn", () => {
  const frames = [];
  const timers = [];
  globalThis.requestAnimationFrame = (callback) => frames.push(callback);
  globalThis.setTimeout = (callback) => timers.push(callback);
  let runs = 0;
  const read = onceAfterPaint(() => runs++);
  read();
  read();
  assert.equal(frames.length, 1);
  frames.shift()(); // the frame: the work waits for the task after it
  assert.equal(runs, 0);
  read();
  assert.equal(frames.length, 0);
  timers.shift()();
  assert.equal(runs, 1);
  read();
  assert.equal(frames.length, 1);
});
