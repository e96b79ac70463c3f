// Collaborative undo (frontend/undo.js): grouping like a native textarea, undo and redo of
// this tab's own steps only, and the stacks kept right through others' edits.

import assert from "node:assert/strict";
import { test } from "node:test";

import { cpLength } from "../../frontend/positions.js";
import { applyOp, replaceOp } from "../../frontend/textops.js";
import { groupKind, UndoManager } from "../../frontend/undo.js";
import { below } from "./seeded.mjs";

/** One tab's text and undo manager; remote ops arrive already transformed, as in OTClient. */
class Tab {
  constructor(text = "") {
    this.text = text;
    this.undo = new UndoManager();
    this.time = 0;
  }

  local(op, inputType = "insertText", wait = 100) {
    this.time += wait;
    this.undo.record(op, this.text, inputType, this.time);
    this.text = applyOp(op, this.text);
  }

  type(at, s, inputType = "insertText") {
    for (const ch of s) {
      this.local(replaceOp(cpLength(this.text), at, at, ch), inputType);
      at += 1;
    }
  }

  remote(op) {
    this.text = applyOp(op, this.text);
    this.undo.remote(op);
  }

  insertRemote(at, s) {
    this.remote(replaceOp(cpLength(this.text), at, at, s));
  }

  doUndo() {
    const op = this.undo.undo(this.text);
    if (op) this.text = applyOp(op, this.text);
    return op;
  }

  doRedo() {
    const op = this.undo.redo(this.text);
    if (op) this.text = applyOp(op, this.text);
    return op;
  }
}

test("input types: typing and deleting runs merge, pastes and the rest never do", () => {
  assert.equal(groupKind("insertText"), "insert");
  assert.equal(groupKind("insertCompositionText"), "insert");
  assert.equal(groupKind("insertLineBreak"), "insert");
  assert.equal(groupKind("deleteContentBackward"), "delete");
  assert.equal(groupKind("deleteWordForward"), "delete");
  for (const other of ["insertFromPaste", "insertFromDrop", "deleteByCut", "restore", null]) {
    assert.equal(groupKind(other), null);
  }
});

test("a run of typing is one step; a pause or a caret jump starts the next", () => {
  const tab = new Tab();
  tab.type(0, "héllo 😀");
  tab.time += 1500; // a pause
  tab.type(7, " 中文");
  tab.type(0, ">"); // a caret jump
  assert.equal(tab.text, ">héllo 😀 中文");
  tab.doUndo();
  assert.equal(tab.text, "héllo 😀 中文");
  tab.doUndo();
  assert.equal(tab.text, "héllo 😀");
  tab.doUndo();
  assert.equal(tab.text, "");
  assert.equal(tab.doUndo(), null);
  tab.doRedo();
  tab.doRedo();
  assert.equal(tab.text, "héllo 😀 中文");
});

test("backspacing is its own run; a paste and a cut are one step each", () => {
  const tab = new Tab();
  tab.type(0, "abc");
  for (let at = 3; at > 1; at--) tab.local(replaceOp(at, at - 1, at, ""), "deleteContentBackward");
  assert.equal(tab.text, "a");
  tab.local(replaceOp(1, 1, 1, "PASTE👍🏽"), "insertFromPaste", 10);
  tab.type(cpLength(tab.text), "x");
  tab.local(replaceOp(cpLength(tab.text), 0, 1, ""), "deleteByCut", 10);
  assert.equal(tab.text, "PASTE👍🏽x");
  const steps = ["aPASTE👍🏽x", "aPASTE👍🏽", "a", "abc", ""];
  for (const expected of steps) {
    tab.doUndo();
    assert.equal(tab.text, expected);
  }
});

test("undo takes out only this tab's text, wherever others typed", () => {
  const tab = new Tab("base");
  tab.type(4, " mine 😀");
  tab.insertRemote(0, "before ");
  tab.insertRemote(cpLength(tab.text), " after");
  tab.insertRemote(13, "中"); // inside the text the undo takes out
  assert.equal(tab.text, "before base m中ine 😀 after");
  tab.doUndo();
  assert.equal(tab.text, "before base中 after");
  tab.insertRemote(0, "👨‍👩‍👧");
  tab.doRedo();
  assert.equal(tab.text, "👨‍👩‍👧before base m中ine 😀 after");
});

test("undoing a deletion restores the text where it was, around remote edits", () => {
  const tab = new Tab("keep DELETE-ME keep");
  tab.local(replaceOp(19, 5, 15, ""), "deleteByCut");
  tab.insertRemote(5, "R");
  tab.insertRemote(0, "😀");
  assert.equal(tab.text, "😀keep Rkeep");
  tab.doUndo();
  assert.equal(tab.text, "😀keep DELETE-ME Rkeep");
});

test("a step others deleted entirely is skipped; a new edit clears redo", () => {
  const tab = new Tab();
  tab.type(0, "one");
  tab.time += 2000;
  tab.type(3, " two");
  tab.remote(replaceOp(7, 3, 7, "")); // someone deleted " two"
  tab.doUndo();
  assert.equal(tab.text, "");
  tab.doRedo();
  assert.equal(tab.text, "one");
  tab.doUndo();
  tab.type(0, "x");
  assert.equal(tab.doRedo(), null);
});

test("fuzz: undoing every own step leaves exactly the others' text", () => {
  // Every character is unique: the base and the other user's are CJK, this tab's are
  // emoji or letters. The other user only inserts; this tab inserts and deletes anything.
  for (let round = 0; round < 300; round++) {
    const random = below(round + 1);
    let next = 0x4e00;
    const fresh = () => String.fromCodePoint(next++);
    let mine = 0x1f600;
    const own = () => (random(2) ? String.fromCodePoint(mine++) : String.fromCharCode(97 + random(26)));
    const base = Array.from({ length: random(6) }, fresh).join("");
    const tab = new Tab(base);
    const theirs = new Set(base);
    for (let step = 0; step < 25; step++) {
      const n = cpLength(tab.text);
      const at = random(n + 1);
      const choice = random(4);
      if (choice === 0) {
        const s = fresh() + (random(2) ? fresh() : "");
        for (const ch of s) theirs.add(ch);
        tab.insertRemote(at, s);
      } else if (choice === 1 && n > at) {
        tab.local(replaceOp(n, at, at + 1 + random(Math.min(3, n - at)), ""), "deleteByCut");
      } else {
        const s = own() + (random(2) ? own() : "");
        tab.local(replaceOp(n, at, at, s), random(2) ? "insertText" : "insertFromPaste", random(1500));
      }
    }
    while (tab.doUndo()) {
      // until nothing is left to undo
    }
    const left = [...tab.text];
    assert.deepEqual(new Set(left), theirs, `round ${round}: ${tab.text}`);
    assert.equal(left.length, theirs.size, `round ${round}: a character twice`);
  }
});

test("fuzz: undo then redo gives back the same text", () => {
  const random = below(99);
  const tab = new Tab("start");
  for (let step = 0; step < 2000; step++) {
    const n = cpLength(tab.text);
    const at = random(n + 1);
    if (random(3) === 0) tab.insertRemote(at, "R😀".slice(0, 1 + random(3)));
    else if (random(2) && n > at) tab.local(replaceOp(n, at, at + 1, ""), "deleteContentForward");
    else tab.local(replaceOp(n, at, at, "中e\u0301"), "insertText", random(1200));
    if (random(5) === 0) {
      const before = tab.text;
      if (tab.doUndo()) {
        tab.doRedo();
        assert.equal(tab.text, before, `step ${step}`);
      }
    }
  }
});
