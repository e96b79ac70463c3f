// The others' carets and selections, drawn over the textarea in each user's colour with a
// name label. A textarea cannot style parts of its text, so a hidden mirror (a div with the
// textarea's font, padding, wrapping and width) holds the same text, and a Range over its
// text says where each position is on screen: emoji, CJK, tabs and wrapped lines come out
// as the textarea lays them out. The mirror is kept in blocks of whole lines, and only a
// block whose text changed is rewritten, so that the browser lays out again only that
// block: a keystroke in a million characters costs one block, not the whole text. Marks
// are redrawn at most once a frame, after any change to the text or to presence;
// scrolling only moves them.

import { onceAFrame } from "./frame.js";
import { safeColor, textColorOn } from "./peers-list.js";
import { cpLength, cpToDisplay, display } from "./positions.js";

/** The textarea's styles that decide where its characters go. */
const MIRRORED = [
  "direction",
  "fontFamily",
  "fontFeatureSettings",
  "fontKerning",
  "fontSize",
  "fontStretch",
  "fontStyle",
  "fontVariant",
  "fontWeight",
  "letterSpacing",
  "lineHeight",
  "overflowWrap",
  "paddingBottom",
  "paddingLeft",
  "paddingRight",
  "paddingTop",
  "tabSize",
  "textAlign",
  "textIndent",
  "textTransform",
  "whiteSpace",
  "wordBreak",
  "wordSpacing",
];

const isHigh = (unit) => unit >= 0xd800 && unit <= 0xdbff;

/** Lines per block of the mirror. */
const BLOCK_LINES = 200;
/** Ends every block: the caret after its last character has a character to stand before. */
const END = "\u200b";

/**
 * The mirror's text in blocks of whole lines, one div with one text node each; the line
 * break between two blocks is the boundary of their divs. A block is rewritten only when
 * its text changed.
 */
class MirrorBlocks {
  constructor(element) {
    this.element = element;
    this.blocks = []; // {start, body, node}: display units start..start+body.length, then "\n"
  }

  /** Make the blocks hold `shown` (the text as the textarea shows it). */
  update(shown) {
    let start = 0;
    for (let k = 0; ; k++) {
      let end = start;
      let closed = false; // the block ends with a line break (another block follows)
      for (let lines = 0; lines < BLOCK_LINES; lines++) {
        const at = shown.indexOf("\n", end);
        if (at < 0) {
          end = shown.length;
          closed = false;
          break;
        }
        end = at + 1;
        closed = true;
      }
      this.set(k, start, shown.slice(start, closed ? end - 1 : end));
      if (!closed) {
        for (const block of this.blocks.splice(k + 1)) block.node.parentNode.remove();
        return;
      }
      start = end;
    }
  }

  set(k, start, body) {
    const block = this.blocks[k];
    if (block && block.body === body) {
      block.start = start;
      return;
    }
    if (block) {
      block.node.data = body + END;
      Object.assign(block, { start, body });
      return;
    }
    const node = document.createTextNode(body + END);
    const div = document.createElement("div");
    div.append(node);
    this.element.append(div);
    this.blocks.push({ start, body, node });
  }

  clear() {
    this.blocks = [];
    this.element.replaceChildren();
  }

  /** [text node, offset in it] of display position `index`. */
  locate(index) {
    const blocks = this.blocks;
    let low = 0;
    let high = blocks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (blocks[mid].start <= index) low = mid;
      else high = mid - 1;
    }
    const block = blocks[low];
    return [block.node, Math.min(index - block.start, block.body.length)];
  }
}

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
  constructor(textarea, client) {
    this.textarea = textarea;
    this.client = client;
    this.layer = document.createElement("div");
    this.layer.className = "carets";
    this.layer.setAttribute("aria-hidden", "true");
    this.mirror = document.createElement("div");
    this.mirror.className = "carets-mirror";
    this.blocks = new MirrorBlocks(this.mirror);
    this.marks = document.createElement("div");
    this.marks.className = "carets-marks";
    this.layer.append(this.mirror, this.marks);
    textarea.after(this.layer);
    /** Redraw, at most once a frame. */
    this.render = onceAFrame(() => this.draw());
    textarea.addEventListener("scroll", () => this.scroll());
    textarea.addEventListener("input", () => this.render());
    new ResizeObserver(() => this.render()).observe(textarea);
    if (document.fonts) document.fonts.ready.then(() => this.render());
  }

  draw() {
    const text = this.client.text;
    const selections = drawnSelections(this.client.presence, cpLength(text));
    if (selections.length === 0) {
      this.blocks.clear();
      this.marks.replaceChildren();
      return;
    }
    this.fit();
    const shown = display(text);
    const ends = selections.map((s) => ({
      ...s,
      anchor: cpToDisplay(text, s.anchor),
      head: cpToDisplay(text, s.head),
    }));
    this.blocks.update(shown);
    const origin = this.mirror.getBoundingClientRect();
    this.lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 0;
    const marks = [];
    for (const s of ends) marks.push(...this.marksOf(origin, s));
    this.marks.replaceChildren(...marks);
    this.scroll();
  }

  /**
   * The layer over the textarea's padding box, the mirror as wide as its text area. A
   * style is written only when it changes: a write, even of the same value, makes the
   * browser work out the mirror's style again.
   */
  fit() {
    const ta = this.textarea;
    const style = getComputedStyle(ta);
    for (const name of MIRRORED) setStyle(this.mirror, name, style[name]);
    setStyle(this.layer, "left", `${ta.offsetLeft + ta.clientLeft}px`);
    setStyle(this.layer, "top", `${ta.offsetTop + ta.clientTop}px`);
    setStyle(this.layer, "width", `${ta.clientWidth}px`);
    setStyle(this.layer, "height", `${ta.clientHeight}px`);
    setStyle(this.mirror, "width", `${ta.clientWidth}px`);
  }

  scroll() {
    const ta = this.textarea;
    this.marks.style.transform = `translate(${-ta.scrollLeft}px, ${-ta.scrollTop}px)`;
  }

  marksOf(origin, { client, user, anchor, head }) {
    const color = safeColor(user.color);
    const marks = [];
    if (anchor !== head) {
      const range = document.createRange();
      range.setStart(...this.blocks.locate(Math.min(anchor, head)));
      range.setEnd(...this.blocks.locate(Math.max(anchor, head)));
      for (const rect of range.getClientRects()) {
        if (rect.width < 1) continue;
        marks.push(box("carets-selection", rect, origin, color, client));
      }
    }
    const at = caretRect(...this.blocks.locate(head), this.lineHeight);
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

function setStyle(element, name, value) {
  if (element.style[name] !== value) element.style[name] = value;
}

/** A mark at `rect` (viewport coordinates) placed in the mirror's coordinates. */
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
 * The caret at UTF-16 position `index` of a mirror block's text: the left edge of the
 * character after it (so a caret at a soft wrap shows at the start of the next line, as
 * the textarea's does), or where the line ends (the block's zero-width end).
 */
function caretRect(node, index, lineHeight) {
  const text = node.data;
  const at = Math.min(index, text.length - 1);
  const range = document.createRange();
  range.setStart(node, at);
  range.setEnd(node, at + (isHigh(text.charCodeAt(at)) ? 2 : 1));
  const rects = range.getClientRects();
  const rect = rects[0] || range.getBoundingClientRect();
  if (!rect) return null;
  const height = Math.max(lineHeight, rect.height); // the line's height, not the glyph's
  return { left: rect.left, top: rect.top - (height - rect.height) / 2, width: 0, height };
}
