// What the user does to the block view (blockview.js), as edits of its text. The browser
// edits nothing itself: every `beforeinput` (typing, Enter, deletions by character, word
// or line, paste, drop, cut) is prevented and made an edit, its range taken from the
// event's target range (the browser's own word and grapheme rules) mapped through the
// blocks' starts. Only an IME composition is left to the browser inside its block, read
// back at compositionend; the client holds server messages until then. Undo and redo
// (Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z, Ctrl+Y, the context menu's) are the view's history.
// The element is contenteditable="true", not "plaintext-only": Chromium gives no target
// ranges to a plaintext-only element's beforeinput, and since every input is prevented
// and made plain text here, nothing rich can get in either way.

import { historyShortcut, insertedText, selectAll } from "./inputs.js";
import { display } from "./positions.js";
import { diffText } from "./textdiff.js";

export const sorted = ([a, b]) => (a <= b ? [a, b] : [b, a]);

/** Wire the element of `view` to `client`. */
export function listen(view, client) {
  const el = view.element;
  el.addEventListener("beforeinput", (event) => beforeInput(view, event));
  el.addEventListener("input", () => {
    if (!view.composing) readBack(view, []); // an input the browser made without asking
  });
  el.addEventListener("keydown", (event) => {
    if (selectAll(event) && !el.isContentEditable) {
      event.preventDefault(); // read-only: the text, not the whole page
      view.dom.select(0, view.dom.length);
      return;
    }
    const action = historyShortcut(event);
    if (action === null) return;
    event.preventDefault();
    view.history(action);
  });
  el.addEventListener("compositionstart", () => {
    view.composing = true;
    view.composedIn = focusBlock(view);
    client.hold();
  });
  el.addEventListener("compositionend", () => view.endComposition());
  el.addEventListener("blur", () => {
    if (view.composing) view.endComposition();
    client.setSelection(null);
  });
  el.addEventListener("dragstart", () => {
    view.dragged = view.dom.selection();
  });
  el.addEventListener("dragend", () => {
    view.dragged = null;
  });
  el.addEventListener("drop", (event) => drop(view, event));
  el.addEventListener("copy", (event) => copy(view, event, false));
  el.addEventListener("cut", (event) => copy(view, event, true));
  for (const type of ["keyup", "mouseup", "focus"]) {
    el.addEventListener(type, () => view.sendSelection());
  }
  document.addEventListener("selectionchange", () => {
    if (document.activeElement === el) view.sendSelection();
  });
}

function beforeInput(view, event) {
  const type = event.inputType;
  if (type === "historyUndo" || type === "historyRedo") {
    event.preventDefault();
    view.history(type === "historyUndo" ? "undo" : "redo");
    return;
  }
  if (type === "insertCompositionText" || event.isComposing) return; // the IME's, for now
  event.preventDefault();
  const insert = insertedText(event);
  if (insert === null || !view.editable()) return;
  const range = targetRange(view, event);
  if (range !== null) view.edit(range[0], range[1], insert, type);
}

/** What `event` replaces, in display units: its target range, or the selection. */
function targetRange(view, event) {
  const selection = view.dom.selection();
  const join = selection && joinedBreak(view.dom, selection, event.inputType);
  if (join) return join;
  const [target] = event.getTargetRanges();
  if (target) {
    const start = view.dom.offsetOf(target.startContainer, target.startOffset);
    const end = view.dom.offsetOf(target.endContainer, target.endOffset);
    if (start !== null && end !== null) return sorted([start, end]);
  }
  if (selection && selection[0] === selection[1] && event.inputType.startsWith("delete")) {
    return null; // nothing to delete there (the end of the text, say)
  }
  return selection && sorted(selection);
}

/**
 * A deletion from a caret at the start of a block backwards, or at its end forwards, takes
 * the line break between the two blocks: [from, to], or null for any other input. Not
 * the browser's target range: when the other block is off screen its layout is skipped,
 * and Chromium's editing then takes that whole block as one piece.
 */
function joinedBreak(dom, [anchor, focus], inputType) {
  if (anchor !== focus || !inputType.startsWith("delete")) return null;
  const [k, offset] = dom.blocks.locate(anchor);
  if (inputType.endsWith("Backward") && offset === 0 && k > 0) return [anchor - 1, anchor];
  const last = dom.blocks.bodies.length - 1;
  const atEnd = offset === dom.blocks.bodies[k].length;
  if (inputType.endsWith("Forward") && atEnd && k < last) return [anchor, anchor + 1];
  return null;
}

/**
 * Take what the browser wrote into blocks by itself (an IME's text) as the user's change:
 * the block holding the caret, and `also`. A block's text is compared with what it held,
 * and put back before the change is made through the client.
 */
export function readBack(view, also) {
  const dom = view.dom;
  const blocks = new Set([...also, focusBlock(view)].filter((k) => k >= 0));
  for (const k of [...blocks].sort((a, b) => b - a)) {
    if (k >= dom.divs.length) continue;
    const body = dom.blocks.bodies[k];
    const shown = dom.shownIn(k);
    if (shown === body) continue;
    const caret = dom.caretIn(k);
    dom.rewrite(k);
    if (!view.editable()) continue; // the server takes no change from here
    const { start, endBefore, endAfter } = diffText(body, shown, caret);
    const base = dom.blocks.starts[k];
    const insert = display(shown.slice(start, endAfter));
    view.edit(base + start, base + endBefore, insert, "insertCompositionText");
  }
}

/** The block holding the selection's focus, or -1. */
function focusBlock(view) {
  const selection = document.getSelection();
  return selection && selection.rangeCount ? view.dom.blockOf(selection.focusNode) : -1;
}

/** Copy (and cut) the selected text as plain text, line breaks as "\n". */
function copy(view, event, cut) {
  const selection = view.dom.selection();
  if (selection === null || selection[0] === selection[1]) return;
  const [from, to] = sorted(selection);
  event.preventDefault();
  event.clipboardData.setData("text/plain", view.dom.blocks.slice(from, to));
  if (cut && view.editable()) view.edit(from, to, "", "deleteByCut");
}

/**
 * A drop: the dropped text as plain text where the pointer is; dragged from this text
 * (without Ctrl or Alt, which copy), a move. Made here, not by the browser: Chromium's
 * drop target range comes after its drag deletion, which is prevented, so it points
 * elsewhere.
 */
function drop(view, event) {
  event.preventDefault();
  const dragged = view.dragged && sorted(view.dragged);
  view.dragged = null;
  const text = display(event.dataTransfer.getData("text/plain"));
  const point = document.caretRangeFromPoint(event.clientX, event.clientY);
  const at = point && view.dom.offsetOf(point.startContainer, point.startOffset);
  if (at === null || text === "" || !view.editable()) return;
  const move = dragged !== null && dragged[0] !== dragged[1] && !event.ctrlKey && !event.altKey;
  if (!move) {
    view.edit(at, at, text, "insertFromDrop");
    return;
  }
  const [from, to] = dragged;
  if (at >= from && at <= to) return; // dropped onto itself
  view.edit(from, to, "", "deleteByDrag");
  const shifted = at > to ? at - (to - from) : at;
  view.edit(shifted, shifted, text, "insertFromDrop");
}
