// What the user's input events ask of the editor, read without the DOM's own editing: the
// shortcuts of the collaborative undo and select-all, the text an input inserts, and the
// selection that shows what an undo, a redo or a restore changed.

import { cpLength, display } from "./positions.js";

/** The shortcut in `event`: "undo", "redo" or null. */
export function historyShortcut(event) {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.isComposing) return null;
  const key = event.key.toLowerCase();
  if (key === "z") return event.shiftKey ? "redo" : "undo";
  if (key === "y" && event.ctrlKey && !event.shiftKey) return "redo";
  return null;
}

/** Is `event` the select-all shortcut (Ctrl+A, Cmd+A)? */
export function selectAll(event) {
  const modified = Boolean(event.ctrlKey || event.metaKey) && !event.altKey;
  return modified && event.key.toLowerCase() === "a";
}

/**
 * The display text a `beforeinput` event inserts ("" for a deletion), or null for an input
 * the editor does not take (formatting: the text is plain). Pasted and dropped text comes
 * as plain text, its "\r\n" and "\r" made "\n" as everywhere on screen.
 */
export function insertedText(event) {
  const type = event.inputType;
  if (type.startsWith("delete")) return "";
  if (type === "insertLineBreak" || type === "insertParagraph") return "\n";
  if (!type.startsWith("insert")) return null;
  const data = event.dataTransfer ? event.dataTransfer.getData("text/plain") : event.data;
  return typeof data === "string" ? display(data) : null;
}

/** The selection showing what `op` changed: what it inserted, or a caret where it deleted. */
export function changedRange(op) {
  let at = 0;
  let start = -1;
  let end = -1;
  for (const c of op) {
    if (typeof c === "number" && c > 0) {
      at += c;
      continue;
    }
    if (start < 0) start = at;
    if (typeof c === "string") {
      at += cpLength(c);
      end = at;
    }
  }
  if (start < 0) return [at, at];
  return end < 0 ? [start, start] : [start, end];
}
