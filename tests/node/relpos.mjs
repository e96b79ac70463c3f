// Random concurrent editing by three Yjs clients, for tests/test_yitems.py: the updates in
// the order a server received them, and what Yjs itself says about relative positions in
// the resulting text (so the server's own item order can be checked against Yjs's).
//
// stdin: {"seed": 1, "steps": 200}
// stdout: {"updates": [b64...], "text": "...",
//          "ids": [[client, clock] | null per UTF-16 index 0..length],
//          "resolved": [[client, clock, utf16 index] for every unit ever inserted]}

import * as Y from 'yjs'
import { random, splitsPair } from './seeded.mjs'

const b64 = (bytes) => Buffer.from(bytes).toString('base64')

const PIECES = ['a', 'bc', 'é', 'e\u0301', '中文', '😀', '👍🏽', '🇫🇷', '👨‍👩‍👧', '\r\n', 'xyz😀中']

function run ({ seed = 1, steps = 200 }) {
  const rnd = random(seed)
  const docs = [0, 1, 2].map((k) => {
    const doc = new Y.Doc()
    doc.clientID = [7, 300, 5000000][k]
    return doc
  })
  const server = new Y.Doc()
  const pending = docs.map(() => []) // updates each doc made and has not shared yet
  const updates = []
  const created = []
  const share = (k) => {
    for (const update of pending[k]) {
      Y.applyUpdate(server, update)
      updates.push(b64(update))
      docs.forEach((doc, j) => { if (j !== k) Y.applyUpdate(doc, update, 'remote') })
    }
    pending[k] = []
  }
  docs.forEach((doc, k) => doc.on('update', (update, origin) => { if (origin !== 'remote') pending[k].push(update) }))
  for (let n = 0; n < steps; n++) {
    const k = Math.floor(rnd() * 3)
    const text = docs[k].getText('text')
    const s = text.toString()
    if (s.length > 0 && rnd() < 0.3) {
      let start = Math.floor(rnd() * s.length)
      if (splitsPair(s, start)) start -= 1
      let end = Math.min(s.length, start + 1 + Math.floor(rnd() * 4))
      if (splitsPair(s, end)) end += 1
      text.delete(start, end - start)
    } else {
      let i = Math.floor(rnd() * (s.length + 1))
      if (splitsPair(s, i)) i -= 1
      const piece = PIECES[Math.floor(rnd() * PIECES.length)]
      const clock = Y.getState(docs[k].store, docs[k].clientID)
      text.insert(i, piece)
      for (let u = 0; u < piece.length; u++) created.push([docs[k].clientID, clock + u])
    }
    if (rnd() < 0.3) share(Math.floor(rnd() * 3))
  }
  for (let k = 0; k < 3; k++) share(k)
  const ytext = server.getText('text')
  const ids = []
  for (let i = 0; i <= ytext.length; i++) {
    const item = Y.createRelativePositionFromTypeIndex(ytext, i).item
    ids.push(item === null ? null : [item.client, item.clock])
  }
  const resolved = created.map(([client, clock]) => {
    const rpos = Y.createRelativePositionFromJSON({ type: null, tname: 'text', item: { client, clock }, assoc: 0 })
    return [client, clock, Y.createAbsolutePositionFromRelativePosition(rpos, server).index]
  })
  return { updates, text: ytext.toString(), ids, resolved }
}

let input = ''
process.stdin.on('data', (chunk) => { input += chunk })
process.stdin.on('end', () => process.stdout.write(JSON.stringify(run(JSON.parse(input)))))
