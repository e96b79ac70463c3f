// Collaborative undo: this tab's own changes, undone and redone through the normal op path,
// never touching what others wrote. Each stack entry is an op that undoes (or redoes) one
// step of the user's and applies to the text as it is now: every change made by someone
// else is transformed through the whole stack as it arrives (the entries from the top
// down, the remote op moving down with them), so an undo still lands in the right place
// after remote edits before, after or inside the text it restores.
//
// Grouping follows a native textarea: a run of typing (or of deleting) with no pause of
// GROUP_MS and no caret jump is one step; a paste, cut, drop or restore is one step.

import { compose, firstChange, invert, isNoop, transform, transformPosition } from "./textops.js";
import { cpLength } from "./positions.js";

export const GROUP_MS = 1000;
const MAX_STEPS = 500;

/** Which inputs merge into one step: "insert" or "delete" runs; null never merges. */
export function groupKind(inputType) {
  if (typeof inputType !== "string") return null;
  if (/^insert(Text|CompositionText|LineBreak|Paragraph)$/.test(inputType)) return "insert";
  if (/^delete(Content|Word|SoftLine|HardLine)(Backward|Forward)$/.test(inputType)) {
    return "delete";
  }
  return null;
}

/** Where `op` changes the text: its first change, code points deleted and inserted. */
export function changeSpan(op) {
  const start = firstChange(op);
  let deleted = 0;
  let inserted = 0;
  for (const c of op) {
    if (typeof c === "string") inserted += cpLength(c);
    else if (c < 0) deleted -= c;
  }
  return { start, deleted, inserted };
}

/** Each entry of `stack` (bottom first, the top applying to the text now) after `op`. */
function transformStack(stack, op) {
  const out = new Array(stack.length);
  let theirs = op;
  for (let i = stack.length - 1; i >= 0; i--) {
    const [mine, next] = transform(stack[i], theirs);
    out[i] = mine;
    theirs = next; // the remote op as it applies to the text under this entry
  }
  return out;
}

export class UndoManager {
  constructor({ groupMs = GROUP_MS, maxSteps = MAX_STEPS } = {}) {
    this.groupMs = groupMs;
    this.maxSteps = maxSteps;
    this.undoStack = []; // ops, bottom first; the top undoes the latest step
    this.redoStack = [];
    this.run = null; // the typing run the next input may join: {kind, time, caret}
  }

  get canUndo() {
    return this.undoStack.some((op) => !isNoop(op));
  }

  get canRedo() {
    return this.redoStack.some((op) => !isNoop(op));
  }

  /**
   * The user changed `before` by `op` with an input of `inputType` at `time` (ms): one
   * more step, or part of the step on top if it continues a typing run.
   */
  record(op, before, inputType, time) {
    if (isNoop(op)) return;
    const inverse = invert(op, before);
    const kind = groupKind(inputType);
    const span = changeSpan(op);
    const run = this.run;
    const joins =
      run !== null &&
      kind !== null &&
      kind === run.kind &&
      time - run.time < this.groupMs &&
      (span.start === run.caret || span.start + span.deleted === run.caret) &&
      this.undoStack.length > 0;
    if (joins) {
      const top = this.undoStack.length - 1;
      this.undoStack[top] = compose(inverse, this.undoStack[top]); // undo the newest first
    } else {
      this.undoStack.push(inverse);
      if (this.undoStack.length > this.maxSteps) this.undoStack.shift();
    }
    this.run = kind === null ? null : { kind, time, caret: span.start + span.inserted };
    this.redoStack = [];
  }

  /** Someone else changed the text by `op`: every entry moves through it. */
  remote(op) {
    if (isNoop(op)) return;
    this.undoStack = transformStack(this.undoStack, op);
    this.redoStack = transformStack(this.redoStack, op);
    if (this.run !== null) this.run.caret = transformPosition(this.run.caret, op);
  }

  /** The op undoing the latest step still doing something, on `text`; null if none. */
  undo(text) {
    return this.step(this.undoStack, this.redoStack, text);
  }

  /** The op redoing the latest undone step, on `text`; null if none. */
  redo(text) {
    return this.step(this.redoStack, this.undoStack, text);
  }

  step(from, to, text) {
    this.run = null; // typing after an undo starts a new step
    while (from.length > 0) {
      const op = from.pop();
      if (isNoop(op)) continue; // others deleted everything this step touched
      to.push(invert(op, text));
      return op;
    }
    return null;
  }

  clear() {
    this.undoStack = [];
    this.redoStack = [];
    this.run = null;
  }
}
