// The block view's elements: one `<div>` per block (blocks.js) inside the editable element,
// each holding its body as one text node, and a `<br>` after it when the body is empty or
// ends with a line break (Chromium draws no line after a trailing "\n" without it). Every
// block is `content-visibility: auto` (style.css): the browser lays out and paints only
// the blocks on screen. Positions in the DOM (a node and an offset, as selections and
// Ranges give them) map to and from display positions through the blocks' starts.

import { Blocks } from "./blocks.js";

export class BlockDom {
  constructor(element) {
    this.element = element;
    this.blocks = new Blocks("");
    this.divs = [makeBlock("")];
    this.active = new Set(); // the blocks laid out wherever they are (select)
    element.replaceChildren(...this.divs);
  }

  /** The display text's length. */
  get length() {
    return this.blocks.length;
  }

  /** Replace display units [from, to) with `insert`, rewriting only the blocks it touches. */
  replace(from, to, insert) {
    const { first, removed, bodies } = this.blocks.replace(from, to, insert);
    if (removed === 1 && bodies.length === 1) {
      writeBlock(this.divs[first], bodies[0]);
      return;
    }
    const made = bodies.map(makeBlock);
    const gone = this.divs.splice(first, removed, ...made);
    gone[0].before(...made);
    for (const div of gone) div.remove();
  }

  /** Make block `k`'s elements hold its body again (after the browser wrote into them). */
  rewrite(k) {
    writeBlock(this.divs[k], this.blocks.bodies[k]);
  }

  /** The text the browser shows in block `k` now (it may have typed into it: IME). */
  shownIn(k) {
    return this.divs[k].textContent;
  }

  /** Where the selection's focus is in block `k`'s shown text; undefined if elsewhere. */
  caretIn(k) {
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0) return undefined;
    if (this.blockOf(selection.focusNode) !== k) return undefined;
    return textBefore(this.divs[k], selection.focusNode, selection.focusOffset);
  }

  /** The block holding DOM position (node, offset), or -1 when outside the blocks. */
  blockOf(node) {
    while (node && node.parentNode !== this.element) node = node.parentNode;
    return node ? this.divs.indexOf(node) : -1;
  }

  /** The display position of DOM position (node, offset) in the element, or null. */
  offsetOf(node, offset) {
    if (node === this.element) {
      return offset >= this.divs.length ? this.length : this.blocks.starts[offset];
    }
    const k = this.blockOf(node);
    if (k < 0) return null;
    const body = this.blocks.bodies[k];
    const div = this.divs[k];
    let inBlock;
    if (node === div.firstChild && node.nodeType === Node.TEXT_NODE) inBlock = offset;
    else if (node === div) inBlock = offset === 0 ? 0 : body.length;
    else inBlock = textBefore(div, node, offset); // in nodes the browser made
    return this.blocks.starts[k] + Math.min(inBlock, body.length);
  }

  /**
   * The display units [from, to] of the blocks on screen in `scroller` or within a screen's
   * height of it (found by the blocks' boxes: those off screen keep their size unlaid out).
   */
  nearScreen(scroller) {
    const view = scroller.getBoundingClientRect();
    const [low, high] = [view.top - view.height, view.bottom + view.height];
    const top = (div) => div.getBoundingClientRect().top;
    const bottom = (div) => div.getBoundingClientRect().bottom;
    const first = Math.min(this.divs.length - 1, this.firstBlock((div) => bottom(div) >= low));
    const last = Math.max(first, this.firstBlock((div) => top(div) > high) - 1);
    return [this.blocks.starts[first], this.blocks.starts[last] + this.blocks.bodies[last].length];
  }

  /** The first block whose div passes `test` (as all after it do); the count if none. */
  firstBlock(test) {
    let [low, high] = [0, this.divs.length];
    while (low < high) {
      const mid = (low + high) >> 1;
      if (test(this.divs[mid])) high = mid;
      else low = mid + 1;
    }
    return low;
  }

  /** The DOM position [text node, offset] of display position `at`. */
  position(at) {
    const [k, offset] = this.blocks.locate(at);
    return [this.divs[k].firstChild, offset];
  }

  /**
   * Where a caret at display position `at` is drawn (viewport coordinates, the line's
   * height at least `lineHeight`), or null: the left edge of the character after it (so a
   * caret at a soft wrap shows at the start of the next line, as the browser's does), the
   * right edge of the one before it at a line's end, or the empty line's own place (its
   * line break, or the block's closing `<br>`). A collapsed Range has no box on an empty
   * line, hence the characters around it.
   */
  caretRect(at, lineHeight) {
    const [node, index] = this.position(at);
    const text = node.data;
    const isBreak = (i) => text.charCodeAt(i) === 10;
    let rect;
    if (index < text.length && (!isBreak(index) || index === 0 || isBreak(index - 1))) {
      rect = unitRect(node, index, isHigh(text.charCodeAt(index)) ? 2 : 1, "left");
    } else if (index > 0 && !isBreak(index - 1)) {
      const pair = index > 1 && isHigh(text.charCodeAt(index - 2));
      rect = unitRect(node, index - (pair ? 2 : 1), pair ? 2 : 1, "right");
    } else if (node.nextSibling) {
      rect = node.nextSibling.getBoundingClientRect(); // the <br> of an empty last line
    }
    if (!rect) return null;
    const height = Math.max(lineHeight, rect.height); // the line's height, not the glyph's
    return { left: rect.left, top: rect.top - (height - rect.height) / 2, width: 0, height };
  }

  /** This document's selection in display units: [anchor, focus], or null if not in here. */
  selection() {
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0) return null;
    const anchor = this.offsetOf(selection.anchorNode, selection.anchorOffset);
    const focus = this.offsetOf(selection.focusNode, selection.focusOffset);
    return anchor === null || focus === null ? null : [anchor, focus];
  }

  /**
   * Select display units from `anchor` to `focus` (a caret when equal). The blocks at both
   * ends are marked active (laid out whether on screen or not, style.css): Chromium makes
   * a block holding the selection relevant only at its next rendering, and until then
   * its editing takes the skipped block as one piece (an arrow key jumps over it).
   */
  select(anchor, focus = anchor) {
    const selection = document.getSelection();
    selection.setBaseAndExtent(...this.position(anchor), ...this.position(focus));
    const ends = [this.blocks.locate(anchor)[0], this.blocks.locate(focus)[0]];
    const active = new Set(ends.map((k) => this.divs[k]));
    for (const div of this.active) if (!active.has(div)) div.classList.remove("active");
    for (const div of active) if (!this.active.has(div)) div.classList.add("active");
    this.active = active;
  }
}

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;

/** The rect of `count` units of `node` from `at`, reduced to its `side` edge. */
function unitRect(node, at, count, side) {
  const range = document.createRange();
  range.setStart(node, at);
  range.setEnd(node, at + count);
  const rect = range.getClientRects()[0] || range.getBoundingClientRect();
  const left = side === "left" ? rect.left : rect.right;
  return { left, top: rect.top, height: rect.height };
}

/** The length of the text in `div` before DOM position (node, offset). */
function textBefore(div, node, offset) {
  const range = document.createRange();
  range.setStart(div, 0);
  range.setEnd(node, offset);
  return range.toString().length;
}

function makeBlock(body) {
  const div = document.createElement("div");
  div.append(document.createTextNode(body));
  if (needsBreak(body)) div.append(document.createElement("br"));
  return div;
}

const needsBreak = (body) => body === "" || body.endsWith("\n");

/** Make `div` hold `body`: its text node's data, and the `<br>` only when it needs one. */
function writeBlock(div, body) {
  const node = div.firstChild;
  const canonical =
    node !== null &&
    node.nodeType === Node.TEXT_NODE &&
    div.childNodes.length === (needsBreak(body) ? 2 : 1) &&
    (!needsBreak(body) || div.lastChild.nodeName === "BR");
  if (!canonical) {
    div.replaceChildren(...makeBlock(body).childNodes);
    return;
  }
  if (node.data !== body) node.data = body;
}
