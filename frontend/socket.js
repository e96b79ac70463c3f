// A WebSocket that connects again after it closes, waiting 250 ms, 500 ms, ... up to 5 s
// between attempts (with jitter, so tabs a restart dropped do not all come back at once).
// A close the server marks as fatal (wire.js) is final: the same attempt would get the
// same answer.

import { FATAL_CLOSE_CODES } from "./wire.js";

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

/** The wait before attempt number `attempt` (0-based) after a failure, jittered. */
export function backoffDelay(attempt, random = Math.random) {
  const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  return delay * (0.5 + random() / 2);
}

/**
 * Handlers: `onOpen()`, `onMessage(text)` (text frames only), `onClose(code, reason,
 * fatal)`. After a close that is not fatal the next attempt is already scheduled.
 */
export class ReconnectingSocket {
  constructor(url, createSocket = (address) => new WebSocket(address)) {
    this.url = url;
    this.createSocket = createSocket;
    this.handlers = { onOpen() {}, onMessage() {}, onClose() {} };
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
  }

  connect() {
    this.timer = null;
    const socket = this.createSocket(this.url);
    this.socket = socket;
    socket.onopen = () => this.handlers.onOpen();
    socket.onmessage = (event) => {
      if (this.socket === socket && typeof event.data === "string") {
        this.handlers.onMessage(event.data);
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.closed(event.code, event.reason);
    };
  }

  /** Is there an open socket to send on? */
  get open() {
    return this.socket !== null && this.socket.readyState === 1; // WebSocket.OPEN
  }

  send(text) {
    this.socket.send(text);
  }

  /** The connection did what it was for (the server said welcome): start the waits over. */
  succeeded() {
    this.attempt = 0;
  }

  /** Drop the connection and connect again after the usual wait (to resynchronise). */
  reconnect() {
    if (!this.socket) return;
    const socket = this.socket;
    this.socket = null;
    socket.close();
    this.closed(1000, "");
  }

  /** Connect now if waiting for the next attempt (the browser came back online). */
  hurry() {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  closed(code, reason) {
    const fatal = FATAL_CLOSE_CODES.has(code);
    if (!fatal) {
      this.timer = setTimeout(() => this.connect(), backoffDelay(this.attempt));
      this.attempt += 1;
    }
    this.handlers.onClose(code, reason, fatal);
  }
}
