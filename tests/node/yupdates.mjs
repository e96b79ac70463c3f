// Print the Yjs updates a real Yjs client sends for an insert and a one-unit delete at
// every UTF-16 index of a text, so tests/test_yupdate.py can check collab.yjs.checks on them.
//
// stdin: {"text": "a😀b", "chunk": 2, "insert": "X"}
// stdout: {"steps": [b64...], "base": b64, "inserts": [b64 per index 0..length],
//          "deletes": [b64 per index 0..length-1]}
//
// stdin {"kinds": true} instead: stdout {"kinds": b64, "hook": b64}, one update holding every content
// kind Yjs writes (binary, embed, format, Any, types incl. XmlElement, subdoc,
// deleted) but XmlHook, which "hook" holds, for the decoder tests.
//
// The text is built by two clients taking turns to append `chunk` code points each (so
// items end at varied places and belong to two clients); "steps" are those updates in
// order. Each insert and delete is made by a third client on a fresh copy of "base".

import * as Y from 'yjs'

const b64 = (bytes) => Buffer.from(bytes).toString('base64')

/** The update one transaction of `doc` produces. */
const capture = (doc, change) => {
  let update = null
  const listener = (u) => { update = u }
  doc.on('update', listener)
  change()
  doc.off('update', listener)
  if (update === null) throw new Error('no update')
  return update
}

function build (text, chunk) {
  const docs = [new Y.Doc(), new Y.Doc()]
  docs[0].clientID = 1001
  docs[1].clientID = 1002
  const points = [...text]
  const steps = []
  for (let k = 0; k * chunk < points.length; k++) {
    const piece = points.slice(k * chunk, (k + 1) * chunk).join('')
    const doc = docs[k % 2]
    const ytext = doc.getText('text')
    const update = capture(doc, () => ytext.insert(ytext.length, piece))
    Y.applyUpdate(docs[(k + 1) % 2], update)
    steps.push(b64(update))
  }
  return { doc: docs[0], steps }
}

function edits (base, length, change) {
  const out = []
  for (let i = 0; i < length; i++) {
    const doc = new Y.Doc()
    doc.clientID = 2001
    Y.applyUpdate(doc, base)
    out.push(b64(capture(doc, () => change(doc.getText('text'), i))))
  }
  return out
}

function allKinds () {
  const doc = new Y.Doc()
  const map = doc.getMap('map')
  map.set('bin', new Uint8Array([0, 255]))
  map.set('any', { a: [1, 2.5, null, true, 'x', 2n ** 60n] })
  map.set('sub', new Y.Doc())
  const array = doc.getArray('array')
  array.insert(0, [new Uint8Array([1]), 'two', null, new Y.Map()])
  array.delete(1, 1)
  const rich = doc.getText('rich')
  rich.insert(0, 'b😀ld', { bold: true })
  rich.insertEmbed(1, { img: 'x' })
  rich.format(0, 2, { italic: { deep: [1] } })
  const xml = doc.getXmlFragment('xml')
  const element = new Y.XmlElement('p')
  element.setAttribute('k', 'v')
  element.insert(0, [new Y.XmlText('hey')])
  xml.insert(0, [element])
  const hook = new Y.Doc()
  hook.getMap('map').set('hook', new Y.XmlHook('h'))
  hook.getMap('map').set('after', 1)
  return { kinds: b64(Y.encodeStateAsUpdate(doc)), hook: b64(Y.encodeStateAsUpdate(hook)) }
}

let input = ''
process.stdin.on('data', (data) => { input += data })
process.stdin.on('end', () => {
  const { text, chunk = 1, insert = 'X', kinds = false } = JSON.parse(input)
  if (kinds) {
    process.stdout.write(JSON.stringify(allKinds()) + '\n')
    return
  }
  const { doc, steps } = build(text, chunk)
  if (doc.getText('text').toString() !== text) throw new Error('text not built')
  const base = Y.encodeStateAsUpdate(doc)
  process.stdout.write(JSON.stringify({
    steps,
    base: b64(base),
    inserts: edits(base, text.length + 1, (t, i) => t.insert(i, insert)),
    deletes: edits(base, text.length, (t, i) => t.delete(i, 1))
  }) + '\n')
})
