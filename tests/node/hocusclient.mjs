// Real Hocuspocus providers under Node (@hocuspocus/provider), driven by the Python tests
// (tests/hocuspocus_node.py), with the same JSON-lines plumbing as yclient.mjs.
//
// A "socket" is a shared HocuspocusProviderWebsocket; a "peer" is one HocuspocusProvider
// (one Y.Doc) either on its own socket (`url`) or attached to a shared one (`socket`).
// Node 20 has no global WebSocket: `ws` is passed as WebSocketPolyfill.

import WebSocket from 'ws'
import * as Y from 'yjs'
import { emit, serveCommands } from './lines.mjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'

const sockets = new Map()
const peers = new Map()


const getPeer = (name) => {
  const peer = peers.get(name)
  if (!peer) throw new Error(`no peer named ${name}`)
  return peer
}

function socket ({ socket: name, url }) {
  const ws = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  ws.on('disconnect', ({ event }) =>
    emit({ event: 'socket-disconnect', peer: null, socket: name, code: event?.code ?? null }))
  sockets.set(name, ws)
  return {}
}

function connect ({ peer: name, url, socket: socketName, doc: docName, token = null, awareness = null, forceSyncMs = false, sessionAwareness = false }) {
  if (peers.has(name)) throw new Error(`peer ${name} exists`)
  const doc = new Y.Doc()
  const options = { name: docName, document: doc, token, forceSyncInterval: forceSyncMs, sessionAwareness }
  if (socketName) {
    options.websocketProvider = sockets.get(socketName)
  } else {
    options.url = url
    options.WebSocketPolyfill = WebSocket
  }
  const provider = new HocuspocusProvider(options)
  if (socketName) provider.attach()
  const on = (event, make) => provider.on(event, (data) => emit({ event, peer: name, ...make(data) }))
  on('authenticated', ({ scope }) => ({ scope }))
  on('authenticationFailed', ({ reason }) => ({ reason }))
  on('stateless', ({ payload }) => ({ payload }))
  on('close', ({ event }) => ({ code: event?.code ?? null, reason: event?.reason ?? '' }))
  on('synced', ({ state }) => ({ state }))
  on('outgoingMessage', ({ message }) => ({ description: message.description ?? null }))
  if (awareness !== null) provider.setAwarenessField('user', awareness)
  peers.set(name, { doc, provider, listeners: new Set() })
  return { clientId: doc.clientID }
}

/** Resolve once `check()` is true, re-checking on every change of the peer. */
function waitFor (peer, check, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const events = ['synced', 'unsyncedChanges', 'authenticated', 'authenticationFailed', 'stateless', 'close']
    const done = (error) => {
      clearTimeout(timer)
      peer.doc.off('update', test)
      for (const event of events) peer.provider.off(event, test)
      error ? reject(error) : resolve({})
    }
    const test = () => { if (check()) done() }
    const timer = setTimeout(() => done(new Error(`timed out waiting for ${what}: ${JSON.stringify(status(peer))}`)), timeoutMs)
    peer.doc.on('update', test)
    for (const event of events) peer.provider.on(event, test)
    test()
  })
}

const status = ({ provider }) => ({
  synced: provider.isSynced,
  unsynced: provider.unsyncedChanges,
  authenticated: provider.isAuthenticated,
  scope: provider.authorizedScope ?? null
})

const fragmentText = (doc) => doc.getXmlFragment('prosemirror').toString()

const commands = {
  socket,
  connect,
  insert: ({ peer, index, text }) => { getPeer(peer).doc.getText('text').insert(index, text); return {} },
  delete: ({ peer, index, length }) => { getPeer(peer).doc.getText('text').delete(index, length); return {} },
  text: ({ peer }) => ({ text: getPeer(peer).doc.getText('text').toString() }),
  // A TipTap-style paragraph in the XmlFragment ProseMirror binds to.
  paragraph: ({ peer, text }) => {
    const { doc } = getPeer(peer)
    const paragraph = new Y.XmlElement('paragraph')
    paragraph.insert(0, [new Y.XmlText(text)])
    const fragment = doc.getXmlFragment('prosemirror')
    fragment.insert(fragment.length, [paragraph])
    return {}
  },
  xml: ({ peer }) => ({ xml: fragmentText(getPeer(peer).doc) }),
  status: ({ peer }) => status(getPeer(peer)),
  'wait-synced': ({ peer, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => p.provider.isSynced, timeoutMs, 'synced')
  },
  'wait-saved': ({ peer, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => p.provider.isSynced && !p.provider.hasUnsyncedChanges, timeoutMs, 'no unsynced changes')
  },
  'wait-text': ({ peer, text, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => p.doc.getText('text').toString() === text, timeoutMs, `text ${JSON.stringify(text)}`)
  },
  'wait-xml': ({ peer, xml, timeoutMs = 10000 }) => {
    const p = getPeer(peer)
    return waitFor(p, () => fragmentText(p.doc) === xml, timeoutMs, `xml ${xml}`)
  },
  'awareness-states': ({ peer }) => {
    const states = getPeer(peer).provider.awareness.getStates()
    return { states: Object.fromEntries([...states].map(([id, state]) => [String(id), state])) }
  },
  stateless: ({ peer, payload }) => { getPeer(peer).provider.sendStateless(payload); return {} },
  detach: ({ peer }) => { getPeer(peer).provider.detach(); return {} },
  destroy: ({ peer }) => {
    getPeer(peer).provider.destroy()
    peers.delete(peer)
    return {}
  },
  exit: () => { setImmediate(() => process.exit(0)); return {} }
}

serveCommands(commands)
