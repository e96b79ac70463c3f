// The others' carets and selections, drawn over the text in each user's colour with a name
// label. A Range over the block view's own text nodes (blockdom.js) says where each
// position is on screen: emoji, CJK, tabs and wrapped lines come out as the view lays them
// out, and only the blocks holding a caret are measured. The marks sit in a layer inside
// the element that scrolls the text, so scrolling moves them with it; they are redrawn at
// most once a frame, after any change to the text or to presence.

import { onceAFrame } from "./frame.js";
import { safeColor, textColorOn } from "./peers-list.js";
import { cpLength, cpToDisplay } from "./positions.js";

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
    view.scroller.addEventListener("scroll", () => this.render()); // selections: see shown()
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
    const shown = this.view.dom.nearScreen(this.view.scroller);
    const marks = [];
    for (const s of selections) {
      const ends = { anchor: cpToDisplay(text, s.anchor), head: cpToDisplay(text, s.head) };
      marks.push(...this.marksOf(origin, shown, { ...s, ...ends }));
    }
    this.layer.replaceChildren(...marks);
  }

  /**
   * The marks of one user: the caret, and the selection's part in `shown` (display units
   * near the screen). A selection of a whole long text would otherwise make the browser
   * lay out every block and draw a mark for every line, at every redraw.
   */
  marksOf(origin, shown, { client, user, anchor, head }) {
    const color = safeColor(user.color);
    const dom = this.view.dom;
    const marks = [];
    const from = Math.max(Math.min(anchor, head), shown[0]);
    const to = Math.min(Math.max(anchor, head), shown[1]);
    if (from < to) {
      const range = document.createRange();
      range.setStart(...dom.position(from));
      range.setEnd(...dom.position(to));
      for (const rect of range.getClientRects()) {
        if (rect.width < 1) continue;
        marks.push(box("carets-selection", rect, origin, color, client));
      }
    }
    const at = dom.caretRect(head, this.lineHeight);
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
