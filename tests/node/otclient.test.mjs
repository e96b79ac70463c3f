// The protocol client against a scripted server: what it sends, which state it is in, and
// how it takes the server's answers (no browser, no network).

import assert from "node:assert/strict";
import { test } from "node:test";

import { OTClient } from "../../frontend/otclient.js";
import { AwaitingConfirm, AwaitingWithBuffer, Synchronized } from "../../frontend/otstates.js";
import { ReconnectingSocket } from "../../frontend/socket.js";
import { CloseCode } from "../../frontend/wire.js";

/** A stand-in for the browser's WebSocket: records what is sent, plays the server. */
class FakeWebSocket {
  constructor() {
    this.readyState = 0;
    this.sent = [];
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close() {
    this.readyState = 3;
  }

  open() {
    this.readyState = 1;
    this.onopen();
  }

  receive(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }

  closeFromServer(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

/** A view that remembers the states it was shown. */
function recordingView() {
  return {
    states: [],
    onChange() {},
    onPresence() {},
    onReadOnly() {},
    onState(state) {
      this.states.push(state);
    },
  };
}

/** A client on a fake socket, connected and opened; `sockets` lists every socket made. */
function connectedClient() {
  const sockets = [];
  const socket = new ReconnectingSocket("ws://test/ot/doc", () => {
    sockets.push(new FakeWebSocket());
    return sockets.at(-1);
  });
  const view = recordingView();
  const client = new OTClient(socket, { name: "Ada", color: "#d81b60" }, view);
  client.connect();
  sockets[0].open();
  return { client, view, sockets, server: sockets[0] };
}

const WELCOME = { type: "welcome", client: "c-0123456789abcdef", rev: 0, text: "", acked: 0 };

test("hello carries a secret of 32 hex digits, the same on every connection", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { client, sockets, server } = connectedClient();
  const [hello] = server.sent;
  assert.equal(hello.type, "hello");
  assert.match(hello.secret, /^[0-9a-f]{32}$/);
  assert.equal("client" in hello, false);
  assert.equal(client.client, null);
  client.reconnect();
  t.mock.timers.tick(250);
  sockets[1].open();
  assert.equal(sockets[1].sent[0].secret, hello.secret);
  assert.notEqual(connectedClient().server.sent[0].secret, hello.secret);
});

test("the welcome's client id is this tab's own: its own op in catch-up is its ack", () => {
  const { client, server } = connectedClient();
  server.receive(WELCOME);
  assert.equal(client.client, "c-0123456789abcdef");
  client.submit(["hi"]);
  assert.deepEqual(server.sent.at(-1), { type: "op", seq: 1, rev: 0, op: ["hi"] });
  const ops = [
    { rev: 1, op: ["a"], client: "c-someone-else", seq: 1 },
    { rev: 2, op: [1, "hi"], client: "c-0123456789abcdef", seq: 1 },
  ];
  server.receive({ type: "welcome", client: "c-0123456789abcdef", rev: 2, ops, acked: 1 });
  assert.ok(client.sync instanceof Synchronized);
  assert.equal(client.text, "ahi");
  assert.equal(client.rev, 2);
});

test("states: Synchronized -> AwaitingConfirm -> AwaitingWithBuffer -> ... -> Synchronized", () => {
  const { client, server } = connectedClient();
  server.receive(WELCOME);
  assert.ok(client.sync instanceof Synchronized);
  client.submit(["a"]);
  assert.ok(client.sync instanceof AwaitingConfirm);
  client.submit([1, "b"]);
  client.submit([2, "c"]);
  assert.ok(client.sync instanceof AwaitingWithBuffer);
  assert.deepEqual(client.sync.buffer, [1, "bc"]);
  server.receive({ type: "op", rev: 1, op: ["😀"], client: "c-other", seq: 1 });
  assert.equal(client.text, "😀abc");
  server.receive({ type: "ack", seq: 1, rev: 2 });
  assert.ok(client.sync instanceof AwaitingConfirm);
  assert.deepEqual(server.sent.at(-1), { type: "op", seq: 2, rev: 2, op: [2, "bc"] });
  server.receive({ type: "ack", seq: 2, rev: 3 });
  assert.ok(client.sync instanceof Synchronized);
  assert.equal(client.serverText, "😀abc");
  assert.equal(client.state, "saved");
});

test("4409: another tab took over; the page stops and says so", () => {
  const { client, view, sockets, server } = connectedClient();
  server.receive(WELCOME);
  server.closeFromServer(CloseCode.SUPERSEDED, "a newer connection of this client");
  assert.equal(client.state, "error");
  assert.equal(view.states.at(-1), "error");
  assert.equal(client.error, "opened in another tab or window");
  assert.equal(client.socket.timer, null); // no reconnect scheduled
  assert.equal(sockets.length, 1);
});

test("a close that is not fatal goes offline and schedules the next attempt", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { client, sockets, server } = connectedClient();
  server.receive(WELCOME);
  server.closeFromServer(CloseCode.GOING_AWAY);
  assert.equal(client.state, "offline");
  t.mock.timers.tick(250);
  assert.equal(sockets.length, 2);
});

test("a presence too old to place: no reconnect, a fresh presence is sent later", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, sockets, server } = connectedClient();
  server.receive(WELCOME);
  client.own.setSelection([0, 0]);
  t.mock.timers.tick(1000);
  server.receive({ type: "op", rev: 1, op: ["a"], client: "c-other", seq: 1 });
  const sent = server.sent.length;
  server.receive({ type: "error", code: "too-old", message: "presence at rev 0 is too old" });
  t.mock.timers.tick(1000);
  assert.equal(sockets.length, 1);
  assert.equal(client.state, "saved");
  assert.equal(server.sent.length, sent + 1);
  assert.equal(server.sent.at(-1).type, "presence");
  assert.equal(server.sent.at(-1).rev, 1);
});

test("acked: null after acked-unknown: the op in flight is not sent again, the text decides", () => {
  const { client, server, sockets } = connectedClient();
  server.receive(WELCOME);
  client.submit(["héllo 👨‍👩‍👧"]);
  const sent = server.sent.length;
  server.receive({ type: "error", code: "acked-unknown", message: "forgotten" });
  assert.equal(sockets.length, 1, "acked-unknown is no reason to reconnect");
  const text = "中 héllo 👨‍👩‍👧";
  server.receive({ ...WELCOME, rev: 7, text, acked: null });
  assert.equal(server.sent.slice(sent).filter((m) => m.type === "op").length, 0);
  assert.ok(client.sync instanceof Synchronized, client.sync.constructor.name);
  assert.equal(client.text, text);
  assert.match(client.notice, /may not have been saved/);
});
