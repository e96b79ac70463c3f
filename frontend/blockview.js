// The editor's text on the page, bound to an OTClient: an editable element holding the text
// in blocks of lines (blockdom.js), of which the browser lays out only those on screen, so
// a keystroke costs about the same in a million characters as in a hundred. The browser
// edits nothing itself: what the user does (blockinput.js) becomes an op on the client's
// text, and the blocks the op touches are rewritten from it; so are others' changes, the
// selection kept in place. Undo and redo are the client's collaborative undo (undo.js),
// never the browser's own.

import { BlockDom } from "./blockdom.js";
import { listen, readBack, sorted } from "./blockinput.js";
import { displayChange } from "./blocks.js";
import { onceAFrame, onceAfterPaint } from "./frame.js";
import { changedRange } from "./inputs.js";
import { cpLength, cpToDisplay, displayToCp } from "./positions.js";
import { diffOp, replaceOp, transformPosition } from "./textops.js";

export class BlockView {
  constructor(element, scroller = element.parentElement) {
    this.element = element;
    this.scroller = scroller; // the element that scrolls the text
    this.dom = new BlockDom(element);
    this.composing = false;
    this.composedIn = -1; // the block the composition started in
    this.dragged = null; // the selection a drag from this text started with
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
    listen(this, client);
  }

  /** Can the user change the text now? */
  editable() {
    const client = this.client;
    return client !== null && client.loaded && !this.readOnly && !client.readOnly;
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

  /**
   * Rewrite the blocks that `op` (which turned `before` into the client's text) touches;
   * returns where it changed the display text (null: nowhere).
   */
  show(op, before) {
    const change = displayChange(before, this.client.text, op);
    if (change !== null) this.dom.replace(change.from, change.to, change.insert);
    this.markEmpty();
    return change;
  }

  endComposition() {
    if (!this.composing) return;
    this.composing = false;
    readBack(this, [this.composedIn]);
    this.client.release();
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

  /**
   * The client's text changed by `op` (someone else's change, transformed): show it, the
   * selection kept. What is on screen stays in place: scroll anchoring holds the view
   * still when a block above changes, and a change above the caret in the caret's own
   * block (which anchoring cannot see) scrolls by as much as it moved the caret's line.
   */
  onChange(op, oldText) {
    const focused = document.activeElement === this.element;
    const selection = focused ? this.dom.selection() : null;
    const caret = selection && selection[1];
    const blockStart = selection && this.dom.blocks.starts[this.dom.blocks.locate(caret)[0]];
    const top = selection && this.dom.caretRect(caret, 0);
    const change = this.show(op, oldText);
    if (selection === null) return;
    const text = this.client.text;
    const moved = (at) => cpToDisplay(text, transformPosition(displayToCp(oldText, at), op));
    this.dom.select(moved(selection[0]), moved(selection[1]));
    if (!top || !change || change.from < blockStart || change.from >= caret) return;
    const now = this.dom.caretRect(moved(caret), 0);
    if (now && now.top !== top.top) this.scroller.scrollTop += now.top - top.top;
  }

  /** Scroll the least that shows the caret (the browser does it only for its own edits). */
  revealCaret() {
    const selection = this.dom.selection();
    const rect = selection && this.dom.caretRect(selection[1], 0);
    if (!rect) return;
    const view = this.scroller.getBoundingClientRect();
    const margin = rect.height; // a line more, as the browser does
    if (rect.top < view.top) this.scroller.scrollTop -= view.top - rect.top + margin;
    else if (rect.top + rect.height > view.bottom) {
      this.scroller.scrollTop += rect.top + rect.height - view.bottom + margin;
    }
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
