// The textarea bound to an OTClient: what the user does becomes ops (a diff of the old and
// new value, the caret saying where in a run of equal characters); what others do is
// written into it with the selection and the scroll position kept. Nothing is written
// during an IME composition: the client holds server messages until it ends. Undo and redo
// (Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z, Ctrl+Y, the context menu) are the client's collaborative
// undo (undo.js), never the browser's own.

import { onceAfterPaint } from "./frame.js";
import { cpLength, cpToDisplay, display, displayToCp } from "./positions.js";
import { diffText } from "./textdiff.js";
import { diffOp, firstChange, replaceOp, transformPosition } from "./textops.js";

/** The shortcut in `event`: "undo", "redo" or null. */
export function historyShortcut(event) {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.isComposing) return null;
  const key = event.key.toLowerCase();
  if (key === "z") return event.shiftKey ? "redo" : "undo";
  if (key === "y" && event.ctrlKey && !event.shiftKey) return "redo";
  return null;
}

/** The selection showing what `op` changed: what it inserted, or a caret where it deleted. */
function changedRange(op) {
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

export class TextareaView {
  constructor(textarea) {
    this.textarea = textarea;
    this.shown = ""; // what the textarea held after the last change we know of
    this.composing = false;
    this.client = null;
    this.readOnly = false;
    this.inputType = null; // what the browser said the pending input is (beforeinput)
    this.onLocalChange = () => {}; // told after an undo or redo is shown
    /**
     * The selection is read once a frame, after it is drawn: a keystroke asks three times
     * (input, selectionchange, keyup), and each read makes Chromium sync the selection
     * of the whole text (milliseconds in a million characters). Presence goes out at most
     * every 150 ms anyway.
     */
    this.sendSelection = onceAfterPaint(() => this.readSelection());
  }

  attach(client) {
    this.client = client;
    const ta = this.textarea;
    ta.addEventListener("beforeinput", (event) => {
      if (event.inputType === "historyUndo" || event.inputType === "historyRedo") {
        event.preventDefault();
        this.history(event.inputType === "historyUndo" ? "undo" : "redo");
      } else {
        this.inputType = event.inputType;
      }
    });
    ta.addEventListener("keydown", (event) => {
      const action = historyShortcut(event);
      if (action === null) return;
      event.preventDefault();
      this.history(action);
    });
    ta.addEventListener("input", () => {
      if (!this.composing) this.flush();
      this.sendSelection();
    });
    ta.addEventListener("compositionstart", () => {
      this.composing = true;
      client.hold();
    });
    ta.addEventListener("compositionend", () => this.endComposition());
    ta.addEventListener("blur", () => {
      if (this.composing) this.endComposition();
      client.setSelection(null);
    });
    for (const type of ["select", "keyup", "mouseup", "focus"]) {
      ta.addEventListener(type, () => this.sendSelection());
    }
    document.addEventListener("selectionchange", () => {
      if (document.activeElement === ta) this.sendSelection();
    });
  }

  endComposition() {
    if (!this.composing) return;
    this.composing = false;
    this.flush();
    this.client.release();
  }

  /** The textarea's value with "\r\n" and "\r" made "\n" (a paste may bring them). */
  normalizedValue() {
    const ta = this.textarea;
    const value = ta.value;
    if (!value.includes("\r")) return value;
    const caret = display(value.slice(0, ta.selectionEnd)).length;
    ta.value = display(value);
    ta.setSelectionRange(caret, caret);
    return ta.value;
  }

  /** Turn whatever the user did to the textarea since the last look into one op. */
  flush() {
    const value = this.normalizedValue();
    if (value === this.shown) return;
    if (this.client.readOnly) {
      this.redraw(); // the server takes no change from here: show its text
      return;
    }
    const text = this.client.text;
    const { start, endBefore, endAfter } = diffText(this.shown, value, this.textarea.selectionEnd);
    const from = displayToCp(text, start);
    const to = displayToCp(text, endBefore);
    const op = replaceOp(cpLength(text), from, to, value.slice(start, endAfter));
    this.shown = value;
    this.client.submit(op, this.inputType);
    this.inputType = null;
    if (display(this.client.text) !== value) this.redraw(); // a lone "\r" met a "\n"
  }

  /** Undo or redo this user's latest step and select what it changed. */
  history(action) {
    if (this.readOnly || this.composing || !this.client || !this.client.loaded) return;
    this.flush();
    const op = action === "undo" ? this.client.undo() : this.client.redo();
    if (op !== null) this.showOwn(op);
  }

  /** Make the text `text` as one change of this user's (restoring an old version). */
  replaceText(text, inputType) {
    if (this.readOnly || !this.client || !this.client.loaded) return false;
    if (this.composing) this.endComposition();
    this.flush();
    const op = diffOp(this.client.text, text);
    this.client.submit(op, inputType);
    this.showOwn(op);
    return true;
  }

  /** Show a change made here but not typed (undo, redo, restore), selecting what it did. */
  showOwn(op) {
    const text = this.client.text;
    const [start, end] = changedRange(op);
    this.shown = display(text);
    this.textarea.value = this.shown;
    this.textarea.setSelectionRange(cpToDisplay(text, start), cpToDisplay(text, end));
    this.sendSelection();
    this.onLocalChange();
  }

  /** Tell the client where this user's selection is (in code points), if focused. */
  readSelection() {
    if (this.composing || !this.client) return;
    const ta = this.textarea;
    if (document.activeElement !== ta) return;
    const text = this.client.text;
    const start = displayToCp(text, ta.selectionStart);
    const end = displayToCp(text, ta.selectionEnd);
    const backward = ta.selectionDirection === "backward";
    this.client.setSelection(backward ? [end, start] : [start, end]);
  }

  /** The client's text changed by `op` (someone else's change, transformed): show it. */
  onChange(op, oldText) {
    const ta = this.textarea;
    const newText = this.client.text;
    const cpStart = displayToCp(oldText, ta.selectionStart);
    const cpEnd = displayToCp(oldText, ta.selectionEnd);
    const direction = ta.selectionDirection;
    const above = firstChange(op) < cpStart;
    const top = ta.scrollTop;
    const height = ta.scrollHeight;
    this.shown = display(newText);
    ta.value = this.shown;
    ta.setSelectionRange(
      cpToDisplay(newText, transformPosition(cpStart, op)),
      cpToDisplay(newText, transformPosition(cpEnd, op)),
      direction,
    );
    // Keep the caret's line where it was on screen when text changed above it.
    ta.scrollTop = above ? top + ta.scrollHeight - height : top;
  }

  redraw() {
    this.onChange([cpLength(this.client.text)], this.client.text);
  }

  onReadOnly() {
    this.readOnly = true;
    this.textarea.readOnly = true;
    this.textarea.placeholder = "This document is empty (read-only for you)";
  }

  /**
   * Editable once loaded, unless read-only; after a fatal close copying still works. The
   * attributes are written only when they change: writing one, even the same value, makes
   * the browser lay out the whole text again (a keystroke in a big text pays it twice).
   */
  onState(state) {
    const ta = this.textarea;
    if (state === "error") {
      if (!ta.readOnly) ta.readOnly = true;
    } else if (this.client.loaded && !this.readOnly && !this.client.readOnly) {
      if (ta.readOnly) ta.readOnly = false;
      if (ta.placeholder !== "Start typing…") ta.placeholder = "Start typing…";
    }
  }
}
