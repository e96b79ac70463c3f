// History by sessions (frontend/sessions.js): one author's consecutive revisions without a
// long pause are one session; another author or a pause starts the next.

import assert from "node:assert/strict";
import { test } from "node:test";

import { author, authorColor, groupSessions } from "../../frontend/sessions.js";

const at = (minutes) => new Date(Date.UTC(2026, 0, 1, 10, 0) + minutes * 60_000).toISOString();
const rev = (n, user, minutes) => ({ rev: n, user, time: at(minutes), origin: `ot:c-1:${n}` });

test("sessions: a pause or another author starts a new one, newest first", () => {
  const infos = [
    rev(1, "~Ada 中文", 0),
    rev(2, "~Ada 中文", 0.1),
    rev(3, "~Ada 中文", 1),
    rev(4, "bob", 1.5),
    rev(5, "bob", 1.6),
    rev(6, "~Ada 中文", 2),
    rev(7, "~Ada 中文", 30), // after a pause
  ];
  const sessions = groupSessions(infos.reverse());
  assert.deepEqual(
    sessions.map((s) => [s.author, s.first, s.last, s.count]),
    [
      ["Ada 中文", 7, 7, 1],
      ["Ada 中文", 6, 6, 1],
      ["bob", 4, 5, 2],
      ["Ada 中文", 1, 3, 3],
    ],
  );
});

test("authors: the verified user, the name given, or the kind of peer", () => {
  assert.equal(author({ user: "~Bea 👩🏽‍💻" }), "Bea 👩🏽‍💻");
  assert.equal(author({ user: "ada" }), "ada");
  assert.equal(author({ user: null, origin: "yjs:3" }), "a Yjs editor");
  assert.equal(author({ user: null, origin: "ot:c-0123456789abcdef:4" }), "someone unnamed");
});

test("an author's colour is the same every time and a CSS colour", () => {
  assert.equal(authorColor("Ada 中文"), authorColor("Ada 中文"));
  assert.match(authorColor("😀"), /^#[0-9a-f]{6}$/);
});

test("unnamed peers on two connections are two sessions", () => {
  const infos = [
    { rev: 1, user: null, time: at(0), origin: "yjs:1" },
    { rev: 2, user: null, time: at(0), origin: "yjs:1" },
    { rev: 3, user: null, time: at(0), origin: "yjs:2" },
  ];
  assert.deepEqual(groupSessions(infos).map((s) => [s.first, s.last]), [[3, 3], [1, 2]]);
});
