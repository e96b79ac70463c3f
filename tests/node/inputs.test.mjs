// What the block view reads from input events (frontend/inputs.js): the text a beforeinput
// inserts (plain text only, "\r\n" and "\r" shown as "\n", formatting refused), the undo
// shortcuts, and the selection showing what an undo changed, in code points.

import assert from "node:assert/strict";
import { test } from "node:test";

import { changedRange, historyShortcut, insertedText, selectAll } from "../../frontend/inputs.js";

const paste = (text) => ({
  inputType: "insertFromPaste",
  data: null,
  dataTransfer: {
    getData: (type) => (type === "text/plain" ? text : "<b>rich</b>"),
  },
});

test("an input's inserted text: typed, a line break, pasted as plain text, or nothing", () => {
  assert.equal(insertedText({ inputType: "insertText", data: "👩‍👩‍👧" }), "👩‍👩‍👧");
  assert.equal(insertedText({ inputType: "insertLineBreak", data: null }), "\n");
  assert.equal(insertedText({ inputType: "insertParagraph", data: null }), "\n");
  assert.equal(insertedText(paste("中文\r\ne\u0301\rx")), "中文\ne\u0301\nx");
  assert.equal(insertedText({ inputType: "deleteWordBackward", data: null }), "");
  assert.equal(insertedText({ inputType: "deleteByCut", data: null }), "");
  assert.equal(insertedText({ inputType: "formatBold", data: null }), null);
  assert.equal(insertedText({ inputType: "insertText", data: null }), null);
});

test("the history and select-all shortcuts", () => {
  const key = (key, more = {}) => ({ key, ctrlKey: true, ...more });
  assert.equal(historyShortcut(key("z")), "undo");
  assert.equal(historyShortcut(key("Z", { shiftKey: true })), "redo");
  assert.equal(historyShortcut(key("y")), "redo");
  assert.equal(historyShortcut({ key: "z", metaKey: true }), "undo");
  assert.equal(historyShortcut(key("z", { isComposing: true })), null);
  assert.equal(historyShortcut({ key: "z" }), null);
  assert.equal(selectAll(key("a")), true);
  assert.equal(selectAll({ key: "A", metaKey: true }), true);
  assert.equal(selectAll({ key: "a" }), false);
});

test("what an op changed, in code points: what it inserted, or a caret where it deleted", () => {
  assert.deepEqual(changedRange([2, "😀中", 3]), [2, 4]);
  assert.deepEqual(changedRange([2, -3, 1]), [2, 2]);
  assert.deepEqual(changedRange([1, -1, "👍🏽", 4]), [1, 3]);
  assert.deepEqual(changedRange([5]), [5, 5]);
});
