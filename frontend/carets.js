// The others' carets and selections, drawn over the text in each user's colour with a name
// label. A Range over the block view's own text nodes (blockdom.js) says where each
// position is on screen: emoji, CJK, tabs and wrapped lines come out as the view lays them
// out, and only the blocks holding a caret are measured. The marks sit in a layer inside
// the element that scrolls the text, so scrolling moves them with it; they are redrawn at
// most once a frame, after any change to the text or to presence.

import { onceAFrame } from "./frame.js";
import { safeColor, textColorOn } from "./peers-list.js";
import { cpLength, cpToDisplay } from "./positions.js";

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;

/** Everyone's selections in `presence` (client -> {user, selection}), clamped to `length`. */
export function drawnSelections(presence, length) {
  const out = [];
  for (const [client, peer] of presence) {
    if (!Array.isArray(peer.selection)) continue;
    for (const range of peer.selection) {
      if (!Array.isArray(range) || range.length !== 2) continue;
      const [anchor, head] = range.map((pos) => Math.max(0, Math.min(length, Number(pos) || 0)));
      out.push({ client, user: peer.user || {}, anchor, head });
    }
  }
  return out;
}

export class CaretLayer {
  constructor(view, client) {
    this.view = view;
    this.client = client;
    this.layer = document.createElement("div");
    this.layer.className = "carets";
    this.layer.setAttribute("aria-hidden", "true");
    view.element.after(this.layer);
    /** Redraw, at most once a frame. */
    this.render = onceAFrame(() => this.draw());
    new ResizeObserver(() => this.render()).observe(view.element);
    if (document.fonts) document.fonts.ready.then(() => this.render());
  }

  draw() {
    const text = this.client.text;
    const selections = drawnSelections(this.client.presence, cpLength(text));
    if (selections.length === 0) {
      if (this.layer.firstChild) this.layer.replaceChildren();
      return;
    }
    const origin = this.layer.getBoundingClientRect();
    this.lineHeight = parseFloat(getComputedStyle(this.view.element).lineHeight) || 0;
    const marks = [];
    for (const s of selections) {
      const ends = { anchor: cpToDisplay(text, s.anchor), head: cpToDisplay(text, s.head) };
      marks.push(...this.marksOf(origin, { ...s, ...ends }));
    }
    this.layer.replaceChildren(...marks);
  }

  marksOf(origin, { client, user, anchor, head }) {
    const color = safeColor(user.color);
    const dom = this.view.dom;
    const marks = [];
    if (anchor !== head) {
      const range = document.createRange();
      range.setStart(...dom.position(Math.min(anchor, head)));
      range.setEnd(...dom.position(Math.max(anchor, head)));
      for (const rect of range.getClientRects()) {
        if (rect.width < 1) continue;
        marks.push(box("carets-selection", rect, origin, color, client));
      }
    }
    const at = caretRect(...dom.position(head), this.lineHeight);
    if (at) {
      const caret = box("carets-caret", at, origin, color, client);
      caret.style.width = "";
      const label = document.createElement("span");
      label.className = "carets-label";
      label.textContent = String(user.name || "Anonymous").slice(0, 64);
      label.style.background = color;
      label.style.color = textColorOn(color);
      caret.append(label);
      marks.push(caret);
    }
    return marks;
  }
}

/** A mark at `rect` (viewport coordinates) placed in the layer's coordinates. */
function box(className, rect, origin, color, client) {
  const mark = document.createElement("div");
  mark.className = className;
  mark.dataset.client = client;
  Object.assign(mark.style, {
    left: `${rect.left - origin.left}px`,
    top: `${rect.top - origin.top}px`,
    width: `${rect.width}px`,
    height: `${rect.height}px`,
    background: className === "carets-caret" ? color : `${color}40`,
    borderColor: color,
  });
  return mark;
}

/**
 * The caret at UTF-16 position `index` of a block's text node: the left edge of the
 * character after it (so a caret at a soft wrap shows at the start of the next line, as
 * the browser's does), the right edge of the one before it at a line's end, or the
 * empty line's own place (its line break, or the block's closing `<br>`).
 */
function caretRect(node, index, lineHeight) {
  const text = node.data;
  const isBreak = (at) => text.charCodeAt(at) === 10;
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

/** The rect of `count` units of `node` from `at`, reduced to its `side` edge. */
function unitRect(node, at, count, side) {
  const range = document.createRange();
  range.setStart(node, at);
  range.setEnd(node, at + count);
  const rect = range.getClientRects()[0] || range.getBoundingClientRect();
  const left = side === "left" ? rect.left : rect.right;
  return { left, top: rect.top, height: rect.height };
}
