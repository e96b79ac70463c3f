// Who is here: this tab's user first, then every peer that has a name, with its colour and
// the line its caret is on.

import { onceAFrame } from "./frame.js";
import { lineOf } from "./positions.js";

/** `color` if it is a CSS hex colour, else grey (names and colours come from other users). */
export function safeColor(color) {
  return typeof color === "string" && /^#[0-9a-fA-F]{3,8}$/.test(color) ? color : "#757575";
}

/** Relative luminance of a "#rgb" or "#rrggbb" colour (WCAG 2). */
function luminance(color) {
  let hex = color.slice(1, 7);
  if (hex.length < 6) hex = hex.slice(0, 3).replace(/./g, (c) => c + c);
  const channel = (i) => {
    const v = parseInt(hex.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
}

/** White or black, whichever contrasts more with `color` (a name on its colour). */
export function textColorOn(color) {
  const l = luminance(safeColor(color));
  return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? "#ffffff" : "#000000"; // both >= 4.58:1
}

export class PeersList {
  constructor(list, client) {
    this.list = list;
    this.client = client;
    /** Redraw, at most once a frame. */
    this.render = onceAFrame(() => this.draw());
  }

  draw() {
    const items = [this.item(this.client.user, "you", null)];
    for (const peer of this.client.presence.values()) {
      if (!peer.user || !peer.user.name) continue;
      items.push(this.item(peer.user, peer.kind === "yjs" ? "Yjs" : "", peer.selection));
    }
    this.list.replaceChildren(...items);
  }

  item(user, note, selection) {
    const item = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = safeColor(user && user.color);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = String((user && user.name) || "Anonymous").slice(0, 64);
    item.append(dot, name);
    const line = selection && selection[0] && lineOf(this.client.text, selection[0][1]);
    const extra = [note, line ? `line ${line}` : ""].filter(Boolean).join(", ");
    if (extra) {
      const small = document.createElement("small");
      small.textContent = extra;
      item.append(small);
    }
    return item;
  }
}
