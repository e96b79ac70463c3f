// What a screen reader hears, politely and once: not every flip between "Unsaved changes"
// and "Saved" while typing (the status line shows those), but going offline, coming back,
// errors, read-only, a change that was not saved, and people joining and leaving.

/** Speak through a visually hidden live region (role=status). */
export class Announcer {
  constructor(region) {
    this.region = region;
    this.last = "";
    this.status = "";
  }

  say(text) {
    if (!text) return;
    // The same words twice in a row are spoken again only if the region changes.
    this.region.textContent = text === this.last ? `${text}\u00a0` : text;
    this.last = this.region.textContent;
  }

  /**
   * The status line now reads `label` in `state`: spoken when it matters, never for
   * saved/unsaved while typing (only when editing comes back from another state).
   */
  statusChanged(state, label) {
    const editing = state === "saved" || state === "unsaved";
    const kind = editing ? "editing" : `${state}:${label}`;
    const before = this.status;
    this.status = kind;
    if (kind === before) return;
    if (!editing) this.say(label);
    else if (before && before !== "editing" && !before.startsWith("connecting")) {
      this.say("Connected again: your changes are being saved");
    }
  }

  /** Someone's change that was refused, or a read-only notice: said once. */
  notice(text) {
    if (text && text !== this.lastNotice) this.say(text);
    this.lastNotice = text;
  }
}

/**
 * People joining and leaving, from the presence the client holds (client id -> {user}):
 * compared with what it held before; a reconnect (the list is refilled) is not news.
 */
export class PresenceNews {
  constructor(announcer) {
    this.announcer = announcer;
    this.known = null; // client id -> name, as last seen
  }

  update(client) {
    const now = new Map();
    for (const [id, peer] of client.presence) {
      if (peer.user && peer.user.name) now.set(id, String(peer.user.name).slice(0, 64));
    }
    // Not joined: the list is being emptied (a close) or filled (the welcome): no news.
    if (client.joined && this.known !== null) {
      const joined = [...now].filter(([id]) => !this.known.has(id)).map(([, n]) => n);
      const left = [...this.known].filter(([id]) => !now.has(id)).map(([, n]) => n);
      const news = [
        ...joined.map((name) => `${name} joined`),
        ...left.map((name) => `${name} left`),
      ];
      if (news.length) this.announcer.say(news.join(". "));
    }
    this.known = now;
  }
}
