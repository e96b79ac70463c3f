// Real Yjs peers under Node, driven by the Python tests (tests/yjs_node.py).
//
// One process holds any number of peers, each a Y.Doc with a y-websocket WebsocketProvider.
// stdin: one JSON command per line, {"id": 1, "cmd": "insert", "peer": "a", ...}.
// stdout: one JSON object per line: a reply {"id": 1, "ok": true, ...} or
// {"id": 1, "ok": false, "error": "..."}, or an event {"event": "synced", "peer": "a", ...}.
//
// disableBc is essential: without it, peers in one process sync through Node's
// BroadcastChannel and bypass the server under test.

import WebSocket from 'ws'
import * as Y from 'yjs'
import { emit, serveCommands } from './lines.mjs'
import { WebsocketProvider } from 'y-websocket'
import { random, splitsPair } from './seeded.mjs'

/** @type {Map<string, {doc: Y.Doc, text: Y.Text, provider: WebsocketProvider}>} */
const peers = new Map()


const toBase64 = (bytes) => Buffer.from(bytes).toString('base64')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A random UTF-16 index of `s` that does not split a surrogate pair. */
const safeIndex = (s, rnd) => {
  let i = Math.floor(rnd() * (s.length + 1))
  if (splitsPair(s, i)) i -= 1
  return i
}

const getPeer = (name) => {
  const peer = peers.get(name)
  if (!peer) throw new Error(`no peer named ${name}`)
  return peer
}

function connect ({ peer: name, url, room, params = {}, awareness = null }) {
  if (peers.has(name)) throw new Error(`peer ${name} exists`)
  const doc = new Y.Doc()
  const text = doc.getText('text')
  const provider = new WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    params
  })
  if (awareness !== null) provider.awareness.setLocalState(awareness)
  provider.on('status', ({ status }) => emit({ event: 'status', peer: name, status }))
  provider.on('sync', (synced) => emit({ event: 'synced', peer: name, synced }))
  provider.on('connection-close', (event) =>
    emit({ event: 'close', peer: name, code: event?.code ?? null, reason: event?.reason ?? '' }))
  provider.on('closed', ({ code, reason }) => emit({ event: 'closed', peer: name, code, reason }))
  peers.set(name, { doc, text, provider })
  return { clientId: doc.clientID }
}

/** Resolve once `check()` is true, re-checking on every document or provider change. */
function waitFor (peer, check, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const done = (error) => {
      clearTimeout(timer)
      peer.doc.off('update', test)
      peer.provider.off('sync', test)
      error ? reject(error) : resolve({})
    }
    const test = () => { if (check()) done() }
    const timer = setTimeout(() => done(new Error(`timed out waiting for ${what}`)), timeoutMs)
    peer.doc.on('update', test)
    peer.provider.on('sync', test)
    test()
  })
}

/** `count` edits at random places (no split surrogate pairs), `pauseMs` apart. */
async function type ({ peer: name, count, seed = 1, pauseMs = 1, alphabet }) {
  const { doc, text } = getPeer(name)
  const rnd = random(seed)
  const pieces = alphabet ?? ['a', 'b', 'é', 'e\u0301', '中', '文', '😀', '👍🏽', '🇫🇷', '👨‍👩‍👧', '\r\n', ' ']
  for (let n = 0; n < count; n++) {
    const current = text.toString()
    if (current.length > 0 && rnd() < 0.25) {
      const start = safeIndex(current, rnd)
      let end = Math.min(current.length, start + 1 + Math.floor(rnd() * 3))
      if (splitsPair(current, end)) end += 1
      if (end > start) text.delete(start, end - start)
    } else {
      text.insert(safeIndex(current, rnd), pieces[Math.floor(rnd() * pieces.length)])
    }
    if (pauseMs > 0) await sleep(pauseMs * rnd() * 2)
  }
  return { text: text.toString(), clientId: doc.clientID }
}

const commands = {
  connect,
  insert: ({ peer, index, text }) => { getPeer(peer).text.insert(index, text); return {} },
  delete: ({ peer, index, length }) => { getPeer(peer).text.delete(index, length); return {} },
  'insert-embed': ({ peer, index, embed }) => { getPeer(peer).text.insertEmbed(index, embed); return {} },
  // `count` inserts of `text` at the end, each its own transaction (so its own update message).
  'insert-many': ({ peer, text, count }) => {
    const { text: ytext } = getPeer(peer)
    for (let n = 0; n < count; n++) ytext.insert(ytext.length, text)
    return { length: ytext.length }
  },
  type,
  text: ({ peer }) => ({ text: getPeer(peer).text.toString() }),
  status: ({ peer }) => {
    const { provider } = getPeer(peer)
    return { connected: provider.wsconnected, synced: provider.synced }
  },
  'wait-synced': ({ peer, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => p.provider.synced, timeoutMs, `${peer} synced`)
  },
  'wait-text': ({ peer, text, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => p.text.toString() === text, timeoutMs, `${peer} text`)
  },
  'awareness-set': ({ peer, state }) => { getPeer(peer).provider.awareness.setLocalState(state); return {} },
  // This peer's caret as y-codemirror sets it: relative positions at UTF-16 indices.
  'cursor-set': ({ peer, anchor, head, user }) => {
    const { text, provider } = getPeer(peer)
    if (user) provider.awareness.setLocalStateField('user', user)
    provider.awareness.setLocalStateField('cursor', {
      anchor: Y.createRelativePositionFromTypeIndex(text, anchor),
      head: Y.createRelativePositionFromTypeIndex(text, head)
    })
    return {}
  },
  // Every other client's cursor resolved as y-codemirror resolves it (UTF-16 indices).
  cursors: ({ peer }) => {
    const { doc, text, provider } = getPeer(peer)
    const out = {}
    provider.awareness.getStates().forEach((state, id) => {
      if (id === doc.clientID || !state.cursor?.anchor || !state.cursor?.head) return
      const anchor = Y.createAbsolutePositionFromRelativePosition(state.cursor.anchor, doc)
      const head = Y.createAbsolutePositionFromRelativePosition(state.cursor.head, doc)
      if (anchor?.type !== text || head?.type !== text) return
      out[String(id)] = { anchor: anchor.index, head: head.index, user: state.user ?? null }
    })
    return { cursors: out }
  },
  // The clock y-protocols holds for one client's state (it grows with every renewal).
  'awareness-clock': ({ peer, client }) => ({ clock: getPeer(peer).provider.awareness.meta.get(client)?.clock ?? null }),
  'awareness-states': ({ peer }) => {
    const states = getPeer(peer).provider.awareness.getStates()
    return { states: Object.fromEntries([...states].map(([id, state]) => [String(id), state])) }
  },
  disconnect: ({ peer }) => { getPeer(peer).provider.disconnect(); return {} },
  reconnect: ({ peer }) => { getPeer(peer).provider.connect(); return {} },
  // Drop the TCP connection without a close frame or an awareness goodbye, like a crashed tab.
  drop: ({ peer }) => {
    const { provider } = getPeer(peer)
    provider.shouldConnect = false
    provider.ws?.terminate()
    return {}
  },
  destroy: ({ peer }) => {
    getPeer(peer).provider.destroy()
    peers.delete(peer)
    return {}
  },
  'state-vector': ({ peer }) => ({ stateVector: toBase64(Y.encodeStateVector(getPeer(peer).doc)) }),
  'encode-state': ({ peer }) => ({ update: toBase64(Y.encodeStateAsUpdate(getPeer(peer).doc)) }),
  exit: () => { setImmediate(() => process.exit(0)); return {} }
}

serveCommands(commands)
