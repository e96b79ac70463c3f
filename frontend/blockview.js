// The editor's text on the page, bound to an OTClient: an editable element holding the text
// in blocks of lines (blockdom.js), of which the browser lays out only those on screen, so
// a keystroke costs about the same in a million characters as in a hundred. The browser
// edits nothing itself: every `beforeinput` (typing, Enter, deletions by character, word
// or line, paste, drop, cut) becomes an op on the client's text, and the blocks it touches
// are rewritten from it. Only an IME composition is left to the browser inside its block,
// read back at compositionend; the client holds server messages until then. Undo and redo
// (Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z, Ctrl+Y, the context menu) are the client's collaborative
// undo (undo.js), never the browser's own.

import { BlockDom } from "./blockdom.js";
import { displayChange } from "./blocks.js";
import { onceAFrame, onceAfterPaint } from "./frame.js";
import { changedRange, historyShortcut, insertedText } from "./inputs.js";
import { cpLength, cpToDisplay, display, displayToCp } from "./positions.js";
import { diffText } from "./textdiff.js";
import { diffOp, replaceOp, transformPosition } from "./textops.js";

const sorted = ([a, b]) => (a <= b ? [a, b] : [b, a]);

export class BlockView {
  constructor(element, scroller = element.parentElement) {
    this.element = element;
    this.scroller = scroller; // the element that scrolls the text
    this.dom = new BlockDom(element);
    this.composing = false;
    this.composedIn = -1; // the block the composition started in
    this.client = null;
    this.readOnly = false;
    this.onLocalChange = () => {}; // told after every change made here
    /** The selection is read once a frame, after it is drawn (presence is throttled anyway). */
    this.sendSelection = onceAfterPaint(() => this.readSelection());
    /** The caret brought into view after an edit, in the frame's own layout. */
    this.reveal = onceAFrame(() => this.revealCaret());
    this.markEmpty();
  }

  attach(client) {
    this.client = client;
    const el = this.element;
    el.addEventListener("beforeinput", (event) => this.beforeInput(event));
    el.addEventListener("input", () => {
      if (!this.composing) this.readBack([]); // an input the browser made without asking
    });
    el.addEventListener("keydown", (event) => {
      const action = historyShortcut(event);
      if (action === null) return;
      event.preventDefault();
      this.history(action);
    });
    el.addEventListener("compositionstart", () => {
      this.composing = true;
      this.composedIn = this.focusBlock();
      client.hold();
    });
    el.addEventListener("compositionend", () => this.endComposition());
    el.addEventListener("blur", () => {
      if (this.composing) this.endComposition();
      client.setSelection(null);
    });
    el.addEventListener("copy", (event) => this.copy(event, false));
    el.addEventListener("cut", (event) => this.copy(event, true));
    for (const type of ["keyup", "mouseup", "focus"]) {
      el.addEventListener(type, () => this.sendSelection());
    }
    document.addEventListener("selectionchange", () => {
      if (document.activeElement === el) this.sendSelection();
    });
  }

  /** Can the user change the text now? */
  editable() {
    const client = this.client;
    return client !== null && client.loaded && !this.readOnly && !client.readOnly;
  }

  beforeInput(event) {
    const type = event.inputType;
    if (type === "historyUndo" || type === "historyRedo") {
      event.preventDefault();
      this.history(type === "historyUndo" ? "undo" : "redo");
      return;
    }
    if (type === "insertCompositionText" || event.isComposing) return; // the IME's, for now
    event.preventDefault();
    const insert = insertedText(event);
    if (insert === null || !this.editable()) return;
    const range = this.targetRange(event);
    if (range !== null) this.edit(range[0], range[1], insert, type);
  }

  /** What `event` replaces, in display units: its target range, or the selection. */
  targetRange(event) {
    const [target] = event.getTargetRanges();
    let range = this.dom.selection();
    if (target) {
      const start = this.dom.offsetOf(target.startContainer, target.startOffset);
      const end = this.dom.offsetOf(target.endContainer, target.endOffset);
      if (start !== null && end !== null) range = [start, end];
    } else if (range && range[0] === range[1] && event.inputType.startsWith("delete")) {
      return null; // nothing to delete there (the end of the text, say)
    }
    return range && sorted(range);
  }

  /** Replace display units [from, to) with `insert` as the user's input of `inputType`. */
  edit(from, to, insert, inputType) {
    const client = this.client;
    const before = client.text;
    const start = displayToCp(before, from);
    const op = replaceOp(cpLength(before), start, displayToCp(before, to), insert);
    client.submit(op, inputType);
    if (client.text === before) return;
    this.show(op, before);
    this.dom.select(cpToDisplay(client.text, start + cpLength(insert)));
    this.reveal();
    this.sendSelection();
    this.onLocalChange();
  }

  /** Rewrite the blocks that `op` (which turned `before` into the client's text) touches. */
  show(op, before) {
    const change = displayChange(before, this.client.text, op);
    if (change !== null) this.dom.replace(change.from, change.to, change.insert);
    this.markEmpty();
  }

  endComposition() {
    if (!this.composing) return;
    this.composing = false;
    this.readBack([this.composedIn]);
    this.client.release();
  }

  /**
   * Take what the browser wrote into blocks by itself (an IME's text) as the user's
   * change: the block holding the caret, and `also`. A block's text is compared with what
   * it held, and put back before the change is made through the client.
   */
  readBack(also) {
    const blocks = new Set([...also, this.focusBlock()].filter((k) => k >= 0));
    for (const k of [...blocks].sort((a, b) => b - a)) {
      if (k >= this.dom.divs.length) continue;
      const body = this.dom.blocks.bodies[k];
      const shown = this.dom.shownIn(k);
      if (shown === body) continue;
      const caret = this.dom.caretIn(k);
      this.dom.rewrite(k);
      if (!this.editable()) continue; // the server takes no change from here
      const { start, endBefore, endAfter } = diffText(body, shown, caret);
      const base = this.dom.blocks.starts[k];
      const insert = display(shown.slice(start, endAfter));
      this.edit(base + start, base + endBefore, insert, "insertCompositionText");
    }
  }

  /** The block holding the selection's focus, or -1. */
  focusBlock() {
    const selection = document.getSelection();
    return selection && selection.rangeCount ? this.dom.blockOf(selection.focusNode) : -1;
  }

  /** Copy (and cut) the selected text as plain text, line breaks as "\n". */
  copy(event, cut) {
    const selection = this.dom.selection();
    if (selection === null || selection[0] === selection[1]) return;
    const [from, to] = sorted(selection);
    event.preventDefault();
    event.clipboardData.setData("text/plain", this.dom.blocks.slice(from, to));
    if (cut && this.editable()) this.edit(from, to, "", "deleteByCut");
  }

  /** Undo or redo this user's latest step and select what it changed. */
  history(action) {
    if (this.readOnly || this.composing || !this.client || !this.client.loaded) return;
    const before = this.client.text;
    const op = action === "undo" ? this.client.undo() : this.client.redo();
    if (op !== null) this.showOwn(op, before);
  }

  /** Make the text `text` as one change of this user's (restoring an old version). */
  replaceText(text, inputType) {
    if (this.readOnly || !this.client || !this.client.loaded) return false;
    if (this.composing) this.endComposition();
    const before = this.client.text;
    const op = diffOp(before, text);
    this.client.submit(op, inputType);
    this.showOwn(op, before);
    return true;
  }

  /** Show a change made here but not typed (undo, redo, restore), selecting what it did. */
  showOwn(op, before) {
    this.show(op, before);
    const text = this.client.text;
    const [start, end] = changedRange(op);
    this.dom.select(cpToDisplay(text, start), cpToDisplay(text, end));
    this.reveal();
    this.sendSelection();
    this.onLocalChange();
  }

  /** Tell the client where this user's selection is (in code points), if focused. */
  readSelection() {
    if (this.composing || !this.client || document.activeElement !== this.element) return;
    const selection = this.dom.selection();
    if (selection === null) return;
    const text = this.client.text;
    this.client.setSelection(selection.map((at) => displayToCp(text, at)));
  }

  /** The client's text changed by `op` (someone else's change, transformed): show it. */
  onChange(op, oldText) {
    const focused = document.activeElement === this.element;
    const selection = focused ? this.dom.selection() : null;
    this.show(op, oldText);
    if (selection === null) return; // scroll anchoring keeps what is on screen in place
    const text = this.client.text;
    const moved = (at) => cpToDisplay(text, transformPosition(displayToCp(oldText, at), op));
    this.dom.select(moved(selection[0]), moved(selection[1]));
  }

  /** Scroll the least that shows the caret (the browser does it only for its own edits). */
  revealCaret() {
    const selection = this.dom.selection();
    if (selection === null) return;
    const [node, offset] = this.dom.position(selection[1]);
    const range = document.createRange();
    range.setStart(node, offset);
    const rect = range.getBoundingClientRect();
    const view = this.scroller.getBoundingClientRect();
    const line = rect.height || 24;
    if (rect.top < view.top) this.scroller.scrollTop -= view.top - rect.top + line;
    else if (rect.bottom > view.bottom) this.scroller.scrollTop += rect.bottom - view.bottom + line;
  }

  onReadOnly() {
    this.readOnly = true;
    this.setEditable(false);
    this.setPlaceholder("This document is empty (read-only for you)");
  }

  /** Editable once loaded, unless read-only; after a fatal close copying still works. */
  onState(state) {
    if (state === "error") this.setEditable(false);
    else if (this.editable()) {
      this.setEditable(true);
      this.setPlaceholder("Start typing…");
    }
  }

  /** Attributes are written only when they change (a write restyles the element). */
  setEditable(on) {
    const value = on ? "true" : "false";
    if (this.element.contentEditable === value) return;
    this.element.contentEditable = value;
    this.element.setAttribute("aria-readonly", String(!on));
  }

  setPlaceholder(text) {
    if (this.element.getAttribute("aria-placeholder") !== text) {
      this.element.setAttribute("aria-placeholder", text);
    }
  }

  markEmpty() {
    const empty = this.dom.length === 0;
    if (this.element.hasAttribute("data-empty") !== empty) {
      this.element.toggleAttribute("data-empty", empty);
    }
  }

  // --- for tests and tools: the text and the selection in display units, as shown -------

  /** The text on screen: the blocks' elements read back, "\n" between them. */
  get text() {
    return Array.from(this.element.children, (div) => div.textContent).join("\n");
  }

  /** [start, end, direction] of the selection, or null when it is not in the text. */
  get selection() {
    const selection = this.dom.selection();
    if (selection === null) return null;
    const [anchor, focus] = selection;
    return [...sorted(selection), anchor > focus ? "backward" : "forward"];
  }

  select(start, end = start, direction = "forward") {
    if (direction === "backward") this.dom.select(end, start);
    else this.dom.select(start, end);
  }
}
