// What this tab typed that the server has not confirmed, as one of three states after
// ot.js: Synchronized (nothing), AwaitingConfirm (one op in flight), AwaitingWithBuffer
// (one op in flight and one op typed after it). Each state is an immutable value whose
// methods return the next state; the OT client does the sending.

import { compose, transform } from "./textops.js";

/** Nothing typed here is waiting for the server. */
export class Synchronized {
  get inflight() {
    return null;
  }

  get buffer() {
    return null;
  }

  /** The user typed `op`: it goes out at once, as `seq`. */
  local(op, seq) {
    return new AwaitingConfirm({ seq, op });
  }

  /** A server op: returns [the op to apply here, the next state]. */
  remote(op) {
    return [op, this];
  }

  confirmed() {
    return this;
  }
}

/** One op (`inflight` = {seq, op}) sent, waiting for its ack. */
export class AwaitingConfirm {
  constructor(inflight) {
    this.inflight = inflight;
  }

  get buffer() {
    return null;
  }

  local(op) {
    return new AwaitingWithBuffer(this.inflight, op);
  }

  remote(op) {
    const [change, mine] = transform(op, this.inflight.op);
    return [change, new AwaitingConfirm({ seq: this.inflight.seq, op: mine })];
  }

  /** The in-flight op is in the server's text. */
  confirmed() {
    return new Synchronized();
  }
}

/** One op in flight and `buffer`, everything typed since, waiting to be sent. */
export class AwaitingWithBuffer {
  constructor(inflight, buffer) {
    this.inflight = inflight;
    this.buffer = buffer;
  }

  local(op) {
    return new AwaitingWithBuffer(this.inflight, compose(this.buffer, op));
  }

  remote(op) {
    const [change, mine] = transform(op, this.inflight.op);
    const [shown, buffer] = transform(change, this.buffer);
    return [shown, new AwaitingWithBuffer({ seq: this.inflight.seq, op: mine }, buffer)];
  }

  /** The in-flight op is in the server's text: the buffer goes out next, as `seq`. */
  confirmed(seq) {
    return new AwaitingConfirm({ seq, op: this.buffer });
  }
}
