// History as a story: consecutive revisions by one author are one session, and a pause of
// PAUSE_MS or another author starts the next; each author has a colour of their own
// (from their name: the history has no other record of it).

export const PAUSE_MS = 5 * 60 * 1000;

/**
 * Who made a revision: the authenticate hook's user, or the name the client gave ("~" in
 * the record: nobody verified it), or else what kind of peer it was.
 */
export function author(info) {
  if (typeof info.user === "string" && info.user.startsWith("~")) return info.user.slice(1);
  if (info.user) return info.user;
  const origin = String(info.origin || "");
  if (origin.startsWith("yjs:")) return "a Yjs editor";
  if (origin.startsWith("ot:")) return "someone unnamed";
  if (origin.startsWith("server")) return "the server";
  return "someone";
}

/** Who a revision is by, for grouping: the user, or without one the connection (two
 * unnamed Yjs editors are two people). */
function authorKey(info) {
  if (info.user) return `user:${info.user}`;
  return String(info.origin || "").split(":").slice(0, 2).join(":");
}

/**
 * `infos` ({rev, time, user, origin}, any order) grouped into sessions, newest first:
 * {author, first, last, start, end, count} (revisions `first`..`last`, times in ms).
 */
export function groupSessions(infos, pauseMs = PAUSE_MS) {
  const sorted = [...infos].sort((a, b) => a.rev - b.rev);
  const sessions = [];
  let current = null;
  for (const info of sorted) {
    const who = author(info);
    const key = authorKey(info);
    const time = Date.parse(info.time);
    const continues =
      current !== null && current.key === key && time - current.end <= pauseMs && info.rev === current.last + 1;
    if (continues) {
      current.last = info.rev;
      current.end = time;
      current.count += 1;
    } else {
      current = { author: who, key, first: info.rev, last: info.rev, start: time, end: time, count: 1 };
      sessions.push(current);
    }
  }
  return sessions.reverse();
}

// Colours that keep 4.5:1 with white text and 3:1 as marks on the light and dark panels.
const AUTHOR_COLORS = ["#c2185b", "#7b1fa2", "#3949ab", "#1565c0", "#00796b", "#2e7d32", "#bf360c", "#5d4037"];

/** The colour of `name`, the same on every page and every visit. */
export function authorColor(name) {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
  return AUTHOR_COLORS[(hash >>> 0) % AUTHOR_COLORS.length];
}
